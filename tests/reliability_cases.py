"""Bad inputs for every CLI and the public API, as data: one ``Case`` per misuse.

Used by tests/test_reliability.py (each case must be a clear error naming the argument, with no
file changed) and by ``python tests/reliability_cases.py`` (a census: how many cases end as a
clear error, accepted, a traceback, or silently), which also runs against an older checkout
(``PYTHONPATH=OLD python tests/reliability_cases.py``) to count before and after.

A case is built from the fixture folders (``World``): a tiny dataset, a tiny trained run, weight
files, images and template files. ``run(world)`` does the misuse; ``expect`` is the exception type
(or "exit2" for a CLI); ``names`` is a text that must appear in the message (the argument or file
named); ``watch`` lists the folders whose files must not change.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import pickle
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# ---- the world the cases act on -----------------------------------------------------------------


@dataclass
class World:
    root: Path
    data: Path  # a tiny dataset
    run: Path  # a tiny trained run (model.safetensors, checkpoint.safetensors, metrics.jsonl, metrics.json)
    weights: Path  # a .safetensors of a tiny OpenAI-vocabulary-free model
    files: Path  # images, templates and broken files

    def path(self, name: str) -> str:
        return str(self.files / name)


def build_world(root: Path) -> World:
    from PIL import Image

    from miniclip.datasets import generate_dataset
    from miniclip.model.clip import CLIP
    from miniclip.model.config import CONFIGS
    from miniclip.pretrained.loading import save_weights
    from miniclip.train.loop import TrainArgs, train

    root = Path(root)
    data, run, files = root / "data", root / "run", root / "files"
    generate_dataset(data, n_train=32, n_val=8, n_test=8, n_heldout=8, workers=1, progress=False)
    train(TrainArgs(data=str(data), out=str(run), model="toy-tiny", steps=2, batch_size=8,
                    warmup=1, eval_every=0, checkpoint_every=1, log_every=1),
          progress=False, final_eval=False, log=lambda *a: None)
    (run / "metrics.json").write_text(json.dumps({"steps": 2}) + "\n")
    files.mkdir()
    model = CLIP(CONFIGS["tiny"], seed=0)
    weights = save_weights(model, files / "tiny.safetensors")
    save_weights(model, files / "tiny.npz")
    wide = CLIP(CONFIGS["tiny"], seed=0, dtype=np.float64)
    save_weights(wide, files / "tiny64.safetensors")
    state = model.state_dict()
    state["visual.proj"][0, 0] = np.nan
    from miniclip.pretrained.weights_io import write_npz, write_safetensors

    write_safetensors(state, files / "nan.safetensors")
    write_npz(state, files / "nan.npz")
    raw = weights.read_bytes()
    (files / "truncated.safetensors").write_bytes(raw[: len(raw) - 100])
    (files / "garbage.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    (files / "text.txt").write_text("just some text\n")
    (files / "text.pt").write_text("just some text\n")
    (files / "empty.pt").write_bytes(b"")
    (files / "corrupt.npz").write_bytes(b"PK\x03\x04 broken zip")
    (files / "list.pkl").write_bytes(pickle.dumps([1, 2], protocol=2))  # pickles, not weights
    (files / "ints.pkl").write_bytes(pickle.dumps({"visual.conv1.weight": 3}, protocol=2))
    Image.new("RGB", (40, 30), (200, 10, 10)).save(files / "red.png")
    png = (files / "red.png").read_bytes()
    (files / "truncated.png").write_bytes(png[: len(png) // 2])
    (files / "fake.png").write_text("not an image")
    (files / "subdir").mkdir()
    for name, text in {"tpl_x.txt": "a photo of a {x}.\n", "tpl_0.txt": "a photo of {0}\n",
                       "tpl_two.txt": "a {} and a {}\n", "tpl_none.txt": "a photo\n",
                       "tpl_open.txt": "a photo of {\n", "tpl_empty.txt": "# only a comment\n",
                       "tpl_spec.txt": "a {:>9} photo\n", "tpl_ok.txt": "a photo of a {}.\n"}.items():
        (files / name).write_text(text)
    (files / "tpl_binary.txt").write_bytes(b"\xff\xfe\x00{}")
    return World(root=root, data=data, run=run, weights=weights, files=files)


# ---- snapshots: did any file change? -----------------------------------------------------------


def snapshot(*folders) -> dict:
    """path -> (size, mtime_ns, sha256) of every file under the folders (hidden ones too)."""
    out = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.exists():
            out[str(folder)] = "absent"
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                st = path.stat()
                out[str(path)] = (st.st_size, st.st_mtime_ns,
                                  hashlib.sha256(path.read_bytes()).hexdigest())
            elif path.is_dir():
                out[str(path)] = "dir"
    return out


# ---- cases ---------------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    run: object  # callable(world) -> the CLI's exit code, or anything for an API call
    expect: object  # "exit2" or an exception type
    names: str  # must appear in the message
    watch: tuple = ("data", "run", "files")  # World attributes whose folders must not change
    extra_watch: tuple = field(default_factory=tuple)  # more paths (relative to world.root)
    prepare: object = None  # callable(world) making what the case needs, before the snapshot


_NEW_RUNS = iter(range(10**9))


def train_cli(*flags, data=True, out="new-run"):
    """python -m miniclip.train with small settings, then ``flags`` (argparse: the last wins).
    Each call gets its own new run folder, so that a case one version accepts cannot change the
    outcome of the next (the root's listing is part of the snapshot)."""
    def run(w: World):
        from miniclip.train.cli import main

        argv = ["--model", "toy-tiny", "--steps", "2", "--batch-size", "8", "--warmup", "1",
                "--eval-every", "0", "--no-progress"]
        if data:
            argv += ["--data", str(w.data)]
        if out:
            name = f"{out}-{next(_NEW_RUNS)}" if out == "new-run" else out
            argv += ["--out", str(w.root / name)]
        return main(argv + list(flags))
    return run


def resume_cli(checkpoint, *flags):
    """python -m miniclip.train --resume CHECKPOINT (a callable of the world) [flags]."""
    def run(w: World):
        from miniclip.train.cli import main

        return main(["--no-progress", "--resume", checkpoint(w), *flags])
    return run


def cli(module: str, *args):
    """A CLI call; args may hold callables of the world (paths)."""
    def run(w: World):
        import importlib

        main = importlib.import_module(module).main
        argv = [a(w) if callable(a) else a for a in args]
        return main(argv)
    return run


def F(name):  # a fixture file
    return lambda w: w.path(name)


def D(w):  # the dataset
    return str(w.data)


def R(w):  # the run folder
    return str(w.run)


def NEW(name):  # a path that does not exist yet, under the root
    return lambda w: str(w.root / name)


def _train_flag_cases():
    bad = [  # (id, flags, name that must appear)
        ("lr-zero", ["--lr", "0"], "--lr"), ("lr-negative", ["--lr", "-1"], "--lr"),
        ("lr-nan", ["--lr", "nan"], "--lr"), ("lr-inf", ["--lr", "inf"], "--lr"),
        ("lr-text", ["--lr", "fast"], "--lr"),
        ("min-lr-above-lr", ["--lr", "1e-3", "--min-lr", "1e-2"], "--min-lr"),
        ("min-lr-negative", ["--min-lr", "-0.1"], "--min-lr"),
        ("min-lr-nan", ["--min-lr", "nan"], "--min-lr"),
        ("weight-decay-nan", ["--weight-decay", "nan"], "--weight-decay"),
        ("weight-decay-negative", ["--weight-decay", "-1"], "--weight-decay"),
        ("weight-decay-inf", ["--weight-decay", "inf"], "--weight-decay"),
        ("eval-images-negative", ["--eval-images", "-5"], "--eval-images"),
        ("eval-every-negative", ["--eval-every", "-1"], "--eval-every"),
        ("seed-negative", ["--seed", "-1"], "--seed"),
        ("seed-huge", ["--seed", str(2**64)], "--seed"),
        ("epochs-inf", ["--epochs", "inf"], "--epochs"),
        ("epochs-nan", ["--epochs", "nan"], "--epochs"),
        ("epochs-zero", ["--epochs", "0"], "--epochs"),
        ("epochs-negative", ["--epochs", "-2"], "--epochs"),
        ("epochs-huge", ["--epochs", "1e12"], "--epochs"),
        ("steps-zero", ["--steps", "0"], "--steps"),
        ("steps-negative", ["--steps", "-3"], "--steps"),
        ("steps-float", ["--steps", "2.5"], "--steps"),
        ("batch-size-zero", ["--batch-size", "0"], "--batch-size"),
        ("batch-size-above-pairs", ["--batch-size", "64"], "--batch-size"),
        ("accum-zero", ["--accum", "0"], "--accum"),
        ("accum-above-batch", ["--accum", "9"], "--accum"),
        ("warmup-negative", ["--warmup", "-1"], "--warmup"),
        ("warmup-above-steps", ["--warmup", "50"], "--warmup"),
        ("grad-clip-zero", ["--grad-clip", "0"], "--grad-clip"),
        ("grad-clip-nan", ["--grad-clip", "nan"], "--grad-clip"),
        ("grad-clip-negative", ["--grad-clip", "-1"], "--grad-clip"),
        ("log-every-zero", ["--log-every", "0"], "--log-every"),
        ("checkpoint-every-zero", ["--checkpoint-every", "0"], "--checkpoint-every"),
        ("vocab-size-zero", ["--vocab-size", "0"], "--vocab-size"),
        ("model-unknown", ["--model", "ViT-Z/99"], "--model"),
        ("loss-unknown", ["--loss", "hinge"], "--loss"),
        ("n-train-zero", ["--n-train", "0"], "--n-train"),
        ("n-train-other-size", ["--n-train", "5"], "--n-train"),
        ("backend-unknown", ["--backend", "tpu"], "--backend"),
        ("unknown-flag", ["--learning-rate", "1"], "--learning-rate"),
    ]
    cases = [Case(f"train-{i}", train_cli(*flags), "exit2", name) for i, flags, name in bad]
    cases += [
        Case("train-data-empty-string", train_cli("--data", "", data=False), "exit2", "--data"),
        Case("train-out-is-a-file", train_cli(out="files/text.txt"), "exit2", "text.txt"),
        Case("train-out-holds-a-run", train_cli(out="run"), "exit2", "--resume"),
        Case("train-resume-missing", resume_cli(NEW("nowhere/checkpoint.safetensors")), "exit2",
             "--resume"),
        Case("train-resume-text-file", resume_cli(F("text.txt")), "exit2", "text.txt"),
        Case("train-resume-with-settings", resume_cli(lambda w: str(w.run / "checkpoint.safetensors"),
                                                      "--lr", "1"), "exit2", "--lr"),
        Case("train-resume-weights-only", resume_cli(lambda w: str(w.run / "model.safetensors")),
             "exit2", "model.safetensors"),
        Case("train-resume-finished-run-other-data", lambda w: _resume_on_moved_data(w),
             "exit2", "not the one", extra_watch=("moved-run", "moved-data"),
             prepare=_moved_data),
    ]
    return cases


def COPY(w):  # noqa: N802 - a copy of the dataset, for cases that older code wrote over
    return str(w.root / "data-copy")


def _data_copy(w: World):
    import shutil

    if not (w.root / "data-copy").exists():
        shutil.copytree(w.data, w.root / "data-copy")


def _broken_dataset(kind):
    """A copy of the dataset, broken one way, under root/broken-<kind>; -> its path."""
    import shutil

    def make(w: World) -> Path:
        path = w.root / f"broken-{kind}"
        if not path.exists():
            shutil.copytree(w.data, path)
            if kind == "missing-split":
                (path / "val.npz").unlink()
            elif kind == "bad-meta":
                (path / "meta.json").write_text("{not json")
            elif kind == "old-version":
                meta = json.loads((path / "meta.json").read_text())
                meta["version"] = 1
                (path / "meta.json").write_text(json.dumps(meta))
            elif kind == "edited-split":
                with np.load(path / "test.npz") as z:
                    arrays = {k: z[k] for k in z.files}
                arrays["label"] = arrays["label"][::-1].copy()
                with open(path / "test.npz", "wb") as f:
                    np.savez(f, **arrays)
            elif kind == "truncated-split":
                raw = (path / "train.npz").read_bytes()
                (path / "train.npz").write_bytes(raw[: len(raw) // 3])
            elif kind == "meta-without-sizes":
                meta = json.loads((path / "meta.json").read_text())
                del meta["split_sizes"]
                (path / "meta.json").write_text(json.dumps(meta))
            elif kind == "other-sizes":
                meta = json.loads((path / "meta.json").read_text())
                meta["split_sizes"]["train"] = 999
                (path / "meta.json").write_text(json.dumps(meta))
        return path
    return make


BROKEN = ("missing-split", "bad-meta", "old-version", "edited-split", "truncated-split",
          "other-sizes", "meta-without-sizes")


def _dataset_cases():
    cases = []
    for kind in BROKEN:
        make = _broken_dataset(kind)
        cases.append(Case(f"train-data-{kind}",
                          lambda w, make=make: train_cli("--data", str(make(w)), data=False)(w),
                          "exit2", "regenerate", extra_watch=(f"broken-{kind}",), prepare=make))
        cases.append(Case(f"evaluate-data-{kind}",
                          lambda w, make=make: cli("miniclip.train.evaluate", R, "--data",
                                                   str(make(w)))(w),
                          "exit2", f"broken-{kind}", extra_watch=(f"broken-{kind}",),
                          prepare=make))
    gen = "miniclip.datasets.__main__"
    cases += [
        Case("datasets-generate-over-existing", cli(gen, "generate", "--out", COPY, "--n-train", "4",
                                                    "--workers", "1"), "exit2", "--regenerate", extra_watch=("data-copy",), prepare=_data_copy),
        Case("datasets-regenerate-foreign-folder", cli(gen, "generate", "--out",
                                                       lambda w: str(w.files), "--regenerate",
                                                       "--n-train", "4", "--workers", "1"),
             "exit2", "not a toy dataset"),
        Case("datasets-out-is-a-file", cli(gen, "generate", "--out", F("text.txt"), "--n-train",
                                           "4", "--workers", "1"), "exit2", "text.txt"),
        Case("datasets-n-train-zero", cli(gen, "generate", "--out", NEW("d1"), "--n-train", "0"),
             "exit2", "--n-train"),
        Case("datasets-n-train-text", cli(gen, "generate", "--out", NEW("d1"), "--n-train", "x"),
             "exit2", "--n-train"),
        Case("datasets-n-val-negative", cli(gen, "generate", "--out", NEW("d1"), "--n-val", "-1"),
             "exit2", "--n-val"),
        Case("datasets-resolution-small", cli(gen, "generate", "--out", NEW("d1"),
                                              "--resolution", "8"), "exit2", "--resolution"),
        Case("datasets-seed-negative", cli(gen, "generate", "--out", NEW("d1"), "--seed", "-1"),
             "exit2", "--seed"),
        Case("datasets-workers-zero", cli(gen, "generate", "--out", NEW("d1"), "--workers", "0"),
             "exit2", "--workers"),
        Case("datasets-no-out", cli(gen, "generate"), "exit2", "--out"),
        Case("datasets-n-train-beyond-memory", cli(gen, "generate", "--out", NEW("d1"),
                                                   "--n-train", str(10**12)), "exit2", "n_train"),
        Case("datasets-resolution-beyond-memory", cli(gen, "generate", "--out", NEW("d1"),
                                                      "--resolution", str(10**7)), "exit2",
             "resolution"),
        Case("train-n-train-beyond-memory", lambda w: train_cli(
            "--data", str(w.root / "d2"), "--n-train", str(10**12), data=False)(w), "exit2",
             "n_train", extra_watch=("d2",)),
        Case("datasets-grid-missing-data", cli(gen, "grid", "--data", NEW("nothing"), "--out",
                                               NEW("g.png")), "exit2", "--data"),
        Case("datasets-grid-broken-data", lambda w: cli(gen, "grid", "--data",
                                                        str(_broken_dataset("truncated-split")(w)),
                                                        "--out", str(w.root / "g.png"))(w),
             "exit2", "--data", extra_watch=("broken-truncated-split",),
             prepare=_broken_dataset("truncated-split")),
        Case("datasets-grid-out-suffix", cli(gen, "grid", "--data", D, "--out", NEW("g.xyz")),
             "exit2", "--out"),
        Case("train-data-other-resolution", lambda w: train_cli(
            "--data", str(w.root / "data16"), data=False)(w), "exit2", "--model",
             extra_watch=("data16",), prepare=_small_images),
        Case("train-data-is-a-file", lambda w: train_cli("--data", w.path("text.txt"),
                                                          data=False)(w), "exit2", "--data"),
        Case("datasets-grid-columns", cli(gen, "grid", "--data", D, "--out", NEW("g.png"),
                                          "--columns", "13"), "exit2", "--columns"),
        Case("datasets-grid-rows-mismatch", cli(gen, "grid", "--data", D, "--out", NEW("g.png"),
                                                "--split", "train", "--rows", "1", "--rows", "2"),
             "exit2", "--rows"),
        Case("datasets-unknown-command", cli(gen, "draw"), "exit2", "draw"),
    ]
    return cases


def _while_locked(folder, run):
    """Run a case while this process holds the folder's lock (as a live run would)."""
    def call(w: World):
        from miniclip.train.runfolder import RunFolderLock

        lock = RunFolderLock(folder)
        try:
            return run(w)
        finally:
            lock.release_and_tidy()  # the .lock file as it was: the live run is make-believe
    return call


def _small_images(w: World):
    from miniclip.datasets import generate_dataset

    if not (w.root / "data16").exists():
        generate_dataset(w.root / "data16", n_train=16, n_val=0, n_test=0, n_heldout=8,
                         resolution=16, workers=1, progress=False)


def _evaluate_cases():
    ev = "miniclip.train.evaluate"
    return [
        Case("evaluate-missing-path", cli(ev, NEW("no-run")), "exit2", "no-run"),
        Case("evaluate-empty-folder", cli(ev, F("subdir")), "exit2", "subdir"),
        Case("evaluate-text-file", cli(ev, F("text.txt")), "exit2", "text.txt"),
        Case("evaluate-corrupt-npz", cli(ev, F("corrupt.npz")), "exit2", "corrupt.npz"),
        Case("evaluate-data-missing", cli(ev, R, "--data", NEW("no-data")), "exit2", "no-data"),
        Case("evaluate-data-empty-string", cli(ev, R, "--data", ""), "exit2", "--data"),
        Case("evaluate-data-is-a-file", cli(ev, R, "--data", F("text.txt")), "exit2", "text.txt"),
        Case("evaluate-out-holds-metrics", cli(ev, R, "--out", R), "exit2", "--overwrite"),
        Case("evaluate-weights-not-a-run", cli(ev, F("tiny.npz")), "exit2", "tiny.npz"),
        Case("evaluate-run-in-use", lambda w: _while_locked(w.run, cli(ev, R))(w), "exit2",
             "in use"),
        Case("train-resume-run-in-use", lambda w: _while_locked(
            w.run, resume_cli(lambda w: str(w.run)))(w), "exit2", str(os.getpid())),
    ]


def _zeroshot_cases():
    zs = "miniclip.pretrained.zeroshot"

    def z(*args, weights="tiny.safetensors", image="red.png"):
        weights = F(weights) if isinstance(weights, str) else weights
        image = F(image) if isinstance(image, str) else image
        rest = ["--weights", weights] if weights is not None else []
        return cli(zs, *([image] if image is not None else []), "--labels", "a cat,a dog",
                   *rest, *args)
    tpl = "--template-file"
    return [
        Case("zeroshot-missing-image", z(image=NEW("nope.png")), "exit2", "nope.png"),
        Case("zeroshot-truncated-image", z(image=F("truncated.png")), "exit2", "truncated.png"),
        Case("zeroshot-text-as-image", z(image=F("fake.png")), "exit2", "fake.png"),
        Case("zeroshot-folder-as-image", z(image=F("subdir")), "exit2", "subdir"),
        Case("zeroshot-template-file-missing", z(tpl, NEW("none.txt")), "exit2", "--template-file"),
        Case("zeroshot-template-x", z(tpl, F("tpl_x.txt")), "exit2", "{x}"),
        Case("zeroshot-template-0", z(tpl, F("tpl_0.txt")), "exit2", "{0}"),
        Case("zeroshot-template-two-fields", z(tpl, F("tpl_two.txt")), "exit2", "template"),
        Case("zeroshot-template-no-field", z(tpl, F("tpl_none.txt")), "exit2", "template"),
        Case("zeroshot-template-open-brace", z(tpl, F("tpl_open.txt")), "exit2", "template"),
        Case("zeroshot-template-empty-file", z(tpl, F("tpl_empty.txt")), "exit2", "--template-file"),
        Case("zeroshot-template-spec", z(tpl, F("tpl_spec.txt")), "exit2", "template"),
        Case("zeroshot-template-binary", z(tpl, F("tpl_binary.txt")), "exit2", "--template-file"),
        Case("zeroshot-templates-and-file", z("--templates", tpl, F("tpl_ok.txt")), "exit2",
             "--template-file"),
        Case("zeroshot-labels-empty", cli(zs, F("red.png"), "--labels", " , ,", "--weights",
                                          F("tiny.safetensors")), "exit2", "--labels"),
        Case("zeroshot-top-zero", z("--top", "0"), "exit2", "--top"),
        Case("zeroshot-top-text", z("--top", "x"), "exit2", "--top"),
        Case("zeroshot-weights-missing", z(weights=NEW("none.safetensors")), "exit2",
             "none.safetensors"),
        Case("zeroshot-weights-text", z(weights=F("text.txt")), "exit2", "text.txt"),
        Case("zeroshot-weights-truncated", z(weights=F("truncated.safetensors")), "exit2",
             "truncated.safetensors"),
        Case("zeroshot-weights-garbage", z(weights=F("garbage.safetensors")), "exit2",
             "garbage.safetensors"),
        Case("zeroshot-weights-nan", z(weights=F("nan.safetensors")), "exit2", "visual.proj"),
        Case("zeroshot-weights-nan-npz", z(weights=F("nan.npz")), "exit2", "visual.proj"),
        Case("zeroshot-weights-corrupt-npz", z(weights=F("corrupt.npz")), "exit2", "corrupt.npz"),
        Case("zeroshot-weights-pt", z(weights=F("text.pt")), "exit2", "convert"),
        Case("zeroshot-no-vocabulary", z(), "exit2", "vocabulary"),
        Case("zeroshot-no-weights", z(weights=None), "exit2", "--weights"),
    ]


def _convert_cases():
    cv = "miniclip.pretrained.convert"
    return [
        Case("convert-src-missing", cli(cv, NEW("none.pt"), NEW("out.safetensors")), "exit2",
             "none.pt"),
        Case("convert-src-text", cli(cv, F("text.pt"), NEW("out.safetensors")), "exit2",
             "text.pt"),
        Case("convert-src-empty", cli(cv, F("empty.pt"), NEW("out.safetensors")), "exit2",
             "empty.pt"),
        Case("convert-src-folder", cli(cv, F("subdir"), NEW("out.safetensors")), "exit2",
             "subdir"),
        Case("convert-src-bad-zip", cli(cv, F("corrupt.npz"), NEW("out.npz")), "exit2",
             "corrupt.npz"),
        Case("convert-src-pickled-list", cli(cv, F("list.pkl"), NEW("out.npz")), "exit2",
             "list.pkl"),
        Case("convert-src-pickled-ints", cli(cv, F("ints.pkl"), NEW("out.npz")), "exit2",
             "ints.pkl"),
        Case("convert-dst-suffix", cli(cv, F("text.pt"), NEW("out.bin")), "exit2", "dst"),
        Case("convert-dst-exists", cli(cv, F("text.pt"), F("tiny.npz")), "exit2", "--overwrite"),
        Case("convert-dtype", cli(cv, F("text.pt"), NEW("o.npz"), "--dtype", "int8"), "exit2",
             "--dtype"),
        Case("convert-no-args", cli(cv), "exit2", "src"),
    ]


def _small_cli_cases():
    return [
        Case("params-unknown-config", cli("miniclip.model.params", "ViT-Q/1"), "exit2", "config"),
        Case("params-extra-argument", cli("miniclip.model.params", "tiny", "more"), "exit2",
             "more"),
        Case("tokenizer-no-text", cli("miniclip.text.tokenizer"), "exit2", "text"),
        Case("tokenizer-extra-argument", cli("miniclip.text.tokenizer", "a", "b"), "exit2", "b"),
    ]


# ---- the public API -------------------------------------------------------------------------


def _resume_on_moved_data(w: World):
    """A run whose dataset was replaced by another one: resuming it must refuse."""
    from miniclip.train.cli import main

    return main(["--no-progress", "--resume", str(w.root / "moved-run" / "checkpoint.safetensors")])


def _moved_data(w: World):
    import shutil

    from miniclip.datasets import generate_dataset
    from miniclip.train.cli import main

    run, data = w.root / "moved-run", w.root / "moved-data"
    if not run.exists():
        generate_dataset(data, n_train=32, n_val=8, n_test=8, n_heldout=8, workers=1,
                         progress=False)
        main(["--data", str(data), "--out", str(run), "--model", "toy-tiny", "--steps", "2",
              "--batch-size", "8", "--warmup", "1", "--eval-every", "0", "--no-progress"])
        (run / "model.safetensors").unlink()
        shutil.rmtree(data)
        generate_dataset(data, n_train=32, n_val=8, n_test=8, n_heldout=8, seed=1, workers=1,
                         progress=False)


def _check_args_cases():
    from miniclip.train.args import TrainArgs, check_args

    nan, inf = math.nan, math.inf
    bad = [("lr", nan), ("lr", inf), ("lr", 0.0), ("lr", "0.1"), ("min_lr", 1.0), ("min_lr", nan),
           ("weight_decay", nan), ("weight_decay", -inf), ("grad_clip", inf), ("epochs", inf),
           ("epochs", nan), ("steps", 2.0), ("steps", True), ("steps", 0), ("batch_size", None),
           ("seed", -1), ("seed", 1.5), ("seed", "0"), ("eval_images", -5), ("eval_every", 0.5),
           ("warmup", 10**9), ("n_train", 0), ("n_train", 2.5), ("vocab_size", -1),
           ("model", ""), ("model", None), ("loss", "mse"), ("augment", "yes"), ("data", ""),
           ("data", None), ("out", ""), ("backend", "gpu"), ("accum", 10**6),
           ("log_every", -1), ("checkpoint_every", 0.5)]
    cases = []
    for name, value in bad:
        flag = "--" + name.replace("_", "-")

        def run(w, name=name, value=value):
            check_args(TrainArgs(**{name: value, "steps": 20, "warmup": 2,
                                    **({name: value} if name in ("steps", "warmup") else {})}))
        cases.append(Case(f"check_args-{name}-{value!r}", run, (ValueError, TypeError), flag,
                          watch=()))
    return cases


def imp(dotted: str):
    """A name of miniclip, imported when the case runs ("miniclip.datasets:check_dataset"), so
    that the census also runs on older code that lacks it (the case then fails alone)."""
    import importlib

    module, name = dotted.split(":")

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)
    return call


def _api_cases():
    from miniclip.model.clip import CLIP
    from miniclip.model.config import CONFIGS
    from miniclip.text.bpe import BPETokenizer

    DatasetError = ValueError  # noqa: N806 - miniclip.datasets.DatasetError is one
    RunFolderBusy = Exception  # noqa: N806 - test_reliability checks the exact type
    check_dataset = imp("miniclip.datasets:check_dataset")
    ensure_dataset = imp("miniclip.datasets:ensure_dataset")
    generate_dataset = imp("miniclip.datasets:generate_dataset")
    load_split = imp("miniclip.datasets:load_split")
    load = imp("miniclip.pretrained.loading:load")
    load_model = imp("miniclip.pretrained.loading:load_model")
    read_npz = imp("miniclip.pretrained.weights_io:read_npz")
    read_safetensors = imp("miniclip.pretrained.weights_io:read_safetensors")
    read_templates = imp("miniclip.pretrained.zeroshot:read_templates")
    text_classifier = imp("miniclip.pretrained.zeroshot:text_classifier")
    read_jsonl = imp("miniclip.train.runfolder:read_jsonl")
    RunFolderLock = imp("miniclip.train.runfolder:RunFolderLock")  # noqa: N806

    def Preprocess(resolution):  # noqa: N802
        return imp("miniclip.pretrained.preprocess:Preprocess")(resolution)

    tiny = CONFIGS["tiny"]

    def state_with(key, value):
        state = CLIP(tiny, seed=0).state_dict()
        state[key] = np.full_like(state[key], value) if np.isscalar(value) else value
        return state

    def load_into_float32(state):
        return lambda w: CLIP(tiny, seed=1).load_state_dict(state)

    def tmp_model():
        return CLIP(tiny, seed=0)

    cases = [
        Case("load_state_dict-nan", lambda w: tmp_model().load_state_dict(
            state_with("visual.proj", np.nan)), ValueError, "visual.proj", watch=()),
        Case("load_state_dict-inf", lambda w: tmp_model().load_state_dict(
            state_with("logit_scale", np.inf)), ValueError, "logit_scale", watch=()),
        Case("load_state_dict-neg-inf", lambda w: tmp_model().load_state_dict(
            state_with("ln_final.weight", -np.inf)), ValueError, "ln_final.weight", watch=()),
        Case("load_state_dict-float64-into-float32", lambda w: tmp_model().load_state_dict(
            CLIP(tiny, seed=0, dtype=np.float64).state_dict()), TypeError, "dtype", watch=()),
        Case("load_state_dict-not-a-dict", lambda w: tmp_model().load_state_dict([1, 2]),
             TypeError, "state_dict", watch=()),
        Case("load_state_dict-int-tensor", lambda w: tmp_model().load_state_dict(
            state_with("logit_scale", np.array(3))), TypeError, "logit_scale", watch=()),
        Case("from_state_dict-nan", lambda w: CLIP.from_state_dict(
            tiny, state_with("token_embedding.weight", np.nan)), ValueError,
            "token_embedding.weight", watch=()),
        Case("load-nan-safetensors", lambda w: load(w.path("nan.safetensors")), ValueError,
             "visual.proj"),
        Case("load-nan-npz", lambda w: load(w.path("nan.npz")), ValueError, "visual.proj"),
        Case("load-truncated-safetensors", lambda w: load(w.path("truncated.safetensors")),
             ValueError, "truncated.safetensors"),
        Case("load-garbage-safetensors", lambda w: load(w.path("garbage.safetensors")),
             ValueError, "garbage.safetensors"),
        Case("load-corrupt-npz", lambda w: load(w.path("corrupt.npz")), ValueError,
             "corrupt.npz"),
        Case("load-missing", lambda w: load(w.path("none.safetensors")), FileNotFoundError,
             "none.safetensors"),
        Case("load-text", lambda w: load(w.path("text.txt")), ValueError, "text.txt"),
        Case("load-pt", lambda w: load(w.path("text.pt")), ValueError, "convert"),
        Case("read_safetensors-truncated", lambda w: read_safetensors(
            w.path("truncated.safetensors")), ValueError, "truncated"),
        Case("read_npz-corrupt", lambda w: read_npz(w.path("corrupt.npz")), ValueError,
             "corrupt.npz"),
        Case("read_npz-missing", lambda w: read_npz(w.path("none.npz")), FileNotFoundError,
             "none.npz"),
        Case("load_model-bad-config", lambda w: load_model(w.path("tiny.npz"), config="tiny"),
             TypeError, "config"),
        Case("generate-over-existing", lambda w: generate_dataset(
            w.root / "data-copy", n_train=4, workers=1, progress=False), FileExistsError,
             "regenerate", extra_watch=("data-copy",), prepare=_data_copy),
        Case("generate-regenerate-foreign", lambda w: generate_dataset(
            w.files, n_train=4, workers=1, progress=False, regenerate=True), FileExistsError,
             "not a toy dataset"),
        Case("generate-n-train-float", lambda w: generate_dataset(
            w.root / "d2", n_train=4.0, workers=1, progress=False), TypeError, "n_train"),
        Case("generate-regenerate-not-bool", lambda w: generate_dataset(
            w.root / "d2", n_train=4, workers=1, progress=False, regenerate="yes"), TypeError,
             "regenerate"),
        Case("ensure-other-settings", lambda w: ensure_dataset(
            w.root / "data-copy", n_train=5, n_val=8, n_test=8, n_heldout=8, workers=1,
            progress=False),
             DatasetError, "regenerate", extra_watch=("data-copy",), prepare=_data_copy),
        Case("load_split-bad-name", lambda w: load_split(w.data, "validation"), ValueError,
             "split"),
        Case("load_split-missing-folder", lambda w: load_split(w.root / "nope", "train"),
             FileNotFoundError, "meta.json"),
        Case("check_dataset-missing-folder", lambda w: check_dataset(w.root / "nope"),
             FileNotFoundError, "nope"),
        Case("preprocess-missing-file", lambda w: Preprocess(32)(w.path("nope.png")),
             FileNotFoundError, "nope.png"),
        Case("preprocess-truncated-file", lambda w: Preprocess(32)(w.path("truncated.png")),
             ValueError, "truncated.png"),
        Case("preprocess-text-file", lambda w: Preprocess(32)(w.path("fake.png")), ValueError,
             "fake.png"),
        Case("read_templates-missing", lambda w: read_templates(w.path("none.txt")),
             FileNotFoundError, "none.txt"),
        Case("read_templates-x", lambda w: read_templates(w.path("tpl_x.txt")), ValueError,
             "{x}"),
        Case("read_jsonl-corrupt-middle", lambda w: read_jsonl(_jsonl(w, '{"step": 1}\nnot json\n'
                                                                     '{"step": 3}\n')),
             ValueError, "line 2"),
        Case("read_jsonl-array-line", lambda w: read_jsonl(_jsonl(w, "[1, 2]\n")), ValueError,
             "line 1"),
        Case("run-folder-locked", lambda w: _lock_twice(w, RunFolderLock), RunFolderBusy,
             str(os.getpid())),
        Case("bpe-encode-not-str", lambda w: BPETokenizer([]).encode(b"bytes"), TypeError,
             "text"),
        Case("bpe-train-vocab-small", lambda w: BPETokenizer.train(["a b"], 3), ValueError,
             "vocab_size"),
    ]
    for template in ("a {x}", "{0}", "{} {}", "plain", "{", "}", "{:>3}", "{!r}", "{{}}"):
        cases.append(Case(f"text_classifier-template-{template}",
                          lambda w, t=template: text_classifier(tmp_model(), None, ["a"], [t]),
                          ValueError, "template", watch=()))
    return cases


def _jsonl(w: World, text: str) -> Path:
    path = w.root / "scratch" / "log.jsonl"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def _lock_twice(w: World, lock_type):
    folder = w.root / "scratch-lock"
    folder.mkdir(exist_ok=True)
    first = lock_type(folder)
    try:
        lock_type(folder)
    finally:
        first.release()


def all_cases() -> list[Case]:
    return (_train_flag_cases() + _dataset_cases() + _evaluate_cases() + _zeroshot_cases()
            + _convert_cases() + _small_cli_cases() + _check_args_cases() + _api_cases())


# ---- running one case: what happened? -------------------------------------------------------


def _listing(root: Path) -> list:
    """What is at the top of the world (a new run or dataset folder made by a case shows here);
    the cases' own scratch folders aside."""
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("scratch"))


def run_case(case: Case, world: World) -> dict:
    """-> {"outcome", "message", "code", "exception", "changed": [paths]}. Every case is a misuse,
    so the outcomes are:

    clear error   exit code 2 with an ``error:`` line (a CLI) or the exception type asked for
                  (the API), the message naming the argument, no file changed;
    confusing     an error, but another exit code or a message that does not name the argument;
    traceback     an exception the CLI let escape, or an unexpected exception type;
    silent        accepted (it ran as if nothing were wrong), or files changed on the way."""
    folders = [getattr(world, name) for name in case.watch] + [
        world.root / p for p in case.extra_watch]
    if case.prepare is not None:  # e.g. a broken copy of the dataset, before the snapshot
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            case.prepare(world)
    before = {**snapshot(*folders), "<root>": _listing(world.root)}
    err, out = io.StringIO(), io.StringIO()
    code, exception = None, None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = case.run(world)
        except SystemExit as e:
            code = e.code
        except CaseTimeout:
            raise
        except BaseException as e:  # noqa: BLE001 - sorted below
            exception = e
            traceback.print_exc(file=err)
    after = {**snapshot(*folders), "<root>": _listing(world.root)}
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    message = err.getvalue() if exception is None else f"{type(exception).__name__}: {exception}"
    result = {"code": code, "exception": exception, "message": message, "changed": changed}
    named = case.names.lower() in message.lower()
    if case.expect == "exit2":
        if exception is not None or "Traceback" in err.getvalue():
            outcome = "traceback"
        elif code in (0, None) or changed:
            outcome = "silent"
        elif code == 2 and named:
            outcome = "clear error"
        else:
            outcome = "confusing"
    else:
        if exception is None or changed:
            outcome = "silent"
        elif not isinstance(exception, case.expect):
            outcome = "traceback"
        elif named:
            outcome = "clear error"
        else:
            outcome = "confusing"
    result["outcome"] = outcome
    return result


class CaseTimeout(BaseException):
    """A case still running after the census's limit (older code trained for 4e12 steps)."""


def census(root: Path, seconds: int = 60) -> dict:
    import signal

    def alarm(signum, frame):
        raise CaseTimeout
    signal.signal(signal.SIGALRM, alarm)
    world = build_world(root)
    counts, rows = {}, []
    for case in all_cases():
        signal.alarm(seconds)
        try:
            outcome = run_case(case, world)["outcome"]
        except CaseTimeout:  # it accepted the misuse and ran on
            outcome = "silent (still running)"
        except Exception as e:  # noqa: BLE001 - a case that cannot even be set up on this code
            outcome = f"traceback ({type(e).__name__})"
        finally:
            signal.alarm(0)
        key = outcome.split(" (")[0]
        counts[key] = counts.get(key, 0) + 1
        rows.append((case.id, outcome))
    return {"counts": counts, "rows": rows}


if __name__ == "__main__":
    import tempfile
    import warnings

    warnings.simplefilter("ignore")
    # A dataset rebuilt silently (older code) draws 55,000 images with the defaults: make the
    # defaults small, so that the census counts the rebuild (files changed) in seconds.
    import miniclip.datasets.storage as storage

    defaults = list(storage.generate_dataset.__defaults__)
    defaults[:4] = [40, 8, 8, 8]  # n_train, n_val, n_test, n_heldout
    defaults[6:8] = [1, False]  # workers, progress
    storage.generate_dataset.__defaults__ = tuple(defaults)
    # a case that asks for petabytes must end as a MemoryError here, not as the kernel's OOM kill
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, resource.getrlimit(resource.RLIMIT_AS)[1]))
    os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".numba_cache"))
    with tempfile.TemporaryDirectory() as tmp:
        result = census(Path(tmp))
    if "-v" in sys.argv:
        for case_id, outcome in result["rows"]:
            print(f"{outcome:<14} {case_id}")
    print(json.dumps(result["counts"]), f"({len(result['rows'])} cases)")
