"""Batches that ask for the shape (``--shape-groups F``).

In a batch drawn at random, an image's caption is told apart from the others mostly by colour and
place: another caption with the same colour, size and place words, differing only in the shape,
turns up about once per batch. The contrastive loss then has little reason to put the shape into
the image embedding, and the varied world's shapes are learned slowly
(docs/toy_world_experiments.md).

``--shape-groups F`` draws a share F of each batch's one-object images as groups of GROUP_SIZE
images alike in colour, size and place, each of another shape ("a small red circle in the upper
left", "a small red square in the upper left", ...). Within a group, only the shape tells the
captions apart. The batch keeps its size and its two-object images, whose binding and relation
negatives come from ``hardneg.py``.

Which images are drawn depends only on (seed, step), so a resumed run draws the same batches.
"""

from __future__ import annotations

import numpy as np

GROUP_SIZE = 4  # one-object images per group, each of another shape
SEED_TAG = 11  # the groups of batch `step` are drawn from (seed, SEED_TAG, step)


class ShapeGroups:
    """The training split's one-object images sorted by (colour, size, place) and then by shape.

    share: the share of each batch's one-object images drawn in groups, in [0, 1]; the count is
    rounded down to whole groups. group_size: images per group (2 or more; None: GROUP_SIZE).
    """

    def __init__(self, split, share: float, group_size: int | None = None):
        group_size = GROUP_SIZE if group_size is None else group_size
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be in [0, 1], got {share!r}")
        if group_size < 2:
            raise ValueError(f"group_size must be at least 2, got {group_size!r}")
        self.share, self.group_size = float(share), int(group_size)
        self.two_objects = np.asarray(split.n_objects) == 2  # (n_pairs,) bool
        one = np.flatnonzero(~self.two_objects)
        by_key: dict[tuple, dict[int, list[int]]] = {}
        for i, colour, size, place, shape in zip(one, split.colour[one, 0], split.size[one, 0],
                                                  split.position[one, 0], split.shape[one, 0],
                                                  strict=True):
            key = (int(colour), int(size), int(place))
            by_key.setdefault(key, {}).setdefault(int(shape), []).append(int(i))
        # only the keys with enough shapes to fill a group; per key: one index array per shape
        self.keys = [{shape: np.array(rows) for shape, rows in shapes.items()}
                     for _, shapes in sorted(by_key.items()) if len(shapes) >= group_size]
        if not self.keys:
            raise ValueError(f"--shape-groups {share:g}: no colour, size and place among the "
                             f"{len(one)} one-object training images has {group_size} shapes to "
                             "make a group of; train on more images (--n-train) or with "
                             "--shape-groups 0")

    def describe(self) -> str:
        return (f"shape groups: {self.share:.0%} of each batch's one-object images drawn in "
                f"groups of {self.group_size} alike in colour, size and place "
                f"({len(self.keys)} such kinds of image)")

    def batch(self, drawn: np.ndarray, step: int, seed: int) -> np.ndarray:
        """drawn (B,) int: the batch the permutation drew (``data.batch_indices``) -> (B,) int:
        its two-object images, then the groups, then as many of its other one-object images as
        keep the size B."""
        drawn = np.asarray(drawn)
        is_two = self.two_objects[drawn]
        singles = drawn[~is_two]
        n_groups = int(self.share * len(singles)) // self.group_size
        rng = np.random.default_rng([seed, SEED_TAG, step])
        grouped = []
        for k in rng.choice(len(self.keys), size=min(n_groups, len(self.keys)), replace=False):
            shapes = self.keys[k]
            for shape in rng.choice(sorted(shapes), size=self.group_size, replace=False):
                grouped.append(int(rng.choice(shapes[int(shape)])))
        rest = singles[~np.isin(singles, grouped)][:len(singles) - len(grouped)]
        return np.concatenate([drawn[is_two], np.array(grouped, dtype=drawn.dtype), rest])


def shape_groups_for(args, split, log) -> ShapeGroups | None:
    """The run's ShapeGroups (logged), or None without --shape-groups or without the toy world's
    split (your own data, refused earlier by check_args)."""
    if not args.shape_groups or split is None:
        return None
    groups = ShapeGroups(split, args.shape_groups)
    log("  " + groups.describe())
    return groups
