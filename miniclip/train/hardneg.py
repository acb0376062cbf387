"""Hard negatives in training (``--hard-negatives``): for every two-object training image its
caption with the colours swapped and with the places swapped (each where it changes the text),
and for SINGLE_FRACTION of the one-object images its caption with another shape: a true caption
and minimally changed false ones (``miniclip.datasets.negatives``), written once at setup.

In a batch, the images that have negatives are captioned with their true caption (instead of the
stored one), and their false captions join the batch as extra texts with no image. The loss then
asks each such image to prefer its caption over, among others, the same words with the colours or
the places swapped (``model/loss.py``, extra texts).

``--swapped-images F`` (``twin_fraction``) also DRAWS the place-swapped scene of a share F of the
two-object images: an extra image captioned with the place-swapped caption (``batch_with_twins``).
``--swapped-colours F`` (``colour_twin_fraction``) draws the colour-swapped scenes likewise: each
caption that binds colours to shapes must then pick its own image over its colour-swapped twin.

Until 2026-11-29 a two-object image got ONE of its two negatives, at random
(``every_kind=False``): a quarter of the place swaps were never shown, and the relation test
stayed near chance (docs/toy_world_experiments.md). Hard negatives are on by default since then
(``wants_hard_negatives``).
"""

from __future__ import annotations

import numpy as np

from miniclip.datasets.negatives import caption_pair, caption_pairs

SEED_TAG = 7  # the pairs are drawn from (seed, SEED_TAG, image index)
SINGLE_FRACTION = 0.3  # of the one-object images get a shape-swapped negative


class HardNegatives:
    """Per training image: its true caption and 0, 1 or 2 false ones, tokenized.

    tokens: (n_pairs, T) the captions to train with: the stored ones, with the images that have
    negatives re-captioned with their true caption. negative_tokens: (M, T) every false caption,
    image by image; those of image i are rows offsets[i]:offsets[i + 1].
    every_kind: a two-object image gets both its colour swap and its place swap (True, the
    default) or one of them at random (False, the behaviour before 2026-11-29).
    single_fraction: this share of the one-object images get a shape-swapped false caption
    (``--shape-negatives``; the same draws for every share, so a larger share adds images).
    twin_fraction: this share of the two-object images with a place swap get it DRAWN
    (``--swapped-images``): the scene with the two objects' places exchanged becomes an extra
    image of the batch, captioned with the place-swapped caption, which is then a true caption
    and no longer an extra text. Its original's caption is then a hard negative for it, and
    each caption must also pick its own image over the other (text -> image).
    colour_twin_fraction: the same for the colour swaps (``--swapped-colours``). An image with
    both drawn has two twins: rows twin_offsets[i]:twin_offsets[i + 1], the place swap first.
    """

    def __init__(self, split, tokens: np.ndarray, tokenizer, seed: int, world=None,
                 every_kind: bool = True, twin_fraction: float = 0.0,
                 toy_world: str = "classic", single_fraction: float = SINGLE_FRACTION,
                 colour_twin_fraction: float = 0.0):
        if world is not None:  # train/distributed.py: each process would need its own share
            raise ValueError("--hard-negatives works in one process: it cannot be combined with "
                             "--distributed yet")
        self.kinds: dict[str, int] = {}
        self.twin_kinds: dict[str, int] = {}  # drawn twins per kind of swap
        rows, trues, falses = [], [], []
        twin_rows, twin_images, twin_captions = [], [], []
        counts = np.zeros(len(split), dtype=np.int64)  # false captions per image
        pick = np.random.default_rng([seed, SEED_TAG]).random(len(split)) < single_fraction
        draw_twin = {
            "relation": np.random.default_rng([seed, SEED_TAG, 2]).random(len(split)) < twin_fraction,
            "binding": (np.random.default_rng([seed, SEED_TAG, 3]).random(len(split))
                        < colour_twin_fraction)}
        for i in np.flatnonzero((split.n_objects == 2) | pick):
            i = int(i)
            seed_i = [seed, SEED_TAG, i]
            if every_kind:
                pairs = caption_pairs(split.objects(i), seed=seed_i)
            else:
                pair = caption_pair(split.objects(i), seed=seed_i)
                pairs = [] if pair is None else [pair]
            if not pairs:
                continue
            rows.append(i)
            trues.append(pairs[0].true)  # the same true caption for every pair of a scene
            for pair in pairs:
                self.kinds[pair.kind] = self.kinds.get(pair.kind, 0) + 1
                if pair.kind in draw_twin and draw_twin[pair.kind][i]:  # drawn: a true pair
                    twin_rows.append(i)
                    self.twin_kinds[pair.kind] = self.twin_kinds.get(pair.kind, 0) + 1
                    twin_images.append(_draw_swapped(split, i, seed, toy_world, pair.kind))
                    twin_captions.append(pair.negative)
                    continue
                falses.append(pair.negative)
                counts[i] += 1
        self.has_negative = np.zeros(len(split), dtype=bool)
        self.has_negative[rows] = True
        self.offsets = np.concatenate([[0], np.cumsum(counts)])  # (n_pairs + 1,)
        self.tokens = tokens.copy()
        self.negative_tokens = np.zeros((len(falses), tokens.shape[1]), dtype=tokens.dtype)
        if rows:
            self.tokens[rows] = tokenizer.tokenize(trues)
            self.negative_tokens[:] = tokenizer.tokenize(falses)
        # twins: rows twin_offsets[i]:twin_offsets[i + 1] of twin_images are image i's scene with
        # the two objects' places (and then colours) swapped, those drawn
        self.twin_offsets = np.concatenate(
            [[0], np.cumsum(np.bincount(np.array(twin_rows, dtype=np.int64),
                                        minlength=len(split)))])  # (n_pairs + 1,)
        r = split.images.shape[1]
        self.twin_images = (np.stack(twin_images) if twin_images
                            else np.zeros((0, r, r, 3), np.uint8))  # (M2, R, R, 3)
        self.twin_tokens = (tokenizer.tokenize(twin_captions) if twin_captions
                            else np.zeros((0, tokens.shape[1]), tokens.dtype))

    def batch(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """-> (captions (B, T), extra false captions (K, T)) for the images ``idx``: the false
        captions of idx[0], then those of idx[1], ..."""
        return self.tokens[idx], self.negative_tokens[_rows_of(self.offsets, idx)]

    def batch_with_twins(self, idx: np.ndarray, images: np.ndarray):
        """-> (images (B + M, R, R, 3), captions (B + M, T), extra false captions (K, T)): the
        batch's images followed by the drawn twins of those that have any (place swap, then
        colour swap), each twin captioned with its scene's true caption (its original's
        swapped negative)."""
        tokens, extra = self.batch(idx)
        which = _rows_of(self.twin_offsets, idx)
        return (np.concatenate([images, self.twin_images[which]]),
                np.concatenate([tokens, self.twin_tokens[which]]), extra)

    def describe(self) -> str:
        kinds = ", ".join(f"{n:,} {k}" for k, n in sorted(self.kinds.items()))
        return (f"hard negatives for {int(self.has_negative.sum()):,} training images: "
                f"{len(self.negative_tokens):,} false captions ({kinds})"
                + "".join(f", {self.twin_kinds[kind]:,} {word}-swapped twin images"
                          for kind, word in (("relation", "place"), ("binding", "colour"))
                          if kind in self.twin_kinds))


def _rows_of(offsets: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The rows offsets[i]:offsets[i + 1] of every i in idx, one after the other -> (K,) int.

    >>> _rows_of(np.array([0, 2, 2, 5]), np.array([2, 0]))
    array([2, 3, 4, 0, 1])
    """
    counts = offsets[idx + 1] - offsets[idx]  # (B,)
    firsts = np.repeat(offsets[idx], counts)  # (K,) the first row of each row's image
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return firsts + within


def _draw_swapped(split, i: int, seed: int, toy_world: str = "classic",
                  kind: str = "relation") -> np.ndarray:
    """Training image i's two objects with their places swapped (kind "relation") or their
    colours swapped (kind "binding"), drawn as the training set is (draw.py, or draw_varied.py
    for the varied world, each object then turned and proportioned anew within its shape's
    ranges), on a new background, colours jittered anew -> uint8 (R, R, 3)."""
    from dataclasses import replace

    from miniclip.datasets import variety
    from miniclip.datasets.attributes import SHAPES
    from miniclip.datasets.draw import make_background, render_image
    from miniclip.datasets.negatives import swap_colours, swap_places
    from miniclip.datasets.scenes import COLOUR_JITTER, jittered_rgb
    from miniclip.datasets.storage import SUPERSAMPLE

    swap, tag = {"relation": (swap_places, 1), "binding": (swap_colours, 2)}[kind]
    rng = np.random.default_rng([seed, SEED_TAG, i, tag])
    r = split.images.shape[1]
    swapped = swap(split.objects(i))
    if toy_world == "varied":
        from miniclip.datasets.draw_varied import draw_varied_scene

        looked = [replace(obj, rgb=jittered_rgb(rng, obj.colour, variety.COLOUR_JITTER),
                          look=variety.sample_look(rng, SHAPES[obj.shape])) for obj in swapped]
        return draw_varied_scene(rng, looked, r, SUPERSAMPLE)
    drawn = []
    for obj in swapped:
        rgb = np.clip(np.array(obj.rgb) + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3), 0,
                      255)
        drawn.append((SHAPES[obj.shape], tuple(int(v) for v in rgb), obj.cx, obj.cy, obj.side))
    return render_image(drawn, make_background(rng, r), r)


def wants_hard_negatives(args, world=None) -> bool:
    """--hard-negatives as given, or where it is None (the default): on for the toy world with
    the 'clip' loss, float32 and one process, and not when fine-tuning (--init)."""
    from miniclip.datasets.sources import own_data_kind

    if args.hard_negatives is not None:
        return args.hard_negatives
    return (args.loss == "clip" and args.precision == "fp32" and world is None
            and args.init is None and own_data_kind(args.data) is None)


def hard_negatives_for(args, world, split, tokens, tokenizer, log,
                       toy_world: str = "classic") -> HardNegatives | None:
    """The run's HardNegatives (logged), or None where ``wants_hard_negatives`` says no; a
    ValueError for --swapped-images or --shape-negatives without hard negatives."""
    if not wants_hard_negatives(args, world):
        off = ("the hard negatives, which are off in this run (--no-hard-negatives, --loss "
               "siglip, --precision bf16/fp16, --distributed, --init or your own data)")
        if args.swapped_images:
            raise ValueError(f"--swapped-images {args.swapped_images:g} draws the place swaps of "
                             + off)
        if args.swapped_colours:
            raise ValueError(f"--swapped-colours {args.swapped_colours:g} draws the colour swaps "
                             "of " + off)
        if args.shape_negatives is not None:
            raise ValueError(f"--shape-negatives {args.shape_negatives:g} is a share of " + off)
        return None
    single = SINGLE_FRACTION if args.shape_negatives is None else args.shape_negatives
    negatives = HardNegatives(split, tokens, tokenizer, args.seed, world,
                              twin_fraction=args.swapped_images, toy_world=toy_world,
                              single_fraction=single,
                              colour_twin_fraction=args.swapped_colours)
    log(f"  {negatives.describe()}")
    return negatives


def check_hard_negative_args(args) -> None:
    """--hard-negatives needs the toy world (scenes to alter), the 'clip' loss (a softmax over
    more texts than images) and float32 (the mixed-precision step takes no extra texts)."""
    from miniclip.datasets.sources import own_data_kind

    if args.loss != "clip":
        raise ValueError(f"--hard-negatives needs --loss clip, got --loss {args.loss}")
    if args.precision != "fp32":
        raise ValueError(f"--hard-negatives needs --precision fp32, got {args.precision}")
    if own_data_kind(args.data) is not None:
        raise ValueError(f"--hard-negatives needs the toy dataset (its scenes are altered to "
                         f"make the false captions), got --data {args.data}")
