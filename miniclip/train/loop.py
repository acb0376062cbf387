"""Train a small CLIP on the toy caption dataset, on a CPU, every step written out.

    python -m miniclip.train                        # defaults: the toy dataset, the "toy" model
    python -m miniclip.train --steps 200 --out runs/quick
    python -m miniclip.train --resume runs/toy/checkpoint.npz
    python -m miniclip.train --loss siglip          # SigLIP's sigmoid loss instead of softmax

What one run does, in order:

1. makes the dataset (``data/toy``) if it is not there yet (``miniclip.datasets``);
2. trains a byte-level BPE tokenizer on the training captions; it is saved with the model;
3. builds the model from a named config, its vocabulary the tokenizer's;
4. loops: a batch of (image, caption) pairs, augmented in ways that keep the caption true;
   loss and gradients (in ``--accum`` micro-batches if asked, with the same gradient as one big
   batch: ``miniclip.gradcache``); optional gradient clipping; an AdamW step with a cosine
   learning rate after a linear warmup; ``logit_scale`` clamped to [0, ln 100];
5. every ``--eval-every`` steps: zero-shot accuracy on a few hundred images, for the curves;
   every ``--checkpoint-every`` steps and on Ctrl-C: a checkpoint (``miniclip.checkpoint``);
6. at the end: the full evaluation (``miniclip.evaluate``), metrics.json, the pictures.

Everything random comes from ``--seed``: the model's initial weights, the order of the training
pairs (a permutation drawn from (seed, epoch)), and the augmentation (one generator whose state is
saved in each checkpoint). That is why ``--resume`` ends with the very same weights, bit for bit,
as a run that was never interrupted.

A run folder (``runs/NAME``) holds:
    checkpoint.npz   latest training checkpoint (weights, optimizer, step, RNG, tokenizer, ...)
    model.npz        the final weights, tokenizer and preprocessing (for ``load_trained``)
    metrics.jsonl    one JSON line per logged step (loss, lr, temperature, images/s, accuracy)
    metrics.json     the final evaluation
    curves.png, confusion.png, similarity.png
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and "numpy" not in sys.modules:
    # One BLAS thread. The model's matrices are small and many (a (T, D) @ (D, T) per image and
    # head): OpenBLAS splits each across threads, and on a 2-core machine that other programs
    # also use, the threads wait for each other. Measured on the 2-core machine this was written
    # on: the same with 1 or 2 threads when idle, up to 5-20x slower with 2 threads under load.
    # Only for `python -m miniclip.train`, only if the user has not chosen, and only before NumPy
    # starts (it reads these once).
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse
import json
import math
import signal
import time
import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from miniclip import backend
from miniclip.model.clip import CLIP
from miniclip.model.config import CONFIGS, LOSSES
from miniclip.model.gradcache import loss_and_grads
from miniclip.pretrained.checkpoint import (
    CHECKPOINT_FILE,
    MODEL_FILE,
    CheckpointError,
    ModelTokenizer,
    ToyPreprocess,
    load_checkpoint,
    save_checkpoint,
)
from miniclip.train.optim import AdamW, clip_grad_norm, cosine_lr

MAX_LOGIT_SCALE = math.log(100.0)  # the clamp of OpenAI's and OpenCLIP's trainers


@dataclass
class TrainArgs:
    """Every setting of a run (the CLI's options). Stored in each checkpoint."""

    data: str = "data/toy"  # dataset folder; generated there if missing
    out: str | None = None  # run folder; None: runs/<model>[-<loss>], numbered if taken
    model: str = "toy"  # a name in miniclip.CONFIGS
    loss: str = "clip"  # "clip" (softmax) or "siglip" (sigmoid)
    steps: int = 1000
    epochs: float | None = None  # if given, overrides steps: epochs * (pairs // batch_size)
    batch_size: int = 256
    accum: int = 1  # micro-batches per step (same gradient, less memory, one extra forward)
    lr: float = 2e-3
    min_lr: float = 0.0
    warmup: int = 100  # steps of linear warmup
    weight_decay: float = 0.2
    grad_clip: float | None = None  # max global gradient norm; None: no clipping
    vocab_size: int = 1024  # BPE vocabulary asked for (less if the captions run out of merges)
    augment: bool = True
    seed: int = 0
    log_every: int = 10
    eval_every: int = 100
    eval_images: int = 500  # per zero-shot curve point, seen and held-out each
    checkpoint_every: int = 200
    n_train: int | None = None  # dataset sizes if it has to be generated (None: its default)
    backend: str | None = None  # kernels backend; None: miniclip's default


class TrainingDiverged(RuntimeError):
    """The loss (or the gradient) became NaN or inf; the last good checkpoint is kept."""


# ---- data ------------------------------------------------------------------------------------

_PERMUTATION = {}  # (n_pairs, seed, epoch) -> the permutation of that epoch, the latest only


def batch_indices(step: int, n_pairs: int, batch_size: int, seed: int) -> np.ndarray:
    """Which training pairs make up batch ``step``: a slice of a permutation of the pairs drawn
    from (seed, epoch). The last partial batch of an epoch is dropped.

    Depends only on its arguments, so a resumed run draws the same batches.
    """
    per_epoch = n_pairs // batch_size
    epoch, i = divmod(step, per_epoch)
    key = (n_pairs, seed, epoch)
    if key not in _PERMUTATION:
        _PERMUTATION.clear()
        _PERMUTATION[key] = np.random.default_rng([seed, epoch]).permutation(n_pairs)
    return _PERMUTATION[key][i * batch_size:(i + 1) * batch_size]


def train_tokenizer(captions, vocab_size: int, context_length: int) -> ModelTokenizer:
    """BPE on the training captions; checks that every caption fits the context."""
    from miniclip.text.bpe import BPETokenizer

    with warnings.catch_warnings():  # "only N merges were possible": fine, noted below
        warnings.simplefilter("ignore", UserWarning)
        merges = BPETokenizer.train(list(captions), vocab_size).merges
    tokenizer = ModelTokenizer(merges, context_length)
    return tokenizer


def tokenize_captions(tokenizer: ModelTokenizer, captions) -> np.ndarray:
    try:
        return tokenizer.tokenize(list(captions))
    except ValueError as e:
        raise ValueError(f"a caption does not fit the model's context_length "
                         f"{tokenizer.context_length}: {e}. Use a config with a longer context.") \
            from e


def prepare_dataset(data_dir, n_train: int | None, log=print) -> dict:
    """The dataset's meta; the dataset is generated first if the folder does not hold one."""
    from miniclip.datasets import SPLITS, generate_dataset, load_meta

    data_dir = Path(data_dir)
    if (data_dir / "meta.json").is_file() and all((data_dir / f"{s}.npz").is_file()
                                                   for s in SPLITS):
        meta = load_meta(data_dir)
        if n_train is not None and meta["sizes"]["train"] != n_train:
            raise ValueError(f"--n-train {n_train}: the dataset in {data_dir} already has "
                             f"{meta['sizes']['train']} training pairs; use another --data")
        return meta
    log(f"generating the toy dataset in {data_dir} (once) ...")
    t0 = time.perf_counter()
    meta = generate_dataset(data_dir, **({} if n_train is None else {"n_train": n_train}))
    log(f"  done in {time.perf_counter() - t0:.0f}s")
    return meta


def data_identity(meta: dict, data_dir) -> dict:
    """What a checkpoint records about its dataset: enough to recognise it and to preprocess."""
    keys = ("version", "seed", "resolution", "sizes", "mean", "std")
    return {"dir": str(Path(data_dir).resolve()), **{k: meta[k] for k in keys}}


def same_dataset(a: dict, b: dict) -> bool:
    """Equal identities, wherever the folder is now."""
    return {k: v for k, v in a.items() if k != "dir"} == {k: v for k, v in b.items() if k != "dir"}


# ---- evaluation during training (small, for the curves) ---------------------------------------

class CurveProbe:
    """Zero-shot top-1 on a fixed few hundred single-object images of val (seen compositions)
    and of the held-out split, for the accuracy curve. The final numbers come from the full
    test and held-out splits (``miniclip.evaluate``)."""

    def __init__(self, data_dir, n_images: int):
        from miniclip.datasets import load_split

        val, held = load_split(data_dir, "val"), load_split(data_dir, "heldout")
        self.sets = {}
        for name, split in (("seen", val), ("heldout", held)):
            keep = np.flatnonzero(split.label >= 0)[:n_images]
            self.sets[name] = (split.images[keep], split.label[keep].astype(np.int64))

    def __call__(self, model, preprocess, tokenizer) -> dict:
        from miniclip.datasets import CLASSNAMES
        from miniclip.train.evaluate import encode_images, topk_accuracy, zero_shot_weights

        weights = zero_shot_weights(model, tokenizer, CLASSNAMES)  # (56, E)
        out = {}
        for name, (images, labels) in self.sets.items():
            if len(labels):
                scores = encode_images(model, preprocess, images) @ weights.T
                out[f"zeroshot_top1_{name}"] = topk_accuracy(scores, labels, ks=(1,))[1]
        return out


# ---- Ctrl-C ----------------------------------------------------------------------------------

class StopRequest:
    """First Ctrl-C: finish the current step, save a checkpoint, stop. Second: stop at once
    (KeyboardInterrupt), keeping the last checkpoint. Only in the main thread."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: finishing this step and saving a checkpoint (Ctrl-C again to quit "
              "without saving)", file=sys.stderr, flush=True)

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: KeyboardInterrupt is caught instead
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


# ---- the run ---------------------------------------------------------------------------------

def take_step(model, optimizer, preprocess, images, tokens, lr, args, aug_rng, last_checkpoint,
              step) -> tuple[float, float]:
    """One optimizer step on a batch: images uint8 (B, R, R, 3), tokens (B, T).

    augment -> normalise -> loss and gradients (in args.accum micro-batches) -> clip the global
    gradient norm (if args.grad_clip) -> stop on NaN/inf -> AdamW -> clamp logit_scale.
    Returns (loss, gradient norm before clipping).
    """
    if args.augment:
        from miniclip.datasets import augment

        images = augment(images, aug_rng)  # keeps the captions true: no flips, tiny shifts
    x = preprocess(images)  # (B, 3, R, R) float32
    loss, grads = loss_and_grads(model.params, model.cfg, x, tokens, args.accum)
    grad_norm = clip_grad_norm(grads, args.grad_clip or math.inf)
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        kept = (f"the last good checkpoint is {last_checkpoint} (step "
                f"{load_checkpoint(last_checkpoint).step})" if last_checkpoint.exists()
                else "no checkpoint was written yet")
        raise TrainingDiverged(
            f"step {step + 1}: the loss became {loss} (gradient norm {grad_norm}); stopping "
            f"without saving this step: {kept}. Try a lower --lr, a longer --warmup or "
            "--grad-clip 1.0.")
    optimizer.step(grads, lr=lr)
    scale = model.params["logit_scale"]
    np.clip(scale, 0.0, MAX_LOGIT_SCALE, out=scale)  # in place: the array the optimizer updates
    return loss, grad_norm



def default_out_dir(args: TrainArgs) -> Path:
    base = f"runs/{args.model}" + ("" if args.loss == "clip" else f"-{args.loss}")
    path, n = Path(base), 1
    while path.exists() and any(path.iterdir()):
        n += 1
        path = Path(f"{base}-{n}")
    return path


def read_jsonl(path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train(args: TrainArgs, resume: str | None = None, progress: bool = True,
          final_eval: bool = True, after_step=None, log=print) -> dict:
    """Run (or resume) training; return a summary dict (also the end of metrics.json).

    ``after_step(step)``, if given, is called after each completed step (tests use it to press
    Ctrl-C at a chosen step). Raises TrainingDiverged on a NaN/inf loss.
    """
    from miniclip.datasets import load_split

    wall_start = time.perf_counter()
    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(resume)
        if ckpt.optimizer is None:
            raise CheckpointError(f"{resume} holds weights only (no optimizer state): it cannot "
                                  "be resumed; resume from a run's checkpoint.npz")
        try:
            args = TrainArgs(**ckpt.train_args)
        except TypeError as e:
            raise CheckpointError(f"{resume}: its training arguments are not understood by this "
                                  f"miniclip ({e})") from e
    _check_args(args)
    if args.backend is not None:
        try:
            backend.use_backend(args.backend)
        except (ImportError, RuntimeError) as e:  # no GPU for "cuda", no Numba for "numba"
            raise ValueError(f"backend {args.backend!r} cannot be used here: {e}") from e
    out_dir = Path(ckpt.path.parent if ckpt else (args.out or default_out_dir(args)))
    if ckpt is None and (out_dir / CHECKPOINT_FILE).exists():
        raise FileExistsError(f"{out_dir} already holds a run; continue it with --resume "
                              f"{out_dir / CHECKPOINT_FILE}, or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    args = replace(args, out=str(out_dir))

    # 1. data
    meta = prepare_dataset(args.data, args.n_train, log)
    if ckpt is not None and not same_dataset(data_identity(meta, args.data), ckpt.data):
        raise CheckpointError(f"the dataset in {args.data} is not the one {resume} was trained "
                              f"on: {data_identity(meta, args.data)} vs {ckpt.data}")
    train_split = load_split(args.data, "train")
    n_pairs = len(train_split)
    if n_pairs < args.batch_size:
        raise ValueError(f"batch_size {args.batch_size} is larger than the {n_pairs} training "
                         "pairs")

    # 2. tokenizer, 3. model and optimizer
    base_cfg = CONFIGS[args.model]
    if ckpt is None:
        tokenizer = train_tokenizer(train_split.captions, args.vocab_size,
                                    base_cfg.context_length)
        cfg = replace(base_cfg, vocab_size=tokenizer.vocab_size, loss=args.loss)
    else:
        cfg = ckpt.config
        tokenizer = ModelTokenizer(ckpt.tokenizer["merges"], cfg.context_length)
    tokens = tokenize_captions(tokenizer, train_split.captions)  # (n_pairs, T) int64
    model = CLIP(cfg, seed=args.seed, dtype=np.float32)
    optimizer = AdamW(model.params, lr=args.lr, weight_decay=args.weight_decay)
    aug_rng = np.random.default_rng([args.seed, 1])
    step, seconds_before = 0, 0.0
    if ckpt is not None:
        model.load_state_dict(ckpt.params)
        optimizer.params = model.params  # load_state_dict made new arrays
        optimizer.load_state_dict(ckpt.optimizer)
        aug_rng.bit_generator.state = ckpt.rng_state
        step, seconds_before = ckpt.step, float(ckpt.extra.get("train_seconds", 0.0))
    if backend.get_backend() == "cuda":  # weights and Adam's moments move to the GPU, for good
        model.params = backend.to_device(model.params)
        optimizer.params = model.params
        optimizer.m, optimizer.v = backend.to_device(optimizer.m), backend.to_device(optimizer.v)
    preprocess = ToyPreprocess(cfg.image_resolution, meta["mean"], meta["std"])
    total_steps = _total_steps(args, n_pairs)
    probe = CurveProbe(args.data, args.eval_images) if args.eval_every else None

    log_path = out_dir / "metrics.jsonl"
    records = [r for r in read_jsonl(log_path) if r["step"] <= step]  # drop what came after
    log_path.write_text("".join(json.dumps(r) + "\n" for r in records))

    n_params = sum(p.size for p in model.params.values())
    log(f"miniclip.train: model {args.model!r} ({n_params:,} parameters, {args.loss} loss), "
        f"backend {backend.get_backend()!r}")
    log(f"  data {args.data}: {n_pairs:,} training pairs; tokenizer: {tokenizer.vocab_size} "
        f"tokens, context {cfg.context_length}")
    log(f"  {total_steps} steps of {args.batch_size} pairs"
        + (f" in {args.accum} micro-batches" if args.accum > 1 else "")
        + f" (~{total_steps * args.batch_size / n_pairs:.1f} epochs), lr {args.lr:g}, warmup "
        f"{args.warmup}; run folder {out_dir}" + (f"; resuming at step {step}" if ckpt else ""))

    def checkpoint(at_step, seconds):
        save_checkpoint(out_dir / CHECKPOINT_FILE, cfg, model.params, step=at_step,
                        optimizer=optimizer.state_dict(), rng_state=aug_rng.bit_generator.state,
                        tokenizer=tokenizer.to_dict(), data=data_identity(meta, args.data),
                        train_args=asdict(args), extra={"train_seconds": seconds})

    # 4. the loop
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True)
    loop_start = time.perf_counter()
    recent = []  # (seconds, images) of the last few steps, for images/s
    stopped_by_user = False
    try:
        with StopRequest() as stop, log_path.open("a") as log_file:
            while step < total_steps:
                t0 = time.perf_counter()
                idx = batch_indices(step, n_pairs, args.batch_size, args.seed)
                lr = cosine_lr(step, total_steps, args.lr, args.warmup, args.min_lr)
                loss, grad_norm = take_step(model, optimizer, preprocess, train_split.images[idx],
                                            tokens[idx], lr, args, aug_rng,
                                            last_checkpoint=out_dir / CHECKPOINT_FILE, step=step)
                scale = model.params["logit_scale"]
                step += 1
                dt = time.perf_counter() - t0
                recent = (recent + [(dt, len(idx))])[-20:]
                ips = sum(n for _, n in recent) / sum(t for t, _ in recent)
                temperature = float(np.exp(-scale))
                if bar is not None:
                    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", T=f"{temperature:.4f}",
                                    img_s=f"{ips:.0f}", refresh=False)
                    bar.update(1)
                record = None
                if step % args.log_every == 0 or step == total_steps:
                    record = {"step": step, "loss": loss, "lr": lr, "temperature": temperature,
                              "grad_norm": grad_norm, "images_per_second": ips,
                              "seconds": seconds_before + time.perf_counter() - loop_start}
                    if "logit_bias" in model.params:
                        record["logit_bias"] = float(model.params["logit_bias"])
                if probe is not None and (step % args.eval_every == 0 or step == total_steps):
                    record = {**(record or {"step": step}), **probe(model, preprocess, tokenizer)}
                    line = (f"step {step}: loss {loss:.3f}, zero-shot top-1 seen "
                            f"{record.get('zeroshot_top1_seen', 0):.1%}, held-out "
                            f"{record.get('zeroshot_top1_heldout', 0):.1%}, {ips:.0f} images/s")
                    if bar is not None:
                        bar.write(line)  # above the bar, which stays at the bottom
                    else:
                        log(line)
                if record is not None:
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                    records.append(record)
                seconds = seconds_before + time.perf_counter() - loop_start
                if step % args.checkpoint_every == 0 or step == total_steps:
                    checkpoint(step, seconds)
                if after_step is not None:
                    after_step(step)
                if stop.requested and step < total_steps:
                    stopped_by_user = True
                    break
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the main thread
        if bar is not None:
            bar.close()
        log(f"interrupted at step {step}: not saved; the last checkpoint is "
            f"{out_dir / CHECKPOINT_FILE}")
        raise
    finally:
        if bar is not None:
            bar.close()
    train_seconds = seconds_before + time.perf_counter() - loop_start
    if stopped_by_user:
        checkpoint(step, train_seconds)
        log(f"stopped at step {step} of {total_steps}; checkpoint saved to "
            f"{out_dir / CHECKPOINT_FILE}\ncontinue with: python -m miniclip.train --resume "
            f"{out_dir / CHECKPOINT_FILE}")
        return {"steps": step, "stopped": True, "train_seconds": train_seconds,
                "out_dir": str(out_dir)}

    # 5. the end: final weights, evaluation, pictures
    save_checkpoint(out_dir / MODEL_FILE, cfg, model.params, step=step,
                    tokenizer=tokenizer.to_dict(), data=data_identity(meta, args.data),
                    train_args=asdict(args), extra={"train_seconds": train_seconds})
    from miniclip.train.plots import plot_training_curves

    written = [out_dir / MODEL_FILE, out_dir / CHECKPOINT_FILE, log_path]
    plot_training_curves(records).savefig(out_dir / "curves.png", dpi=110)
    written.append(out_dir / "curves.png")
    images_per_second = (step - (ckpt.step if ckpt else 0)) * args.batch_size / max(
        1e-9, train_seconds - seconds_before)
    summary = {"steps": step, "train_seconds": round(train_seconds, 1),
               "images_per_second": round(images_per_second, 1),
               "final_loss": records[-1].get("loss") if records else None,
               "model": args.model, "loss": args.loss, "backend": backend.get_backend(),
               "out_dir": str(out_dir)}
    if final_eval:
        from miniclip.train.evaluate import evaluate, format_metrics, save_pictures

        t0 = time.perf_counter()
        metrics, details = evaluate(model, preprocess, tokenizer, args.data)
        summary = {**metrics, **summary, "eval_seconds": round(time.perf_counter() - t0, 1)}
        written += save_pictures(details, out_dir)
        log(format_metrics(metrics))
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=1) + "\n")
    written.append(out_dir / "metrics.json")
    log("wrote " + ", ".join(str(p) for p in written))
    line = (f"done: {step} steps in {_duration(train_seconds)} ({images_per_second:.0f} images/s, "
            f"total {_duration(time.perf_counter() - wall_start)})")
    if final_eval:
        line += (f"; zero-shot top-1 seen {summary['zeroshot_top1_seen']:.1%}, held-out "
                 f"{summary['zeroshot_top1_heldout']:.1%}; retrieval R@1 image->text "
                 f"{summary['retrieval_i2t_r1']:.1%}, text->image {summary['retrieval_t2i_r1']:.1%}")
    log(line)
    return summary


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{seconds:.1f}s"


def _total_steps(args: TrainArgs, n_pairs: int) -> int:
    if args.epochs is None:
        return args.steps
    return max(1, round(args.epochs * (n_pairs // args.batch_size)))


def _check_args(args: TrainArgs) -> None:
    if args.model not in CONFIGS:
        raise ValueError(f"model must be one of {sorted(CONFIGS)}, got {args.model!r}")
    if args.loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {args.loss!r}")
    for name in ("steps", "batch_size", "accum", "log_every", "checkpoint_every", "vocab_size"):
        value = getattr(args, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if args.accum > args.batch_size:
        raise ValueError(f"accum ({args.accum}) cannot exceed batch_size ({args.batch_size})")
    if not args.lr > 0 or args.min_lr < 0 or args.warmup < 0 or args.weight_decay < 0:
        raise ValueError(f"need lr > 0, min_lr >= 0, warmup >= 0, weight_decay >= 0; got lr="
                         f"{args.lr}, min_lr={args.min_lr}, warmup={args.warmup}, "
                         f"weight_decay={args.weight_decay}")
    if args.grad_clip is not None and not args.grad_clip > 0:
        raise ValueError(f"grad_clip must be > 0 (or None), got {args.grad_clip}")
    if args.epochs is not None and not args.epochs > 0:
        raise ValueError(f"epochs must be > 0, got {args.epochs}")


# ---- command line ----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m miniclip.train",
                                 description="Train a small CLIP on the toy caption dataset.")
    defaults = TrainArgs()
    helps = {
        "data": "dataset folder (generated if missing)",
        "out": "run folder (default: runs/<model>, numbered if taken)",
        "model": f"model config, one of {sorted(CONFIGS)}",
        "loss": "clip (softmax, OpenAI) or siglip (sigmoid)",
        "steps": "optimizer steps", "epochs": "passes over the training pairs (overrides --steps)",
        "batch_size": "pairs per step", "accum": "micro-batches per step (same gradient)",
        "lr": "peak learning rate", "min_lr": "learning rate at the end of the cosine",
        "warmup": "steps of linear warmup", "weight_decay": "AdamW weight decay (matrices only)",
        "grad_clip": "clip the global gradient norm to this", "vocab_size": "BPE vocabulary",
        "augment": "caption-preserving augmentation", "seed": "seed of everything random",
        "log_every": "steps between metrics.jsonl lines",
        "eval_every": "steps between zero-shot curve points (0: none)",
        "eval_images": "images per curve point", "checkpoint_every": "steps between checkpoints",
        "n_train": "training pairs if the dataset has to be generated",
        "backend": f"kernels backend, one of {backend.available_backends()}",
    }
    for f in fields(TrainArgs):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if f.type in ("bool",):
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                            help=f"{helps[f.name]} (default: {default})")
            continue
        kind = {"int": int, "float": float, "str": str, "float | None": float,
                "int | None": int, "str | None": str}[f.type]
        ap.add_argument(flag, type=kind, default=None, help=f"{helps[f.name]} (default: {default})")
    ap.add_argument("--resume", metavar="CHECKPOINT", help="continue the run saved in this "
                    "checkpoint.npz, with its own settings")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    ns = ap.parse_args(argv)
    given = {f.name: getattr(ns, f.name) for f in fields(TrainArgs)
             if getattr(ns, f.name) is not None}
    if ns.resume and given:
        ap.error(f"--resume continues a run with the settings saved in its checkpoint; drop "
                 f"{', '.join('--' + k.replace('_', '-') for k in given)}")
    try:
        train(TrainArgs(**given), resume=ns.resume, progress=not ns.no_progress)
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C: train() has said what was kept
        return 130
    except (CheckpointError, FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
