"""The toy world's vocabulary: colours, shapes, sizes, positions, and the held-out compositions.

Everything else in ``miniclip.datasets`` indexes into these tuples, so an object is four small
integers: ``(colour, shape, size, position)``. A (colour, shape) pair is a *composition*; its
class index for zero-shot classification is ``colour * len(SHAPES) + shape``.

    >>> COLOURS[0], SHAPES[0], class_index(0, 0), CLASSNAMES[0]
    ('red', 'circle', 0, 'red circle')
    >>> len(CLASSNAMES), len(HELDOUT_PAIRS)
    (56, 8)
"""

from __future__ import annotations

import re

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "pink", "white")

# RGB values chosen far apart, so that each colour stays unmistakable after 32x32 downsampling
# and a little jitter: red / orange / yellow differ in green (25 / 130 / 235), pink is red with
# blue added, purple is dark and blue-red, white is the only colour bright in all three channels.
COLOUR_RGB = {
    "red": (230, 25, 25),
    "green": (30, 190, 50),
    "blue": (40, 90, 255),
    "yellow": (250, 235, 30),
    "purple": (150, 40, 210),
    "orange": (255, 130, 0),
    "pink": (255, 125, 200),
    "white": (245, 245, 245),
}

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "diamond", "cross")

SIZES = ("small", "large")

# A 3x3 grid of places, row by row: POSITION_CELLS[p] = (row, column), rows top to bottom.
POSITIONS = (
    "top left", "top", "top right",
    "left", "centre", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip
POSITION_CELLS = tuple((p // 3, p % 3) for p in range(9))


def class_index(colour: int, shape: int) -> int:
    """Zero-shot class of a (colour, shape) composition: ``colour * 7 + shape``."""
    return colour * len(SHAPES) + shape


# Zero-shot classes: every colour with every shape, as "colour shape", in class-index order.
CLASS_PAIRS = tuple((c, s) for c in range(len(COLOURS)) for s in range(len(SHAPES)))
CLASSNAMES = tuple(f"{COLOURS[c]} {SHAPES[s]}" for c, s in CLASS_PAIRS)

# Held-out compositions: colour c is held out with shape (3c + 1) mod 7. A diagonal of a
# Latin square: each colour loses exactly one shape, each shape loses one colour (two for
# "square", since 8 colours share 7 shapes), so every colour is still seen with six shapes and
# every shape with at least six colours. None of these pairs appears in train or val, not even
# as one object of a two-object image.
HELDOUT_PAIRS = tuple((c, (3 * c + 1) % len(SHAPES)) for c in range(len(COLOURS)))
SEEN_PAIRS = tuple(pair for pair in CLASS_PAIRS if pair not in HELDOUT_PAIRS)

# Zero-shot prompts. They use the captions' own words ("a photo of a ...", "there is a ..." are
# caption templates too). Fill them with ``prompts_for(classname)``, which also writes "an" before
# a vowel ("an orange star"), as the captions do; plain ``template.format`` would not.
PROMPT_TEMPLATES = (
    "a {}.",
    "a photo of a {}.",
    "a picture of a {}.",
    "an image with a {}.",
    "a {} shape.",
    "there is a {}.",
)

_A_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")


def fix_articles(text: str) -> str:
    """Write "an" for "a" before a vowel: ``fix_articles("a orange star") -> "an orange star"``."""
    return _A_BEFORE_VOWEL.sub(r"\1n ", text)


def prompts_for(classname: str, templates: tuple[str, ...] = PROMPT_TEMPLATES) -> list[str]:
    """Zero-shot prompts for one class, each template filled in.

    >>> prompts_for("orange star")[1]
    'a photo of an orange star.'
    """
    if not isinstance(classname, str) or not classname:
        raise TypeError(f"classname must be a non-empty str, got {classname!r}")
    return [fix_articles(t.format(classname)) for t in templates]
