"""Hard negatives in training (``--hard-negatives``): for every two-object training image (colours
or places swapped), and for SINGLE_FRACTION of the one-object images (another shape), a true
caption and a minimally changed false one (``miniclip.datasets.negatives``), written once at setup.

In a batch, the images that have a pair are captioned with its true caption (instead of the stored
one), and their false captions join the batch as extra texts with no image. The loss then asks
each such image to prefer its caption over, among others, the same words with the colours or the
places swapped (``model/loss.py``, extra texts).
"""

from __future__ import annotations

import numpy as np

from miniclip.datasets.negatives import caption_pair

SEED_TAG = 7  # the pairs are drawn from (seed, SEED_TAG, image index)
SINGLE_FRACTION = 0.3  # of the one-object images get a shape-swapped negative


class HardNegatives:
    """Per training image: maybe a (true, false) caption pair, tokenized.

    tokens: (n_pairs, T) the captions to train with: the stored ones, with the images that have
    a pair re-captioned with its true caption. negatives: (n_pairs, T), meaningful where
    ``has_negative``.
    """

    def __init__(self, split, tokens: np.ndarray, tokenizer, seed: int, world=None):
        if world is not None:  # train/distributed.py: each process would need its own share
            raise ValueError("--hard-negatives works in one process: it cannot be combined with "
                             "--distributed yet")
        self.has_negative = np.zeros(len(split), dtype=bool)
        self.kinds: dict[str, int] = {}
        rows, trues, falses = [], [], []
        pick = np.random.default_rng([seed, SEED_TAG]).random(len(split)) < SINGLE_FRACTION
        for i in np.flatnonzero((split.n_objects == 2) | pick):
            pair = caption_pair(split.objects(int(i)), seed=[seed, SEED_TAG, int(i)])
            if pair is None:
                continue
            rows.append(int(i))
            trues.append(pair.true)
            falses.append(pair.negative)
            self.kinds[pair.kind] = self.kinds.get(pair.kind, 0) + 1
        self.tokens = tokens.copy()
        self.negatives = np.zeros_like(tokens)
        if rows:
            self.tokens[rows] = tokenizer.tokenize(trues)
            self.negatives[rows] = tokenizer.tokenize(falses)
            self.has_negative[rows] = True

    def batch(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """-> (captions (B, T), extra false captions (K, T)) for the images ``idx``."""
        return self.tokens[idx], self.negatives[idx[self.has_negative[idx]]]

    def describe(self) -> str:
        kinds = ", ".join(f"{n:,} {k}" for k, n in sorted(self.kinds.items()))
        return f"hard negatives for {int(self.has_negative.sum()):,} training images ({kinds})"


def check_hard_negative_args(args) -> None:
    """--hard-negatives needs the toy world (scenes to alter), the 'clip' loss (a softmax over
    more texts than images) and float32 (the mixed-precision step takes no extra texts)."""
    from miniclip.datasets.csv_pairs import CSV_SUFFIXES
    from miniclip.datasets.shards import is_shard_spec

    if args.loss != "clip":
        raise ValueError(f"--hard-negatives needs --loss clip, got --loss {args.loss}")
    if args.precision != "fp32":
        raise ValueError(f"--hard-negatives needs --precision fp32, got {args.precision}")
    if str(args.data).endswith(CSV_SUFFIXES) or is_shard_spec(args.data):
        raise ValueError(f"--hard-negatives needs the toy dataset (its scenes are altered to "
                         f"make the false captions), got --data {args.data}")
