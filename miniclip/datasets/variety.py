"""The documented ranges of the varied toy world: how big, how turned, how stretched, which exact
colour, which background. One table, read by the second renderer (``sdf.py``), by the tests' own
renderer and by anyone who wants to draw test shapes of their own (README.md in this folder lists
the same numbers in prose). The default training set (dataset version 2, ``draw.py`` and
``scenes.py``) is drawn inside these ranges, in one corner of them.

Every range is closed, ``(low, high)``, sampled uniformly. Lengths are fractions of the image side
R, so a 64 px world is the 32 px world drawn twice as fine.

    >>> SIZE_RANGES["small"], SIZE_RANGES["large"]
    ((0.28, 0.4), (0.5, 0.66))
    >>> SHAPE_RANGES["square"].rotation          # degrees; a square turned 45 degrees is a diamond
    (-15.0, 15.0)
    >>> SHAPE_RANGES["star"].rotation            # a star stays a star at any angle
    (0.0, 360.0)

A shape's *box* is the axis-aligned square of side ``size * R`` centred on the object; the drawn
shape, after its aspect squeeze and rotation, is scaled so that its larger extent (width or
height) is exactly the box side, and centred in the box. So "left of" and "top left", which are read
off the boxes, are true of the pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# bounding-box side as a fraction of R, per size word; the gap between them (0.40 -> 0.50, a ratio
# of 1.25) keeps "small" and "large" apart
SIZE_RANGES = {"small": (0.28, 0.40), "large": (0.50, 0.66)}


@dataclass(frozen=True)
class ShapeRange:
    """What may vary within one shape's identity.

    rotation: degrees, counter-clockwise on screen; (0, 360) where any angle keeps the shape.
    aspect:   the shape is squeezed along one axis (chosen at random, before rotation) by this
              factor: its narrow extent / its wide extent.
    detail:   one shape-specific proportion (see ``DETAIL_MEANING``); None when the shape has none.
    """

    rotation: tuple[float, float]
    aspect: tuple[float, float]
    detail: tuple[float, float] | None = None


ANY_ANGLE = (0.0, 360.0)
SHAPE_RANGES = {
    # a circle squeezed to 0.9 is still read as a circle; any angle
    "circle": ShapeRange(rotation=ANY_ANGLE, aspect=(0.9, 1.0)),
    # a square (or nearly square rectangle), turned at most 15 degrees: never towards a diamond
    "square": ShapeRange(rotation=(-15.0, 15.0), aspect=(0.85, 1.0)),
    # an isosceles triangle; any angle; detail = apex offset along the base, fraction of the base
    "triangle": ShapeRange(rotation=ANY_ANGLE, aspect=(0.8, 1.0), detail=(-0.15, 0.15)),
    # five points, any angle; detail = inner radius / outer radius
    "star": ShapeRange(rotation=ANY_ANGLE, aspect=(0.85, 1.0), detail=(0.38, 0.55)),
    # a hexagon, any angle; aspect squeezes the regular hexagon
    "hexagon": ShapeRange(rotation=ANY_ANGLE, aspect=(0.75, 1.0)),
    # a rhombus standing on a point: width / height from 0.6 up to 1.0 (a square on its corner),
    # turned at most 15 degrees
    "diamond": ShapeRange(rotation=(-15.0, 15.0), aspect=(0.6, 1.0)),
    # a plus sign, turned at most 15 degrees; detail = arm thickness / arm span
    "cross": ShapeRange(rotation=(-15.0, 15.0), aspect=(0.85, 1.0), detail=(0.26, 0.40)),
}
DETAIL_MEANING = {
    "triangle": "apex offset along the base, as a fraction of the base (0: isosceles)",
    "star": "inner radius / outer radius",
    "cross": "arm thickness / arm span",
}

COLOUR_JITTER = 25  # each RGB channel within +-25 of its colour's COLOUR_RGB value, clipped

# Backgrounds: every pixel of every background, every channel, lies in BACKGROUND_RANGE (dark, so
# that no object colour is ever mistaken for background).
BACKGROUND_KINDS = ("flat", "gradient", "noise", "texture")
BACKGROUND_RANGE = (0.0, 80.0)
BACKGROUND_GREY = (5.0, 60.0)  # the base grey level
BACKGROUND_TINT = 6.0  # each channel moves by up to this from the grey
GRADIENT_SPAN = (10.0, 30.0)  # grey levels from one side of the image to the other
NOISE_STD = (2.0, 8.0)  # pixel noise, grey levels
TEXTURE_AMPLITUDE = (4.0, 12.0)  # stripes, checks or blobs, grey levels above and below the base
TEXTURE_PERIOD = (0.12, 0.4)  # fraction of R


@dataclass(frozen=True)
class Look:
    """How one object is drawn, within its shape's ranges."""

    rotation: float = 0.0  # degrees
    aspect: float = 1.0
    squeeze_x: bool = True  # squeeze the width (True) or the height (False)
    detail: float | None = None


def sample_look(rng: np.random.Generator, shape: str) -> Look:
    """A random Look for ``shape``, uniform in each of its ranges."""
    r = SHAPE_RANGES[shape]
    detail = None if r.detail is None else float(rng.uniform(*r.detail))
    return Look(rotation=float(rng.uniform(*r.rotation)), aspect=float(rng.uniform(*r.aspect)),
                squeeze_x=bool(rng.random() < 0.5), detail=detail)


def default_detail(shape: str) -> float | None:
    """The middle of a shape's detail range (None if it has none)."""
    r = SHAPE_RANGES[shape].detail
    return None if r is None else (r[0] + r[1]) / 2


def rotation_matrix(degrees: float) -> np.ndarray:
    """(2, 2): turns (x right, y down) points counter-clockwise as seen on screen."""
    t = math.radians(degrees)
    return np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
