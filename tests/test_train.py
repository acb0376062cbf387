"""Training: accumulation equals one big batch, resume equals uninterrupted (bit for bit), a NaN
stops the run and keeps the last good checkpoint, Ctrl-C saves, the CLI runs end to end."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import miniclip.train.loop as train_module
import miniclip.train.step as step_module
from miniclip.model.clip import CLIP
from miniclip.model.config import CONFIGS, CLIPConfig
from miniclip.model.gradcache import loss_and_grads, micro_batches
from miniclip.pretrained.checkpoint import load_checkpoint
from miniclip.train.cli import main
from miniclip.train.loop import TrainArgs, batch_indices, train
from miniclip.train.optim import cosine_lr
from miniclip.train.step import TrainingDiverged

ROOT = Path(__file__).resolve().parents[1]


def tiny_args(data, out, **overrides):
    base = dict(data=str(data), out=str(out), model="toy-tiny", steps=6, batch_size=16,
                warmup=2, lr=2e-3, eval_every=3, eval_images=8, checkpoint_every=2, log_every=1)
    return TrainArgs(**{**base, **overrides})


def quiet(*_args, **_kwargs):
    pass


# ---- gradient accumulation --------------------------------------------------------------------

@pytest.mark.parametrize("loss", ["clip", "siglip"])
@pytest.mark.parametrize("accum", [2, 3, 7])
def test_accumulation_gives_the_big_batch_gradient(rng, loss, accum):
    cfg = CLIPConfig(**{**CONFIGS["tiny"].to_dict(), "loss": loss})
    params = CLIP(cfg, seed=3, dtype=np.float64).params
    N = 7  # 7 = 3 + 2 + 2 for accum 3: uneven micro-batches too
    images = rng.standard_normal((N, 3, cfg.image_resolution, cfg.image_resolution))
    tokens = rng.integers(1, cfg.vocab_size - 1, size=(N, cfg.context_length))
    tokens[np.arange(N), rng.integers(1, cfg.context_length, N)] = cfg.vocab_size - 1
    loss_big, g_big = loss_and_grads(params, cfg, images, tokens, accum_steps=1)
    loss_acc, g_acc = loss_and_grads(params, cfg, images, tokens, accum_steps=accum)
    assert loss_acc == pytest.approx(loss_big, rel=1e-12)
    assert list(g_acc) == list(params)
    for k in params:
        scale = np.abs(g_big[k]).max()
        assert np.abs(g_acc[k] - g_big[k]).max() <= 1e-12 * max(scale, 1e-300), k


def test_summing_micro_batch_losses_would_be_wrong(rng):
    """Why gradcache exists: the naive sum of micro-batch gradients is a different gradient."""
    cfg = CONFIGS["tiny"]
    params = CLIP(cfg, seed=3, dtype=np.float64).params
    images = rng.standard_normal((6, 3, 8, 8))
    tokens = rng.integers(1, 49, size=(6, 7))
    tokens[:, 5] = 49
    _, g_big = loss_and_grads(params, cfg, images, tokens)
    _, g_a = loss_and_grads(params, cfg, images[:3], tokens[:3])
    _, g_b = loss_and_grads(params, cfg, images[3:], tokens[3:])
    naive = (g_a["visual.proj"] + g_b["visual.proj"]) / 2
    assert np.abs(naive - g_big["visual.proj"]).max() > 1e-3 * np.abs(g_big["visual.proj"]).max()


def test_micro_batches_cover_the_batch_once():
    parts = micro_batches(10, 4)
    covered = np.concatenate([np.arange(10)[s] for s in parts])
    np.testing.assert_array_equal(covered, np.arange(10))
    assert sorted(s.stop - s.start for s in parts) == [2, 2, 3, 3]
    with pytest.raises(ValueError, match="accum_steps must be between 1 and the batch size 3"):
        micro_batches(3, 4)
    with pytest.raises(TypeError, match="accum_steps must be an int"):
        micro_batches(3, 1.5)


def test_training_with_accumulation_matches_without(tiny_data, tmp_path):
    """The training loop passes --accum through: the same losses, step after step (float32)."""
    losses = {}
    for accum in (1, 4):
        out = tmp_path / f"accum{accum}"
        train(tiny_args(tiny_data, out, steps=3, eval_every=0, accum=accum), progress=False,
              final_eval=False, log=quiet)
        losses[accum] = [r["loss"] for r in train_module.read_jsonl(out / "metrics.jsonl")]
    assert len(losses[1]) == 3
    assert losses[4] == pytest.approx(losses[1], rel=1e-4)


# ---- data order -------------------------------------------------------------------------------

def test_batch_order_is_a_permutation_per_epoch_and_depends_only_on_seed():
    n, B = 10, 3  # 3 batches per epoch, the 10th pair dropped
    epoch0 = np.concatenate([batch_indices(s, n, B, seed=0) for s in range(3)])
    assert len(set(epoch0.tolist())) == 9
    again = np.concatenate([batch_indices(s, n, B, seed=0) for s in (2, 1, 0)][::-1])
    np.testing.assert_array_equal(epoch0, again)  # any order of asking, same answer
    epoch1 = np.concatenate([batch_indices(s, n, B, seed=0) for s in range(3, 6)])
    assert not np.array_equal(epoch0, epoch1)
    assert not np.array_equal(batch_indices(0, n, B, seed=1), batch_indices(0, n, B, seed=0))


# ---- resume ----------------------------------------------------------------------------------

def press_ctrl_c_at(stop_step):
    def after_step(step):
        if step == stop_step:
            os.kill(os.getpid(), signal.SIGINT)  # the handler sets a flag; the loop saves, stops
    return after_step


def test_resume_equals_uninterrupted_bit_for_bit(tiny_data, tmp_path):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("Ctrl-C (SIGINT) is handled in the main thread only")
    full = train(tiny_args(tiny_data, tmp_path / "full"), progress=False, final_eval=False,
                 log=quiet)
    part = train(tiny_args(tiny_data, tmp_path / "part"), progress=False, final_eval=False,
                 log=quiet, after_step=press_ctrl_c_at(3))
    assert part["stopped"] and part["steps"] == 3
    ckpt = load_checkpoint(tmp_path / "part" / "checkpoint.safetensors")
    assert ckpt.step == 3 and ckpt.optimizer["t"] == 3
    resumed = train(None, resume=tmp_path / "part" / "checkpoint.safetensors", progress=False,
                    final_eval=False, log=quiet)
    assert full["steps"] == resumed["steps"] == 6
    a = load_checkpoint(tmp_path / "full" / "checkpoint.safetensors")
    b = load_checkpoint(tmp_path / "part" / "checkpoint.safetensors")
    assert a.step == b.step == 6
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k]), k
        assert np.array_equal(a.optimizer["m"][k], b.optimizer["m"][k]), k
        assert np.array_equal(a.optimizer["v"][k], b.optimizer["v"][k]), k
    assert a.rng_state == b.rng_state
    # the log holds each step once, and the same losses
    la = [r for r in train_module.read_jsonl(tmp_path / "full" / "metrics.jsonl") if "loss" in r]
    lb = [r for r in train_module.read_jsonl(tmp_path / "part" / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in lb] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]


def test_resume_refuses_a_weights_only_file(tiny_data, tmp_path):
    train(tiny_args(tiny_data, tmp_path / "run", steps=2, eval_every=0), progress=False,
          final_eval=False, log=quiet)
    with pytest.raises(ValueError, match="weights only"):
        train(None, resume=tmp_path / "run" / "model.safetensors", progress=False, log=quiet)


def test_fresh_run_refuses_to_overwrite_a_run(tiny_data, tmp_path):
    args = tiny_args(tiny_data, tmp_path / "run", steps=1, warmup=1, eval_every=0)
    train(args, progress=False, final_eval=False, log=quiet)
    with pytest.raises(FileExistsError, match="--resume"):
        train(args, progress=False, final_eval=False, log=quiet)


# ---- NaN -------------------------------------------------------------------------------------

def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = step_module.loss_and_grads

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss, grads = real(*args, **kwargs)
        return (float("nan") if calls["n"] == 5 else loss), grads  # step 5 goes wrong

    monkeypatch.setattr(step_module, "loss_and_grads", poisoned)
    with pytest.raises(TrainingDiverged, match=r"step 5: the loss became nan.*\(step 4\)"):
        train(tiny_args(tiny_data, tmp_path / "run"), progress=False, log=quiet)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    assert ckpt.step == 4  # checkpoints every 2 steps: 2, 4; step 5 never saved
    assert all(np.isfinite(v).all() for v in ckpt.params.values())
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_nan_in_gradient_also_stops(tiny_data, tmp_path, monkeypatch):
    real = step_module.loss_and_grads

    def poisoned(*args, **kwargs):
        loss, grads = real(*args, **kwargs)
        grads["visual.proj"][0, 0] = np.inf
        return loss, grads

    monkeypatch.setattr(step_module, "loss_and_grads", poisoned)
    with pytest.raises(TrainingDiverged, match="no checkpoint was written yet"):
        train(tiny_args(tiny_data, tmp_path / "run"), progress=False, log=quiet)


def test_cli_reports_divergence_with_exit_code_1(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(step_module, "loss_and_grads",
                        lambda *a, **k: (float("inf"), {}))
    code = main(["--data", str(tiny_data), "--out", str(tmp_path / "r"), "--model", "toy-tiny",
                 "--steps", "3", "--batch-size", "8", "--no-progress"])
    assert code == 1
    assert "step 1: the loss became inf" in capsys.readouterr().err


# ---- the schedule and the clamp ----------------------------------------------------------------

def test_logit_scale_is_clamped_and_lr_follows_the_schedule(tiny_data, tmp_path):
    args = tiny_args(tiny_data, tmp_path / "run", lr=0.5, warmup=2, eval_every=0)
    train(args, progress=False, final_eval=False, log=quiet)  # a huge lr pushes logit_scale
    scale = float(load_checkpoint(tmp_path / "run" / "model.safetensors").params["logit_scale"])
    assert 0.0 <= scale <= np.log(100) + 1e-6
    records = train_module.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    lrs = [r["lr"] for r in records if "lr" in r]
    assert lrs == pytest.approx([cosine_lr(s, 6, 0.5, 2) for s in range(6)])


# ---- command line ------------------------------------------------------------------------------

def test_cli_smoke_run(tiny_data, tmp_path):
    """`python -m miniclip.train` as a user runs it: outputs, metrics, the summary line."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "miniclip.train", "--data", str(tiny_data), "--out", str(out),
         "--model", "toy-tiny", "--steps", "4", "--batch-size", "16", "--eval-every", "2",
         "--eval-images", "8", "--no-progress"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in ("checkpoint.safetensors", "model.safetensors", "metrics.jsonl", "metrics.json", "curves.png",
                 "confusion.png", "similarity.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("zeroshot_top1_seen", "zeroshot_top1_heldout", "retrieval_i2t_r1",
                "retrieval_t2i_r1", "steps", "train_seconds"):
        assert key in metrics, key
    assert metrics["steps"] == 4 and 0 <= metrics["zeroshot_top1_heldout"] <= 1
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("done: 4 steps in") and "held-out" in last
    assert str(out / "model.safetensors") in proc.stdout


def test_cli_rejects_settings_with_resume(capsys):
    with pytest.raises(SystemExit):
        main(["--resume", "x.npz", "--lr", "0.1"])
    assert "--resume continues a run with the settings saved" in capsys.readouterr().err


@pytest.mark.parametrize("field, value, message", [
    ("model", "nope", "--model must be one of"),
    ("batch_size", 0, "--batch-size must be a positive integer"),
    ("accum", 32, r"--accum \(32\) cannot exceed --batch-size \(16\)"),
    ("lr", -1.0, "--lr must be > 0"),
    ("grad_clip", 0.0, "--grad-clip must be > 0"),
    ("temperature", 0.005, r"--temperature must be a number in \[0.01, 1\]"),
    ("temperature", float("nan"), r"--temperature must be a number in \[0.01, 1\]"),
    ("temperature", 1.5, r"--temperature must be a number in \[0.01, 1\]"),
])
def test_bad_arguments_are_named(tiny_data, tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        train(tiny_args(tiny_data, tmp_path / "r", **{field: value}), progress=False, log=quiet)


def test_temperature_flag_starts_a_new_run_there(tiny_data, tmp_path):
    """--temperature 0.03: the run starts from logit_scale ln(1/0.03) (the first logged
    temperature is within a few steps' learning of it) and stores the flag; without it the run
    starts at CLIP's 0.07. It is refused with --init, whose model has its own."""
    temps = {}
    for name, kwargs in (("cool", {"temperature": 0.03}), ("plain", {})):
        train(tiny_args(tiny_data, tmp_path / name, steps=2, log_every=1, eval_every=0,
                        **kwargs), progress=False, log=quiet)
        first = json.loads((tmp_path / name / "metrics.jsonl").read_text().splitlines()[0])
        temps[name] = first["temperature"]
    assert temps["cool"] == pytest.approx(0.03, rel=0.02)
    assert temps["plain"] == pytest.approx(0.07, rel=0.02)
    saved = load_checkpoint(tmp_path / "cool" / "checkpoint.safetensors")
    assert saved.train_args["temperature"] == 0.03
    with pytest.raises(ValueError, match="--temperature sets a new model's starting"):
        train(tiny_args(tiny_data, tmp_path / "ft", temperature=0.03,
                        init=str(tmp_path / "plain" / "model.safetensors")),
              progress=False, log=quiet)


def test_caption_too_long_for_context_is_an_error(tiny_data, tmp_path, monkeypatch):
    short = CLIPConfig(**{**CONFIGS["toy-tiny"].to_dict(), "context_length": 6})
    monkeypatch.setitem(CONFIGS, "toy-short", short)
    with pytest.raises(ValueError, match="does not fit the model's context_length 6"):
        train(tiny_args(tiny_data, tmp_path / "r", model="toy-short"), progress=False, log=quiet)


def test_matmul_flag_routes_the_numba_products(tiny_data, tmp_path, capsys):
    """--matmul blas trains with every product on BLAS (the backend option is set for the run
    and recorded in the checkpoint's arguments); a bad route or another backend is a one-line
    error naming --matmul."""
    from miniclip import backend
    from miniclip.kernels.numba import ops as numba_ops

    before = numba_ops.options()
    try:
        code = main(["--data", str(tiny_data), "--out", str(tmp_path / "blas"), "--model",
                     "toy-tiny", "--steps", "2", "--batch-size", "16", "--no-progress",
                     "--matmul", "blas"])
        assert code == 0
        assert numba_ops.options()["matmul"] == "blas" and backend.get_backend() == "numba"
    finally:
        numba_ops.configure(**before)
    saved = load_checkpoint(tmp_path / "blas" / "checkpoint.safetensors")
    assert saved.train_args["matmul"] == "blas"
    capsys.readouterr()
    for argv, message in ((["--matmul", "fast"], "--matmul must be one of"),
                          (["--backend", "numpy", "--matmul", "blas"],
                           "--matmul routes the numba backend's products")):
        code = main(["--data", str(tiny_data), "--out", str(tmp_path / "bad"), "--model",
                     "toy-tiny", "--steps", "1", "--no-progress", *argv])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err


def test_trains_on_64_pixel_images_with_the_toy_64_model(tmp_path):
    """`generate --resolution 64` and `--model toy-64` go together (datasets/README.md); the toy
    model refuses 64 px images with a message that names both sizes."""
    from miniclip.datasets import generate_dataset

    data = tmp_path / "d64"
    generate_dataset(data, n_train=64, n_val=16, n_test=16, n_heldout=16, resolution=64,
                     workers=1, progress=False)
    summary = train(tiny_args(data, tmp_path / "run", model="toy-64", steps=2, eval_every=0),
                    progress=False, final_eval=False, log=quiet)
    assert summary["steps"] == 2
    assert load_checkpoint(tmp_path / "run" / "checkpoint.safetensors").config.image_resolution == 64
    with pytest.raises(ValueError, match="holds 64x64 images; --model toy takes 32x32"):
        train(tiny_args(data, tmp_path / "run2", model="toy", steps=2), progress=False,
              final_eval=False, log=quiet)
