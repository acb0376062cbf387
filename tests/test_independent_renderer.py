"""Three renderers of the documented varied world, written apart: datasets/draw_varied.py (Pillow
polygons, the training set of `generate --world varied`), datasets/sdf.py (signed distances, the
renderer-shift evaluation) and tests/independent_renderer.py (an even-odd polygon test). Each
draws the same described shape to nearly the same pixels, and each stays inside the documented
ranges of colour and background."""

import numpy as np
import pytest

from miniclip.datasets import COLOUR_RGB, COLOURS, SEEN_PAIRS, SHAPES
from miniclip.datasets.draw_varied import render_varied_image
from miniclip.datasets.sdf import coverage_mask, render_scene
from miniclip.datasets.variety import (
    BACKGROUND_RANGE,
    COLOUR_JITTER,
    SHAPE_RANGES,
    SIZE_RANGES,
    Look,
)

from . import independent_renderer as third

R = 64


def _pillow_mask(shape, cx, cy, side, rotation, aspect, squeeze_x, detail):
    look = Look(rotation=rotation, aspect=aspect, squeeze_x=squeeze_x, detail=detail)
    image = render_varied_image([(shape, (255, 255, 255), cx, cy, side, look)],
                                np.zeros((R, R, 3)), R)
    return image[:, :, 0] / 255.0


def _soft_iou(a, b):
    return np.minimum(a, b).sum() / np.maximum(a, b).sum()


@pytest.mark.parametrize("shape", SHAPES)
def test_three_renderers_draw_the_same_shape(shape, rng):
    ranges = SHAPE_RANGES[shape]
    for _ in range(3):  # random geometry within the documented ranges
        side = rng.uniform(*SIZE_RANGES["large"]) * R
        cx, cy = rng.uniform(side / 2, R - side / 2, size=2)
        rotation = rng.uniform(*ranges.rotation)
        aspect = rng.uniform(*ranges.aspect)
        squeeze_x = bool(rng.integers(2))
        detail = None if ranges.detail is None else rng.uniform(*ranges.detail)
        args = (shape, cx, cy, side, rotation, aspect, squeeze_x, detail)
        sdf = coverage_mask(shape, cx, cy, side, R, rotation, aspect, squeeze_x, detail)
        polygon = third.coverage(third.place(*args), R, rng)
        pillow = _pillow_mask(*args)
        for name, other in (("sdf.py", sdf), ("tests renderer", polygon)):
            iou = _soft_iou(pillow, other)
            assert iou > 0.93, f"{shape}: draw_varied.py vs {name}: IoU {iou:.3f} ({args})"
        # the larger extent of the drawn shape is the documented side (to about a pixel)
        ys, xs = np.nonzero(sdf > 0.15)  # sharp tips cover little of a pixel
        extent = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert abs(extent - side) < 2.0, (shape, extent, side)


def test_a_square_is_not_a_diamond_in_any_renderer(rng):
    """Within the ranges a square turns at most 15 degrees: never as far as a diamond's 45."""
    square = coverage_mask("square", 32, 32, 40, R, rotation=15.0)
    diamond = coverage_mask("diamond", 32, 32, 40, R, rotation=-15.0, aspect=1.0)
    assert _soft_iou(square, diamond) < 0.8


def _check_colours_and_background(image, objects_rgb, cover):
    """Fully covered pixels carry an object's colour within the jitter of its name; uncovered
    pixels are background inside BACKGROUND_RANGE."""
    for rgb, colour, full in objects_rgb:
        named = np.array(COLOUR_RGB[COLOURS[colour]])
        assert np.all(np.abs(np.asarray(rgb) - named) <= COLOUR_JITTER + 1e-9)
        if full.any():
            np.testing.assert_allclose(image[full].astype(float), np.broadcast_to(
                np.rint(rgb), image[full].shape), atol=1)
    background = image[cover == 0]
    assert background.min() >= BACKGROUND_RANGE[0] and background.max() <= BACKGROUND_RANGE[1]


def test_sdf_renderer_within_documented_ranges(rng):
    for k in range(20):
        pair = SEEN_PAIRS[k % len(SEEN_PAIRS)]
        image, objects = render_scene(rng, [pair], resolution=32)
        (obj,) = objects
        cover = coverage_mask(SHAPES[obj["shape"]], obj["cx"], obj["cy"], obj["side"], 32,
                              obj["rotation"], obj["squeeze"].min(),
                              bool(obj["squeeze"][0] < 1), obj["detail"])
        _check_colours_and_background(image, [(obj["rgb"], obj["colour"], cover >= 1.0)], cover)
        x0, y0 = obj["cx"] - obj["side"] / 2, obj["cy"] - obj["side"] / 2
        assert -1e-9 <= x0 and x0 + obj["side"] <= 32 + 1e-9 and -1e-9 <= y0


def test_tests_renderer_within_documented_ranges(rng):
    for k in range(10):
        colour, shape = SEEN_PAIRS[(5 * k) % len(SEEN_PAIRS)]
        obj = third.random_object(rng, colour, shape, "large", int(rng.integers(9)), 32)
        image = third.render(np.random.default_rng(k), [obj], 32)
        outline = third.place(obj["shape"], obj["cx"], obj["cy"], obj["side"], obj["rotation"],
                              obj["aspect"], obj["squeeze_x"], obj["detail"])
        inner = third.inside(*np.meshgrid(np.arange(32) + 0.5, np.arange(32) + 0.5)[::1],
                             outline)
        assert inner.sum() > 20
        far = np.ones((32, 32), bool)  # pixels well away from the shape's box
        x0, y0 = int(obj["cx"] - obj["side"] / 2) - 1, int(obj["cy"] - obj["side"] / 2) - 1
        x1, y1 = int(obj["cx"] + obj["side"] / 2) + 2, int(obj["cy"] + obj["side"] / 2) + 2
        far[max(y0, 0):y1, max(x0, 0):x1] = False
        assert image[far].max() <= BACKGROUND_RANGE[1]
        named = np.array(COLOUR_RGB[COLOURS[colour]])
        centre = image[inner].astype(float).mean(axis=0)
        assert np.all(np.abs(centre - named) <= COLOUR_JITTER + 12), (obj["shape"], centre)


def test_tests_renderer_pair_captions_are_minimal_pairs(rng):
    images, binding, relation = third.pair_scenes(rng, 6, 32)
    assert images.shape == (6, 32, 32, 3)
    for true, false in binding:  # the same words, the colours in the other order
        assert true != false and sorted(true.split()) == sorted(false.split())
    for true, false in relation:  # one relation swapped for its opposite, nothing else
        changed = {w for w in true.split()} ^ {w for w in false.split()}
        assert changed in ({"left", "right"}, {"above", "below"}), (true, false)
