"""Nothing lost, no tracebacks (issue 18), in process: every bad input of tests/reliability_cases.py
is a clear error naming the argument that changes no file; and one regression test per finding:
run folders owned by one process, torn logs, Ctrl-C's exit code, datasets that are never rebuilt
silently, evaluation that never overwrites, NaN and lowered weights, a full disk, the tokenizer's
long words. Kills (-9) and concurrent processes are in tests/test_reliability_faults.py."""

import errno
import json
import os
import signal
import warnings
from pathlib import Path

import numpy as np
import pytest

import miniclip.train.cli as train_cli
import miniclip.train.loop as loop
from miniclip.datasets import DatasetError, check_dataset, generate_dataset, load_meta
from miniclip.model.clip import CLIP
from miniclip.model.config import CONFIGS
from miniclip.pretrained.checkpoint import load_checkpoint
from miniclip.pretrained.loading import load_model, save_weights
from miniclip.train.runfolder import RunFolderBusy, RunFolderLock, read_jsonl

from .reliability_cases import all_cases, build_world, run_case, snapshot

CASES = all_cases()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_a_clear_error_and_changes_nothing(world, case):
    result = run_case(case, world)
    assert result["changed"] == [], f"files changed: {result['changed']}"
    message = result["message"]
    assert "Traceback" not in message, message
    if case.expect == "exit2":
        assert result["exception"] is None and result["code"] == 2, message
        last = message.strip().splitlines()[-1]
        assert "error:" in last, message  # argparse's "prog: error: ..." or ours "error: ..."
    else:
        assert isinstance(result["exception"], case.expect), message
    assert case.names.lower() in message.lower(), message
    assert result["outcome"] == "clear error"


def test_there_are_at_least_150_cases():
    assert len(CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES)


# ---- helpers ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("rel") / "data"
    generate_dataset(path, n_train=32, n_val=8, n_test=8, n_heldout=8, workers=1, progress=False)
    return path


FLAGS = ["--model", "toy-tiny", "--steps", "6", "--batch-size", "8", "--warmup", "1",
         "--eval-every", "0", "--checkpoint-every", "2", "--log-every", "1", "--no-progress"]


def train_main(data, out, *more):
    return train_cli.main(["--data", str(data), "--out", str(out), *FLAGS, *more])


def quiet(*_a, **_k):
    pass


# ---- 1. run folders are owned ---------------------------------------------------------------------

def test_a_second_run_on_a_locked_folder_fails_naming_the_owner(data, tmp_path, capsys):
    out = tmp_path / "run"
    with RunFolderLock(_made(out)):
        before = snapshot(out)
        assert train_main(data, out) == 2
        assert f"in use by process {os.getpid()}" in capsys.readouterr().err
        assert snapshot(out) == before
    assert train_main(data, out) == 0  # the lock is gone with its holder
    ckpt = out / "checkpoint.safetensors"
    with RunFolderLock(out):  # --resume takes the lock too
        before = snapshot(out)
        assert train_cli.main(["--resume", str(ckpt), "--no-progress"]) == 2
        assert str(os.getpid()) in capsys.readouterr().err
        assert snapshot(out) == before


def _made(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def test_the_lock_is_released_when_a_run_fails(data, tmp_path, monkeypatch):
    out = tmp_path / "run"

    def boom(*a, **k):
        raise RuntimeError("a bug in the loop")
    monkeypatch.setattr(loop, "run_steps", boom)
    with pytest.raises(RuntimeError, match="a bug"):
        loop.train(loop.TrainArgs(data=str(data), out=str(out), model="toy-tiny", steps=2,
                                  batch_size=8, warmup=1, eval_every=0), progress=False, log=quiet)
    RunFolderLock(out).release()  # free again


def test_lock_error_type_and_pid(tmp_path):
    first = RunFolderLock(tmp_path)
    with pytest.raises(RunFolderBusy, match=f"in use by process {os.getpid()}"):
        RunFolderLock(tmp_path)
    first.release()


def test_stale_temp_files_are_removed_at_the_next_start(data, tmp_path, capsys):
    out = tmp_path / "run"
    args = loop.TrainArgs(data=str(data), out=str(out), model="toy-tiny", steps=6, batch_size=8,
                          warmup=1, eval_every=0, checkpoint_every=2, log_every=1)
    loop.train(args, progress=False, final_eval=False, log=quiet,
               after_step=lambda s: s == 3 and os.kill(os.getpid(), signal.SIGINT))
    stale = [out / ".checkpoint.npz.abc123.tmp", out / "model.npz.x1y2.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)  # what a killed atomic write leaves
    logged = []
    loop.train(None, resume=out, progress=False, final_eval=False,  # a run folder resumes too
               log=logged.append)
    assert not any(p.exists() for p in stale)
    assert any("removed 2 temporary file" in line for line in logged)


def test_a_torn_last_metrics_line_is_dropped_with_a_warning(data, tmp_path):
    out = tmp_path / "run"
    args = loop.TrainArgs(data=str(data), out=str(out), model="toy-tiny", steps=6, batch_size=8,
                          warmup=1, eval_every=0, checkpoint_every=2, log_every=1)
    loop.train(args, progress=False, final_eval=False, log=quiet,
               after_step=lambda s: s == 4 and os.kill(os.getpid(), signal.SIGINT))
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "loss": 1.2')  # a kill in the middle of a line
    with pytest.warns(UserWarning, match="dropped its last line"):
        loop.train(None, resume=out / "checkpoint.safetensors", progress=False, final_eval=False,
                   log=quiet)
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]


def test_a_corrupt_line_in_the_middle_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, \n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2"):
        read_jsonl(path, torn_ok=True)


def test_ctrl_c_saves_then_exits_130(data, tmp_path, monkeypatch):
    real = loop.run_steps

    def pressed(run, progress=True, after_step=None, log=print):
        return real(run, progress,
                    lambda s: s == 3 and os.kill(os.getpid(), signal.SIGINT), log)
    monkeypatch.setattr(loop, "run_steps", pressed)
    out = tmp_path / "run"
    assert train_main(data, out) == 130
    assert load_checkpoint(out / "checkpoint.safetensors").step == 3
    assert not (out / "model.safetensors").exists()


# ---- 2. datasets ---------------------------------------------------------------------------------

def test_meta_records_split_sizes_and_hashes(data):
    meta = load_meta(data)
    assert meta["split_sizes"] == {"train": 32, "val": 8, "test": 8, "heldout": 8}
    assert set(meta["files"]) == {"train.npz", "val.npz", "test.npz", "heldout.npz"}
    assert all(len(info["sha256"]) == 64 for info in meta["files"].values())
    assert check_dataset(data) == meta


def test_an_incomplete_dataset_is_never_rebuilt_silently_and_regenerate_fixes_it(tmp_path, data):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    (broken / "val.npz").unlink()
    (broken / "custom-note.txt").write_text("mine")
    before = snapshot(broken)
    with pytest.raises(DatasetError, match="--regenerate"):
        check_dataset(broken)
    assert train_main(broken, tmp_path / "r1") == 2
    assert snapshot(broken) == before and not (tmp_path / "r1").exists()
    # a folder with the user's own files is never replaced, even with --regenerate
    assert train_main(broken, tmp_path / "r2", "--regenerate") == 2
    assert snapshot(broken) == before
    (broken / "custom-note.txt").unlink()
    assert train_main(broken, tmp_path / "r3", "--regenerate", "--n-train", "32") == 0
    assert check_dataset(broken)["split_sizes"]["train"] == 32


def test_n_train_matching_the_dataset_is_accepted(data, tmp_path):
    assert train_main(data, tmp_path / "run", "--n-train", "32") == 0
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    assert ckpt.data["split_sizes"]["train"] == 32  # the split sizes, not the object sizes
    assert ckpt.data["files"] == {k: v["sha256"] for k, v in load_meta(data)["files"].items()}


def test_generation_writes_into_a_sibling_and_never_over_a_dataset(tmp_path):
    out = tmp_path / "toy"
    generate_dataset(out, n_train=6, n_val=0, n_test=0, n_heldout=8, workers=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy"]  # no partial sibling left
    before = snapshot(out)
    with pytest.raises(FileExistsError, match="regenerate"):
        generate_dataset(out, n_train=7, workers=1, progress=False)
    assert snapshot(out) == before
    meta = generate_dataset(out, n_train=7, n_val=0, n_test=0, n_heldout=8, workers=1,
                            progress=False, regenerate=True)
    assert meta["split_sizes"]["train"] == 7 and check_dataset(out)["split_sizes"]["train"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy"]


def test_a_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    import miniclip.datasets.storage as storage

    def full(path, arrays):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    monkeypatch.setattr(storage, "_save_npz", full)
    from miniclip.datasets.__main__ import main as datasets_main

    assert datasets_main(["generate", "--out", str(tmp_path / "toy"), "--n-train", "4",
                          "--workers", "1"]) == 2
    assert list(tmp_path.iterdir()) == []


# ---- 3. evaluation never overwrites -----------------------------------------------------------

def test_evaluate_on_other_data_writes_its_own_file(data, tmp_path, capsys):
    from miniclip.train.evaluate import main as evaluate_main

    run = tmp_path / "run"
    assert train_main(data, run) == 0
    other = tmp_path / "other"
    generate_dataset(other, n_train=16, n_val=8, n_test=8, n_heldout=8, seed=3, workers=1,
                     progress=False)
    (run / "metrics.json").write_text('{"mine": 1}\n')
    before = (run / "metrics.json").read_bytes()
    assert evaluate_main([str(run), "--data", str(other)]) == 0
    assert (run / "metrics.json").read_bytes() == before
    written = json.loads((run / "metrics-other.json").read_text())
    assert written["data"] == str(other.resolve()) and "zeroshot_top1_seen" in written
    assert (run / "confusion-other.png").is_file()
    stamp = snapshot(run)
    assert evaluate_main([str(run), "--data", str(other)]) == 2  # again: refuses
    assert "--overwrite" in capsys.readouterr().err and snapshot(run) == stamp
    assert evaluate_main([str(run), "--data", str(other), "--overwrite"]) == 0
    assert (run / "metrics.json").read_bytes() == before


def test_evaluate_on_a_full_disk_is_one_line_and_keeps_metrics(data, tmp_path, monkeypatch,
                                                                capsys):
    import miniclip.train.runfolder as runfolder
    from miniclip.train.evaluate import main as evaluate_main

    run = tmp_path / "run"
    assert train_main(data, run) == 0
    before = snapshot(run)

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    monkeypatch.setattr(runfolder, "write_text_atomic", full)
    assert evaluate_main([str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no space left") and len(err.strip().splitlines()) == 1
    assert snapshot(run) == before


def test_read_only_folder_is_one_line(data, tmp_path, monkeypatch, capsys):
    import miniclip.train.runfolder as runfolder

    def read_only(folder):
        raise OSError(errno.EROFS, "Read-only file system", str(Path(folder) / ".lock"))
    monkeypatch.setattr(runfolder, "RunFolderLock", read_only)
    assert train_main(data, tmp_path / "run") == 2
    assert capsys.readouterr().err.startswith("error: read-only file system")
    assert not (tmp_path / "run").exists()


def test_a_full_disk_while_checkpointing_keeps_the_last_checkpoint(data, tmp_path, monkeypatch,
                                                                   capsys):
    import miniclip.pretrained.checkpoint as checkpoint

    out = tmp_path / "run"
    real, calls = checkpoint.atomic_write, {"n": 0}

    def fills_up(path, write):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint (step 4): the disk fills up mid-write
            def partial(f):
                f.write(b"partial bytes")
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(path, partial)
        return real(path, write)
    monkeypatch.setattr(checkpoint, "atomic_write", fills_up)
    assert train_main(data, out) == 2
    assert "no space left" in capsys.readouterr().err
    assert load_checkpoint(out / "checkpoint.safetensors").step == 2  # the good one, untouched
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    monkeypatch.setattr(checkpoint, "atomic_write", real)
    assert train_cli.main(["--resume", str(out / "checkpoint.safetensors"), "--no-progress"]) == 0


# ---- 5. weights -------------------------------------------------------------------------------

def test_weights_are_never_lowered_silently(tmp_path):
    wide = CLIP(CONFIGS["tiny"], seed=0, dtype=np.float64)
    path = save_weights(wide, tmp_path / "w.safetensors")
    assert load_model(path).dtype == np.float64  # kept
    assert load_model(path, dtype=np.float32).dtype == np.float32  # asked for
    narrow = CLIP(CONFIGS["tiny"], seed=1)
    with pytest.raises(TypeError, match="allow_lower_precision"):
        narrow.load_state_dict(wide.state_dict())
    narrow.load_state_dict(wide.state_dict(), allow_lower_precision=True)
    assert narrow.params["visual.proj"].dtype == np.float32
    assert CLIP.from_state_dict(CONFIGS["tiny"], wide.state_dict()).dtype == np.float64


# ---- 6. the tokenizer's long words ---------------------------------------------------------------

class CountingRanks(dict):
    """A ranks dict that counts lookups: the work of a merge loop, without a clock."""

    lookups = 0

    def get(self, key, default=None):
        CountingRanks.lookups += 1
        return super().get(key, default)


def test_heap_merge_equals_the_textbook_on_openai_merges():
    import random

    from miniclip.text.bpe import bpe_word, word_to_symbols
    from miniclip.text.merge_queue import bpe_word_heap
    from miniclip.text.tokenizer import SimpleTokenizer

    ranks = SimpleTokenizer().bpe_ranks
    rng = random.Random(0)
    words = ["internationalization", "aaaaaaaaaaaaaaaaaaaaa", "abababababab", "héllo", "👍👍👍"]
    words += ["".join(rng.choice("aabcdeeilnorsttuxyz") for _ in range(rng.randint(1, 40)))
              for _ in range(1500)]
    for word in words:
        symbols = word_to_symbols(word)
        assert bpe_word_heap(symbols, ranks) == bpe_word(symbols, ranks), word


def test_heap_merge_work_grows_like_n_log_n():
    from miniclip.text.bpe import word_to_symbols
    from miniclip.text.merge_queue import bpe_word_heap
    from miniclip.text.tokenizer import SimpleTokenizer

    ranks = CountingRanks(SimpleTokenizer().bpe_ranks)
    work = {}
    for n in (2_000, 40_000):
        CountingRanks.lookups = 0
        out = bpe_word_heap(word_to_symbols("ab" * (n // 2)), ranks)
        assert "".join(out).replace("</w>", "") == "ab" * (n // 2)
        work[n] = CountingRanks.lookups
    assert work[40_000] < 30 * work[2_000]  # 20x longer: ~20x the lookups, not ~400x
    assert work[40_000] < 5 * 40_000


def test_nan_weights_in_an_npz_name_the_tensor(tmp_path):
    from miniclip.pretrained.loading import load

    state = CLIP(CONFIGS["tiny"], seed=0).state_dict()
    state["transformer.resblocks.0.attn.in_proj_weight"][1, 2] = np.inf
    from miniclip.pretrained.weights_io import write_npz

    write_npz(state, tmp_path / "w.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"w.npz.*in_proj_weight"):
            load(tmp_path / "w.npz")


def test_a_run_that_fails_before_its_first_checkpoint_can_start_again(data, tmp_path,
                                                                     monkeypatch, capsys):
    def bad_step(*a, **k):
        raise ValueError("a bad batch")
    monkeypatch.setattr(loop, "take_step", bad_step)
    out = tmp_path / "run"
    assert train_main(data, out) == 2
    assert "a bad batch" in capsys.readouterr().err
    monkeypatch.undo()
    assert train_main(data, out) == 0  # nothing there to lose: the folder is reused
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]


def test_run_main_sorts_expected_failures_from_bugs(capsys):
    import errno as e

    from miniclip.cli import run_main

    def raising(error):
        def main(argv):
            raise error
        return main
    assert run_main(raising(OSError(e.ENOSPC, "No space left on device", "/x/y"))) == 2
    assert capsys.readouterr().err == "error: no space left on the device writing /x/y\n"
    assert run_main(raising(ValueError("--lr must be > 0,\n got 0"))) == 2
    assert capsys.readouterr().err == "error: --lr must be > 0, got 0\n"  # one line
    assert run_main(raising(KeyboardInterrupt())) == 130
    with pytest.raises(KeyError):  # a bug keeps its traceback
        run_main(raising(KeyError("x")))
    with pytest.raises(AttributeError):
        run_main(raising(AttributeError("x")))
    assert run_main(lambda argv: None) == 0
