"""Sample a scene: which objects, how big, and where, so that every caption about it is true.

Geometry scales with the resolution R. Sizes (the side of an object's bounding box) are
``SIZE_FRACTIONS`` of R, about 11.5 px (small) and 19 px (large) at R = 32, each jittered by 5%.
A position is a cell of a 3x3 grid; an object in column 0 sits against the left margin, in column 1
on the vertical midline, in column 2 against the right margin (rows likewise), then moves by up to
3% of R. So "top left" means pushed into the top-left corner, whatever the object's size.

Two-object scenes hold two small objects in cells chosen so that their boxes are apart by at least
``MIN_GAP`` of R in some direction (for example top left and top right; never top left and centre).
Relations are read off the boxes afterwards (``relations``): "A above B" holds when A's box ends
above B's box begins, so "above" and "left of" are true of the drawn pixels.

    >>> rng = np.random.default_rng(0)
    >>> scene = sample_scene(rng, pairs=[(0, 0), (2, 1)], n_objects=2, resolution=32)
    >>> len(scene), all(obj.size == 0 for obj in scene)   # two small objects
    (2, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from miniclip.datasets import variety
from miniclip.datasets.attributes import COLOUR_RGB, COLOURS, POSITION_CELLS, SHAPES, SIZES

SIZE_FRACTIONS = (0.36, 0.60)  # small, large: bounding-box side as a fraction of R
SIZE_JITTER = 0.05  # relative
MARGIN = 0.03  # fraction of R kept free between an object in an edge cell and the edge
POSITION_JITTER = 0.03  # fraction of R
MIN_GAP = 0.06  # fraction of R between the boxes of a two-object scene (in x or in y)
COLOUR_JITTER = 10  # each RGB channel of an object moves by up to this much
# "classic": the constants above (dataset version 2, the default); "varied": sizes, colours and
# looks from the documented ranges of variety.py (``generate --world varied``, version 3)
WORLDS = ("classic", "varied")


@dataclass(frozen=True)
class ToyObject:
    """One drawn object: attribute indices, and its geometry in output pixels."""

    colour: int  # index into COLOURS
    shape: int  # index into SHAPES
    size: int  # index into SIZES (0 small, 1 large)
    position: int  # index into POSITIONS (grid cell)
    cx: float  # centre, x to the right
    cy: float  # centre, y downwards
    side: float  # side of the bounding box
    rgb: tuple[int, int, int]  # the colour actually drawn (jittered)
    look: variety.Look | None = None  # rotation, aspect, proportion: the varied world only

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Bounding box (x0, y0, x1, y1); every drawn pixel of the shape lies inside it."""
        h = self.side / 2
        return (self.cx - h, self.cy - h, self.cx + h, self.cy + h)


def cell_centre(cell: int, side: float, resolution: int) -> float:
    """Centre coordinate for grid cell 0, 1, 2 along one axis, for an object of this side."""
    low = MARGIN * resolution + side / 2
    return (low, resolution / 2, resolution - low)[cell]


@lru_cache(maxsize=None)
def _two_object_cells(resolution: int, world: str = "classic") -> tuple[tuple[int, int], ...]:
    """Ordered pairs of positions where two small objects are MIN_GAP apart in x or y."""
    largest_small = (SIZE_FRACTIONS[0] * (1 + SIZE_JITTER) if world == "classic"
                     else variety.SIZE_RANGES["small"][1])
    side = largest_small * resolution  # the largest small object
    slack = 2 * POSITION_JITTER * resolution  # both may move towards each other
    pairs = []
    for p in range(9):
        for q in range(9):
            if p == q:
                continue
            (rp, cp), (rq, cq) = POSITION_CELLS[p], POSITION_CELLS[q]
            dx = abs(cell_centre(cp, side, resolution) - cell_centre(cq, side, resolution))
            dy = abs(cell_centre(rp, side, resolution) - cell_centre(rq, side, resolution))
            if max(dx, dy) - side - slack >= MIN_GAP * resolution:
                pairs.append((p, q))
    return tuple(pairs)


def _centre(rng, position, side, resolution):
    """The centre (cx, cy) of a box of ``side`` pixels in its position's cell, jittered, with the
    whole box kept inside the image."""
    row, col = POSITION_CELLS[position]
    jitter = rng.uniform(-POSITION_JITTER, POSITION_JITTER, size=2) * resolution
    low, high = side / 2, resolution - side / 2
    cx = min(max(cell_centre(col, side, resolution) + float(jitter[0]), low), high)
    cy = min(max(cell_centre(row, side, resolution) + float(jitter[1]), low), high)
    return cx, cy


def jittered_rgb(rng: np.random.Generator, colour: int, spread: int) -> tuple[int, int, int]:
    """The named RGB of colour ``colour`` with each channel moved by up to ``spread``, clipped to
    0-255."""
    base = np.array(COLOUR_RGB[COLOURS[colour]])
    rgb = np.clip(base + rng.integers(-spread, spread + 1, size=3), 0, 255)
    return tuple(int(v) for v in rgb)


def _place(rng, colour, shape, size, position, resolution, world="classic") -> ToyObject:
    if world == "varied":
        return _place_varied(rng, colour, shape, size, position, resolution)
    side = SIZE_FRACTIONS[size] * resolution * rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER)
    cx, cy = _centre(rng, position, side, resolution)
    rgb = jittered_rgb(rng, colour, COLOUR_JITTER)
    return ToyObject(colour, shape, size, position, cx, cy, float(side), rgb)


def _place_varied(rng, colour, shape, size, position, resolution) -> ToyObject:
    """Like the classic placement, with the size, colour and look drawn from variety.py."""
    side = rng.uniform(*variety.SIZE_RANGES[SIZES[size]]) * resolution
    cx, cy = _centre(rng, position, side, resolution)
    rgb = jittered_rgb(rng, colour, variety.COLOUR_JITTER)
    look = variety.sample_look(rng, SHAPES[shape])
    return ToyObject(colour, shape, size, position, cx, cy, float(side), rgb, look)


def sample_scene(rng: np.random.Generator, pairs, n_objects: int, resolution: int,
                 world: str = "classic") -> list:
    """Draw 1 or 2 objects whose (colour, shape) come from ``pairs`` (two distinct pairs if 2).

    One object: any size, any of the 9 positions. Two objects: both small, in a pair of positions
    from ``_two_object_cells``. world: one of WORLDS.
    """
    if world not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {world!r}")
    if n_objects == 1:
        colour, shape = pairs[rng.integers(len(pairs))]
        size = int(rng.integers(len(SIZES)))
        position = int(rng.integers(9))
        return [_place(rng, colour, shape, size, position, resolution, world)]
    if n_objects == 2:
        first, second = rng.choice(len(pairs), size=2, replace=False)
        cells = _two_object_cells(resolution, world)
        p, q = cells[rng.integers(len(cells))]
        return [
            _place(rng, *pairs[first], 0, p, resolution, world),
            _place(rng, *pairs[second], 0, q, resolution, world),
        ]
    raise ValueError(f"n_objects must be 1 or 2, got {n_objects!r}")


def relations(a: ToyObject, b: ToyObject) -> list[str]:
    """Every true relation of ``a`` to ``b`` among 'above', 'below', 'left of', 'right of'.

    A relation holds only when the two bounding boxes do not overlap along its axis.
    """
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    found = []
    if ay1 <= by0:
        found.append("above")
    if by1 <= ay0:
        found.append("below")
    if ax1 <= bx0:
        found.append("left of")
    if bx1 <= ax0:
        found.append("right of")
    return found

