"""A run's settings (``TrainArgs``, stored in every checkpoint), their checks, and the command
line of ``python -m miniclip.train``."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields, replace

from miniclip import backend
from miniclip.datasets.scenes import WORLDS
from miniclip.datasets.sources import own_data_kind
from miniclip.model.config import CONFIGS, LOSSES

# the lowest temperature: the trainer clamps logit_scale at ln(100) (train/step.py)
MIN_TEMPERATURE = 0.01

# how the numba backend routes its products (kernels/numba/ops.py: configure(matmul=...))
MATMUL_ROUTES = ("kernel", "auto", "blas")


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
    warmup: int | None = None  # steps of linear warmup; None: 10% of the run, at most 100
    weight_decay: float = 0.2
    # the loss's temperature at step 0 (it is learned from there); None: the model's own start,
    # CLIP's 0.07 (SigLIP's 0.1). A new model only: --init and --resume keep theirs.
    temperature: float | None = None
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
    matmul: str | None = None  # numba backend's products: "kernel", "auto" or "blas"; None: its default
    # your own data (train/owndata.py): --data a.csv|a.tsv or WebDataset shards; OpenCLIP's flags
    csv_img_key: str = "filepath"
    csv_caption_key: str = "title"
    csv_separator: str = "\t"
    val_data: str | None = None  # CSV or shards for retrieval metrics at the end
    zeroshot_classes: str | None = None  # class names (one per line, optional {} templates)
    init: str | None = None  # fine-tune from this model (train/finetune.py)
    report_to: str = "jsonl"  # "tensorboard": also TensorBoard event files (train/report.py)
    precision: str = "fp32"  # "fp32", or mixed precision "bf16" / "fp16" (train/precision.py)
    stochastic_rounding: bool = False  # round the 16-bit weight copies stochastically
    # NegCLIP: swapped captions as extra texts (train/hardneg.py); None: on where they can be
    hard_negatives: bool | None = None
    swapped_images: float = 0.0  # with hard negatives: share of place swaps drawn (hardneg.py)
    swapped_colours: float = 0.0  # with hard negatives: share of colour swaps drawn
    # with hard negatives: share of one-object images given a shape-swapped false caption
    # (hardneg.py); None: hardneg.SINGLE_FRACTION (0.3)
    shape_negatives: float | None = None
    # share of each batch's one-object images drawn in groups alike but for the shape
    # (train/shapegroups.py); toy world only
    shape_groups: float = 0.0
    # the toy world (datasets/scenes.py WORLDS) the --data folder must hold, and is generated
    # with if missing; None: whatever it holds (the classic world when generated). On the
    # command line, --world varied also brings WORLD_DEFAULTS["varied"] for what is not given.
    world: str | None = None


# --world varied: the recipe measured for the varied world (docs/toy_world_experiments.md,
# "Learning the varied world" and "Reaching the targets"): 64 px images, so that small shapes
# have the pixels to tell them apart, read by a convolutional stem (toy-64-stem); batches of
# 128, for 4000 steps; no augmentation (the world varies more than it would, and the step is 14%
# cheaper without); every place swap and every colour swap drawn, a shape-swapped caption for
# every one-object image, and three quarters of the one-object images in shape groups
# ("Batches that ask for the shape"); the loss starts at temperature 0.03, not 0.07 ("A colder
# start"). The drawn swaps and the shape swaps need the hard negatives.
WORLD_DEFAULTS = {
    "varied": {"data": "data/toy-varied-64", "model": "toy-64-stem", "batch_size": 128,
               "steps": 4000, "augment": False, "swapped_images": 1.0, "swapped_colours": 1.0,
               "shape_negatives": 1.0, "shape_groups": 0.75, "temperature": 0.03},
}


def with_world_defaults(given: dict, distributed: bool = False) -> dict:
    """The settings typed on the command line (``given``), completed with --world's recipe
    where it has one. The recipe's drawn swaps are left out of runs without hard negatives
    (--no-hard-negatives, --loss siglip, ...), and its starting temperature out of --init runs
    (which start from their model's), where they would be an error."""
    recipe = WORLD_DEFAULTS.get(given.get("world"))
    if recipe is None:
        return given
    from miniclip.train.hardneg import wants_hard_negatives

    merged = {**recipe, **given}
    if not wants_hard_negatives(TrainArgs(**merged), world="distributed" if distributed else None):
        for name, off in (("swapped_images", 0.0), ("swapped_colours", 0.0),
                          ("shape_negatives", None)):
            if name not in given:
                merged[name] = off
    if merged.get("init") is not None and "temperature" not in given:
        merged["temperature"] = None
    return merged


def total_steps(args: TrainArgs, n_pairs: int) -> int:
    if args.epochs is None:
        return args.steps
    return max(1, round(args.epochs * (n_pairs // args.batch_size)))


def _flag(name: str) -> str:
    """The setting's name as the user typed it: --min-lr (TrainArgs.min_lr)."""
    return "--" + name.replace("_", "-")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_args(args: TrainArgs) -> None:
    """Every setting in range and consistent with the others; ValueError/TypeError naming the
    flag (``--min-lr``), what it must be and what it got. Nothing is written before this."""
    if not isinstance(args, TrainArgs):
        raise TypeError(f"args must be a TrainArgs, got {type(args).__name__}")
    for name in ("data", "model", "loss"):
        value = getattr(args, name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{_flag(name)} must be a non-empty string, got {value!r}")
    for name in ("out", "backend"):
        value = getattr(args, name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValueError(f"{_flag(name)} must be a non-empty string or None, got {value!r}")
    if args.backend is not None and args.backend not in backend.available_backends():
        raise ValueError(f"--backend must be one of {backend.available_backends()} (or not "
                         f"given), got {args.backend!r}")
    if args.matmul is not None and args.matmul not in MATMUL_ROUTES:
        raise ValueError(f"--matmul must be one of {MATMUL_ROUTES} (or not given), got "
                         f"{args.matmul!r}")
    if args.matmul is not None and (args.backend or backend.get_backend()) != "numba":
        raise ValueError(f"--matmul routes the numba backend's products; the backend is "
                         f"{args.backend or backend.get_backend()!r}")
    if args.init is None and args.model not in CONFIGS:
        raise ValueError(f"--model must be one of {sorted(CONFIGS)}, got {args.model!r}")
    if args.loss not in LOSSES:
        raise ValueError(f"--loss must be one of {LOSSES}, got {args.loss!r}")
    if not isinstance(args.augment, bool):
        raise TypeError(f"--augment must be True or False, got {args.augment!r}")
    for name in ("steps", "batch_size", "accum", "log_every", "checkpoint_every", "vocab_size"):
        value = getattr(args, name)
        if not _is_int(value) or value < 1:
            raise ValueError(f"{_flag(name)} must be a positive integer, got {value!r}")
    for name in ("seed", "warmup", "eval_every", "eval_images"):
        value = getattr(args, name)
        if name == "warmup" and value is None:
            continue
        if not _is_int(value) or value < 0:
            raise ValueError(f"{_flag(name)} must be an integer >= 0, got {value!r}")
    if args.seed >= 2**63:
        raise ValueError(f"--seed must be below 2**63, got {args.seed}")
    if args.n_train is not None and (not _is_int(args.n_train) or args.n_train < 1):
        raise ValueError(f"--n-train must be a positive integer (or None), got {args.n_train!r}")
    for name in ("lr", "min_lr", "weight_decay", "grad_clip", "epochs"):
        value = getattr(args, name)
        if value is None and name in ("grad_clip", "epochs"):
            continue
        if not _is_number(value) or not math.isfinite(value):
            raise ValueError(f"{_flag(name)} must be a finite number, got {value!r}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    if args.min_lr < 0 or args.min_lr > args.lr:
        raise ValueError(f"--min-lr must be in [0, --lr = {args.lr:g}] (the cosine goes down "
                         f"from --lr to --min-lr), got {args.min_lr:g}")
    if args.weight_decay < 0:
        raise ValueError(f"--weight-decay must be >= 0, got {args.weight_decay}")
    if args.temperature is not None and (
            not _is_number(args.temperature) or not math.isfinite(args.temperature)
            or not MIN_TEMPERATURE <= args.temperature <= 1.0):
        raise ValueError(f"--temperature must be a number in [{MIN_TEMPERATURE}, 1] (the "
                         f"trainer clamps it at {MIN_TEMPERATURE}), got {args.temperature!r}")
    if args.temperature is not None and args.init is not None:
        raise ValueError("--temperature sets a new model's starting temperature; --init "
                         f"{args.init} starts from that model's own")
    if args.grad_clip is not None and not args.grad_clip > 0:
        raise ValueError(f"--grad-clip must be > 0 (or not given), got {args.grad_clip}")
    if args.epochs is not None and not 0 < args.epochs <= 1e6:
        raise ValueError(f"--epochs must be in (0, 1e6], got {args.epochs}")
    if args.accum > args.batch_size:
        raise ValueError(f"--accum ({args.accum}) cannot exceed --batch-size ({args.batch_size})")
    if args.epochs is None:
        check_schedule(args, args.steps)
    check_own_data_args(args)
    check_precision_args(args)
    if args.world is not None and args.world not in WORLDS:
        raise ValueError(f"--world must be one of {WORLDS} (or not given), got {args.world!r}")
    if args.world is not None and own_data_kind(args.data) is not None:
        raise ValueError(f"--world {args.world}: only for the toy dataset; --data {args.data} "
                         "is your own data")
    if args.hard_negatives is not None and not isinstance(args.hard_negatives, bool):
        raise TypeError(f"--hard-negatives must be True, False or None, got "
                        f"{args.hard_negatives!r}")
    for name in ("swapped_images", "swapped_colours", "shape_negatives", "shape_groups"):
        value = getattr(args, name)  # shares; --shape-negatives may be None (its default)
        if (value is not None or name != "shape_negatives") and (
                not _is_number(value) or not 0.0 <= value <= 1.0):
            raise ValueError(f"{_flag(name)} must be a number in [0, 1], got {value!r}")
    if args.shape_groups and own_data_kind(args.data) is not None:
        raise ValueError(f"--shape-groups: only for the toy dataset; --data {args.data} is your "
                         "own data")
    if args.hard_negatives:  # train/hardneg.py
        from miniclip.train.hardneg import check_hard_negative_args

        check_hard_negative_args(args)


def resolve_schedule(args: TrainArgs, steps: int) -> TrainArgs:
    """Check the settings that need the run's length and fill in the default --warmup; the
    result is saved in the checkpoints, so a resumed run keeps the same schedule."""
    check_schedule(args, steps)
    return args if args.warmup is not None else replace(args, warmup=default_warmup(steps))


def default_warmup(steps: int) -> int:
    """--warmup when not given: 10% of the run, at most 100 steps."""
    return min(100, steps // 10)


def check_schedule(args: TrainArgs, steps: int) -> None:
    """Settings that need the run's length (known only with the dataset when --epochs is given)."""
    if args.warmup is not None and args.warmup > steps:
        raise ValueError(f"--warmup ({args.warmup}) must be <= the run's steps ({steps}); "
                         "lower --warmup or train longer")


def check_own_data_args(args: TrainArgs) -> None:
    """--report-to, and the options that only a run on your own data (--data CSV or shards)
    uses: given to a toy-world run they would be silently ignored, so they are an error."""
    from miniclip.train.report import REPORT_TO

    if args.report_to not in REPORT_TO:
        raise ValueError(f"--report-to must be one of {REPORT_TO}, got {args.report_to!r}")
    if own_data_kind(args.data) is None:
        given = [f"--{name.replace('_', '-')}" for name in ("val_data", "zeroshot_classes")
                 if getattr(args, name) is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: only for --data CSV/TSV or .tar shards; the "
                             f"toy dataset in {args.data} is evaluated on its own splits")


def check_precision_args(args: TrainArgs) -> None:
    from miniclip.kernels.dtypes import PRECISIONS

    if args.precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {tuple(PRECISIONS)}, got {args.precision!r}")
    if args.stochastic_rounding and args.precision == "fp32":
        raise ValueError("--stochastic-rounding rounds the 16-bit weight copies: it needs "
                         "--precision bf16 or fp16, got fp32")
    if args.precision != "fp32" and args.backend == "cuda":
        raise ValueError(f"precision {args.precision!r} runs on the numpy and numba backends; "
                         "the cuda backend's DeviceArrays are float32/float64 only")


# ---- command line ----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m miniclip.train",
                                 description="Train a small CLIP on the toy caption dataset, "
                                             "or on your own (--data CSV or .tar shards).")
    defaults = TrainArgs()
    helps = {
        "data": "toy dataset folder (generated if missing), a .csv/.tsv of (image path, "
                "caption), or WebDataset .tar shards (a folder or 'shards/{000..003}.tar')",
        "out": "run folder (default: runs/<model>, numbered if taken)",
        "model": f"model config, one of {sorted(CONFIGS)}",
        "loss": "clip (softmax, OpenAI) or siglip (sigmoid)",
        "steps": "optimizer steps", "epochs": "passes over the training pairs (overrides --steps)",
        "batch_size": "pairs per step", "accum": "micro-batches per step (same gradient)",
        "lr": "peak learning rate", "min_lr": "learning rate at the end of the cosine",
        "warmup": "steps of linear warmup (None: 10%% of the run, at most 100)", "weight_decay": "AdamW weight decay (matrices only)",
        "temperature": "the contrastive loss's temperature at step 0, learned from there "
                       "(None: 0.07, CLIP's; 0.1 for siglip)",
        "grad_clip": "clip the global gradient norm to this", "vocab_size": "BPE vocabulary",
        "augment": "caption-preserving augmentation", "seed": "seed of everything random",
        "log_every": "steps between metrics.jsonl lines",
        "eval_every": "steps between zero-shot curve points (0: none)",
        "eval_images": "images per curve point", "checkpoint_every": "steps between checkpoints",
        "n_train": "training pairs if the dataset has to be generated",
        "backend": f"kernels backend, one of {backend.available_backends()}",
        "matmul": "numba backend's products: auto (the faster of the two, measured per machine: "
                  "the default), kernel (hand-written) or blas",
        "csv_img_key": "CSV column of image paths", "csv_caption_key": "CSV column of captions",
        "csv_separator": "CSV separator ('\\t' or a tab: tab)", "val_data": "CSV or shards for retrieval metrics",
        "zeroshot_classes": "file of class names (one per line; lines with {} are templates)",
        "report_to": "jsonl (metrics.jsonl only) or tensorboard (also RUN/tensorboard/)",
        "init": "fine-tune from this model (anything miniclip.load takes); changes the "
                "defaults to --lr 1e-5 --weight-decay 0.1",
        "precision": "fp32, or mixed precision bf16 / fp16 (float32 master weights)",
        "stochastic_rounding": "round the 16-bit weight copies stochastically",
        "swapped_images": "with hard negatives: the share of two-object images whose scene with "
                          "the places swapped is drawn as an extra image, with its caption",
        "swapped_colours": "with hard negatives: the share of two-object images whose scene "
                           "with the colours swapped is drawn as an extra image, with its caption",
        "shape_negatives": "with hard negatives: the share of one-object images given a false "
                           "caption with another shape (None: 0.3)",
        "shape_groups": "the share of each batch's one-object images drawn in groups of 4 alike "
                        "in colour, size and place, each of another shape",
        "world": f"the toy world of --data, one of {WORLDS}; generated so if missing. "
                 "varied: shapes of any size, turn, proportion, colour and background within "
                 "the documented ranges, trained with its own defaults (--data "
                 "data/toy-varied-64 --model toy-64-stem --batch-size 128 --steps 4000 "
                 "--no-augment --swapped-images 1 --swapped-colours 1 --shape-negatives 1 "
                 "--shape-groups 0.75 --temperature 0.03)",
        "hard_negatives": "add colour-, place- and shape-swapped captions as extra texts "
                          "without an image (NegCLIP; toy world, clip loss, fp32, one process). "
                          "None: on wherever they can be, without --init",
    }
    for f in fields(TrainArgs):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if f.type in ("bool", "bool | None"):
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                            help=f"{helps[f.name]} (default: {default})")
            continue
        kind = {"int": int, "float": float, "str": str, "float | None": float,
                "int | None": int, "str | None": str}[f.type]
        ap.add_argument(flag, type=kind, default=None, help=f"{helps[f.name]} (default: {default})")
    ap.add_argument("--resume", metavar="CHECKPOINT", help="continue the run saved in this "
                    "checkpoint.safetensors, with its own settings")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--distributed", action="store_true", help="one of W processes started by "
                    "mpiexec -n W; --batch-size is the global batch (train/distributed.py)")
    ap.add_argument("--regenerate", action="store_true", help="if the dataset folder holds an "
                    "incomplete or outdated dataset, replace it with a freshly generated one")
    return ap



def select_backend(args: TrainArgs) -> None:
    """Switch to --backend, with --matmul's route for the numba backend's products, if either
    was given. A backend that cannot load here is a ValueError that names it."""
    if args.backend is None and args.matmul is None:
        return
    name = args.backend or "numba"
    options = {} if args.matmul is None else {"matmul": args.matmul}
    try:
        backend.use_backend(name, **options)
    except (ImportError, RuntimeError) as e:  # no GPU for "cuda", no Numba for "numba"
        raise ValueError(f"backend {name!r} cannot be used here: {e}") from e
