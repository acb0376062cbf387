"""A third renderer of the toy world, for the tests: shapes as polygons, rasterised in NumPy by an
even-odd crossing test at jittered sample points. It shares no drawing code with
``miniclip/datasets/draw.py`` (Pillow polygons, resized) or ``miniclip/datasets/sdf.py`` (signed
distances); it reads only the documented ranges (``miniclip/datasets/README.md``, as constants in
``variety.py``) and the vocabulary.

Evaluate a trained model on it (zero-shot on single shapes, binding and relations on pairs):

    python tests/independent_renderer.py runs/toy
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

if __name__ == "__main__":  # run as a script from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from miniclip.datasets.attributes import (  # noqa: E402
    CLASSNAMES,
    COLOUR_RGB,
    COLOURS,
    HELDOUT_PAIRS,
    SEEN_PAIRS,
    SHAPES,
    class_index,
    fix_articles,
)
from miniclip.datasets.variety import (  # noqa: E402
    BACKGROUND_GREY,
    COLOUR_JITTER,
    SHAPE_RANGES,
    SIZE_RANGES,
)

SAMPLES = 5  # jittered samples per pixel and axis


def polygon(shape: str, detail: float | None) -> np.ndarray:
    """(V, 2) outline in the shape's own frame (x right, y up here), before squeeze and turn."""
    if shape == "circle":
        t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], 1)
    if shape == "square":
        return np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], float)
    if shape == "diamond":
        return np.array([[0, 1], [-1, 0], [0, -1], [1, 0]], float)
    if shape == "hexagon":
        t = np.radians(np.arange(0, 360, 60))
        return np.stack([np.cos(t), np.sin(t)], 1)
    if shape == "triangle":  # apex up, y up
        return np.array([[2 * detail, 1], [-1, -1], [1, -1]], float)
    if shape == "star":
        k = np.arange(10)
        r = np.where(k % 2 == 0, 1.0, detail)
        t = math.pi / 2 + k * math.pi / 5
        return np.stack([r * np.cos(t), r * np.sin(t)], 1)
    if shape == "cross":
        t = detail
        return np.array([[t, 1], [-t, 1], [-t, t], [-1, t], [-1, -t], [-t, -t], [-t, -1],
                         [t, -1], [t, -t], [1, -t], [1, t], [t, t]], float)
    raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")


def place(shape, cx, cy, side, rotation=0.0, aspect=1.0, squeeze_x=True, detail=None):
    """The outline in image pixels (x right, y down): squeezed, turned counter-clockwise on
    screen by ``rotation`` degrees, scaled so the larger extent is ``side``, centred."""
    ranges = SHAPE_RANGES[shape]
    if detail is None and ranges.detail is not None:
        detail = sum(ranges.detail) / 2
    p = polygon(shape, detail) * ((aspect, 1.0) if squeeze_x else (1.0, aspect))
    a = math.radians(rotation)
    p = p @ np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])  # y up: CCW
    p = p * np.array([1.0, -1.0])  # to y down
    lo, hi = p.min(0), p.max(0)
    return (p - (lo + hi) / 2) * (side / (hi - lo).max()) + np.array([cx, cy])


def inside(points_x, points_y, outline) -> np.ndarray:
    """Even-odd rule: a ray to the right crosses the outline an odd number of times."""
    result = np.zeros(points_x.shape, dtype=bool)
    x0, y0 = outline[:, 0], outline[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    for ax, ay, bx, by in zip(x0, y0, x1, y1, strict=True):
        straddles = (ay > points_y) != (by > points_y)
        with np.errstate(divide="ignore", invalid="ignore"):
            cross_x = ax + (points_y - ay) * (bx - ax) / (by - ay)
        result ^= straddles & (points_x < cross_x)
    return result


def coverage(outline, resolution, rng) -> np.ndarray:
    """(R, R) fraction of each pixel inside the outline, from SAMPLES^2 jittered samples."""
    s = SAMPLES
    base = (np.arange(resolution * s) // s + (np.arange(resolution * s) % s) / s)  # strata
    ys, xs = np.meshgrid(base, base, indexing="ij")
    xs = xs + rng.uniform(0, 1 / s, xs.shape)
    ys = ys + rng.uniform(0, 1 / s, ys.shape)
    hit = inside(xs, ys, outline).astype(float)
    return hit.reshape(resolution, s, resolution, s).mean(axis=(1, 3))


def random_object(rng, colour, shape_index, size_name, cell, resolution):
    shape = SHAPES[shape_index]
    r = SHAPE_RANGES[shape]
    side = rng.uniform(*SIZE_RANGES[size_name]) * resolution
    row, col = divmod(cell, 3)

    def centre(c):  # edge cells: the box within 6% of R from the border; middle: within 3%
        return (rng.uniform(0, 0.06) * resolution + side / 2, resolution / 2
                + rng.uniform(-0.03, 0.03) * resolution,
                resolution - rng.uniform(0, 0.06) * resolution - side / 2)[c]

    return dict(colour=colour, shape=shape, cx=centre(col), cy=centre(row), side=side,
                rotation=rng.uniform(*r.rotation), aspect=rng.uniform(*r.aspect),
                squeeze_x=bool(rng.integers(2)),
                detail=None if r.detail is None else rng.uniform(*r.detail),
                rgb=np.clip(np.array(COLOUR_RGB[COLOURS[colour]])
                            + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3), 0, 255))


def render(rng, objects, resolution=32) -> np.ndarray:
    """uint8 (R, R, 3): a flat or vertically shaded dark background, then the objects."""
    top, bottom = rng.uniform(*BACKGROUND_GREY, size=2)
    if rng.random() < 0.5:
        bottom = top
    shade = np.linspace(top, bottom, resolution)[:, None, None]  # (R, 1, 1)
    image = np.broadcast_to(shade, (resolution, resolution, 3)).copy()
    for o in objects:
        outline = place(o["shape"], o["cx"], o["cy"], o["side"], o["rotation"], o["aspect"],
                        o["squeeze_x"], o["detail"])
        alpha = coverage(outline, resolution, rng)[:, :, None]
        image = alpha * o["rgb"] + (1 - alpha) * image
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def single_objects(rng, pairs, per_pair, resolution=32):
    images, labels = [], []
    for colour, shape in pairs:
        for _ in range(per_pair):
            size = ("small", "large")[rng.integers(2)]
            obj = random_object(rng, colour, shape, size, int(rng.integers(9)), resolution)
            images.append(render(rng, [obj], resolution))
            labels.append(class_index(colour, shape))
    return np.stack(images), np.array(labels)


def pair_scenes(rng, n, resolution=32):
    """-> images, binding (true, false) captions, relation (true, false) captions."""
    images, binding, relation = [], [], []
    while len(images) < n:
        i, j = rng.choice(len(SEEN_PAIRS), 2, replace=False)
        (ca, sa), (cb, sb) = SEEN_PAIRS[i], SEEN_PAIRS[j]
        if ca == cb or sa == sb:
            continue
        horizontal = rng.random() < 0.5
        line = int(rng.integers(3))
        cells = (3 * line, 3 * line + 2) if horizontal else (line, 6 + line)  # a first
        a = random_object(rng, ca, sa, "small", cells[0], resolution)
        b = random_object(rng, cb, sb, "small", cells[1], resolution)
        name_a, name_b = f"{COLOURS[ca]} {SHAPES[sa]}", f"{COLOURS[cb]} {SHAPES[sb]}"
        images.append(render(rng, [a, b], resolution))
        binding.append((fix_articles(f"a {name_a} and a {name_b}"),
                        fix_articles(f"a {COLOURS[cb]} {SHAPES[sa]} and a {COLOURS[ca]} "
                                     f"{SHAPES[sb]}")))
        words = ("to the left of", "to the right of") if horizontal else ("above", "below")
        relation.append((fix_articles(f"a {name_a} {words[0]} a {name_b}"),
                         fix_articles(f"a {name_a} {words[1]} a {name_b}")))
    return np.stack(images), binding, relation


def evaluate_run(path, seed=123, per_seen=10, per_heldout=50, n_pairs=400) -> dict:
    from miniclip.pretrained.checkpoint import load_trained
    from miniclip.train.evaluate import encode_images, zero_shot_weights
    from miniclip.train.generalisation import pair_accuracy
    from miniclip.train.metrics import topk_accuracy

    model, preprocess, tokenizer = load_trained(path)
    r = model.cfg.image_resolution
    rng = np.random.default_rng(seed)
    weights = zero_shot_weights(model, tokenizer, CLASSNAMES)
    out = {}
    for name, pairs, per in (("seen", SEEN_PAIRS, per_seen), ("heldout", HELDOUT_PAIRS,
                                                              per_heldout)):
        images, labels = single_objects(rng, pairs, per, r)
        scores = encode_images(model, preprocess, images) @ weights.T
        out[f"top1_{name}"] = topk_accuracy(scores, labels, ks=(1,))[1]
    images, binding, relation = pair_scenes(rng, n_pairs, r)
    out["binding_acc"] = pair_accuracy(model, preprocess, tokenizer, images,
                                       *map(list, zip(*binding, strict=True)))
    out["relation_acc"] = pair_accuracy(model, preprocess, tokenizer, images,
                                        *map(list, zip(*relation, strict=True)))
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/independent_renderer.py RUN_FOLDER_OR_CHECKPOINT")
    result = evaluate_run(sys.argv[1])
    print("third renderer (tests/independent_renderer.py): zero-shot top-1 seen "
          f"{result['top1_seen']:.1%}, held-out {result['top1_heldout']:.1%} (chance 1.8%); "
          f"binding {result['binding_acc']:.1%}, relations {result['relation_acc']:.1%} "
          "(chance 50%)")
