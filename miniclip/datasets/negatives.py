"""Hard negatives: a true caption and a minimally changed false one, for the same image.

NegCLIP (Yuksekgonul et al. 2023, "When and why vision-language models behave like
bags-of-words") adds such false captions to each batch, so that word order starts to matter:
a model that reads a caption as a bag of words cannot tell them apart. Two kinds for two-object
scenes, one for single objects:

    binding    the two objects swap colours:  "a red circle above a blue square"
                                           -> "a blue circle above a red square"
    relation   the two objects swap places:   "a red circle above a blue square"
                                           -> "a red circle below a blue square"
    shape      one object, another shape:      "a small red circle in the top left"
                                           -> "a small red star in the top left"

No negative ever names a held-out composition (``HELDOUT_PAIRS``): that would put the held-out
pair's words into training, as a false caption but a caption all the same.

Both captions are written by ``caption_for(..., lockstep=True)`` from the same random draws, once for the true
scene and once for the altered one, so they use the same template and synonyms and differ only
where the scene differs. A relation swap changes nothing in a caption that says no relation or
position; then it is not offered. A colour swap is offered only when the objects differ in colour
and in shape: "a red circle and a blue circle" swapped says the same thing.

    >>> from miniclip.datasets.scenes import ToyObject
    >>> a = ToyObject(0, 0, 0, 0, cx=6, cy=6, side=10, rgb=(230, 25, 25))      # red circle, top left
    >>> b = ToyObject(2, 1, 0, 8, cx=26, cy=26, side=10, rgb=(40, 90, 255))    # blue square
    >>> pair = caption_pair([a, b], seed=7, kind="binding")
    >>> pair.true, pair.negative                                # doctest: +SKIP
    ('a red disc in the top left and a blue square in the bottom right',
     'a blue disc in the top left and a red square in the bottom right')
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from miniclip.datasets.attributes import HELDOUT_PAIRS, SHAPES
from miniclip.datasets.captions import caption_for
from miniclip.datasets.scenes import ToyObject

KINDS = ("binding", "relation", "shape")


@dataclass(frozen=True)
class CaptionPair:
    true: str
    negative: str
    kind: str  # one of KINDS


def swap_colours(objects: list[ToyObject]) -> list[ToyObject]:
    """The scene with its two objects' colours exchanged (shapes, places, sizes kept)."""
    a, b = objects
    return [replace(a, colour=b.colour, rgb=b.rgb), replace(b, colour=a.colour, rgb=a.rgb)]


def swap_places(objects: list[ToyObject]) -> list[ToyObject]:
    """The scene with its two objects' places exchanged (each keeps its colour, shape and size)."""
    a, b = objects
    return [replace(a, position=b.position, cx=b.cx, cy=b.cy, side=b.side),
            replace(b, position=a.position, cx=a.cx, cy=a.cy, side=a.side)]


def _names_heldout(objects: list[ToyObject]) -> bool:
    return any((o.colour, o.shape) in HELDOUT_PAIRS for o in objects)


def caption_pair(objects: list[ToyObject], seed, kind: str | None = None) -> CaptionPair | None:
    """A true caption of a scene and its hard negative, or None if there is none.

    Two objects: 'binding' or 'relation'; one object: 'shape'.
    seed: anything ``np.random.default_rng`` takes; the same seed gives the same pair.
    kind: one of KINDS, or None (any that fits the scene and changes the text, at random).
    """
    choose = np.random.default_rng(seed)
    pairs = _pairs(objects, choose, kind)
    if not pairs:
        return None
    return pairs[choose.integers(len(pairs))]


def caption_pairs(objects: list[ToyObject], seed) -> list[CaptionPair]:
    """Every hard negative that fits the scene, all against one true caption: for two objects
    the colour swap and the place swap (where each changes the text), for one object a shape
    swap. ``HardNegatives`` gives a two-object image all of them, so that every caption that
    says how two objects lie is contrasted with its opposite.

    The same seed gives the same true caption as ``caption_pair`` (and its pairs are among these).
    """
    return _pairs(objects, np.random.default_rng(seed), None)


def _pairs(objects, choose, kind) -> list[CaptionPair]:
    """The pairs of the kinds that fit, from the draws of ``choose`` (a caption seed first)."""
    if len(objects) not in (1, 2):
        raise ValueError(f"objects must hold the 1 or 2 objects of a scene, got {len(objects)}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
    caption_seed = int(choose.integers(2**63))
    fitting = ("shape",) if len(objects) == 1 else ("binding", "relation")
    kinds = fitting if kind is None else tuple(k for k in (kind,) if k in fitting)
    pairs = []
    for k in kinds:
        if k == "shape":
            (obj,) = objects
            others = [s for s in range(len(SHAPES))
                      if s != obj.shape and (obj.colour, s) not in HELDOUT_PAIRS]
            altered = [replace(obj, shape=others[choose.integers(len(others))])]
        elif k == "binding":
            a, b = objects
            if a.colour == b.colour or a.shape == b.shape:
                continue
            altered = swap_colours(objects)
        else:
            altered = swap_places(objects)
        if _names_heldout(altered):
            continue
        true = caption_for(objects, np.random.default_rng(caption_seed), lockstep=True)
        negative = caption_for(altered, np.random.default_rng(caption_seed), lockstep=True)
        if negative != true:
            pairs.append(CaptionPair(true, negative, k))
    return pairs
