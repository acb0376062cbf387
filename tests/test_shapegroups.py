"""--shape-groups: batches whose one-object images come in groups alike but for the shape
(train/shapegroups.py). The batch keeps its size and its two-object images; each group shares
colour, size and place and has no shape twice; the draw depends on (seed, step) alone."""

from types import SimpleNamespace

import numpy as np
import pytest

from miniclip.train import shapegroups
from miniclip.train.data import batch_indices
from miniclip.train.loop import TrainArgs, train
from miniclip.train.shapegroups import ShapeGroups


def _split(n=3000, seed=0):
    """A stand-in for a ToySplit: the attributes ShapeGroups reads, drawn at random (30% of the
    images with two objects, as in the toy world)."""
    rng = np.random.default_rng(seed)
    n_objects = np.where(rng.random(n) < 0.3, 2, 1).astype(np.int8)

    def attribute(high):
        values = rng.integers(0, high, (n, 2)).astype(np.int8)
        values[n_objects == 1, 1] = -1
        return values

    return SimpleNamespace(n_objects=n_objects, colour=attribute(8), size=attribute(2),
                           position=attribute(9), shape=attribute(8))


@pytest.mark.parametrize("share", [0.0, 0.5, 0.75, 1.0])
def test_a_grouped_batch_keeps_its_size_and_its_two_object_images(share):
    split = _split()
    groups = ShapeGroups(split, share)
    for step in range(5):
        drawn = batch_indices(step, len(split.n_objects), 128, seed=3)
        batch = groups.batch(drawn, step, seed=3)
        assert batch.shape == drawn.shape and len(set(batch.tolist())) == len(batch)
        two = drawn[split.n_objects[drawn] == 2]
        np.testing.assert_array_equal(batch[:len(two)], two)  # first, in their order
        singles = len(drawn) - len(two)
        n_grouped = int(share * singles) // 4 * 4
        grouped = batch[len(two):len(two) + n_grouped].reshape(-1, 4)
        for group in grouped:
            for attribute in (split.colour, split.size, split.position):
                assert len(set(attribute[group, 0].tolist())) == 1  # alike
            assert len(set(split.shape[group, 0].tolist())) == 4  # but for the shape
            assert (split.n_objects[group] == 1).all()
        rest = batch[len(two) + n_grouped:]  # the permutation's own one-object images
        assert np.isin(rest, drawn).all() and (split.n_objects[rest] == 1).all()
        if share == 0.0:
            assert sorted(batch.tolist()) == sorted(drawn.tolist())


def test_the_groups_depend_on_seed_and_step_only():
    split = _split()
    drawn = batch_indices(7, len(split.n_objects), 64, seed=1)
    a = ShapeGroups(split, 1.0).batch(drawn, 7, seed=1)
    np.testing.assert_array_equal(a, ShapeGroups(split, 1.0).batch(drawn, 7, seed=1))
    np.testing.assert_array_equal(  # what the training loop asks for
        a, batch_indices(7, len(split.n_objects), 64, 1, shape_groups=ShapeGroups(split, 1.0)))
    assert not np.array_equal(a, ShapeGroups(split, 1.0).batch(drawn, 8, seed=1))
    assert not np.array_equal(a, ShapeGroups(split, 1.0).batch(drawn, 7, seed=2))


def test_bad_shares_and_splits_are_refused():
    with pytest.raises(ValueError, match=r"share must be in \[0, 1\], got 1.5"):
        ShapeGroups(_split(), 1.5)
    with pytest.raises(ValueError, match="group_size must be at least 2, got 1"):
        ShapeGroups(_split(), 0.5, group_size=1)
    few = _split(n=40)  # about one image per colour, size and place
    n_one = int((few.n_objects == 1).sum())
    with pytest.raises(ValueError, match=f"--shape-groups 0.5: no colour, size and place among "
                                         f"the {n_one} one-object training images has 4 shapes"):
        ShapeGroups(few, 0.5)


def test_shape_groups_flag():
    from miniclip.train.args import build_parser, check_args

    assert build_parser().parse_args(["--shape-groups", "0.75"]).shape_groups == 0.75
    assert TrainArgs().shape_groups == 0.0
    with pytest.raises(ValueError, match=r"--shape-groups must be a number in \[0, 1\], got -1"):
        check_args(TrainArgs(shape_groups=-1))
    with pytest.raises(ValueError, match="--shape-groups: only for the toy dataset; --data "
                                         "pairs.csv is your own data"):
        check_args(TrainArgs(shape_groups=0.5, data="pairs.csv"))


def test_training_with_shape_groups(tiny_data, tmp_path, monkeypatch):
    """On the tiny dataset no colour, size and place has 4 shapes: a clear error before the run
    folder is made; with groups of 2 it trains, and the log says how batches are drawn."""
    args = TrainArgs(data=str(tiny_data), out=str(tmp_path / "run"), model="toy-tiny", steps=3,
                     batch_size=16, warmup=1, eval_every=0, checkpoint_every=3, log_every=1,
                     shape_groups=1.0)
    with pytest.raises(ValueError, match=r"train on more images \(--n-train\) or with "
                                         "--shape-groups 0"):
        train(args, progress=False, final_eval=False, log=lambda *a: None)
    assert not (tmp_path / "run").exists()
    monkeypatch.setattr(shapegroups, "GROUP_SIZE", 2)
    lines = []
    summary = train(args, progress=False, final_eval=False, log=lines.append)
    assert summary["steps"] == 3 and np.isfinite(summary["final_loss"])
    assert any("drawn in groups of 2 alike in colour, size and place" in line for line in lines)
