"""Hard negatives: the true caption is true, the negative is false of the image and true of the
altered scene, the two differ only where the scene was altered; --hard-negatives trains."""

import re
from dataclasses import replace

import numpy as np
import pytest

from miniclip.datasets import HELDOUT_PAIRS, SHAPES, generate_dataset, load_split
from miniclip.datasets.negatives import caption_pair, swap_colours, swap_places
from miniclip.train.hardneg import HardNegatives
from miniclip.train.loop import TrainArgs, train

from .test_datasets import SMALL, _check_caption, _objects_of


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy_negatives")
    generate_dataset(out, **SMALL, seed=1, workers=1, progress=False)
    return out


def _as_dicts(objects):
    return [dict(colour=o.colour, shape=o.shape, size=o.size, position=o.position,
                 box=np.array(o.box)) for o in objects]


def _check_shape_swap(pair, obj):
    """The one shape the negative names (by its words), which differs from the object's."""
    from miniclip.datasets.captions import SHAPE_WORDS

    said = {SHAPES.index(name) for name, words in SHAPE_WORDS.items()
            for w in words if re.search(rf"\b{w}\b", pair.negative)}
    (shape,) = said
    assert shape != obj["shape"], pair
    return shape


def _words(caption):
    """Sorted words, articles dropped and "violet" read as "purple" (a colour's synonym may be
    drawn for one object and not the other)."""
    words = caption.rstrip(".").replace(",", "").replace("violet", "purple").split()
    return sorted(w for w in words if w not in ("a", "an"))


def test_pairs_are_true_and_false_where_they_should_be(toy):
    train_split = load_split(toy, "train")
    kinds = {"binding": 0, "relation": 0, "shape": 0}
    for i in range(len(train_split)):
        objects = train_split.objects(int(i))
        pair = caption_pair(objects, seed=[0, int(i)])
        if pair is None:
            continue
        kinds[pair.kind] += 1
        _check_caption(pair.true, _objects_of(train_split, i))
        if pair.kind == "shape":  # the negative names the same colour with another shape
            (obj,) = _objects_of(train_split, i)
            said = _check_shape_swap(pair, obj)
            altered = [replace(objects[0], shape=said)]
        else:
            altered = swap_colours(objects) if pair.kind == "binding" else swap_places(objects)
        assert not any((o.colour, o.shape) in HELDOUT_PAIRS for o in altered), pair
        _check_caption(pair.negative, _as_dicts(altered))  # true of the altered scene ...
        with pytest.raises((AssertionError, KeyError)):  # ... and false of the image
            _check_caption(pair.negative, _objects_of(train_split, i))
        if pair.kind == "binding":  # the same words, in another order
            assert _words(pair.true) == _words(pair.negative), pair
    assert kinds["binding"] > 10 and kinds["relation"] > 10 and kinds["shape"] > 50


def test_no_binding_negative_when_the_swap_says_the_same(toy):
    train_split = load_split(toy, "train")
    a, b = train_split.objects(int(np.flatnonzero(train_split.n_objects == 2)[0]))
    same_shape = [a, type(b)(**{**b.__dict__, "shape": a.shape, "colour": (a.colour + 1) % 8})]
    assert caption_pair(same_shape, seed=0, kind="binding") is None
    with pytest.raises(ValueError, match="kind"):
        caption_pair([a, b], seed=0, kind="colour")
    with pytest.raises(ValueError, match="1 or 2 objects"):
        caption_pair([a, b, a], seed=0)
    assert caption_pair([a], seed=0, kind="binding") is None  # a kind that does not fit


class _WordTokenizer:
    def tokenize(self, texts):
        return np.array([[len(t), hash(t) % 997] for t in texts])


def test_batches_hold_the_negatives_of_their_two_object_images(toy):
    split = load_split(toy, "train")
    stored = np.zeros((len(split), 2), dtype=np.int64)
    negatives = HardNegatives(split, stored, _WordTokenizer(), seed=0)
    two, one = split.n_objects == 2, split.n_objects == 1
    assert negatives.has_negative[two].mean() > 0.8
    assert 0.2 < negatives.has_negative[one].mean() < 0.4  # SINGLE_FRACTION of them
    idx = np.arange(40)[::-1]
    tokens, extra = negatives.batch(idx)
    counts = negatives.offsets[idx + 1] - negatives.offsets[idx]
    assert tokens.shape == (40, 2) and len(extra) == counts.sum() > negatives.has_negative[idx].sum()
    np.testing.assert_array_equal(tokens[~negatives.has_negative[idx]], 0)  # stored captions
    np.testing.assert_array_equal(  # image by image, in the batch's order
        extra, np.concatenate([negatives.negative_tokens[negatives.offsets[i]:
                                                         negatives.offsets[i + 1]] for i in idx]))
    with pytest.raises(ValueError, match="--distributed"):
        HardNegatives(split, stored, _WordTokenizer(), seed=0, world=object())


class _TextTokenizer:
    """Keeps the texts: row i of tokenize(texts) is the index of texts[i] in ``self.texts``."""

    def __init__(self):
        self.texts = []

    def tokenize(self, texts):
        self.texts += list(texts)
        return np.arange(len(self.texts) - len(texts), len(self.texts))[:, None]


def _true_of(caption, objects):
    try:
        _check_caption(caption, _as_dicts(objects))
    except (AssertionError, KeyError):
        return False
    return True


RELATION = re.compile(r"\b(left of|right of|above|over|below|under|beneath)\b")


def test_every_two_object_caption_meets_its_place_swap_and_its_colour_swap(toy):
    """A two-object image whose caption says how the objects lie ("a red circle to the left of
    a blue square") gets its place-swapped caption as a negative, and one of two objects that
    differ in colour and shape also gets its colour-swapped caption: both, not one of the two at
    random (before 2026-11-29 a quarter of the place swaps were never shown)."""
    split = load_split(toy, "train")
    words = _TextTokenizer()
    negatives = HardNegatives(split, np.zeros((len(split), 1), np.int64), words, seed=0)
    relations = bindings = 0
    for i in np.flatnonzero(split.n_objects == 2):
        objects = split.objects(int(i))
        true = words.texts[negatives.tokens[i, 0]]
        said = [words.texts[row] for row in negatives.negative_tokens[
            negatives.offsets[i]:negatives.offsets[i + 1], 0]]
        if RELATION.search(true):  # a relation word: the place swap says the opposite one
            assert any(RELATION.search(n) and RELATION.search(n)[0] != RELATION.search(true)[0]
                       for n in said), (true, said)
            relations += 1
        a, b = objects
        swapped = swap_colours(objects)
        if a.colour != b.colour and a.shape != b.shape and not any(
                (o.colour, o.shape) in HELDOUT_PAIRS for o in swapped):
            assert any(_words(n) == _words(true) and _true_of(n, swapped) for n in said), \
                (true, said)
            bindings += 1
    assert relations > 10 and bindings > 10
    # the behaviour before: one negative per two-object image, either kind
    one = HardNegatives(split, np.zeros((len(split), 1), np.int64), _TextTokenizer(), seed=0,
                        every_kind=False)
    assert (np.diff(one.offsets) <= 1).all()
    assert len(one.negative_tokens) < len(negatives.negative_tokens)


def test_shape_negatives_share(toy):
    """--shape-negatives F: that share of the one-object images gets a shape-swapped caption (0.3
    by default); the same draws for every share, so a larger share only adds images."""
    split = load_split(toy, "train")
    tokens = np.zeros((len(split), 1), np.int64)
    single = split.n_objects == 1
    with_share = {f: HardNegatives(split, tokens, _TextTokenizer(), seed=0, single_fraction=f)
                  for f in (0.0, 0.3, 1.0)}
    assert "shape" not in with_share[0.0].kinds
    assert with_share[1.0].kinds["shape"] == int(single.sum())  # every one-object image
    default = HardNegatives(split, tokens, _TextTokenizer(), seed=0)
    assert default.kinds == with_share[0.3].kinds
    assert 0 < with_share[0.3].kinds["shape"] < with_share[1.0].kinds["shape"]
    more, fewer = with_share[1.0].has_negative, with_share[0.3].has_negative
    assert (more | fewer == more).all()  # the 0.3 images are among the 1.0 ones
    for other in ("binding", "relation"):
        assert with_share[0.0].kinds[other] == with_share[1.0].kinds[other]


def test_shape_negatives_flag():
    from miniclip.train.args import build_parser, check_args

    assert build_parser().parse_args(["--shape-negatives", "1"]).shape_negatives == 1.0
    assert TrainArgs().shape_negatives is None
    with pytest.raises(ValueError, match=r"--shape-negatives must be a number in \[0, 1\], got 2"):
        check_args(TrainArgs(shape_negatives=2))


def test_training_with_hard_negatives_runs_and_rejects_siglip(toy, tmp_path):
    args = TrainArgs(data=str(toy), out=str(tmp_path / "run"), model="toy-tiny", steps=3,
                     batch_size=16, warmup=1, eval_every=0, checkpoint_every=3, log_every=1,
                     hard_negatives=True, swapped_images=0.5)
    summary = train(args, progress=False, final_eval=False, log=lambda *a: None)
    assert summary["steps"] == 3 and np.isfinite(summary["final_loss"])
    for change, message in ((dict(loss="siglip"), "needs --loss clip, got --loss siglip"),
                            (dict(precision="bf16"), "needs --precision fp32, got bf16"),
                            (dict(data="pairs.csv"), "needs the toy dataset"),
                            (dict(hard_negatives=False), "")):
        expected = (f"--hard-negatives {message}" if message else
                    "--swapped-images 0.5 draws the place swaps of the hard negatives, which are "
                    "off in this run")
        with pytest.raises(ValueError, match=expected):
            train(TrainArgs(**{**args.__dict__, **change, "out": str(tmp_path / "s")}),
                  progress=False, final_eval=False, log=lambda *a: None)
        assert not (tmp_path / "s").exists()  # refused before the run folder is made
    with pytest.raises(ValueError, match="--shape-negatives 1 is a share of the hard negatives, "
                                         "which are off in this run"):
        train(TrainArgs(**{**args.__dict__, "hard_negatives": False, "swapped_images": 0.0,
                           "shape_negatives": 1.0, "out": str(tmp_path / "s")}),
              progress=False, final_eval=False, log=lambda *a: None)
    assert not (tmp_path / "s").exists()


def test_stored_captions_are_those_of_dataset_version_2():
    """``lockstep`` (for the negatives) is off by default: the captions drawn for the stored
    dataset are the very ones of dataset version 2 (digest pinned from the code before it)."""
    import hashlib

    from miniclip.datasets import SEEN_PAIRS, caption_for, sample_scene

    captions, stepped = [], []
    for i in range(300):
        objects = sample_scene(np.random.default_rng(i), SEEN_PAIRS, 1 + i % 2, 32)
        captions.append(caption_for(objects, np.random.default_rng([i, 1])))
        stepped.append(caption_for(objects, np.random.default_rng([i, 1]), lockstep=True))
    assert hashlib.sha256("\n".join(captions).encode()).hexdigest()[:16] == "6583c206b432b0d8"
    assert stepped != captions  # the lockstep stream is another one


def test_hard_negatives_default_is_on_wherever_they_can_be():
    """--hard-negatives's default (None): on for the toy world with the clip loss, float32 and one
    process, without --init; --hard-negatives / --no-hard-negatives force it."""
    from miniclip.train.args import build_parser, check_args
    from miniclip.train.hardneg import wants_hard_negatives

    base = TrainArgs()
    assert base.hard_negatives is None and wants_hard_negatives(base)
    for change in (dict(loss="siglip"), dict(precision="bf16"), dict(data="pairs.csv"),
                   dict(data="shards/{000..003}.tar"), dict(init="runs/toy")):
        assert not wants_hard_negatives(TrainArgs(**change)), change
    assert not wants_hard_negatives(base, world=object())  # --distributed
    assert not wants_hard_negatives(TrainArgs(hard_negatives=False))
    assert wants_hard_negatives(TrainArgs(hard_negatives=True, init="runs/toy"))
    parse = build_parser().parse_args
    assert parse([]).hard_negatives is None
    assert parse(["--no-hard-negatives"]).hard_negatives is False
    assert parse(["--hard-negatives"]).hard_negatives is True
    with pytest.raises(TypeError, match="--hard-negatives must be True, False or None, got 1"):
        check_args(TrainArgs(hard_negatives=1))
    with pytest.raises(ValueError, match=r"--swapped-images must be a number in \[0, 1\], got 1.5"):
        check_args(TrainArgs(swapped_images=1.5))
    with pytest.raises(ValueError, match=r"--swapped-colours must be a number in \[0, 1\], got -1"):
        check_args(TrainArgs(swapped_colours=-1))
    assert parse(["--swapped-colours", "1"]).swapped_colours == 1.0
    assert parse(["--swapped-images", "0.25"]).swapped_images == 0.25


@pytest.mark.parametrize("kind", ["relation", "binding"])
def test_swapped_images_are_the_scene_with_the_places_or_colours_exchanged(toy, kind):
    """--swapped-images 1 (--swapped-colours 1): every place (colour) swap of a two-object image
    is drawn; the drawing has each object where the other was (in the other's colour), its
    caption is the swapped one (no longer an extra text), and the batch holds the images' twins
    after the images, captions likewise."""
    split = load_split(toy, "train")
    words = _TextTokenizer()
    fraction = {"relation": "twin_fraction", "binding": "colour_twin_fraction"}[kind]
    twins = HardNegatives(split, np.zeros((len(split), 1), np.int64), words, seed=0,
                          **{fraction: 1.0})
    plain = HardNegatives(split, np.zeros((len(split), 1), np.int64), _TextTokenizer(), seed=0)
    assert 10 < len(twins.twin_images) == twins.kinds[kind] == plain.kinds[kind]
    assert twins.twin_kinds == {kind: len(twins.twin_images)}
    assert len(twins.negative_tokens) == len(plain.negative_tokens) - len(twins.twin_images)
    counts = np.diff(twins.twin_offsets)  # twins per image: 0 or 1 here
    assert set(counts.tolist()) == {0, 1}
    checked = 0
    for i in np.flatnonzero(counts):
        a, b = split.objects(int(i))
        image = twins.twin_images[twins.twin_offsets[i]]
        caption = words.texts[twins.twin_tokens[twins.twin_offsets[i], 0]]
        assert caption not in {words.texts[t] for t in twins.negative_tokens[
            twins.offsets[i]:twins.offsets[i + 1], 0]}
        swapped = (swap_places if kind == "relation" else swap_colours)([a, b])
        _check_caption(caption, _as_dicts(swapped))  # true of the drawing
        if a.colour != b.colour:
            for obj, other in ((a, b), (b, a)):  # obj's colour is drawn where other's place is
                ys, xs = np.nonzero(np.abs(image.astype(int) - obj.rgb).max(axis=2) < 30)
                place = other if kind == "relation" else obj
                if kind == "binding":  # obj's place shows the other's colour
                    ys, xs = np.nonzero(np.abs(image.astype(int) - other.rgb).max(axis=2) < 30)
                assert abs(xs.mean() - place.cx) < 3 and abs(ys.mean() - place.cy) < 3
            checked += 1
    assert checked > 10
    idx = np.arange(30)
    images, tokens, extra = twins.batch_with_twins(idx, split.images[idx])
    has = counts[idx] > 0
    rows = twins.twin_offsets[idx][has]
    assert len(images) == len(tokens) == 30 + has.sum() and has.sum() > 0
    np.testing.assert_array_equal(images[30:], twins.twin_images[rows])
    np.testing.assert_array_equal(tokens[30:], twins.twin_tokens[rows])
    np.testing.assert_array_equal(extra, twins.batch(idx)[1])


def test_both_swaps_drawn(toy):
    """--swapped-images 1 --swapped-colours 1: an image with both swaps gets both twins, the
    place swap first, and the batch holds them in that order."""
    split = load_split(toy, "train")
    both = HardNegatives(split, np.zeros((len(split), 1), np.int64), _TextTokenizer(), seed=0,
                         twin_fraction=1.0, colour_twin_fraction=1.0)
    counts = np.diff(both.twin_offsets)
    assert counts.max() == 2 and len(both.twin_images) == sum(both.twin_kinds.values())
    assert "place-swapped twin images" in both.describe()
    assert "colour-swapped twin images" in both.describe()
    i = int(np.flatnonzero(counts == 2)[0])
    images, tokens, _ = both.batch_with_twins(np.array([i]), split.images[[i]])
    assert len(images) == 3
    np.testing.assert_array_equal(images[1:], both.twin_images[both.twin_offsets[i]:][:2])
