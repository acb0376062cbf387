"""A second renderer of the toy world, written apart from ``draw.py``: shapes as signed-distance
functions in NumPy, for the renderer-shift evaluation.

A model that has learned "a hexagon" rather than "the pixels ``draw.py`` makes for a hexagon"
should classify these images as well as its own. Nothing here calls Pillow or ``draw.py``; only the
documented ranges (``variety.py``) and the vocabulary (``attributes.py``) are shared. What differs:

- each shape is a signed distance d(x, y) (negative inside), not a polygon fill;
- anti-aliasing: 3 x 3 samples per pixel, each covering ``clip(0.5 - d / h, 0, 1)`` with h the
  sample spacing (a soft edge), averaged; ``draw.py`` fills 4 x 4 hard samples and resizes;
- backgrounds: sums of a few random sinusoids, radial vignettes, plain flats and noise, all
  inside BACKGROUND_RANGE;
- colours: each channel uniform within COLOUR_JITTER of the named value, drawn here;
- sizes and places: uniform over the documented ranges (README.md in this folder).

    >>> image, objects = render_scene(np.random.default_rng(0), [(2, 4)], resolution=32)
    >>> image.shape, image.dtype, objects[0]["colour"], objects[0]["shape"]
    ((32, 32, 3), dtype('uint8'), 2, 4)
"""

from __future__ import annotations

import math

import numpy as np

from miniclip.datasets.attributes import COLOUR_RGB, COLOURS, POSITION_CELLS, SHAPES
from miniclip.datasets.variety import (
    BACKGROUND_GREY,
    BACKGROUND_RANGE,
    COLOUR_JITTER,
    GRADIENT_SPAN,
    NOISE_STD,
    SHAPE_RANGES,
    SIZE_RANGES,
)

SAMPLES = 3  # per pixel and axis
EDGE_MARGIN = (0.0, 0.06)  # an edge cell's box lies this far (fraction of R) from the border
MIDDLE_JITTER = 0.03  # a middle cell's box centre lies this close (fraction of R) to R / 2


# ---- signed distances, in a frame where the shape spans about [-1, 1] ------------------------

def _sd_box(px, py, hx, hy):
    qx, qy = np.abs(px) - hx, np.abs(py) - hy
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0)


def _sd_circle(px, py, _):
    return np.hypot(px, py) - 1.0


def _sd_square(px, py, _):
    return _sd_box(px, py, 1.0, 1.0)


def _sd_diamond(px, py, _):
    return (np.abs(px) + np.abs(py) - 1.0) / math.sqrt(2.0)


def _sd_cross(px, py, thickness):
    return np.minimum(_sd_box(px, py, 1.0, thickness), _sd_box(px, py, thickness, 1.0))


def _sd_half_planes(px, py, normals, offsets):
    """max over k of n_k . p - c_k: a convex shape as an intersection of half-planes."""
    return np.max([nx * px + ny * py - c for (nx, ny), c in zip(normals, offsets, strict=True)],
                  axis=0)


def _sd_hexagon(px, py, _):
    # three pairs of parallel sides; corners at angles 0, 60, ... (corners left and right)
    angles = [math.pi / 6 + k * math.pi / 3 for k in range(6)]
    apothem = math.cos(math.pi / 6)
    return _sd_half_planes(px, py, [(math.cos(a), math.sin(a)) for a in angles], [apothem] * 6)


def _sd_triangle(px, py, apex_shift):
    corners = np.array([(2 * apex_shift, -1.0), (1.0, 1.0), (-1.0, 1.0)])  # apex up (y down)
    normals, offsets = [], []
    for k in range(3):
        a, b = corners[k], corners[(k + 1) % 3]
        edge = b - a
        n = np.array([edge[1], -edge[0]]) / np.hypot(*edge)  # outward for this winding
        if n @ (a - corners.mean(axis=0)) < 0:
            n = -n
        normals.append(tuple(n))
        offsets.append(float(n @ a))
    return _sd_half_planes(px, py, normals, offsets)


def _sd_star(px, py, inner):
    # fold the plane into one tenth of a turn: the edge from a tip (radius 1) to a notch
    # (radius ``inner``), then the signed distance to that edge's line, clipped to the segment
    sector = 2 * math.pi / 5
    angle = np.arctan2(px, -py)  # 0 towards the top tip (y down)
    folded = np.abs((angle + sector / 2) % sector - sector / 2)  # in [0, sector / 2]
    r = np.hypot(px, py)
    qx, qy = r * np.cos(folded), r * np.sin(folded)  # tip at (1, 0), notch at angle sector/2
    tip = np.array([1.0, 0.0])
    notch = inner * np.array([math.cos(sector / 2), math.sin(sector / 2)])
    edge = notch - tip
    t = np.clip(((qx - tip[0]) * edge[0] + (qy - tip[1]) * edge[1]) / (edge @ edge), 0, 1)
    dist = np.hypot(qx - tip[0] - t * edge[0], qy - tip[1] - t * edge[1])
    side = (qx - tip[0]) * edge[1] - (qy - tip[1]) * edge[0]  # > 0: beyond the edge (outside)
    return np.where(side > 0, dist, -dist)


SDF = {"circle": _sd_circle, "square": _sd_square, "triangle": _sd_triangle, "star": _sd_star,
       "hexagon": _sd_hexagon, "diamond": _sd_diamond, "cross": _sd_cross}


def _extent_points(shape, detail):
    """Points on the outline (in the shape's own frame) whose bounding box is the shape's."""
    if shape == "circle":
        t = np.linspace(0, 2 * math.pi, 720, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if shape == "square":
        return np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], float)
    if shape == "diamond":
        return np.array([(0, -1), (1, 0), (0, 1), (-1, 0)], float)
    if shape == "cross":
        return np.array([(1, detail), (1, -detail), (-1, detail), (-1, -detail),
                         (detail, 1), (-detail, 1), (detail, -1), (-detail, -1)], float)
    if shape == "hexagon":
        t = np.arange(6) * math.pi / 3
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if shape == "triangle":
        return np.array([(2 * detail, -1), (1, 1), (-1, 1)], float)
    t = np.arange(5) * 2 * math.pi / 5  # star: the tips are the extremes
    return np.stack([np.sin(t), -np.cos(t)], axis=1)


# ---- one object ---------------------------------------------------------------------------

def _sample_object(rng, colour, shape, size_name, cell, resolution):
    """Geometry and colour of one object, uniform over the documented ranges."""
    name = SHAPES[shape]
    ranges = SHAPE_RANGES[name]
    side = rng.uniform(*SIZE_RANGES[size_name]) * resolution
    row, col = POSITION_CELLS[cell]

    def centre(c):
        if c == 0:
            return rng.uniform(*EDGE_MARGIN) * resolution + side / 2
        if c == 2:
            return resolution - rng.uniform(*EDGE_MARGIN) * resolution - side / 2
        return resolution / 2 + rng.uniform(-MIDDLE_JITTER, MIDDLE_JITTER) * resolution

    base = np.array(COLOUR_RGB[COLOURS[colour]], float)
    rgb = np.clip(base + rng.uniform(-COLOUR_JITTER, COLOUR_JITTER, size=3), 0, 255)
    detail = None if ranges.detail is None else rng.uniform(*ranges.detail)
    squeeze = np.ones(2)
    squeeze[rng.integers(2)] = rng.uniform(*ranges.aspect)
    return {"colour": colour, "shape": shape, "cell": cell, "cx": centre(col), "cy": centre(row),
            "side": side, "rgb": rgb, "rotation": rng.uniform(*ranges.rotation),
            "squeeze": squeeze, "detail": detail}


def _coverage(obj, xs, ys):
    """Soft coverage in [0, 1] of the object at sample points xs, ys (pixels), any shape."""
    name = SHAPES[obj["shape"]]
    t = math.radians(obj["rotation"])
    c, s = math.cos(t), math.sin(t)
    # the shape's frame: squeeze, then turn (counter-clockwise on screen, y down)
    points = _extent_points(name, obj["detail"]) * obj["squeeze"]
    turned = np.stack([c * points[:, 0] + s * points[:, 1], -s * points[:, 0] + c * points[:, 1]],
                      axis=1)
    low, high = turned.min(axis=0), turned.max(axis=0)
    unit = obj["side"] / (high - low).max()  # pixels per unit of the shape's frame
    mid = (low + high) / 2
    # sample points back into the shape's frame: undo centre, scale, turn, squeeze
    dx = (xs - obj["cx"]) / unit + mid[0]
    dy = (ys - obj["cy"]) / unit + mid[1]
    ux, uy = c * dx - s * dy, s * dx + c * dy
    distance = SDF[name](ux / obj["squeeze"][0], uy / obj["squeeze"][1], obj["detail"])
    distance = distance * obj["squeeze"].min() * unit  # back to pixels (exact up to the squeeze)
    spacing = 1.0 / SAMPLES
    return np.clip(0.5 - distance / spacing, 0.0, 1.0)


def _background(rng, resolution):
    """float (R, R, 3) in BACKGROUND_RANGE: flat, sinusoids, a vignette, or noise."""
    r = resolution
    y, x = np.mgrid[0:r, 0:r] / r  # (R, R) each, in [0, 1)
    grey = rng.uniform(*BACKGROUND_GREY)
    kind = rng.integers(4)
    if kind == 0:
        field = np.zeros((r, r))
    elif kind == 1:  # a few random sinusoids
        field = sum(rng.uniform(2, 6) * np.sin(2 * math.pi * (rng.uniform(-4, 4) * x
                    + rng.uniform(-4, 4) * y) + rng.uniform(0, 2 * math.pi)) for _ in range(3))
    elif kind == 2:  # brighter (or darker) towards a random point
        px, py = rng.uniform(0, 1, size=2)
        field = rng.uniform(*GRADIENT_SPAN) * (0.5 - np.hypot(x - px, y - py))
    else:
        field = rng.normal(0, rng.uniform(*NOISE_STD), size=(r, r))
    tint = rng.uniform(-4, 4, size=3)
    return np.clip(grey + field[:, :, None] + tint, *BACKGROUND_RANGE)


def render_scene(rng: np.random.Generator, pairs, resolution: int = 32, cells=None,
                 size_names=None):
    """Draw one scene: -> (uint8 (R, R, 3) image, list of object dicts).

    pairs: (colour, shape) per object (1 or 2). cells: grid cell per object (default: random,
    for two objects a left/right or top/bottom pair far enough apart). size_names: 'small' or
    'large' per object (default: random for one object, 'small' for two).
    """
    n = len(pairs)
    if n not in (1, 2):
        raise ValueError(f"pairs must hold 1 or 2 (colour, shape) pairs, got {n}")
    if cells is None:
        cells = [int(rng.integers(9))] if n == 1 else list(_far_apart_cells(rng))
    if size_names is None:
        size_names = [("small", "large")[rng.integers(2)]] if n == 1 else ["small", "small"]
    objects = [_sample_object(rng, c, s, size, cell, resolution)
               for (c, s), size, cell in zip(pairs, size_names, cells, strict=True)]
    # sample points: SAMPLES x SAMPLES per pixel, at the centres of equal sub-squares
    offsets = (np.arange(SAMPLES) + 0.5) / SAMPLES
    grid = (np.arange(resolution)[:, None] + offsets[None, :]).ravel()  # (R * S,)
    ys, xs = np.meshgrid(grid, grid, indexing="ij")  # (R S, R S)
    image = np.repeat(np.repeat(_background(rng, resolution), SAMPLES, 0), SAMPLES, 1)
    for obj in objects:
        alpha = _coverage(obj, xs, ys)[:, :, None]  # (R S, R S, 1)
        image = alpha * obj["rgb"] + (1 - alpha) * image
    image = image.reshape(resolution, SAMPLES, resolution, SAMPLES, 3).mean(axis=(1, 3))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), objects


def _far_apart_cells(rng):
    """Two cells in one row (left, right) or one column (top, bottom), or opposite corners."""
    choice = rng.integers(3)
    if choice == 0:  # a row: columns 0 and 2
        row = rng.integers(3)
        cells = [3 * row, 3 * row + 2]
    elif choice == 1:  # a column: rows 0 and 2
        col = rng.integers(3)
        cells = [col, 6 + col]
    else:
        cells = [0, 8] if rng.random() < 0.5 else [2, 6]
    return cells if rng.random() < 0.5 else cells[::-1]


def box(obj) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of an object dict's box."""
    h = obj["side"] / 2
    return (obj["cx"] - h, obj["cy"] - h, obj["cx"] + h, obj["cy"] + h)


def coverage_mask(shape: str, cx: float, cy: float, side: float, resolution: int,
                  rotation: float = 0.0, aspect: float = 1.0, squeeze_x: bool = True,
                  detail: float | None = None) -> np.ndarray:
    """(R, R) float coverage in [0, 1] of one shape with the given geometry: what
    ``render_scene`` draws for it, without colour or background (for comparing renderers)."""
    if detail is None and SHAPE_RANGES[shape].detail is not None:
        detail = sum(SHAPE_RANGES[shape].detail) / 2
    squeeze = np.array([aspect, 1.0] if squeeze_x else [1.0, aspect])
    obj = {"shape": SHAPES.index(shape), "cx": cx, "cy": cy, "side": side, "rotation": rotation,
           "squeeze": squeeze, "detail": detail}
    offsets = (np.arange(SAMPLES) + 0.5) / SAMPLES
    grid = (np.arange(resolution)[:, None] + offsets[None, :]).ravel()
    ys, xs = np.meshgrid(grid, grid, indexing="ij")
    alpha = _coverage(obj, xs, ys)
    return alpha.reshape(resolution, SAMPLES, resolution, SAMPLES).mean(axis=(1, 3))
