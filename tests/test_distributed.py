"""Data parallelism over MPI (model/distributed.py, train/distributed.py): the W-process loss and
gradient equal the one-process ones, a W=2 training run equals a one-process run, a run resumes
at another W, and a failing or killed process ends the whole job.

The MPI parts run as subprocesses, ``mpiexec -n W python ...``, W up to 4 on 2 cores
(oversubscribed: MPICH's mpiexec allows it without a flag).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from miniclip.model.clip import CLIP
from miniclip.model.config import CONFIGS, CLIPConfig
from miniclip.model.local_loss import local_loss_and_grads
from miniclip.model.loss import batch_loss_backward, batch_loss_forward
from miniclip.nn.gradcheck import check_gradient
from miniclip.pretrained.checkpoint import load_checkpoint
from miniclip.train.cli import main
from miniclip.train.loop import TrainArgs, train

from .gradcheck_helpers import record

pytest.importorskip("mpi4py", reason="the [distributed] extra (mpi4py, mpich) is not installed")

ROOT = Path(__file__).resolve().parents[1]
MPI_DIR = Path(__file__).parent / "mpi"


def mpiexec() -> str:
    """The mpiexec of the mpich wheel next to this Python (or the one on PATH)."""
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.exists():
        return str(beside)
    import shutil

    found = shutil.which("mpiexec")
    if found is None:
        pytest.fail("mpiexec not found: pip install mpich (the [distributed] extra)")
    return found


def run_mpi(n, *args, timeout=240, env=None):
    """mpiexec -n n python args..., from the repository root; -> CompletedProcess."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1",
                "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([mpiexec(), "-n", str(n), sys.executable, *map(str, args)], cwd=ROOT,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


# ---- the local loss: a group of pairs' share of the batch loss ---------------------------------

def random_features(rng, N=7, E=5):
    return rng.standard_normal((N, E)), rng.standard_normal((N, E))


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_local_losses_add_up_to_the_batch_loss_and_gradient(rng, kind):
    x, y = random_features(rng)
    params = {"logit_scale": np.array(1.3), "logit_bias": np.array(-2.0)}
    if kind == "clip":
        del params["logit_bias"]
    loss, cache = batch_loss_forward(kind, x, y, params)
    dx, dy, dparams = batch_loss_backward(cache)
    groups = [slice(0, 3), slice(3, 5), slice(5, 7)]  # three processes, uneven
    parts = [local_loss_and_grads(kind, x, y, g, params) for g in groups]
    assert sum(p[0] for p in parts) == pytest.approx(loss, rel=1e-13)
    np.testing.assert_allclose(sum(p[1] for p in parts), dx, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(sum(p[2] for p in parts), dy, rtol=1e-12, atol=1e-15)
    for k in params:
        assert float(sum(p[3][k] for p in parts)) == pytest.approx(float(dparams[k]), rel=1e-12)
    # one group holding every pair is the batch loss itself
    whole = local_loss_and_grads(kind, x, y, slice(0, 7), params)
    assert whole[0] == pytest.approx(loss, rel=1e-13)
    # a group's gradient reaches the other pairs' texts: they are its negatives
    assert np.abs(parts[0][2][3:]).max() > 1e-3


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_local_loss_gradient_check(rng, kind):
    x, y = random_features(rng, N=6, E=4)
    params = {"logit_scale": np.array(0.7), "logit_bias": np.array(-1.5)}
    own = slice(2, 4)
    _, dx, dy, dparams = local_loss_and_grads(kind, x, y, own, params)

    def f(_):
        return np.array(local_loss_and_grads(kind, x, y, own, params)[0])

    pairs = {"image_features": (x, dx), "text_features": (y, dy),
             "logit_scale": (params["logit_scale"], dparams["logit_scale"])}
    if kind == "siglip":
        pairs["logit_bias"] = (params["logit_bias"], dparams["logit_bias"])
    for name, (arr, analytic) in pairs.items():
        err = check_gradient(f, arr, np.array(1.0), analytic)
        record(f"local_loss[{kind}]", err)
        assert err <= 1e-7, f"d{name}: relative error {err:.2e}"


def test_local_loss_bad_input(rng):
    x, y = random_features(rng)
    with pytest.raises(ValueError, match="same shape"):
        local_loss_and_grads("clip", x, y[:3], slice(0, 2), {"logit_scale": np.array(1.0)})
    with pytest.raises(TypeError, match="own must be a slice"):
        local_loss_and_grads("clip", x, y, [0, 1], {"logit_scale": np.array(1.0)})
    with pytest.raises(ValueError, match="loss must be one of"):
        local_loss_and_grads("hinge", x, y, slice(0, 2), {"logit_scale": np.array(1.0)})


# ---- W processes: the loss and every gradient of the concatenated batch ------------------------

@pytest.mark.parametrize("W", [1, 2, 3, 4])
def test_distributed_equals_one_process(W):
    out = run_mpi(W, MPI_DIR / "exactness.py")
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(results) == {"clip/accum1", "clip/accum2", "siglip/accum1", "siglip/accum2"}
    for case, r in results.items():
        assert r["worst"] <= 1e-12, f"W={W} {case}: {r}"
        assert r["same_on_all"], f"W={W} {case}: the processes disagree"
        assert W == 1 or len(set(r["sizes"])) == 2  # uneven shares


# ---- training ------------------------------------------------------------------------------------

ARGS = dict(model="toy-tiny", steps=20, batch_size=16, warmup=2, lr=2e-3, eval_every=0,
            checkpoint_every=10, log_every=1)


def cli(data, out, **overrides):
    flags = []
    for k, v in {**ARGS, "data": data, "out": out, **overrides}.items():
        flags += [f"--{k.replace('_', '-')}", str(v)]
    return flags + ["--no-progress"]


@pytest.fixture(scope="module")
def one_process_run(tiny_data, tmp_path_factory):
    """The reference: 20 steps in this process (without hard negatives, which --distributed
    cannot take yet and so leaves out)."""
    out = tmp_path_factory.mktemp("one_process")
    train(TrainArgs(data=str(tiny_data), out=str(out), **ARGS, hard_negatives=False), progress=False,
          final_eval=False, log=lambda *a, **k: None)
    return load_checkpoint(out / "checkpoint.safetensors")


def assert_same_training(ckpt, ref):
    """Equal to float32 rounding, as far as 20 AdamW steps carry it. One exception: the key
    bias of attention has a gradient that is exactly 0 in exact arithmetic (softmax ignores a
    shift of all scores), so AdamW's m / sqrt(v) turns rounding noise into steps of up to lr."""
    assert ckpt.step == ref.step
    for k, w in ref.params.items():
        diff = np.abs(ckpt.params[k] - w)
        if k.endswith("attn.in_proj_bias"):
            C = w.shape[0] // 3
            assert diff[C:2 * C].max() <= ref.step * ARGS["lr"], k
            diff = np.concatenate([diff[:C], diff[2 * C:]])
        assert diff.max() <= 1e-4 * np.abs(w).max(), (k, diff.max() / np.abs(w).max())


def test_two_processes_train_like_one(tiny_data, one_process_run, tmp_path):
    out = run_mpi(2, "-m", "miniclip.train", "--distributed", *cli(tiny_data, tmp_path / "w2"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert_same_training(load_checkpoint(tmp_path / "w2" / "checkpoint.safetensors"), one_process_run)
    # the root alone logged: one metrics.jsonl line per step, no duplicates
    lines = (tmp_path / "w2" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, 21))
    assert (tmp_path / "w2" / "model.safetensors").exists()


def test_failing_process_ends_the_job_and_the_run_resumes_at_another_W(tiny_data,
                                                                      one_process_run, tmp_path):
    run_dir = tmp_path / "run"
    t0 = time.perf_counter()
    out = run_mpi(2, MPI_DIR / "train_worker.py", "--distributed", *cli(tiny_data, run_dir),
                  env={"MINICLIP_TEST_RAISE_AT": "11"}, timeout=120)
    assert out.returncode != 0
    assert "error (process 1 of 2): RuntimeError: rank 1 fails on purpose" in out.stderr
    assert time.perf_counter() - t0 < 90  # start-up included; the abort itself is immediate
    # rank 1 finished step 11, so rank 0 had saved step 10 (its save comes before step 11's
    # collectives); the abort may have cut rank 0 in any place after that, the file is intact
    assert load_checkpoint(run_dir / "checkpoint.safetensors").step == 10
    # resume the W=2 run's checkpoint with 3 processes (shares 6 + 5 + 5 of 16)
    out = run_mpi(3, "-m", "miniclip.train", "--distributed", "--resume",
                  run_dir / "checkpoint.safetensors", "--no-progress")
    assert out.returncode == 0, out.stderr[-3000:]
    assert_same_training(load_checkpoint(run_dir / "checkpoint.safetensors"), one_process_run)


def test_killed_process_ends_the_job(tiny_data, tmp_path):
    run_dir, pids = tmp_path / "run", tmp_path / "pids"
    pids.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MINICLIP_TEST_PID_DIR": str(pids),
           "OPENBLAS_NUM_THREADS": "1"}
    job = subprocess.Popen([mpiexec(), "-n", "2", sys.executable, MPI_DIR / "train_worker.py",
                            "--distributed", *cli(tiny_data, run_dir, steps=100000,
                                                  checkpoint_every=2)], cwd=ROOT,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        started = [pids / "rank1.pid", run_dir / "checkpoint.safetensors"]
        while not all(p.exists() for p in started) and time.time() < deadline:
            time.sleep(0.2)
        assert all(p.exists() for p in started), "the job did not start"
        os.kill(int((pids / "rank1.pid").read_text()), signal.SIGKILL)
        t0 = time.perf_counter()
        stdout, stderr = job.communicate(timeout=30)  # ends within 30 s, or this raises
        assert job.returncode != 0
        assert time.perf_counter() - t0 < 30
        out = stdout + stderr
        # who says so first is a race: mpiexec, that a process died (and it ends the rest), or
        # rank 0, whose collective with the dead process failed (and it aborts the job)
        mpiexec_saw_it = "BAD TERMINATION" in out
        rank0_saw_it = "Other MPI error" in out and "MPI_Abort" in out
        assert mpiexec_saw_it or rank0_saw_it, out[-2000:]
        # the checkpoint the root wrote last is whole (written atomically) and loads
        assert load_checkpoint(run_dir / "checkpoint.safetensors").step >= 2
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()


def test_distributed_needs_mpiexec(capsys, monkeypatch):
    for var in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert main(["--distributed", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not started by mpiexec" in err and "mpiexec -n 2" in err


def test_distributed_needs_mpi4py(capsys, monkeypatch):
    monkeypatch.setenv("PMI_RANK", "0")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py -> ImportError
    assert main(["--distributed", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'miniclip[distributed]'" in err


def test_distributed_loss_and_grads_is_exported():
    import miniclip

    assert miniclip.distributed_loss_and_grads.__module__ == "miniclip.model.distributed"
    cfg = CLIPConfig(**CONFIGS["tiny"].to_dict())
    params = CLIP(cfg, seed=0, dtype=np.float64).params
    with pytest.raises(TypeError, match="mpi4py communicator"):
        miniclip.distributed_loss_and_grads(params, cfg, np.zeros((2, 3, 8, 8)),
                                            np.ones((2, 7), np.int64), comm=object())
