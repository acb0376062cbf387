"""Does the model see shapes, or one renderer's pixels? Does it bind colours to shapes, and read
"left of" in the right order? Three evaluations on scenes drawn by ``miniclip.datasets.sdf`` (a
second renderer, written apart from the one that drew the training set), never seen in training:

binding_acc       two objects of different colours and shapes; the true caption "a red circle and a
                  blue square" against the colour-swapped "a blue circle and a red square". Same
                  words, so a bag-of-words model scores chance, 50%. (Lewis et al. 2022, "Does
                  CLIP Bind Concepts?")
relation_acc      two objects side by side or one above the other; "a red circle to the left of a
                  blue square" against "... to the right of ...". Chance 50%. (Yuksekgonul et al.
                  2023, the ARO benchmark's VG-Relation idea)
renderer_shift_top1_seen / _heldout
                  zero-shot top-1 over the 56 classes on single objects drawn by the second
                  renderer, for the 48 seen and the 8 held-out compositions. Chance 1/56.

The same binding and relation tests on two-object scenes of the TRAINING renderer
(``scenes.py``, ``draw.py``; new scenes, not training images) go to metrics.json as
``binding_acc_own_renderer`` and ``relation_acc_own_renderer``: a model at chance on both
renderers does not read the relation at all; one at chance only on the second has not learned
the shapes (renderer shift).

A pair test counts a win when the image's cosine similarity with the true caption is strictly
higher than with the false one. The scenes come from a fixed seed, so every model is tested on the
same images.

    >>> images, trues, falses = binding_examples(np.random.default_rng(0), 2, resolution=32)
    >>> images.shape, len(trues), trues[0] != falses[0]
    ((2, 32, 32, 3), 2, True)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from miniclip.datasets.attributes import (
    CLASSNAMES,
    COLOURS,
    HELDOUT_PAIRS,
    SEEN_PAIRS,
    SHAPES,
    class_index,
    fix_articles,
)
from miniclip.datasets.sdf import box, render_scene
from miniclip.nn.normalize import l2_normalize_forward
from miniclip.pretrained.zeroshot import classifier_from_prompts

EVAL_SEED = 16_016  # the scenes of these evaluations; never a training seed
RELATION_PHRASES = {"left of": "to the left of", "right of": "to the right of", "above": "above",
                    "below": "below"}
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
CHANCE = {"binding_acc": 0.5, "relation_acc": 0.5, "renderer_shift_top1_seen": 1 / len(CLASSNAMES),
          "renderer_shift_top1_heldout": 1 / len(CLASSNAMES)}


def _name(pair) -> str:
    colour, shape = pair
    return f"{COLOURS[colour]} {SHAPES[shape]}"


def _two_pairs(rng, differ_in_both: bool):
    """Two seen (colour, shape) pairs; with ``differ_in_both``, of different colours and shapes."""
    while True:
        i, j = rng.choice(len(SEEN_PAIRS), size=2, replace=False)
        a, b = SEEN_PAIRS[i], SEEN_PAIRS[j]
        if not differ_in_both or (a[0] != b[0] and a[1] != b[1]):
            return a, b


def binding_examples(rng, n: int, resolution: int = 32):
    """n two-object scenes -> (uint8 images (n, R, R, 3), true captions, colour-swapped ones)."""
    images, trues, falses = [], [], []
    for _ in range(n):
        a, b = _two_pairs(rng, differ_in_both=True)
        image, _ = render_scene(rng, [a, b], resolution)
        swapped_a, swapped_b = (b[0], a[1]), (a[0], b[1])  # colours exchanged
        if rng.random() < 0.5:  # name either object first
            a, b, swapped_a, swapped_b = b, a, swapped_b, swapped_a
        images.append(image)
        trues.append(fix_articles(f"a {_name(a)} and a {_name(b)}"))
        falses.append(fix_articles(f"a {_name(swapped_a)} and a {_name(swapped_b)}"))
    return np.stack(images), trues, falses


def _relation(box_a, box_b) -> list[str]:
    """Relations of a to b that hold with the boxes apart along that axis."""
    found = []
    if box_a[3] <= box_b[1]:
        found.append("above")
    if box_b[3] <= box_a[1]:
        found.append("below")
    if box_a[2] <= box_b[0]:
        found.append("left of")
    if box_b[2] <= box_a[0]:
        found.append("right of")
    return found


def relation_examples(rng, n: int, resolution: int = 32):
    """n two-object scenes -> (images, "A <relation> B" captions, the opposite relation's)."""
    images, trues, falses = [], [], []
    while len(images) < n:
        a, b = _two_pairs(rng, differ_in_both=False)
        image, objects = render_scene(rng, [a, b], resolution)
        if rng.random() < 0.5:  # name either object first
            a, b, objects = b, a, objects[::-1]
        held = _relation(box(objects[0]), box(objects[1]))
        if not held:  # the scene's boxes overlap on both axes: no relation to test
            continue
        relation = held[rng.integers(len(held))]
        images.append(image)
        trues.append(fix_articles(f"a {_name(a)} {RELATION_PHRASES[relation]} a {_name(b)}"))
        falses.append(fix_articles(
            f"a {_name(a)} {RELATION_PHRASES[OPPOSITE[relation]]} a {_name(b)}"))
    return np.stack(images), trues, falses


def own_renderer_examples(rng, n: int, resolution: int = 32):
    """n two-object scenes drawn like the training set (scenes.py, draw.py) -> (images,
    (binding trues, falses, which images), (relation trues, falses), objects named first and
    second per scene). Every scene gets a relation pair; those of two objects that differ in
    colour and shape also a binding pair."""
    from miniclip.datasets.draw import make_background, render_image
    from miniclip.datasets.scenes import relations, sample_scene

    images, binding, relation, named = [], ([], [], []), ([], []), []
    while len(images) < n:
        objects = sample_scene(rng, SEEN_PAIRS, 2, resolution)
        drawn = [(SHAPES[o.shape], o.rgb, o.cx, o.cy, o.side) for o in objects]
        image = render_image(drawn, make_background(rng, resolution), resolution)
        a, b = objects if rng.random() < 0.5 else objects[::-1]  # name either object first
        held = relations(a, b)
        if not held:
            continue
        said = held[rng.integers(len(held))]
        first, second = _name((a.colour, a.shape)), _name((b.colour, b.shape))
        relation[0].append(fix_articles(f"a {first} {RELATION_PHRASES[said]} a {second}"))
        relation[1].append(fix_articles(
            f"a {first} {RELATION_PHRASES[OPPOSITE[said]]} a {second}"))
        if a.colour != b.colour and a.shape != b.shape:
            binding[0].append(fix_articles(f"a {first} and a {second}"))
            binding[1].append(fix_articles(f"a {_name((b.colour, a.shape))} and a "
                                           f"{_name((a.colour, b.shape))}"))
            binding[2].append(len(images))
        images.append(image)
        named.append((a, b))
    return np.stack(images), binding, relation, named


def renderer_shift_examples(rng, pairs, per_pair: int, resolution: int = 32):
    """Single objects of each (colour, shape) in ``pairs``, per_pair each -> (images, labels)."""
    images, labels = [], []
    for pair in pairs:
        for _ in range(per_pair):
            images.append(render_scene(rng, [pair], resolution)[0])
            labels.append(class_index(*pair))
    return np.stack(images), np.array(labels, dtype=np.int64)


def _unit_images(model, preprocess, images, batch_size=500):
    """uint8 (n, R, R, 3) -> unit image embeddings (n, E). (evaluate.py imports this module, so
    its encode_images is not imported here: no cycle.)"""
    parts = [model.encode_image(preprocess(images[i:i + batch_size]))
             for i in range(0, len(images), batch_size)]
    return l2_normalize_forward(np.concatenate(parts))[0]


def _unit_texts(model, tokenizer, texts):
    ids = tokenizer.tokenize(list(texts), model.cfg.context_length)
    return l2_normalize_forward(model.encode_text(ids))[0]


def pair_accuracy(model, preprocess, tokenizer, images, trues, falses) -> float:
    """Share of images more similar (cosine) to their true caption than to the false one."""
    img = _unit_images(model, preprocess, images)  # (n, E), unit rows
    true = _unit_texts(model, tokenizer, trues)  # (n, E)
    false = _unit_texts(model, tokenizer, falses)  # (n, E)
    return float(np.mean((img * true).sum(axis=1) > (img * false).sum(axis=1)))


@lru_cache(maxsize=4)
def evaluation_scenes(seed: int, resolution: int, n_pairs: int, per_seen: int,
                      per_heldout: int) -> dict:
    """The fixed scenes of the four metrics, drawn once per process and kept (read-only): every
    evaluation with the same arguments sees the very same images.

    -> {"binding": (images, trues, falses), "relation": (...), "seen": (images, labels),
        "heldout": (images, labels), "own": (images, binding pairs, relation pairs)}
    """
    rng = np.random.default_rng([seed, resolution])
    scenes = {"binding": binding_examples(rng, n_pairs, resolution),
              "relation": relation_examples(rng, n_pairs, resolution),
              "seen": renderer_shift_examples(rng, SEEN_PAIRS, per_seen, resolution),
              "heldout": renderer_shift_examples(rng, HELDOUT_PAIRS, per_heldout, resolution)}
    scenes["own"] = own_renderer_examples(np.random.default_rng([seed, resolution, 1]), n_pairs,
                                          resolution)
    for value in scenes.values():
        value[0].flags.writeable = False
    return scenes


def evaluate_generalisation(model, preprocess, tokenizer, n_pairs: int = 500,
                            per_seen: int = 10, per_heldout: int = 50,
                            seed: int = EVAL_SEED) -> dict:
    """The four metrics and their chance levels (``CHANCE``), as a flat dict for metrics.json."""
    from miniclip.datasets import PROMPT_TEMPLATES, prompts_for

    scenes = evaluation_scenes(seed, model.cfg.image_resolution, n_pairs, per_seen, per_heldout)
    out = {"binding_acc": pair_accuracy(model, preprocess, tokenizer, *scenes["binding"]),
           "relation_acc": pair_accuracy(model, preprocess, tokenizer, *scenes["relation"])}
    own_images, (b_true, b_false, b_which), (r_true, r_false), _ = scenes["own"]
    out["binding_acc_own_renderer"] = pair_accuracy(model, preprocess, tokenizer,
                                                    own_images[b_which], b_true, b_false)
    out["relation_acc_own_renderer"] = pair_accuracy(model, preprocess, tokenizer, own_images,
                                                     r_true, r_false)
    prompts = [prompts_for(name, PROMPT_TEMPLATES) for name in CLASSNAMES]
    weights = classifier_from_prompts(model, tokenizer, prompts, batch_size=500)  # (56, E)
    for name in ("seen", "heldout"):
        images, labels = scenes[name]
        predicted = (_unit_images(model, preprocess, images) @ weights.T).argmax(axis=1)
        out[f"renderer_shift_top1_{name}"] = float(np.mean(predicted == labels))
    out.update({f"{key}_chance": value for key, value in CHANCE.items()})
    out.update({"binding_n": n_pairs, "relation_n": n_pairs,
                "binding_n_own_renderer": len(b_which), "relation_n_own_renderer": n_pairs,
                "renderer_shift_n_seen": per_seen * len(SEEN_PAIRS),
                "renderer_shift_n_heldout": per_heldout * len(HELDOUT_PAIRS)})
    return out


def format_generalisation(m: dict) -> str:
    """Two lines: the four numbers with their chance levels."""
    return (f"binding {m['binding_acc']:.1%} (chance {m['binding_acc_chance']:.0%}), relations "
            f"{m['relation_acc']:.1%} (chance {m['relation_acc_chance']:.0%}) on "
            f"{m['binding_n']} + {m['relation_n']} two-object scenes from the second renderer\n"
            f"renderer shift, zero-shot top-1: seen {m['renderer_shift_top1_seen']:.1%}, held-out "
            f"{m['renderer_shift_top1_heldout']:.1%} (chance "
            f"{m['renderer_shift_top1_seen_chance']:.1%})")
