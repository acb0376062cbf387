"""Generate the splits, write them to disk, read them back.

``generate_dataset(out_dir)`` writes ``train.npz``, ``val.npz``, ``test.npz``, ``heldout.npz`` and
``meta.json``. Image ``i`` of a split is drawn from its own generator, seeded by
``(seed, split number, i)``, so the result is the same however many worker processes draw it.

    train, val   one object (70%) or two (30%), compositions from SEEN_PAIRS
    test         one object, each of the 48 SEEN_PAIRS in turn (balanced), for zero-shot "seen"
    heldout      one object, each of the 8 HELDOUT_PAIRS in turn, never in train or val

Each ``.npz`` holds, for N images and up to 2 objects (slot 1 is -1 / NaN when there is one):

    images     uint8   (N, R, R, 3)
    captions   str     (N,)
    n_objects  int8    (N,)
    colour, shape, size, position   int8 (N, 2)   indices into the attribute tuples
    box        float64 (N, 2, 4)    (x0, y0, x1, y1) in pixels, the object's bounding box
    label      int16   (N,)         zero-shot class ``colour * 7 + shape``; -1 for two objects

    >>> import tempfile; folder = tempfile.mkdtemp() + "/toy"
    >>> meta = generate_dataset(folder, n_train=100, n_val=10, n_test=48, n_heldout=8,
    ...                         progress=False)
    >>> meta["split_sizes"], meta["heldout_classes"]
    ({'train': 100, 'val': 10, 'test': 48, 'heldout': 8}, [1, 11, 14, 24, 34, 37, 47, 50])
    >>> load_split(folder, "heldout").label[:3]   # red square, green hexagon, blue circle
    array([ 1, 11, 14], dtype=int16)

``world="varied"`` (``generate --world varied``) draws the varied world of ``variety.py`` with
``draw_varied.py`` instead, and writes dataset version 3, whose meta.json says ``"world":
"varied"``; the default world is version 2, as before.

Longer than 400 lines because generation, the split type and the checked loading belong together
here; each part is short and reads on its own.

A dataset is written whole or not at all, never over another unless asked (``regenerate``):
see folder.py. meta.json records each split's size and content hash; ``load_split`` and
``check_dataset`` compare them: a bad dataset is an error saying how to regenerate it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from miniclip.datasets.attributes import (
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
)
from miniclip.datasets.captions import caption_for
from miniclip.datasets.draw import make_background, render_image
from miniclip.datasets.folder import (
    DatasetError,
    check_destination,
    check_fits_in_memory,
    content_hash,
    discard,
    is_empty_folder,
    move_into_place,
    partial_dir,
    regenerate_hint,
)
from miniclip.datasets.scenes import WORLDS, ToyObject, sample_scene

VERSION = 2  # 2: meta.json records split sizes and a content hash per file
VARIED_VERSION = 3  # 3: the varied world (meta.json "world": "varied"); opt-in
SPLITS = ("train", "val", "test", "heldout")
SPLIT_NUMBER = {name: number for number, name in enumerate(SPLITS)}  # part of each image's seed
TWO_OBJECT_FRACTION = 0.3  # of train and val images
SUPERSAMPLE = 4
DEFAULT_SIZES = {"train": 50_000, "val": 1_000, "test": 2_000, "heldout": 2_000}
CHUNK = 250  # images per task handed to a worker


def draw_example(seed: int, split: str, index: int, resolution: int, world: str = "classic"):
    """Image ``index`` of ``split``: (uint8 (R, R, 3) image, caption, list of ToyObject)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = np.random.default_rng([seed, SPLIT_NUMBER[split], index])
    if split in ("train", "val"):
        n_objects = 2 if rng.random() < TWO_OBJECT_FRACTION else 1
        objects = sample_scene(rng, SEEN_PAIRS, n_objects, resolution, world)
    else:  # one object, the compositions taken in turn so that every class is equally common
        pairs = SEEN_PAIRS if split == "test" else HELDOUT_PAIRS
        objects = sample_scene(rng, [pairs[index % len(pairs)]], 1, resolution, world)
    if world == "varied":
        from miniclip.datasets.draw_varied import draw_varied_scene

        return draw_varied_scene(rng, objects, resolution, SUPERSAMPLE), caption_for(
            objects, rng), objects
    background = make_background(rng, resolution)
    drawn = [(SHAPES[o.shape], o.rgb, o.cx, o.cy, o.side) for o in objects]
    image = render_image(drawn, background, resolution, SUPERSAMPLE)
    return image, caption_for(objects, rng), objects


def _draw_chunk(task):
    """Worker: draw images [start, stop) of a split into arrays."""
    seed, split, start, stop, resolution, world = task
    n = stop - start
    out = {
        "images": np.empty((n, resolution, resolution, 3), np.uint8),
        "captions": [],
        "n_objects": np.empty(n, np.int8),
        "colour": np.full((n, 2), -1, np.int8),
        "shape": np.full((n, 2), -1, np.int8),
        "size": np.full((n, 2), -1, np.int8),
        "position": np.full((n, 2), -1, np.int8),
        "box": np.full((n, 2, 4), np.nan, np.float64),
        "label": np.full(n, -1, np.int16),
    }
    for row, index in enumerate(range(start, stop)):
        image, caption, objects = draw_example(seed, split, index, resolution, world)
        out["images"][row] = image
        out["captions"].append(caption)
        out["n_objects"][row] = len(objects)
        for slot, obj in enumerate(objects):
            out["colour"][row, slot] = obj.colour
            out["shape"][row, slot] = obj.shape
            out["size"][row, slot] = obj.size
            out["position"][row, slot] = obj.position
            out["box"][row, slot] = obj.box
        if len(objects) == 1:
            out["label"][row] = class_index(objects[0].colour, objects[0].shape)
    return out


def _check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def channel_mean_std(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 (N, R, R, 3) images, on the [0, 1] scale.

    Exact, from a 256-bin histogram per channel, so it needs no float copy of the images.
    """
    levels = np.arange(256, dtype=np.float64) / 255.0  # (256,)
    histograms = np.zeros((3, 256), dtype=np.float64)  # counts of each grey level per channel
    for start in range(0, len(images), 1024):  # bincount casts to int64: keep the copy small
        block = images[start : start + 1024]
        for channel in range(3):
            histograms[channel] += np.bincount(block[..., channel].ravel(), minlength=256)
    mean, std = [], []
    for counts in histograms:
        m = float(counts @ levels / counts.sum())
        v = float(counts @ (levels - m) ** 2 / counts.sum())
        mean.append(m)
        std.append(v**0.5)
    return mean, std


def generate_dataset(
    out_dir,
    n_train: int = DEFAULT_SIZES["train"],
    n_val: int = DEFAULT_SIZES["val"],
    n_test: int = DEFAULT_SIZES["test"],
    n_heldout: int = DEFAULT_SIZES["heldout"],
    resolution: int = 32,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    regenerate: bool = False,
    world: str = "classic",
) -> dict:
    """Draw every split and write ``{split}.npz`` and ``meta.json`` to ``out_dir``; return meta.

    workers: processes that draw (None: one per CPU core, at most 8; 1: no subprocesses).
    The output depends only on the sizes, the resolution and the seed, never on ``workers``.
    out_dir must not exist or be empty; ``regenerate=True`` replaces a dataset there (a folder
    holding anything but a dataset's files is never replaced). Written atomically: see above.
    world: "classic" (the default, version 2) or "varied" (variety.py's ranges, version 3).
    """
    if world not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {world!r}")
    counts = {
        "train": _check_count("n_train", n_train, 1),
        "val": _check_count("n_val", n_val, 0),
        "test": _check_count("n_test", n_test, 0),
        "heldout": _check_count("n_heldout", n_heldout, 0),
    }
    resolution = _check_count("resolution", resolution, 16)
    seed = _check_count("seed", seed, 0)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    workers = _check_count("workers", workers, 1)
    check_fits_in_memory(counts, resolution)
    out_dir = Path(out_dir)
    if not isinstance(regenerate, bool):
        raise TypeError(f"regenerate must be True or False, got {regenerate!r}")
    check_destination(out_dir, regenerate)
    final_dir, out_dir = out_dir, partial_dir(out_dir)
    try:

        tasks = [
            (seed, split, start, min(start + CHUNK, n), resolution, world)
            for split, n in counts.items()
            for start in range(0, n, CHUNK)
        ]
        chunks: dict[str, list[dict]] = {split: [] for split in SPLITS}
        started = time.perf_counter()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=sum(counts.values()), unit="img", desc="drawing")
        pool = Pool(workers) if workers > 1 else None
        try:
            results = pool.imap(_draw_chunk, tasks) if pool else map(_draw_chunk, tasks)
            for task, chunk in zip(tasks, results, strict=True):
                chunks[task[1]].append(chunk)
                if bar is not None:
                    bar.update(task[3] - task[2])
        finally:
            if pool is not None:
                pool.close()
                pool.join()
            if bar is not None:
                bar.close()

        meta = {
            "version": VERSION if world == "classic" else VARIED_VERSION,
            "seed": seed,
            "resolution": resolution,
            "supersample": SUPERSAMPLE,
            "split_sizes": counts,
            "two_object_fraction": TWO_OBJECT_FRACTION,
            "colours": list(COLOURS),
            "colour_rgb": {name: list(COLOUR_RGB[name]) for name in COLOURS},
            "shapes": list(SHAPES),
            "sizes": list(SIZES),
            "positions": list(POSITIONS),
            "classnames": list(CLASSNAMES),
            "heldout_pairs": [list(p) for p in HELDOUT_PAIRS],
            "heldout_classes": [class_index(*p) for p in HELDOUT_PAIRS],
            "prompt_templates": list(PROMPT_TEMPLATES),
        }
        if world != "classic":
            meta["world"] = world
        for split in SPLITS:
            arrays = _concatenate(chunks.pop(split), resolution)  # frees the chunks
            if split == "train":
                meta["mean"], meta["std"] = channel_mean_std(arrays["images"])
            meta.setdefault("files", {})[f"{split}.npz"] = {"n": len(arrays["images"]),
                                                            "sha256": content_hash(arrays)}
            _save_npz(out_dir / f"{split}.npz", arrays)
        meta["generation_seconds"] = round(time.perf_counter() - started, 2)
        (out_dir / "meta.json").write_text(json.dumps(meta, indent=1))  # last: the folder's done
        move_into_place(out_dir, final_dir, regenerate)
    except BaseException:  # nothing half-written is left behind
        discard(out_dir)
        raise
    return meta


def _concatenate(chunks: list[dict], resolution: int) -> dict[str, np.ndarray]:
    if not chunks:  # an empty split still has every array, with N = 0
        chunks = [_draw_chunk((0, "test", 0, 0, resolution, "classic"))]
    keys = [key for key in chunks[0] if key != "captions"]
    arrays = {key: np.concatenate([chunk[key] for chunk in chunks]) for key in keys}
    arrays["captions"] = np.array([c for chunk in chunks for c in chunk["captions"]], dtype=str)
    return arrays


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


@dataclass
class ToySplit:
    """One split in memory; arrays as described in the module docstring."""

    name: str
    images: np.ndarray  # uint8 (N, R, R, 3)
    captions: np.ndarray  # str (N,)
    n_objects: np.ndarray  # int8 (N,)
    colour: np.ndarray  # int8 (N, 2)
    shape: np.ndarray  # int8 (N, 2)
    size: np.ndarray  # int8 (N, 2)
    position: np.ndarray  # int8 (N, 2)
    box: np.ndarray  # float64 (N, 2, 4)
    label: np.ndarray  # int16 (N,), -1 for two objects

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        n, r = self.images.shape[:2]
        two = int(np.sum(self.n_objects == 2))
        return f"ToySplit({self.name!r}: {n} images of {r}x{r}, {two} with two objects)"

    def objects(self, index: int) -> list[ToyObject]:
        """The objects of image ``index``, e.g. to write a new caption with ``caption_for``."""
        found = []
        for slot in range(int(self.n_objects[index])):
            x0, y0, x1, y1 = (float(v) for v in self.box[index, slot])
            colour = int(self.colour[index, slot])
            found.append(
                ToyObject(
                    colour=colour,
                    shape=int(self.shape[index, slot]),
                    size=int(self.size[index, slot]),
                    position=int(self.position[index, slot]),
                    cx=(x0 + x1) / 2,
                    cy=(y0 + y1) / 2,
                    side=x1 - x0,
                    rgb=COLOUR_RGB[COLOURS[colour]],
                )
            )
        return found


def load_meta(data_dir) -> dict:
    """The dataset's ``meta.json`` as a dict (vocabularies, held-out pairs, mean, std, ...)."""
    path = Path(data_dir) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"data_dir {str(data_dir)!r} has no meta.json; write the dataset "
                                f"first with `python -m miniclip.datasets generate --out {data_dir}`")
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path} is not valid JSON ({e}); {regenerate_hint(data_dir)}") from e
    readable = {VERSION: None, VARIED_VERSION: "varied"}  # version -> its meta "world"
    found = meta.get("version") if isinstance(meta, dict) else None
    if found not in readable or meta.get("world") != readable[found]:
        raise DatasetError(f"data_dir {str(data_dir)!r} holds dataset version {found!r}, this "
                           f"code reads versions {VERSION} and {VARIED_VERSION} (varied world); "
                           f"{regenerate_hint(data_dir)}")
    sizes, files = meta.get("split_sizes"), meta.get("files")
    if not (isinstance(sizes, dict) and all(isinstance(sizes.get(s), int) for s in SPLITS)
            and isinstance(files, dict) and isinstance(meta.get("resolution"), int)
            and all(len(meta.get(k) or ()) == 3 for k in ("mean", "std"))):
        raise DatasetError(f"{path} lacks or garbles split_sizes, files, resolution, mean or "
                           f"std; {regenerate_hint(data_dir)}")
    return meta


def load_split(data_dir, split: str) -> ToySplit:
    """Read one split ('train', 'val', 'test' or 'heldout') of a generated dataset, checked
    against meta.json (size and content hash): DatasetError if it does not match."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    meta = load_meta(data_dir)  # checks that the folder holds a dataset of this version
    path = Path(data_dir) / f"{split}.npz"
    if not path.is_file():
        raise DatasetError(f"{path} is missing: the dataset is incomplete; "
                           f"{regenerate_hint(data_dir)}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception as e:  # zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError ...
        raise DatasetError(f"{path} cannot be read ({type(e).__name__}: {e}); "
                           f"{regenerate_hint(data_dir)}") from e
    recorded = (meta.get("files") or {}).get(path.name) or {}
    expected_keys = {f.name for f in ToySplit.__dataclass_fields__.values()} - {"name"}
    if set(arrays) != expected_keys or recorded.get("sha256") != content_hash(arrays):
        raise DatasetError(f"{path} does not match the dataset's meta.json (its arrays were "
                           f"changed, or it is from another generation); "
                           f"{regenerate_hint(data_dir)}")
    return ToySplit(name=split, **arrays)


def check_dataset(data_dir) -> dict:
    """Every split of the dataset present and as meta.json records it -> meta. DatasetError
    (saying how to regenerate) for an incomplete, edited or outdated dataset."""
    meta = load_meta(data_dir)
    for split in SPLITS:
        n = len(load_split(data_dir, split))
        if n != meta["split_sizes"][split]:
            raise DatasetError(f"{Path(data_dir) / (split + '.npz')} holds {n} images, meta.json "
                               f"says {meta['split_sizes'][split]}; {regenerate_hint(data_dir)}")
    return meta


def ensure_dataset(data_dir, regenerate: bool = False, **kwargs) -> dict:
    """Return the meta of the dataset in ``data_dir``, generating it first if the folder is
    missing or empty. A dataset there made with other settings (sizes, resolution, seed;
    ``kwargs`` as for ``generate_dataset``), or incomplete, is an error unless ``regenerate``."""
    wanted = {
        "split_sizes": {
            "train": kwargs.get("n_train", DEFAULT_SIZES["train"]),
            "val": kwargs.get("n_val", DEFAULT_SIZES["val"]),
            "test": kwargs.get("n_test", DEFAULT_SIZES["test"]),
            "heldout": kwargs.get("n_heldout", DEFAULT_SIZES["heldout"]),
        },
        "resolution": kwargs.get("resolution", 32),
        "seed": kwargs.get("seed", 0),
    }
    if "world" in kwargs:  # only when asked: a run on --data of either world reads it as it is
        wanted["world"] = None if kwargs["world"] == "classic" else kwargs["world"]
    if is_empty_folder(data_dir):
        return generate_dataset(data_dir, **kwargs)
    try:
        meta = check_dataset(data_dir)
    except (FileNotFoundError, DatasetError):
        if not regenerate:
            raise
        return generate_dataset(data_dir, regenerate=True, **kwargs)
    differ = {k: (meta.get(k), v) for k, v in wanted.items() if meta.get(k) != v}
    if not differ:
        return meta
    if regenerate:
        return generate_dataset(data_dir, regenerate=True, **kwargs)
    raise DatasetError(f"the dataset in {data_dir} was made with other settings (setting: "
                       f"(found, wanted)): {differ}; {regenerate_hint(data_dir)}")
