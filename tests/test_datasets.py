"""The toy dataset: deterministic, held-out pairs kept out, captions true of the pixels."""

import json
import re

import numpy as np
import pytest

from miniclip.datasets import (
    CLASS_PAIRS,
    CLASSNAMES,
    COLOUR_RGB,
    COLOURS,
    HELDOUT_PAIRS,
    PROMPT_TEMPLATES,
    SEEN_PAIRS,
    SHAPES,
    SPLITS,
    ToyObject,
    augment,
    caption_for,
    channel_mean_std,
    class_index,
    ensure_dataset,
    generate_dataset,
    load_meta,
    load_split,
    prompts_for,
    relations,
)
from miniclip.datasets.__main__ import main as cli_main
from miniclip.datasets.captions import COLOUR_WORDS, RELATION_WORDS, SHAPE_WORDS, SIZE_WORDS
from miniclip.datasets.scenes import POSITION_CELLS

SMALL = dict(n_train=400, n_val=40, n_test=96, n_heldout=32)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A small dataset written once for the whole module (about half a second)."""
    out = tmp_path_factory.mktemp("toy")
    generate_dataset(out, **SMALL, seed=0, workers=1, progress=False)
    return out


def _arrays(path):
    return {split: load_split(path, split) for split in SPLITS}


def _assert_same(a, b):
    fields = ("images", "captions", "n_objects", "colour", "shape", "size", "position", "box", "label")
    for field in fields:
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


# ----------------------------------------------------------------------------- vocabulary


def test_classnames_and_heldout_pairs():
    assert len(CLASSNAMES) == len(set(CLASSNAMES)) == 56
    for (c, s), name in zip(CLASS_PAIRS, CLASSNAMES, strict=True):
        assert name == f"{COLOURS[c]} {SHAPES[s]}"
        assert CLASSNAMES[class_index(c, s)] == name
    assert len(set(HELDOUT_PAIRS)) == 8
    assert sorted(c for c, _ in HELDOUT_PAIRS) == list(range(8))  # each colour held out once
    assert max(np.bincount([s for _, s in HELDOUT_PAIRS], minlength=7)) <= 2
    assert set(SEEN_PAIRS) | set(HELDOUT_PAIRS) == set(CLASS_PAIRS)
    assert not set(SEEN_PAIRS) & set(HELDOUT_PAIRS)
    # every colour and every shape is still seen with several partners
    assert min(np.bincount([c for c, _ in SEEN_PAIRS], minlength=8)) >= 6
    assert min(np.bincount([s for _, s in SEEN_PAIRS], minlength=7)) >= 6


def test_colours_are_far_apart():
    rgb = np.array([COLOUR_RGB[name] for name in COLOURS], dtype=float)  # (8, 3)
    distances = np.linalg.norm(rgb[:, None] - rgb[None, :], axis=-1)
    np.fill_diagonal(distances, np.inf)
    assert distances.min() > 100  # jitter is at most 10 per channel


def test_prompts_use_the_right_article():
    assert prompts_for("orange star")[:2] == ["an orange star.", "a photo of an orange star."]
    assert prompts_for("red circle")[1] == "a photo of a red circle."
    assert len(prompts_for("red circle")) == len(PROMPT_TEMPLATES)
    with pytest.raises(TypeError, match="classname"):
        prompts_for(3)


def test_relations_read_off_the_boxes():
    def obj(cx, cy):
        return ToyObject(0, 0, 0, 0, cx=cx, cy=cy, side=10, rgb=(0, 0, 0))

    assert relations(obj(8, 8), obj(24, 24)) == ["above", "left of"]
    assert relations(obj(24, 8), obj(8, 8)) == ["right of"]
    assert relations(obj(8, 24), obj(10, 8)) == ["below"]
    assert relations(obj(8, 8), obj(14, 12)) == []  # boxes overlap: nothing is said


# ----------------------------------------------------------------------------- generation


def test_same_seed_same_bytes_any_worker_count(toy, tmp_path):
    generate_dataset(tmp_path / "again", **SMALL, seed=0, workers=2, progress=False)
    first, again = _arrays(toy), _arrays(tmp_path / "again")
    for split in SPLITS:
        _assert_same(first[split], again[split])
        assert first[split].images.tobytes() == again[split].images.tobytes()
    assert load_meta(toy)["mean"] == load_meta(tmp_path / "again")["mean"]


def test_other_seed_other_images(toy, tmp_path):
    sizes = dict(n_train=40, n_val=0, n_test=0, n_heldout=0)
    generate_dataset(tmp_path, **sizes, seed=1, workers=1, progress=False)
    other = load_split(tmp_path, "train")
    base = load_split(toy, "train")
    assert not np.array_equal(other.images, base.images[:40])
    assert list(other.captions) != list(base.captions[:40])


def test_shapes_and_dtypes(toy):
    meta = load_meta(toy)
    for split in SPLITS:
        data = load_split(toy, split)
        n = meta["split_sizes"][split]
        assert len(data) == n == SMALL[f"n_{split}"]
        assert data.images.shape == (n, 32, 32, 3) and data.images.dtype == np.uint8
        assert data.captions.shape == (n,) and data.captions.dtype.kind == "U"
        assert all(len(c) > 0 and c == c.lower() for c in data.captions)
        for field in ("colour", "shape", "size", "position"):
            assert getattr(data, field).shape == (n, 2) and getattr(data, field).dtype == np.int8
        assert data.box.shape == (n, 2, 4) and data.label.dtype == np.int16
        one = data.n_objects == 1
        assert set(np.unique(data.n_objects)) <= {1, 2}
        assert np.all(data.colour[one, 1] == -1) and np.all(np.isnan(data.box[one, 1]))
        assert np.all((data.colour[:, 0] >= 0) & (data.colour[:, 0] < 8))
        assert np.all((data.shape[:, 0] >= 0) & (data.shape[:, 0] < 7))
        present = ~np.isnan(data.box[..., 0])  # (N, 2)
        assert np.all(data.box[present] >= 0) and np.all(data.box[present] <= 32)


def test_train_mixes_one_and_two_objects_and_covers_every_attribute(toy):
    train = load_split(toy, "train")
    assert repr(train) == f"ToySplit('train': 400 images of 32x32, {np.sum(train.n_objects == 2)} with two objects)"
    two = np.mean(train.n_objects == 2)
    assert 0.2 < two < 0.4
    present = train.colour >= 0
    assert set(train.colour[present]) == set(range(8))
    assert set(train.shape[present]) == set(range(7))
    assert set(train.size[present]) == {0, 1}
    assert set(train.position[present]) == set(range(9))
    assert len(set(train.captions)) > 0.8 * len(train)  # captions vary


def test_heldout_pairs_never_in_train_or_val(toy):
    heldout = set(HELDOUT_PAIRS)
    for split in ("train", "val"):
        data = load_split(toy, split)
        for i in range(len(data)):
            for slot in range(data.n_objects[i]):
                pair = (int(data.colour[i, slot]), int(data.shape[i, slot]))
                assert pair not in heldout, (split, i, data.captions[i])
    for split, pairs in (("test", SEEN_PAIRS), ("heldout", HELDOUT_PAIRS)):
        data = load_split(toy, split)
        assert np.all(data.n_objects == 1)
        labels = [class_index(*pair) for pair in pairs]
        in_turn = [labels[i % len(labels)] for i in range(len(data))]
        np.testing.assert_array_equal(data.label, in_turn)
        np.testing.assert_array_equal(data.label, data.colour[:, 0] * 7 + data.shape[:, 0])


def test_meta_json(toy):
    meta = json.loads((toy / "meta.json").read_text())
    assert meta["version"] == 2 and meta["seed"] == 0 and meta["resolution"] == 32
    assert [tuple(p) for p in meta["heldout_pairs"]] == list(HELDOUT_PAIRS)
    assert meta["classnames"] == list(CLASSNAMES)
    assert meta["colours"] == list(COLOURS) and meta["shapes"] == list(SHAPES)
    assert meta["sizes"] == ["small", "large"] and len(meta["positions"]) == 9
    assert meta["split_sizes"] == {split: SMALL[f"n_{split}"] for split in SPLITS}
    mean, std = channel_mean_std(load_split(toy, "train").images)
    assert meta["mean"] == mean and meta["std"] == std


def test_channel_mean_std_matches_numpy(rng):
    images = rng.integers(0, 256, size=(5, 8, 8, 3), dtype=np.uint8)
    mean, std = channel_mean_std(images)
    x = images.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, x.std(axis=0), rtol=1e-12)


@pytest.mark.parametrize("resolution", [16, 24, 48])
def test_other_resolutions(tmp_path, resolution):
    generate_dataset(tmp_path, n_train=30, n_val=0, n_test=0, n_heldout=8, resolution=resolution,
                     workers=1, progress=False)  # fmt: skip
    data = load_split(tmp_path, "train")
    assert data.images.shape == (30, resolution, resolution, 3)
    _check_pixels(data)
    _check_positions(data)


# ----------------------------------------------------------------------------- pixels are true


def _object_pixels(image, threshold=120):
    """(ys, xs) of pixels bright enough to be an object: the background stays below ~100."""
    return np.nonzero(image.max(axis=-1) > threshold)


def _check_pixels(data):
    r = data.images.shape[1]
    palette = np.array([COLOUR_RGB[name] for name in COLOURS], dtype=float)
    yy, xx = np.mgrid[0:r, 0:r]
    for i in range(len(data)):
        image = data.images[i]
        ys, xs = _object_pixels(image)
        inside_any = np.zeros(len(ys), bool)
        for slot in range(data.n_objects[i]):
            x0, y0, x1, y1 = data.box[i, slot]
            cx, cy = xs + 0.5, ys + 0.5  # pixel centres
            inside_any |= (cx >= x0 - 1) & (cx <= x1 + 1) & (cy >= y0 - 1) & (cy <= y1 + 1)
            # the object is really there, in the box, in its colour (interior pixels: bright)
            box_mask = (xx + 0.5 >= x0) & (xx + 0.5 <= x1) & (yy + 0.5 >= y0) & (yy + 0.5 <= y1)
            interior = image[box_mask & (image.max(axis=-1) >= 170)].astype(float)  # (P, 3)
            assert len(interior) >= 4, (i, data.captions[i])
            nearest = np.argmin(np.linalg.norm(palette - interior.mean(axis=0), axis=1))
            assert nearest == data.colour[i, slot], (i, data.captions[i], interior.mean(axis=0))
        assert inside_any.all(), (i, data.captions[i])  # nothing bright outside the objects


def _check_positions(data):
    """An object in a left cell touches the left margin, a middle one sits on the midline, ..."""
    r = data.images.shape[1]
    for i in range(len(data)):
        for slot in range(data.n_objects[i]):
            x0, y0, x1, y1 = data.box[i, slot]
            row, col = POSITION_CELLS[data.position[i, slot]]
            for cell, low, high in ((col, x0, x1), (row, y0, y1)):
                if cell == 0:
                    assert low < 0.1 * r
                elif cell == 2:
                    assert high > 0.9 * r
                else:
                    assert abs((low + high) / 2 - r / 2) < 0.05 * r


def test_pixels_match_metadata(toy):
    for split in SPLITS:
        _check_pixels(load_split(toy, split))


def test_positions_match_boxes(toy):
    for split in SPLITS:
        _check_positions(load_split(toy, split))


def test_sizes_differ_clearly(toy):
    train = load_split(toy, "train")
    present = train.size >= 0
    sides = (train.box[..., 2] - train.box[..., 0])[present]
    sizes = train.size[present]
    assert sides[sizes == 0].max() * 1.4 < sides[sizes == 1].min()


# ----------------------------------------------------------------------------- captions are true


def _alternation(words):
    return "|".join(sorted((re.escape(w) for w in words), key=len, reverse=True))


_COLOUR = {w: COLOURS.index(name) for name, ws in COLOUR_WORDS.items() for w in ws}
_SHAPE = {w: SHAPES.index(name) for name, ws in SHAPE_WORDS.items() for w in ws}
_SIZE = {w: ("small", "large").index(name) for name, ws in SIZE_WORDS.items() for w in ws}
_RELATION = {w: name for name, ws in RELATION_WORDS.items() for w in ws}
_MENTION = re.compile(
    rf"\b(?:({_alternation(_SIZE)}) )?({_alternation(_COLOUR)}) ({_alternation(_SHAPE)})\b"
)
_RELATION_RE = re.compile(rf"\b({_alternation(_RELATION)})\b")
_POSITION_WORDS = {"top", "upper", "bottom", "lower", "left", "right", "centre", "center", "middle"}


def _claimed_cell(text):
    """Grid cell a position phrase names, or None: 'in the upper left' -> (0, 0)."""
    words = set(re.findall(r"[a-z]+", text))
    if not words & _POSITION_WORDS:
        return None
    row = 0 if words & {"top", "upper"} else 2 if words & {"bottom", "lower"} else 1
    col = 0 if "left" in words else 2 if "right" in words else 1
    return row, col


def _true_relation(box_a, box_b, relation):
    ax0, ay0, ax1, ay1 = box_a
    bx0, by0, bx1, by1 = box_b
    holds = {"above": ay1 <= by0, "below": by1 <= ay0, "left of": ax1 <= bx0, "right of": bx1 <= ax0}
    return holds[relation]


def _check_caption(caption, objects):
    """Assert that ``caption`` says only true things about ``objects``: a list of dicts with
    colour, shape, size, position (indices) and box."""
    text = caption.rstrip(".")
    colours = {_COLOUR[w] for w in re.findall(rf"\b({_alternation(_COLOUR)})\b", text)}
    shapes = {_SHAPE[w] for w in re.findall(rf"\b({_alternation(_SHAPE)})\b", text)}
    sizes = {_SIZE[w] for w in re.findall(rf"\b({_alternation(_SIZE)})\b", text)}
    assert colours == {o["colour"] for o in objects}, caption
    assert shapes == {o["shape"] for o in objects}, caption
    assert sizes <= {o["size"] for o in objects}, caption
    by_pair = {(o["colour"], o["shape"]): o for o in objects}
    mentions = list(_MENTION.finditer(text))
    for m in mentions:
        obj = by_pair[(_COLOUR[m.group(2)], _SHAPE[m.group(3)])]  # KeyError: a pair not drawn
        if m.group(1):
            assert _SIZE[m.group(1)] == obj["size"], caption
    if len(objects) == 1:
        assert len(mentions) <= 1, caption
        cell = _claimed_cell(text)
        assert cell is None or cell == POSITION_CELLS[objects[0]["position"]], caption
        return
    # two objects: both named, once each; relation true of the boxes; positions after each name
    assert len(mentions) == 2, caption
    a, b = (by_pair[(_COLOUR[m.group(2)], _SHAPE[m.group(3)])] for m in mentions)
    assert a is not b, caption
    between = text[mentions[0].end() : mentions[1].start()]
    after = text[mentions[1].end() :]
    found = _RELATION_RE.findall(between)
    assert len(found) <= 1 and not _RELATION_RE.findall(after), caption
    if found:
        assert _true_relation(a["box"], b["box"], _RELATION[found[0]]), caption
        between = _RELATION_RE.sub("", between)
    for obj, segment in ((a, between), (b, after)):
        cell = _claimed_cell(segment)
        assert cell is None or cell == POSITION_CELLS[obj["position"]], caption


def _objects_of(data, i):
    return [
        {key: int(getattr(data, key)[i, slot]) for key in ("colour", "shape", "size", "position")}
        | {"box": data.box[i, slot]}
        for slot in range(data.n_objects[i])
    ]


def test_captions_are_true(toy):
    relations_said = 0
    for split in SPLITS:
        data = load_split(toy, split)
        for i in range(len(data)):
            _check_caption(str(data.captions[i]), _objects_of(data, i))
            relations_said += bool(_RELATION_RE.search(str(data.captions[i])))
    assert relations_said > 20  # relational captions are really there


def test_recaptioning_stays_true(toy, rng):
    train = load_split(toy, "train")
    for i in range(60):
        objects = train.objects(i)
        for _ in range(10):
            _check_caption(caption_for(objects, rng), _objects_of(train, i))


def test_caption_checker_catches_false_captions():
    """The checker above must fail on wrong colour, shape, size, position and relation."""
    red_circle = dict(colour=0, shape=0, size=0, position=0, box=np.array([1.0, 1, 12, 12]))
    blue_square = dict(colour=2, shape=1, size=0, position=8, box=np.array([20.0, 20, 31, 31]))
    _check_caption("a tiny red disc in the upper left", [red_circle])
    _check_caption("a red circle above a blue box", [red_circle, blue_square])
    wrong_single = ("a green circle", "a red square", "a large red circle", "a red circle on the right",
                    "a red circle at the top")  # fmt: skip
    for wrong in wrong_single:
        with pytest.raises((AssertionError, KeyError)):
            _check_caption(wrong, [red_circle])
    for wrong in ("a red circle below a blue square", "a blue square to the left of a red circle",
                  "a red circle in the top left and a blue square at the top"):  # fmt: skip
        with pytest.raises(AssertionError):
            _check_caption(wrong, [red_circle, blue_square])


# ----------------------------------------------------------------------------- transforms


def test_augment_keeps_shape_and_changes_pixels_a_little(toy, rng):
    images = load_split(toy, "test").images[:32]
    before = images.copy()
    out = augment(images, rng)
    assert out.shape == images.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(images, before)  # input untouched
    assert not np.array_equal(out, images)
    diff = np.abs(out.astype(int) - images.astype(int))
    assert 1 < diff.mean() < 20
    same = augment(images, np.random.default_rng(5))
    np.testing.assert_array_equal(same, augment(images, np.random.default_rng(5)))


def test_augment_without_jitter_is_identity_and_shift_moves_at_most_one_pixel(toy, rng):
    images = load_split(toy, "test").images[:16]
    still = augment(images, rng, brightness=0, contrast=0, noise_std=0, max_shift=0)
    np.testing.assert_array_equal(still, images)
    shifted = augment(images, rng, brightness=0, contrast=0, noise_std=0, max_shift=1)
    # the interior of each image equals the input moved by some (dy, dx) in {-1, 0, 1}^2
    for k in range(len(images)):
        assert any(
            np.array_equal(shifted[k, 1:-1, 1:-1], images[k, 1 - dy : 31 - dy, 1 - dx : 31 - dx])
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        )


def test_augment_keeps_colours_recognisable(toy, rng):
    data = load_split(toy, "heldout")
    _check_pixels(
        type(data)(**{**data.__dict__, "images": augment(data.images, rng, max_shift=0)})
    )


def test_toy_preprocess_normalises_with_the_training_statistics(toy):
    from miniclip.pretrained.preprocess import ToyPreprocess

    meta = load_meta(toy)
    train = load_split(toy, "train")
    x = ToyPreprocess(32, meta["mean"], meta["std"])(train.images)
    assert x.shape == (len(train), 3, 32, 32) and x.dtype == np.float32
    assert x.flags.c_contiguous
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 0, atol=1e-4)  # train statistics
    np.testing.assert_allclose(x.std(axis=(0, 2, 3)), 1, atol=1e-4)
    pixel = train.images[3, 5, 7]  # (3,) uint8
    expected = (pixel / 255.0 - np.array(meta["mean"])) / np.array(meta["std"])
    np.testing.assert_allclose(x[3, :, 5, 7], expected, rtol=1e-5)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(n_train=0), ValueError, "n_train"),
        (dict(n_val=-1), ValueError, "n_val"),
        (dict(n_test=2.0), TypeError, "n_test"),
        (dict(n_heldout=True), TypeError, "n_heldout"),
        (dict(resolution=8), ValueError, "resolution"),
        (dict(seed=-3), ValueError, "seed"),
        (dict(workers=0), ValueError, "workers"),
    ],
)
def test_generate_rejects_bad_arguments(tmp_path, kwargs, error, name):
    with pytest.raises(error, match=name):
        generate_dataset(tmp_path, **{**dict(n_train=5, progress=False, workers=1), **kwargs})


def test_load_rejects_bad_split_and_missing_folder(toy, tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        load_split(toy, "validation")
    with pytest.raises(FileNotFoundError, match="meta.json"):
        load_split(tmp_path / "nothing", "train")
    (tmp_path / "meta.json").write_text(json.dumps({"version": 0}))
    with pytest.raises(ValueError, match="version"):
        load_split(tmp_path, "train")


def test_transforms_reject_bad_input(rng):
    images = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(TypeError, match="uint8"):
        augment(images.astype(np.float32), rng)
    with pytest.raises(ValueError, match=r"images\[None\]"):
        augment(images[0], rng)
    with pytest.raises(TypeError, match="numpy array"):
        augment(images.tolist(), rng)
    with pytest.raises(TypeError, match="rng"):
        augment(images, 0)
    with pytest.raises(ValueError, match="brightness"):
        augment(images, rng, brightness=2.0)
    with pytest.raises(ValueError, match="max_shift"):
        augment(images, rng, max_shift=5)
    from miniclip.pretrained.preprocess import ToyPreprocess

    with pytest.raises(ValueError, match=r"uint8 \(N, H, W, 3\)"):
        ToyPreprocess(8, [0, 0, 0], [1, 1, 1])(np.zeros((2, 8, 8, 4), np.uint8))
    with pytest.raises(ValueError, match="std must be positive"):
        ToyPreprocess(8, [0, 0, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="mean must be 3 finite numbers"):
        ToyPreprocess(8, [0, 0], [1, 1, 1])


# ----------------------------------------------------------------------------- ensure + CLI


def test_ensure_dataset_reuses_or_regenerates_when_asked(tmp_path):
    kwargs = dict(n_train=20, n_val=0, n_test=0, n_heldout=8, workers=1, progress=False)
    ensure_dataset(tmp_path, **kwargs)
    stamp = (tmp_path / "train.npz").stat().st_mtime_ns
    ensure_dataset(tmp_path, **kwargs)
    assert (tmp_path / "train.npz").stat().st_mtime_ns == stamp  # reused
    with pytest.raises(ValueError, match="other settings.*--regenerate"):
        ensure_dataset(tmp_path, **{**kwargs, "seed": 4})  # never rebuilt unasked
    assert (tmp_path / "train.npz").stat().st_mtime_ns == stamp
    meta = ensure_dataset(tmp_path, regenerate=True, **{**kwargs, "seed": 4})
    assert meta["seed"] == 4 and load_meta(tmp_path)["seed"] == 4  # regenerated


def test_cli_generate_and_grid(tmp_path, capsys):
    out = tmp_path / "toy"
    cli_main(["generate", "--out", str(out), "--n-train", "24", "--n-val", "0", "--n-test", "6",
              "--n-heldout", "6", "--workers", "1"])  # fmt: skip
    printed = capsys.readouterr().out
    assert "train.npz" in printed and "wrote 36 images of 32x32" in printed
    png = tmp_path / "grid.png"
    cli_main(["grid", "--data", str(out), "--out", str(png), "--columns", "4"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "--out", "x", "--n-train", "0"], "--n-train"),
        (["generate", "--out", "x", "--seed", "abc"], "--seed"),
        (["generate"], "--out"),
        (["grid", "--data", "x", "--out", "y.png", "--split", "nope"], "--split"),
        (["grid", "--data", "x", "--out", "y.png", "--split", "train", "--rows", "1", "--rows", "2"],
         "--rows"),  # fmt: skip
    ],
)
def test_cli_bad_arguments_name_the_argument(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_grid_on_missing_data_names_the_argument(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli_main(["grid", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "g.png")])
    assert "--data" in capsys.readouterr().err
