"""`python -m miniclip.train --world varied`: the varied world's recipe for what is not given,
a missing dataset generated in that world at the model's resolution, the other world refused."""

import json

import pytest

from miniclip.train.args import WORLD_DEFAULTS, TrainArgs, check_args, with_world_defaults
from miniclip.train.cli import main
from miniclip.train.data import prepare_dataset


def quiet(*_args, **_kwargs):
    pass


def test_the_recipe_fills_in_only_what_was_not_given():
    assert with_world_defaults({}) == {}  # no --world: the usual defaults
    assert with_world_defaults({"world": "classic", "steps": 5}) == {"world": "classic", "steps": 5}
    varied = with_world_defaults({"world": "varied", "steps": 7})
    assert varied == {**WORLD_DEFAULTS["varied"], "world": "varied", "steps": 7}
    assert varied["model"] == "toy-64" and varied["swapped_images"] == 1.0


@pytest.mark.parametrize("given", [{"hard_negatives": False}, {"loss": "siglip"},
                                   {"precision": "bf16"}])
def test_the_drawn_swaps_are_left_out_where_hard_negatives_are_off(given):
    merged = with_world_defaults({"world": "varied", **given})
    assert merged["swapped_images"] == 0.0 and merged["model"] == "toy-64"
    check_args(TrainArgs(**merged))  # a consistent run, not an error about --swapped-images
    assert with_world_defaults({"world": "varied"}, distributed=True)["swapped_images"] == 0.0
    # typed by the user, they stay (and the run says why they cannot be drawn)
    assert with_world_defaults({"world": "varied", "swapped_images": 0.5, **given}
                               )["swapped_images"] == 0.5


def test_bad_world_names_the_flag():
    with pytest.raises(ValueError, match="--world must be one of"):
        check_args(TrainArgs(world="wild"))
    with pytest.raises(ValueError, match="--world varied: only for the toy dataset"):
        check_args(TrainArgs(world="varied", data="pairs.csv"))


def test_a_missing_folder_is_generated_in_the_world_and_resolution_asked(tmp_path):
    meta = prepare_dataset(tmp_path / "v", 40, quiet, world="varied", resolution=32)
    assert meta["world"] == "varied" and meta["resolution"] == 32
    assert prepare_dataset(tmp_path / "v", None, quiet, world="varied")["world"] == "varied"
    assert prepare_dataset(tmp_path / "v", None, quiet)["world"] == "varied"  # read as it is
    with pytest.raises(ValueError, match="--world classic: the dataset in .* is the varied world"):
        prepare_dataset(tmp_path / "v", None, quiet, world="classic")


def test_cli_trains_the_varied_recipe_end_to_end(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "run"
    code = main(["--world", "varied", "--data", str(data), "--n-train", "64", "--steps", "2",
                 "--batch-size", "16", "--eval-every", "0", "--out", str(out), "--no-progress"])
    assert code == 0
    meta = json.loads((data / "meta.json").read_text())
    assert meta["world"] == "varied" and meta["resolution"] == 64  # toy-64's images
    from miniclip.pretrained.checkpoint import load_checkpoint

    saved = load_checkpoint(out / "checkpoint.safetensors").train_args
    assert saved["world"] == "varied" and saved["model"] == "toy-64"
    assert saved["swapped_images"] == 1.0 and saved["batch_size"] == 16  # given wins
    assert "place-swapped twin images" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "toy-64" and 0.0 <= metrics["renderer_shift_top1_seen"] <= 1.0
