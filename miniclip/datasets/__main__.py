"""Command line: write the toy dataset, or draw a grid of its samples.

    python -m miniclip.datasets generate --out data/toy [--n-train 50000] [--seed 0]
    python -m miniclip.datasets generate --out data/toy-varied --world varied   # version 3
    python -m miniclip.datasets grid --data data/toy --out docs/images/toy_samples.png
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from miniclip.datasets.folder import DatasetError
from miniclip.datasets.storage import DEFAULT_SIZES, SPLITS, generate_dataset


def _int_at_least(minimum: int, maximum: int | None = None):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            expected = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
            raise argparse.ArgumentTypeError(f"expected an integer {expected}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m miniclip.datasets", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="draw every split and write .npz files + meta.json")
    gen.add_argument("--out", required=True, help="output folder, e.g. data/toy")
    gen.add_argument("--n-train", type=_int_at_least(1), default=DEFAULT_SIZES["train"])
    gen.add_argument("--n-val", type=_int_at_least(0), default=DEFAULT_SIZES["val"])
    gen.add_argument("--n-test", type=_int_at_least(0), default=DEFAULT_SIZES["test"])
    gen.add_argument("--n-heldout", type=_int_at_least(0), default=DEFAULT_SIZES["heldout"])
    gen.add_argument("--resolution", type=_int_at_least(16), default=32, help="image side, pixels")
    gen.add_argument("--seed", type=_int_at_least(0), default=0)
    gen.add_argument("--workers", type=_int_at_least(1), help="processes (default: one per core)")
    gen.add_argument("--regenerate", action="store_true",
                     help="replace the dataset already in --out (never done otherwise)")
    gen.add_argument("--world", choices=("classic", "varied"), default="classic",
                     help="classic (the default, dataset version 2) or varied: shapes turned, "
                          "stretched and recoloured over the ranges of miniclip/datasets/README.md "
                          "(version 3)")

    grid = commands.add_parser("grid", help="save a PNG of sample images with their captions")
    grid.add_argument("--data", required=True, help="dataset folder written by `generate`")
    grid.add_argument("--out", required=True, help="PNG path")
    grid.add_argument("--split", action="append", choices=SPLITS, dest="splits",
                      help="split to show, may repeat (default: train, then heldout)")  # fmt: skip
    grid.add_argument("--rows", type=_int_at_least(1), action="append",
                      help="rows for each --split (default: 3 train, 1 heldout)")  # fmt: skip
    grid.add_argument("--columns", type=_int_at_least(1, 12), default=6)
    parser.grid_parser = grid  # main() reports grid errors with the grid's usage line
    return parser


def main(argv=None) -> int:
    """The command line; expected failures are one line and exit code 2 (``miniclip.cli``)."""
    from miniclip.cli import run_main

    return run_main(_main, argv)


def _main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "generate":
        started = time.perf_counter()
        meta = generate_dataset(
            args.out,
            n_train=args.n_train,
            n_val=args.n_val,
            n_test=args.n_test,
            n_heldout=args.n_heldout,
            resolution=args.resolution,
            seed=args.seed,
            workers=args.workers,
            regenerate=args.regenerate,
            world=args.world,
        )
        seconds = time.perf_counter() - started
        out = Path(args.out)
        for split in SPLITS:
            path = out / f"{split}.npz"
            size_mib = path.stat().st_size / 2**20
            print(f"{str(path):<28} {meta['split_sizes'][split]:>8,} images {size_mib:8.1f} MiB")
        mean, std = ([round(v, 4) for v in meta[key]] for key in ("mean", "std"))
        print(f"{str(out / 'meta.json'):<28} train mean {mean}, std {std}")
        total = sum(meta["split_sizes"].values())
        r = meta["resolution"]
        print(f"wrote {total:,} images of {r}x{r} in {seconds:.1f} s (seed {meta['seed']})")
        return 0

    splits = args.splits or ["train", "heldout"]
    rows = args.rows or ([3, 1] if args.splits is None else [2] * len(splits))
    if len(rows) != len(splits):
        parser.grid_parser.error(
            f"argument --rows: give it once per --split ({len(splits)}), got {len(rows)}"
        )
    if Path(args.out).suffix.lower() not in (".png", ".pdf", ".svg", ".jpg", ".jpeg"):
        parser.grid_parser.error(f"argument --out: expected a .png, .pdf, .svg or .jpg path, got "
                                 f"{args.out!r}")
    try:
        from miniclip.datasets.storage import check_dataset

        check_dataset(args.data)
    except (FileNotFoundError, DatasetError) as error:
        parser.grid_parser.error(f"argument --data: {error}")
    path = _plot(args.data, args.out, splits, rows, args.columns)
    print(f"wrote {path}")
    return 0


def _plot(data, out, splits, rows, columns):
    from miniclip.datasets.grid import plot_grid

    return plot_grid(data, out, splits=splits, rows=rows, columns=columns)


if __name__ == "__main__":
    sys.exit(main())
