"""Faults that need real processes (issue 18): kill -9 at random moments during training,
checkpointing and dataset generation, then a restart; two runs started on one folder.

After every kill: nothing lost beyond the last checkpoint interval, nothing mixed (the resumed
run ends with the very weights and log of a run never interrupted; a dataset folder is the old
dataset or the new one, whole), and the leftovers of the killed writes are cleaned up.
"""

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from miniclip.datasets import check_dataset, generate_dataset, load_meta
from miniclip.pretrained.checkpoint import load_checkpoint
from miniclip.train.loop import TrainArgs, train
from miniclip.train.runfolder import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1",
       "OMP_NUM_THREADS": "1", "NUMBA_CACHE_DIR": os.environ.get(
           "NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))}
STEPS, EVERY = 40, 4


def start(*args):
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout=120.0, proc=None):
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.005)
    return True


def logged_steps(path: Path) -> int:
    """Complete lines of metrics.jsonl: how far the killed run got."""
    if not path.is_file():
        return 0
    text = path.read_text()
    return text.count("\n")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "data"
    generate_dataset(path, n_train=32, n_val=8, n_test=8, n_heldout=8, workers=1, progress=False)
    return path


def train_argv(data, out):
    return ["-m", "miniclip.train", "--data", str(data), "--out", str(out), "--model",
            "toy-tiny", "--steps", str(STEPS), "--batch-size", "8", "--warmup", "2",
            "--eval-every", "0", "--log-every", "1", "--checkpoint-every", str(EVERY),
            "--no-progress"]


def reference(data, out):
    args = TrainArgs(data=str(data), out=str(out), model="toy-tiny", steps=STEPS, batch_size=8,
                     warmup=2, eval_every=0, log_every=1, checkpoint_every=EVERY)
    train(args, progress=False, final_eval=False, log=lambda *a: None)
    return load_checkpoint(out / "model.safetensors"), read_jsonl(out / "metrics.jsonl")


@pytest.mark.slow
def test_kill_9_during_training_and_checkpointing_then_resume_loses_nothing(data, tmp_path):
    rng = random.Random(18)
    want_model, want_log = reference(data, tmp_path / "reference")
    out = tmp_path / "run"
    proc = start(*train_argv(data, out))
    kills = []  # (step logged, step checkpointed) at each kill
    for _kill in range(3):
        target = rng.randint(EVERY + 1, STEPS - 6)  # a random step, after the first checkpoint
        if not wait_for(lambda t=target: logged_steps(out / "metrics.jsonl") >= t, proc=proc):
            break  # it finished first: nothing left to kill
        proc.kill()  # SIGKILL: kill -9
        proc.wait()
        done = logged_steps(out / "metrics.jsonl")
        ckpt = load_checkpoint(out / "checkpoint.safetensors")  # never half-written
        assert ckpt.step >= done - EVERY, (ckpt.step, done)  # lost at most one interval
        kills.append((done, ckpt.step))
        # restart: --resume takes the folder, cleans what the kill left, goes on
        proc = start("-m", "miniclip.train", "--resume", str(out / "checkpoint.safetensors"),
                     "--no-progress")
        time.sleep(rng.uniform(0.0, 0.3))
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert len(kills) >= 2, kills  # the kills did land in the middle of the run
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    got = load_checkpoint(out / "model.safetensors")
    for name, value in want_model.params.items():
        np.testing.assert_array_equal(got.params[name], value, err_msg=name)
    log = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in log] == list(range(1, STEPS + 1))  # nothing twice, none missing
    assert [r["loss"] for r in log] == [r["loss"] for r in want_log]


@pytest.mark.slow
def test_two_runs_on_one_folder_the_second_fails_at_once_naming_the_first(data, tmp_path):
    out = tmp_path / "run"
    first = start(*train_argv(data, out))
    assert wait_for(lambda: logged_steps(out / "metrics.jsonl") >= 1, proc=first)
    second = subprocess.run([sys.executable, *train_argv(data, out)], cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=120)
    resumed = None
    if first.poll() is None and (out / "checkpoint.safetensors").exists():
        resumed = subprocess.run([sys.executable, "-m", "miniclip.train", "--resume",
                                  str(out / "checkpoint.safetensors"), "--no-progress"], cwd=ROOT,
                                 env=ENV, capture_output=True, text=True, timeout=120)
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert second.returncode == 2
    err = second.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert f"in use by process {first.pid}" in err or "already holds a run" in err, err
    if resumed is not None and "in use" in resumed.stderr:
        assert resumed.returncode == 2 and str(first.pid) in resumed.stderr
    log = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in log] == list(range(1, STEPS + 1))  # one run's log, not two


@pytest.mark.slow
def test_kill_9_during_dataset_generation_leaves_old_or_new_never_a_mix(tmp_path):
    rng = random.Random(7)
    out = tmp_path / "toy"
    generate_dataset(out, n_train=8, n_val=0, n_test=0, n_heldout=8, workers=1, progress=False)
    old = load_meta(out)
    codes = []  # -9: killed while drawing or writing
    for _ in range(2):  # a kill during a --regenerate over it, at a random moment
        proc = start("-m", "miniclip.datasets", "generate", "--out", str(out), "--regenerate",
                     "--n-train", "4000", "--n-val", "0", "--n-test", "0", "--n-heldout", "8",
                     "--workers", "1")
        wait_for(lambda: any(tmp_path.glob(".toy.partial-*")), proc=proc)
        time.sleep(rng.uniform(0.05, 1.0))
        proc.kill()  # SIGKILL: kill -9
        codes.append(proc.wait())
        meta = check_dataset(out)  # whole, and as its meta.json says
        assert meta["split_sizes"] in (old["split_sizes"], {**old["split_sizes"], "train": 4000})
    fresh = tmp_path / "fresh"  # a kill during a first generation: no folder, or a whole one
    proc = start("-m", "miniclip.datasets", "generate", "--out", str(fresh), "--n-train", "4000",
                 "--n-val", "0", "--n-test", "0", "--n-heldout", "8", "--workers", "1")
    wait_for(lambda: any(tmp_path.glob(".fresh.partial-*")), proc=proc)
    time.sleep(rng.uniform(0.05, 0.5))
    proc.kill()  # SIGKILL: kill -9
    codes.append(proc.wait())
    assert -9 in codes, codes  # at least one kill landed mid-generation
    if fresh.exists():
        check_dataset(fresh)
    else:  # the next generation removes the dead one's partial folder, and completes
        generate_dataset(fresh, n_train=8, n_val=0, n_test=0, n_heldout=8, workers=1,
                         progress=False)
        assert check_dataset(fresh)["split_sizes"]["train"] == 8
    assert not list(tmp_path.glob(".fresh.partial-*"))
    generate_dataset(out, n_train=8, n_val=0, n_test=0, n_heldout=8, workers=1, progress=False,
                     regenerate=True)  # removes the partial folders the kills left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "toy"]
