"""A picture of the dataset: sample images, enlarged so each pixel shows, captions underneath."""

from __future__ import annotations

import textwrap
from pathlib import Path

from miniclip.datasets.storage import SPLITS, load_split


def plot_grid(data_dir, out_path, splits=("train", "heldout"), rows=(3, 1), columns=6) -> Path:
    """Save a PNG grid: ``rows[k]`` rows of the first images of ``splits[k]``, captions below.

    Held-out images are marked, since their compositions never appear in training.
    """
    splits, rows = tuple(splits), tuple(rows)
    if len(splits) != len(rows) or not splits:
        raise ValueError(f"splits and rows must be equally long, not empty; got {splits}, {rows}")
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"splits must hold names from {SPLITS}, got {split!r}")
    if any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in rows):
        raise ValueError(f"rows must be positive ints, got {rows}")
    if isinstance(columns, bool) or not isinstance(columns, int) or not 1 <= columns <= 12:
        raise ValueError(f"columns must be an int in [1, 12], got {columns!r}")

    panels = []  # (image, caption, split)
    for split, n_rows in zip(splits, rows, strict=True):
        data = load_split(data_dir, split)
        count = min(n_rows * columns, len(data))
        panels += [(data.images[i], str(data.captions[i]), split) for i in range(count)]
    if not panels:
        raise ValueError(f"the splits {splits} of {str(data_dir)!r} hold no images")

    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    n_rows = -(-len(panels) // columns)
    fig = Figure(figsize=(1.6 * columns, 2.15 * n_rows), dpi=100)
    for k, (image, caption, split) in enumerate(panels):
        ax = fig.add_subplot(n_rows, columns, k + 1)
        ax.imshow(image, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        text = textwrap.fill(caption, width=24)
        if split != "train":
            text = f"[{split}]\n" + text
            for spine in ax.spines.values():
                spine.set_color("tab:red" if split == "heldout" else "tab:blue")
                spine.set_linewidth(2)
        ax.set_xlabel(text, fontsize=7.5, linespacing=1.1)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.99, bottom=0.06, wspace=0.08, hspace=0.45)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path)
    return out_path

