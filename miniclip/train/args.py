"""A run's settings (``TrainArgs``, stored in every checkpoint), their checks, and the command
line of ``python -m miniclip.train``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

from miniclip import backend
from miniclip.model.config import CONFIGS, LOSSES


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
    precision: str = "fp32"  # "fp32", or mixed precision "bf16" / "fp16" (train/precision.py)
    stochastic_rounding: bool = False  # round the 16-bit weight copies stochastically


def total_steps(args: TrainArgs, n_pairs: int) -> int:
    if args.epochs is None:
        return args.steps
    return max(1, round(args.epochs * (n_pairs // args.batch_size)))


def check_args(args: TrainArgs) -> None:
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
    check_precision_args(args)


def check_precision_args(args: TrainArgs) -> None:
    from miniclip.kernels.dtypes import PRECISIONS

    if args.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {args.precision!r}")
    if args.stochastic_rounding and args.precision == "fp32":
        raise ValueError("stochastic_rounding rounds the 16-bit weight copies: it needs "
                         "precision bf16 or fp16, got fp32")
    if args.precision != "fp32" and args.backend == "cuda":
        raise ValueError(f"precision {args.precision!r} runs on the numpy and numba backends; "
                         "the cuda backend's DeviceArrays are float32/float64 only")


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
        "precision": "fp32, or mixed precision bf16 / fp16 (float32 master weights)",
        "stochastic_rounding": "round the 16-bit weight copies stochastically",
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
