"""The varied world (`generate --world varied`, dataset version 3) is opt-in: the default
dataset stays version 2; a varied one keeps to the documented ranges and says so in meta.json."""

import json

import numpy as np
import pytest

from miniclip.datasets import SIZES, DatasetError, ensure_dataset, generate_dataset, load_split
from miniclip.datasets.__main__ import main as cli_main
from miniclip.datasets.variety import BACKGROUND_RANGE, SIZE_RANGES

SMALL = dict(n_train=300, n_val=10, n_test=48, n_heldout=8, workers=1, progress=False)


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    out = tmp_path_factory.mktemp("varied") / "toy"
    generate_dataset(out, world="varied", **SMALL)
    return out


def test_meta_says_version_3_and_varied(varied, tiny_data):
    meta = json.loads((varied / "meta.json").read_text())
    assert meta["version"] == 3 and meta["world"] == "varied"
    default = json.loads((tiny_data / "meta.json").read_text())
    assert default["version"] == 2 and "world" not in default  # the default world: unchanged


def test_sizes_are_continuous_within_the_documented_ranges(varied):
    train = load_split(varied, "train")
    present = train.size >= 0
    sides = (train.box[..., 2] - train.box[..., 0])[present]
    r = train.images.shape[1]
    for size, name in enumerate(SIZES):
        low, high = SIZE_RANGES[name]
        these = sides[train.size[present] == size]
        assert low * r - 1e-9 <= these.min() and these.max() <= high * r + 1e-9
        assert np.ptp(these) > 0.5 * (high - low) * r  # spread over the range, not two values


def test_pixels_far_from_every_box_are_background(varied):
    train = load_split(varied, "train")
    r = train.images.shape[1]
    yy, xx = np.mgrid[0:r, 0:r] + 0.5
    for i in range(60):
        far = np.ones((r, r), bool)
        for slot in range(int(train.n_objects[i])):
            x0, y0, x1, y1 = train.box[i, slot]
            far &= ~((xx >= x0 - 2) & (xx <= x1 + 2) & (yy >= y0 - 2) & (yy <= y1 + 2))
        assert train.images[i][far].max() <= BACKGROUND_RANGE[1] + 1, (i, train.captions[i])


def test_the_world_is_checked(varied, tmp_path):
    with pytest.raises(ValueError, match="world must be one of"):
        generate_dataset(tmp_path / "x", world="wild", **SMALL)
    sizes = dict(n_train=300, n_val=10, n_test=48, n_heldout=8)
    assert ensure_dataset(varied, **sizes)["world"] == "varied"  # read as it is when not asked
    with pytest.raises(DatasetError, match="world"):
        ensure_dataset(varied, world="classic", **sizes)
    meta = json.loads((varied / "meta.json").read_text())
    edited = tmp_path / "edited"
    edited.mkdir()
    for f in varied.iterdir():
        (edited / f.name).write_bytes(f.read_bytes())
    (edited / "meta.json").write_text(json.dumps({**meta, "world": None}))  # v3 without a world
    with pytest.raises(DatasetError, match="version 3"):
        load_split(edited, "train")


def test_cli_generates_the_varied_world(tmp_path, capsys):
    assert cli_main(["generate", "--out", str(tmp_path / "v"), "--world", "varied",
                     "--n-train", "20", "--n-val", "0", "--n-test", "0", "--n-heldout", "0",
                     "--workers", "1"]) in (0, None)
    assert json.loads((tmp_path / "v" / "meta.json").read_text())["world"] == "varied"
