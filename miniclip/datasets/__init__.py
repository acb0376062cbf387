"""The toy caption dataset: coloured shapes on a dark background, with true captions.

Each image (32x32 RGB by default) holds one or two objects. An object has a colour (8), a shape
(7), a size (2) and a position (a cell of a 3x3 grid); its caption says so in varied words:
"a small red circle in the top left", "top left: a tiny red disc", "a red circle above a blue
square". Eight (colour, shape) compositions are never shown in training: the ``heldout`` split
asks whether a model that has seen "blue" and "circle" separately recognises a blue circle.

    python -m miniclip.datasets generate --out data/toy     # 55k images, about 15 s
    python -m miniclip.datasets grid --data data/toy --out docs/images/toy_samples.png

    >>> from miniclip.datasets import load_split, load_meta
    >>> train = load_split("data/toy", "train")                        # doctest: +SKIP
    >>> train.images.shape, train.captions[0]                          # doctest: +SKIP
    ((50000, 32, 32, 3), 'a photo of a purple circle in the top right.')

Files, one concept each:
    attributes.py  colours, shapes, sizes, positions, held-out pairs, class names, prompts
    scenes.py      where objects go, and which relations ("above", "left of") hold
    draw.py        Pillow drawing: supersampled shapes over a textured background
    captions.py    templates and synonyms that turn a scene into a true caption
    variety.py     the documented ranges of the varied world (README.md in this folder)
    sdf.py         a second renderer, signed distances in NumPy (the renderer-shift evaluation)
    negatives.py   a true caption and its colour-, place- or shape-swapped hard negative
    storage.py     generate the splits, write .npz + meta.json, load them back
    transforms.py  augmentation that keeps captions true
    sources.py     which reader a --data spec names: your CSV, your shards, or the toy world
    grid.py        a PNG of samples with their captions
"""

from miniclip.datasets.attributes import (
    CLASS_PAIRS,
    CLASSNAMES,
    COLOUR_RGB,
    COLOURS,
    HELDOUT_PAIRS,
    POSITIONS,
    PROMPT_TEMPLATES,
    SEEN_PAIRS,
    SHAPES,
    SIZES,
    class_index,
    prompts_for,
)
from miniclip.datasets.captions import caption_for
from miniclip.datasets.grid import plot_grid
from miniclip.datasets.scenes import ToyObject, relations, sample_scene
from miniclip.datasets.storage import (
    DEFAULT_SIZES,
    SPLITS,
    DatasetError,
    ToySplit,
    channel_mean_std,
    check_dataset,
    draw_example,
    ensure_dataset,
    generate_dataset,
    load_meta,
    load_split,
)
from miniclip.datasets.transforms import augment

__all__ = [
    "CLASS_PAIRS",
    "CLASSNAMES",
    "COLOUR_RGB",
    "COLOURS",
    "DEFAULT_SIZES",
    "DatasetError",
    "HELDOUT_PAIRS",
    "POSITIONS",
    "PROMPT_TEMPLATES",
    "SEEN_PAIRS",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "ToyObject",
    "ToySplit",
    "augment",
    "caption_for",
    "channel_mean_std",
    "check_dataset",
    "class_index",
    "draw_example",
    "ensure_dataset",
    "generate_dataset",
    "load_meta",
    "load_split",
    "plot_grid",
    "prompts_for",
    "relations",
    "sample_scene",
]
