"""Draw one toy image with Pillow: flat-coloured shapes on a dark, lightly textured background.

Shapes are drawn ``supersample`` times larger than the output and then shrunk with a box filter
(each output pixel is the mean of an S x S block), so their edges are anti-aliased and a 10-pixel
star still has five points. Objects go on a layer of their own with an alpha mask, and the image is
``objects + (1 - alpha) * background``: the background's gradient and noise never tint an object.

Geometry is in output pixels: an object is a centre ``(cx, cy)`` and a size ``d``, the side of its
bounding box. ``shape_outline`` gives the outline for a shape in that box:

    >>> shape_outline("diamond", cx=16, cy=16, size=10)
    [(16.0, 11.0), (19.6, 16.0), (16.0, 21.0), (12.4, 16.0)]
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from miniclip.datasets.attributes import SHAPES


def _unit_outline(shape: str) -> list[tuple[float, float]]:
    """Vertices in a unit box centred on 0 (x right, y down), or the box itself for a circle."""
    if shape == "circle":
        return [(-0.5, -0.5), (0.5, 0.5)]  # ellipse bounding box
    if shape == "square":
        h = 0.43  # a little smaller than the box, so its area is close to the circle's
        return [(-h, -h), (h, -h), (h, h), (-h, h)]
    if shape == "triangle":  # pointing up
        return [(0.0, -0.5), (0.5, 0.42), (-0.5, 0.42)]
    if shape == "star":  # five points, chunky (inner radius 0.45 of the outer) so it survives 32px
        outer, inner, shift = 0.52, 0.52 * 0.45, 0.06  # shift: centre the star's bounding box
        points = []
        for k in range(10):
            radius = outer if k % 2 == 0 else inner
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((radius * math.cos(angle), radius * math.sin(angle) + shift))
        return points
    if shape == "hexagon":  # points left and right, flat top and bottom, wider than tall: no circle
        return [(-0.5, 0.0), (-0.26, -0.4), (0.26, -0.4), (0.5, 0.0), (0.26, 0.4), (-0.26, 0.4)]
    if shape == "diamond":  # narrower than a square turned 45 degrees
        return [(0.0, -0.5), (0.36, 0.0), (0.0, 0.5), (-0.36, 0.0)]
    if shape == "cross":  # a plus sign, arms a third of the size thick
        a, t = 0.5, 0.17
        return [(-t, -a), (t, -a), (t, -t), (a, -t), (a, t), (t, t),
                (t, a), (-t, a), (-t, t), (-a, t), (-a, -t), (-t, -t)]  # fmt: skip
    raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")


def shape_outline(shape: str, cx: float, cy: float, size: float) -> list[tuple[float, float]]:
    """The outline of ``shape`` with bounding box ``size`` centred on ``(cx, cy)``, in pixels.

    For a circle this is the ellipse's bounding box ``[(x0, y0), (x1, y1)]``; for the other shapes
    the polygon's vertices.
    """
    return [(round(cx + size * x, 4), round(cy + size * y, 4)) for x, y in _unit_outline(shape)]


def render_image(
    objects: list[tuple[str, tuple[int, int, int], float, float, float]],
    background: np.ndarray,
    resolution: int,
    supersample: int = 4,
) -> np.ndarray:
    """Draw objects over a background and return a uint8 (R, R, 3) image.

    objects: ``(shape, rgb, cx, cy, size)`` per object, geometry in output pixels.
    background: float (R, R, 3) in [0, 255], already textured (see ``make_background``).
    """
    canvas = resolution * supersample
    layer = Image.new("RGB", (canvas, canvas), (0, 0, 0))  # objects, on black
    mask = Image.new("L", (canvas, canvas), 0)  # 255 where an object is
    draw_layer, draw_mask = ImageDraw.Draw(layer), ImageDraw.Draw(mask)
    for shape, rgb, cx, cy, size in objects:
        outline = shape_outline(shape, cx * supersample, cy * supersample, size * supersample)
        if shape == "circle":
            draw_layer.ellipse(outline, fill=tuple(rgb))
            draw_mask.ellipse(outline, fill=255)
        else:
            draw_layer.polygon(outline, fill=tuple(rgb))
            draw_mask.polygon(outline, fill=255)
    # box filter = exact mean of each supersample x supersample block
    small_layer = layer.resize((resolution, resolution), Image.Resampling.BOX)
    small_mask = mask.resize((resolution, resolution), Image.Resampling.BOX)
    premultiplied = np.asarray(small_layer, dtype=np.float32)  # (R, R, 3) = alpha * colour
    alpha = np.asarray(small_mask, dtype=np.float32)[:, :, None] / 255.0  # (R, R, 1)
    image = premultiplied + (1.0 - alpha) * background
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def make_background(
    rng: np.random.Generator, resolution: int, grey_range=(8.0, 64.0), noise_std: float = 3.0
) -> np.ndarray:
    """A dark grey background, slightly tinted, with a faint linear gradient and pixel noise.

    Dark, so that every object colour (white and yellow included) stands out; never bright enough
    to be mistaken for an object. Returns float32 (R, R, 3) in [0, 255].
    """
    grey = rng.uniform(*grey_range)
    tint = rng.uniform(-5.0, 5.0, size=3).astype(np.float32)  # (3,)
    angle = rng.uniform(0.0, 2 * math.pi)
    strength = rng.uniform(0.0, 10.0)  # grey levels from the centre to an edge
    coords = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution - 0.5  # (R,) in (-.5, .5)
    ramp = 2 * strength * (math.cos(angle) * coords[None, :] + math.sin(angle) * coords[:, None])
    background = rng.standard_normal((resolution, resolution, 3), dtype=np.float32)  # (R, R, 3)
    background *= noise_std
    background += ramp[:, :, None] + (grey + tint)
    return np.clip(background, 0.0, 255.0, out=background)
