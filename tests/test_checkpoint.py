"""Checkpoints: round trip, atomic writes, and a clear error for every way a file can be bad."""

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from miniclip.model.clip import CLIP
from miniclip.model.config import CONFIGS, CLIPConfig
from miniclip.pretrained.checkpoint import (
    CheckpointError,
    ModelTokenizer,
    ToyPreprocess,
    atomic_write,
    is_trained_checkpoint,
    load_checkpoint,
    load_trained,
    save_checkpoint,
)
from miniclip.text.bpe import BPETokenizer
from miniclip.train.optim import AdamW

CFG = CONFIGS["tiny"]
MEAN, STD = [0.1, 0.2, 0.3], [0.25, 0.25, 0.5]


def make_checkpoint(path, cfg=CFG, with_optimizer=True):
    model = CLIP(cfg, seed=0)
    opt = AdamW(model.params)
    grads = {k: np.ones_like(v) for k, v in model.params.items()}
    opt.step(grads)
    tok = BPETokenizer.train(["a red circle", "a blue square"], vocab_size=520)
    rng_state = np.random.default_rng(5).bit_generator.state
    save_checkpoint(path, cfg, model.params, step=1,
                    optimizer=opt.state_dict() if with_optimizer else None,
                    rng_state=rng_state, tokenizer=tok.to_dict(),
                    data={"resolution": cfg.image_resolution, "mean": MEAN, "std": STD},
                    train_args={"lr": 1e-3}, extra={"train_seconds": 1.5})
    return model, opt, rng_state


def test_round_trip_keeps_everything(tmp_path):
    path = tmp_path / "ckpt.npz"
    model, opt, rng_state = make_checkpoint(path)
    ckpt = load_checkpoint(path)
    assert ckpt.config == CFG and ckpt.step == 1
    assert list(ckpt.params) == list(model.params)
    for k in model.params:
        assert np.array_equal(ckpt.params[k], model.params[k])
        assert ckpt.params[k].dtype == np.float32
        assert np.array_equal(ckpt.optimizer["m"][k], opt.m[k])
        assert np.array_equal(ckpt.optimizer["v"][k], opt.v[k])
    assert ckpt.optimizer["t"] == 1
    assert ckpt.rng_state == rng_state
    rng = np.random.default_rng()
    rng.bit_generator.state = ckpt.rng_state  # the saved state is usable as is
    assert rng.random() == np.random.default_rng(5).random()
    assert ckpt.train_args == {"lr": 1e-3} and ckpt.extra == {"train_seconds": 1.5}


def test_file_opens_without_pickle(tmp_path):
    path = tmp_path / "ckpt.npz"
    make_checkpoint(path)
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta.json"]))
        assert meta["format"] == "miniclip-checkpoint" and "params/visual.proj" in data.files


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "ckpt.npz"
    make_checkpoint(path)
    before = path.read_bytes()

    def failing(f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, failing)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]  # no temporary left


def test_truncated_file_is_reported(tmp_path):
    path = tmp_path / "ckpt.npz"
    make_checkpoint(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_corrupted_bytes_are_reported(tmp_path):
    path = tmp_path / "ckpt.npz"
    make_checkpoint(path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:  # flip bytes inside one weight's stored data
        info = z.getinfo("params/visual.proj.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    data[start:start + 8] = bytes(b ^ 0xFF for b in data[start:start + 8])
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_not_a_zip_or_missing_file(tmp_path):
    path = tmp_path / "ckpt.npz"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.npz")


def test_other_npz_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, x=np.zeros(3))
    with pytest.raises(CheckpointError, match="no 'meta.json' entry"):
        load_checkpoint(path)


def rewrite(path, edit_meta=None, edit_arrays=None):
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["meta.json"]))
    if edit_meta:
        edit_meta(meta)
    arrays["meta.json"] = np.array(json.dumps(meta))
    if edit_arrays:
        edit_arrays(arrays)
    np.savez(path, **arrays)


def test_wrong_version_is_named(tmp_path):
    path = tmp_path / "ckpt.npz"
    make_checkpoint(path)
    rewrite(path, edit_meta=lambda m: m.update(version=99))
    with pytest.raises(CheckpointError, match="version 99 checkpoint; this miniclip reads version 1"):
        load_checkpoint(path)


def test_config_that_does_not_match_the_weights_is_named(tmp_path):
    path = tmp_path / "ckpt.npz"
    make_checkpoint(path)
    rewrite(path, edit_meta=lambda m: m["config"].update(embed_dim=24))
    with pytest.raises(CheckpointError, match=r"weight 'text_projection' has shape \(16, 16\), "
                                              r"the config implies \(16, 24\)"):
        load_checkpoint(path)


def test_missing_and_extra_weights_are_named(tmp_path):
    path = tmp_path / "ckpt.npz"
    make_checkpoint(path)

    def drop(arrays):
        del arrays["params/visual.proj"]
        arrays["params/extra.weight"] = np.zeros(2, np.float32)

    rewrite(path, edit_arrays=drop)
    with pytest.raises(CheckpointError, match=r"missing \['visual.proj'\], unexpected "
                                              r"\['extra.weight'\]"):
        load_checkpoint(path)


def test_invalid_config_and_nan_weights_are_named(tmp_path):
    path = tmp_path / "ckpt.npz"
    make_checkpoint(path)
    rewrite(path, edit_meta=lambda m: m["config"].update(vision_patch_size=3))
    with pytest.raises(CheckpointError, match="model config is not valid.*multiple of"):
        load_checkpoint(path)
    make_checkpoint(path)
    rewrite(path, edit_arrays=lambda a: a["params/visual.proj"].__setitem__((0, 0), np.nan))
    with pytest.raises(CheckpointError, match="'visual.proj' contains NaN or inf"):
        load_checkpoint(path)


def test_optimizer_state_that_does_not_match_is_named(tmp_path):
    path = tmp_path / "ckpt.npz"
    make_checkpoint(path)
    rewrite(path, edit_arrays=lambda a: a.update({"adam_v/visual.proj": np.zeros((2, 2), np.float32)}))
    with pytest.raises(CheckpointError, match="optimizer second moment 'visual.proj' has shape"):
        load_checkpoint(path)


def test_weights_only_checkpoint(tmp_path):
    path = tmp_path / "model.npz"
    make_checkpoint(path, with_optimizer=False)
    ckpt = load_checkpoint(path)
    assert ckpt.optimizer is None
    with np.load(path) as data:
        assert not any(k.startswith("adam_") for k in data.files)


# ---- load_trained ------------------------------------------------------------------------------

def test_load_trained_gives_model_preprocess_tokenizer(tmp_path):
    tok = BPETokenizer.train(["a red circle.", "a blue square on the left."], vocab_size=530)
    cfg = CLIPConfig(**{**CONFIGS["toy-tiny"].to_dict(), "vocab_size": tok.vocab_size})
    model = CLIP(cfg, seed=2)
    save_checkpoint(tmp_path / "model.npz", cfg, model.params, step=3, tokenizer=tok.to_dict(),
                    data={"resolution": 32, "mean": MEAN, "std": STD})
    loaded, preprocess, tokenizer = load_trained(tmp_path)  # a run folder: finds model.npz
    assert isinstance(tokenizer, ModelTokenizer) and tokenizer.merges == tok.merges
    tokens = tokenizer(["a red circle."])
    assert tokens.shape == (1, cfg.context_length)
    np.testing.assert_array_equal(tokens, tok.tokenize(["a red circle."], cfg.context_length))
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    x = preprocess(images)
    assert x.shape == (2, 3, 32, 32) and x.dtype == np.float32
    expected = (images[0, 5, 7] / 255 - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(x[0, :, 5, 7], expected, rtol=1e-5)
    np.testing.assert_array_equal(loaded.encode_image(x), model.encode_image(x))
    np.testing.assert_array_equal(loaded.encode_text(tokens), model.encode_text(tokens))
    # a PIL image of another size is resized; one array image gets a batch axis
    pil = Image.fromarray(np.zeros((64, 48, 3), np.uint8))
    assert preprocess(pil).shape == (1, 3, 32, 32)
    assert preprocess(images[0]).shape == (1, 3, 32, 32)


def test_miniclip_load_opens_a_training_run(tmp_path):
    """The public miniclip.load gives the same triple for a run folder as load_trained."""
    import miniclip

    tok = BPETokenizer.train(["a red circle.", "a blue square."], vocab_size=520)
    cfg = CLIPConfig(**{**CONFIGS["toy-tiny"].to_dict(), "vocab_size": tok.vocab_size})
    model = CLIP(cfg, seed=4)
    save_checkpoint(tmp_path / "model.npz", cfg, model.params, step=1, tokenizer=tok.to_dict(),
                    data={"resolution": 32, "mean": MEAN, "std": STD})
    for path in (tmp_path, tmp_path / "model.npz"):
        loaded, preprocess, tokenizer = miniclip.load(path)
        tokens = tokenizer(["a red circle."])
        np.testing.assert_array_equal(loaded.encode_text(tokens), model.encode_text(tokens))
        assert isinstance(preprocess, ToyPreprocess)


def test_preprocess_resizes_other_sizes_and_rejects_wrong_input():
    pre = ToyPreprocess(32, MEAN, STD)
    assert pre(np.zeros((1, 16, 16, 3), np.uint8)).shape == (1, 3, 32, 32)  # squashed to R x R
    with pytest.raises(ValueError, match=r"uint8 \(N, H, W, 3\), got dtype float32"):
        pre(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(FileNotFoundError, match="image.png"):
        pre("image.png")


def test_load_trained_on_a_folder_without_a_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="without model.safetensors or checkpoint.safetensors"):
        load_trained(tmp_path)


def test_tokenizer_that_does_not_match_the_model_is_named(tmp_path):
    tok = BPETokenizer.train(["a red circle."], vocab_size=520)
    cfg = CONFIGS["toy-tiny"]  # vocab_size 1024 != the tokenizer's
    save_checkpoint(tmp_path / "model.npz", cfg, CLIP(cfg).params, tokenizer=tok.to_dict(),
                    data={"resolution": 32, "mean": MEAN, "std": STD})
    with pytest.raises(CheckpointError, match="the model's vocab_size is 1024"):
        load_trained(tmp_path / "model.npz")


def test_is_trained_checkpoint(tmp_path):
    make_checkpoint(tmp_path / "model.npz", with_optimizer=False)
    assert is_trained_checkpoint(tmp_path) and is_trained_checkpoint(tmp_path / "model.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    (tmp_path / "text.bin").write_bytes(b"not a zip")
    assert not is_trained_checkpoint(tmp_path / "other.npz")
    assert not is_trained_checkpoint(tmp_path / "text.bin")
    assert not is_trained_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert not is_trained_checkpoint(tmp_path / "empty")


# ---- safetensors: the format of runs since issue 12 --------------------------------------------

def test_safetensors_round_trip_and_other_readers(tmp_path):
    """The weights are plain OpenAI-named tensors any safetensors reader opens; the config and
    training state are JSON metadata; miniclip.load reads the same file."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    import miniclip

    path = tmp_path / "ckpt.safetensors"
    model, optimizer, rng_state = make_checkpoint(path)
    ckpt = load_checkpoint(path)
    assert ckpt.step == 1 and ckpt.rng_state == rng_state and ckpt.extra["train_seconds"] == 1.5
    for k, v in model.params.items():
        assert np.array_equal(ckpt.params[k], v), k
        assert np.array_equal(ckpt.optimizer["m"][k], optimizer.m[k]), k
    raw = load_file(path)
    assert np.array_equal(raw["visual.proj"], model.params["visual.proj"])
    assert "adam_m/visual.proj" in raw
    with safe_open(path, "np") as f:
        meta = f.metadata()
    assert json.loads(meta["miniclip_config"]) == CFG.to_dict()
    assert json.loads(meta["meta.json"])["step"] == 1
    assert is_trained_checkpoint(path)
    # a weights-only file (a run's model.safetensors) is also a plain OpenAI-layout weights file
    make_checkpoint(tmp_path / "model.safetensors", with_optimizer=False)
    loaded = miniclip.load_model(tmp_path / "model.safetensors")
    assert loaded.cfg == CFG
    np.testing.assert_array_equal(loaded.params["visual.proj"], model.params["visual.proj"])


def test_safetensors_truncated_or_flipped_bytes_are_reported(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    make_checkpoint(path)
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)
    data[-100:-92] = bytes(b ^ 0xFF for b in data[-100:-92])  # inside the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="do not match the sha256 digest"):
        load_checkpoint(path)


def test_weights_file_is_not_a_checkpoint(tmp_path):
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(3, np.float32)}, tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="not a miniclip checkpoint"):
        load_checkpoint(tmp_path / "w.safetensors")
    assert not is_trained_checkpoint(tmp_path / "w.safetensors")


def test_an_older_runs_npz_files_still_load(tmp_path):
    """Runs written before checkpoints became safetensors: model.npz in the folder."""
    import miniclip

    tok = BPETokenizer.train(["a red circle.", "a blue square."], vocab_size=520)
    cfg = CLIPConfig(**{**CONFIGS["toy-tiny"].to_dict(), "vocab_size": tok.vocab_size})
    model = CLIP(cfg, seed=4)
    save_checkpoint(tmp_path / "model.npz", cfg, model.params, step=1, tokenizer=tok.to_dict(),
                    data={"resolution": 32, "mean": MEAN, "std": STD})
    loaded, preprocess, tokenizer = miniclip.load(tmp_path)
    np.testing.assert_array_equal(loaded.params["visual.proj"], model.params["visual.proj"])
    assert preprocess(np.zeros((32, 32, 3), np.uint8)).shape == (1, 3, 32, 32)
