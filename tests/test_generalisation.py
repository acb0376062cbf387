"""The generalisation metrics: the test scenes are what they claim, and the scoring counts what it
should (a model that reads captions as bags of words scores 0 on strict binding wins)."""

import numpy as np

from miniclip.datasets.attributes import CLASSNAMES, HELDOUT_PAIRS
from miniclip.datasets.sdf import box
from miniclip.train.generalisation import (
    _relation,
    binding_examples,
    pair_accuracy,
    relation_examples,
    renderer_shift_examples,
)


def test_binding_captions_swap_colours_only(rng):
    images, trues, falses = binding_examples(rng, 20, resolution=32)
    assert images.shape == (20, 32, 32, 3) and images.dtype == np.uint8
    for true, false in zip(trues, falses, strict=True):
        assert true != false
        strip = lambda c: sorted(w for w in c.split() if w not in ("a", "an"))  # noqa: E731
        assert strip(true) == strip(false)  # the same words: only their order differs


def test_relations_hold_in_the_drawn_boxes(rng):
    from miniclip.datasets.sdf import render_scene

    for _ in range(30):
        _, objects = render_scene(rng, [(0, 0), (2, 1)], 32)
        held = _relation(box(objects[0]), box(objects[1]))
        assert held, "two-object scenes are always apart along some axis"
        opposite = _relation(box(objects[1]), box(objects[0]))
        swap = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
        assert sorted(swap[r] for r in held) == sorted(opposite)
    _, trues, falses = relation_examples(rng, 10, 32)
    assert all(t != f for t, f in zip(trues, falses, strict=True))


def _colour_centre(image, rgb):
    """Mean (x, y) of the pixels within 25 grey levels of rgb in every channel."""
    ys, xs = np.nonzero(np.abs(image.astype(int) - np.array(rgb)).max(axis=2) < 25)
    return xs.mean(), ys.mean()


def test_own_renderer_relations_are_true_of_the_pixels(rng):
    """The training renderer's relation scenes: "A above B" has A's pixels above B's (y grows
    downwards in the image, as in scenes.py), and the false caption says the opposite."""
    from miniclip.train.generalisation import own_renderer_examples

    images, (b_true, b_false, which), (r_true, r_false), named = own_renderer_examples(rng, 40)
    assert images.shape == (40, 32, 32, 3) and len(r_true) == len(named) == 40
    assert len(b_true) == len(which) > 10 and all(t != f for t, f in zip(b_true, b_false, strict=True))
    checked = 0
    for image, true, false, (a, b) in zip(images, r_true, r_false, named, strict=True):
        differ = [(t, f) for t, f in zip(true.split(), false.split(), strict=True) if t != f]
        assert len(differ) == 1 and differ[0][0] in ("left", "right", "above", "below"), differ
        if a.colour == b.colour:
            continue
        (ax, ay), (bx, by) = _colour_centre(image, a.rgb), _colour_centre(image, b.rgb)
        said = next(r for r in ("left of", "right of", "above", "below")
                    if f" {r} " in true.replace("to the ", ""))
        assert {"left of": ax < bx - 4, "right of": ax > bx + 4, "above": ay < by - 4,
                "below": ay > by + 4}[said], (true, (ax, ay), (bx, by))
        checked += 1
    assert checked > 20


def test_renderer_shift_labels(rng):
    images, labels = renderer_shift_examples(rng, HELDOUT_PAIRS, 2, 32)
    assert images.shape == (16, 32, 32, 3) and len(labels) == 16
    assert {CLASSNAMES[k] for k in labels} == {"red square", "green hexagon", "blue circle",
                                                "yellow star", "purple cross", "orange triangle",
                                                "pink diamond", "white square"}


class _BagOfWordsModel:
    """Text embedding = counts of words (order-free); image embedding = a fixed vector."""

    class cfg:
        context_length = 16

    def encode_image(self, x):
        return np.ones((len(x), 64))

    def encode_text(self, ids):
        counts = np.zeros((len(ids), 64))
        for row, seq in enumerate(ids):
            np.add.at(counts[row], seq % 64, 1.0)
        return counts + 1.0


class _Tokenizer:
    def tokenize(self, texts, context_length):
        return np.array([[sum(map(ord, w)) % 1000 for w in t.split()][:context_length]
                         + [0] * (context_length - len(t.split())) for t in texts])


def test_a_bag_of_words_never_wins_the_binding_test(rng):
    images, trues, falses = binding_examples(rng, 10, 32)
    acc = pair_accuracy(_BagOfWordsModel(), lambda x: x, _Tokenizer(), images, trues, falses)
    assert acc == 0.0  # equal scores are not wins
    flipped = pair_accuracy(_BagOfWordsModel(), lambda x: x, _Tokenizer(), images, trues,
                            ["nothing alike here"] * 10)
    assert flipped > 0.0  # and a different text can win: the check can fail both ways
