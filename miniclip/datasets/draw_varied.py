"""Draw one image of the *varied* toy world (``generate --world varied``) with Pillow: shapes
turned, stretched and recoloured within the ranges of ``variety.py``, over one of four kinds of
background, shrunk with one of four resampling filters.

The default world is drawn by ``draw.py``, unchanged; this module is its varied sibling. Shapes
are drawn ``supersample`` times larger than the output on a layer of their own with an alpha mask,
shrunk with the filter picked for the image (``RESAMPLE_FILTERS``), and laid over the background:
``objects + (1 - alpha) * background``, so the background never tints an object.

Geometry is in output pixels: an object is a centre ``(cx, cy)``, a size ``d`` (the side of its
box) and a ``Look`` (rotation, aspect, one shape-specific proportion). The outline is squeezed,
turned, then scaled so that its larger extent is exactly ``d``:

    >>> varied_outline("diamond", cx=16, cy=16, size=10, look=Look(aspect=0.72))
    [(16.0, 11.0), (19.6, 16.0), (16.0, 21.0), (12.4, 16.0)]
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from miniclip.datasets.attributes import SHAPES
from miniclip.datasets.variety import (
    BACKGROUND_GREY,
    BACKGROUND_KINDS,
    BACKGROUND_RANGE,
    BACKGROUND_TINT,
    GRADIENT_SPAN,
    NOISE_STD,
    TEXTURE_AMPLITUDE,
    TEXTURE_PERIOD,
    Look,
    default_detail,
    rotation_matrix,
)

RESAMPLE_FILTERS = {
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
CIRCLE_VERTICES = 96  # a circle is a 96-gon: it can be squeezed and turned like the others


def _unit_polygon(shape: str, detail: float | None) -> np.ndarray:
    """(V, 2) vertices of the upright shape around 0 (x right, y down), before squeeze and turn."""
    if detail is None:
        detail = default_detail(shape)
    if shape == "circle":
        angles = 2 * math.pi * np.arange(CIRCLE_VERTICES) / CIRCLE_VERTICES
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if shape == "square":
        return np.array([(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)])
    if shape == "triangle":  # pointing up; the apex moves along the base by `detail` of the base
        return np.array([(2.0 * detail, -1.0), (1.0, 1.0), (-1.0, 1.0)])
    if shape == "star":  # five points; inner radius `detail` of the outer
        k = np.arange(10)
        radius = np.where(k % 2 == 0, 1.0, detail)
        angle = -math.pi / 2 + k * math.pi / 5
        return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    if shape == "hexagon":  # regular, corners left and right
        angles = math.pi / 3 * np.arange(6)
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if shape == "diamond":  # a square on its corner
        return np.array([(0.0, -1.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0)])
    if shape == "cross":  # a plus sign, arms `detail` of the span thick
        a, t = 1.0, detail
        return np.array([(-t, -a), (t, -a), (t, -t), (a, -t), (a, t), (t, t),
                         (t, a), (-t, a), (-t, t), (-a, t), (-a, -t), (-t, -t)])  # fmt: skip
    raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")


def varied_outline(shape: str, cx: float, cy: float, size: float,
                   look: Look | None = None) -> list[tuple[float, float]]:
    """The polygon of ``shape`` drawn with ``look`` in the box of side ``size`` centred on
    ``(cx, cy)``, in pixels: squeezed, turned, then scaled so its larger extent is ``size``."""
    look = look or Look()
    points = _unit_polygon(shape, look.detail)  # (V, 2)
    squeeze = (look.aspect, 1.0) if look.squeeze_x else (1.0, look.aspect)
    points = points * np.array(squeeze) @ rotation_matrix(look.rotation).T  # (V, 2)
    low, high = points.min(axis=0), points.max(axis=0)
    points = (points - (low + high) / 2) * (size / (high - low).max())  # centred, fills the box
    return [(round(float(cx + x), 4), round(float(cy + y), 4)) for x, y in points]


def render_varied_image(objects, background: np.ndarray, resolution: int, supersample: int = 4,
                        resample: str = "box") -> np.ndarray:
    """Draw objects over a background and return a uint8 (R, R, 3) image.

    objects: ``(shape, rgb, cx, cy, size, look)`` per object, geometry in output pixels.
    background: float (R, R, 3) in [0, 255] (``make_varied_background``).
    resample: a name in RESAMPLE_FILTERS, the filter that shrinks the supersampled drawing.
    """
    if resample not in RESAMPLE_FILTERS:
        raise ValueError(f"resample must be one of {tuple(RESAMPLE_FILTERS)}, got {resample!r}")
    canvas = resolution * supersample
    layer = Image.new("RGB", (canvas, canvas), (0, 0, 0))  # objects, on black
    mask = Image.new("L", (canvas, canvas), 0)  # 255 where an object is
    draw_layer, draw_mask = ImageDraw.Draw(layer), ImageDraw.Draw(mask)
    for shape, rgb, cx, cy, size, look in objects:
        # pixel (i, j) of the canvas covers [i, i+1): pixel centres sit at +0.5, hence the shift
        outline = varied_outline(shape, cx * supersample - 0.5, cy * supersample - 0.5,
                                 size * supersample, look)
        draw_layer.polygon(outline, fill=tuple(int(v) for v in rgb))
        draw_mask.polygon(outline, fill=255)
    method = RESAMPLE_FILTERS[resample]
    small_layer = layer.resize((resolution, resolution), method)
    small_mask = mask.resize((resolution, resolution), method)
    premultiplied = np.asarray(small_layer, dtype=np.float32)  # (R, R, 3) = alpha * colour
    alpha = np.asarray(small_mask, dtype=np.float32)[:, :, None] / 255.0  # (R, R, 1)
    image = premultiplied + (1.0 - alpha) * background
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def make_varied_background(rng: np.random.Generator, resolution: int,
                           kind: str | None = None) -> np.ndarray:
    """A dark background of one of BACKGROUND_KINDS (picked at random if ``kind`` is None).

    flat: one tinted grey. gradient: a linear ramp at a random angle. noise: flat plus pixel
    noise. texture: flat plus stripes, checks or smooth blobs. Every value stays in
    BACKGROUND_RANGE. Returns float32 (R, R, 3) in [0, 255].
    """
    if kind is None:
        kind = BACKGROUND_KINDS[rng.integers(len(BACKGROUND_KINDS))]
    if kind not in BACKGROUND_KINDS:
        raise ValueError(f"kind must be one of {BACKGROUND_KINDS} or None, got {kind!r}")
    r = resolution
    base = rng.uniform(*BACKGROUND_GREY) + rng.uniform(-BACKGROUND_TINT, BACKGROUND_TINT, size=3)
    coords = (np.arange(r) + 0.5) / r - 0.5  # (R,) pixel centres in (-0.5, 0.5)
    y, x = coords[:, None], coords[None, :]  # (R, 1), (1, R)
    pattern = np.zeros((r, r))  # grey levels added to the base, (R, R)
    if kind == "gradient":
        angle = rng.uniform(0.0, 2 * math.pi)
        pattern = rng.uniform(*GRADIENT_SPAN) * (math.cos(angle) * x + math.sin(angle) * y)
    elif kind == "noise":
        noise = rng.standard_normal((r, r, 3)) * rng.uniform(*NOISE_STD)
        return _clip_background(base + noise)
    elif kind == "texture":
        amplitude = rng.uniform(*TEXTURE_AMPLITUDE)
        period = rng.uniform(*TEXTURE_PERIOD)
        style = rng.integers(3)
        if style == 0:  # stripes at a random angle
            angle = rng.uniform(0.0, math.pi)
            wave = (math.cos(angle) * x + math.sin(angle) * y) / period
            pattern = amplitude * np.sin(2 * math.pi * wave + rng.uniform(0, 2 * math.pi))
        elif style == 1:  # checks
            checks = (np.floor(x / period) + np.floor(y / period)) % 2
            pattern = amplitude * (2 * checks - 1)
        else:  # smooth blobs: coarse noise, upsampled bilinearly
            n = max(2, round(1 / period) + 1)
            coarse = rng.uniform(-1.0, 1.0, size=(n, n))
            grid = (coords + 0.5) * (n - 1)  # (R,) positions on the coarse grid
            i = np.minimum(grid.astype(int), n - 2)
            f = grid - i
            rows = coarse[i] * (1 - f)[:, None] + coarse[i + 1] * f[:, None]  # (R, n)
            pattern = amplitude * (rows[:, i] * (1 - f) + rows[:, i + 1] * f)
    return _clip_background(base + pattern[:, :, None])


def _clip_background(values: np.ndarray) -> np.ndarray:
    return np.clip(values, *BACKGROUND_RANGE).astype(np.float32)


def draw_varied_scene(rng: np.random.Generator, objects, resolution: int,
                      supersample: int = 4) -> np.ndarray:
    """uint8 (R, R, 3): ``objects`` (ToyObjects with a look) over a random kind of background,
    shrunk with a random filter; the draws come from ``rng`` after the scene's own."""
    background = make_varied_background(rng, resolution)
    resample = tuple(RESAMPLE_FILTERS)[rng.integers(len(RESAMPLE_FILTERS))]
    drawn = [(SHAPES[o.shape], o.rgb, o.cx, o.cy, o.side, o.look) for o in objects]
    return render_varied_image(drawn, background, resolution, supersample, resample)
