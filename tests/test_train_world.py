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
    assert varied["model"] == "toy-64-stem" and varied["swapped_images"] == 1.0
    assert varied["shape_negatives"] == 1.0 and varied["swapped_colours"] == 1.0
    assert varied["shape_groups"] == 0.75 and varied["temperature"] == 0.03


def test_a_fine_tune_keeps_its_models_temperature():
    """--init starts from that model's temperature: the recipe's 0.03 is not added (it would
    be an error), while one typed on the command line is kept and refused by check_args."""
    merged = with_world_defaults({"world": "varied", "init": "runs/toy-64-stem"})
    assert merged["temperature"] is None
    check_args(TrainArgs(**merged))
    typed = with_world_defaults({"world": "varied", "init": "m.safetensors", "temperature": 0.05})
    with pytest.raises(ValueError, match="--temperature sets a new model's starting"):
        check_args(TrainArgs(**typed))


@pytest.mark.parametrize("given", [{"hard_negatives": False}, {"loss": "siglip"},
                                   {"precision": "bf16"}])
def test_the_drawn_swaps_are_left_out_where_hard_negatives_are_off(given):
    merged = with_world_defaults({"world": "varied", **given})
    assert merged["swapped_images"] == merged["swapped_colours"] == 0.0
    assert merged["model"] == "toy-64-stem" and merged["shape_negatives"] is None
    assert merged["shape_groups"] == 0.75  # no hard negatives needed
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
    # 1200 images: enough one-object images of each colour, size and place for shape groups
    code = main(["--world", "varied", "--data", str(data), "--n-train", "1200", "--steps", "2",
                 "--batch-size", "16", "--eval-every", "0", "--out", str(out), "--no-progress"])
    assert code == 0
    meta = json.loads((data / "meta.json").read_text())
    assert meta["world"] == "varied" and meta["resolution"] == 64  # toy-64-stem's images
    from miniclip.pretrained.checkpoint import load_checkpoint

    saved = load_checkpoint(out / "checkpoint.safetensors").train_args
    assert saved["world"] == "varied" and saved["model"] == "toy-64-stem"
    assert saved["swapped_images"] == 1.0 and saved["batch_size"] == 16  # given wins
    assert saved["shape_negatives"] == saved["swapped_colours"] == 1.0
    assert saved["shape_groups"] == 0.75 and saved["temperature"] == 0.03
    assert saved["augment"] is False and saved["steps"] == 2
    printed = capsys.readouterr().out
    assert "place-swapped twin images" in printed and "colour-swapped twin images" in printed
    assert "shape groups: 75% of each batch's one-object images" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "toy-64-stem" and 0.0 <= metrics["renderer_shift_top1_seen"] <= 1.0


@pytest.fixture(scope="module")
def varied_split(tmp_path_factory):
    from miniclip.datasets import generate_dataset, load_split

    out = tmp_path_factory.mktemp("varied") / "toy"
    generate_dataset(out, world="varied", n_train=120, n_val=0, n_test=0, n_heldout=0,
                     workers=1, progress=False)
    return load_split(out, "train")


@pytest.mark.parametrize("toy_world", ["classic", "varied"])
def test_place_swapped_twins_are_drawn_in_the_datasets_world(varied_split, toy_world,
                                                             monkeypatch):
    import numpy as np

    from miniclip.datasets import draw_varied
    from miniclip.datasets.negatives import swap_places
    from miniclip.train import hardneg

    calls = []
    original = draw_varied.draw_varied_scene

    def recording(rng, objects, resolution, supersample=4):
        calls.append(objects)
        return original(rng, objects, resolution, supersample)

    monkeypatch.setattr(draw_varied, "draw_varied_scene", recording)
    i = int(np.flatnonzero(varied_split.n_objects == 2)[0])
    twin = hardneg._draw_swapped(varied_split, i, seed=0, toy_world=toy_world)
    swapped = swap_places(varied_split.objects(i))
    if toy_world == "varied":  # turned and proportioned anew, in the swapped boxes
        assert len(calls) == 1 and all(o.look is not None for o in calls[0])
        assert [o.box for o in calls[0]] == [o.box for o in swapped]
    else:
        assert calls == []
    inside = np.zeros(twin.shape[:2], dtype=bool)
    for obj in swapped:  # every object is drawn in its new box; the rest is background
        x0, y0, x1, y1 = (int(round(v)) for v in obj.box)
        inside[max(y0 - 1, 0):y1 + 1, max(x0 - 1, 0):x1 + 1] = True
        assert twin[max(y0, 0):y1, max(x0, 0):x1].max() > 100
    assert twin[~inside].max() <= 80
