"""Pictures of a training run: curves, a confusion matrix, an image-text similarity matrix.

Each function returns a matplotlib ``Figure`` (made without pyplot, so no window opens and no
global state changes); save it with ``fig.savefig(path)`` or show it in a notebook.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def _smooth(values: np.ndarray, half_width: int) -> np.ndarray:
    """Centred moving average over 2 * half_width + 1 points (fewer at the ends)."""
    values = np.asarray(values, dtype=np.float64)
    csum = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(len(values))
    lo = np.maximum(0, idx - half_width)
    hi = np.minimum(len(values), idx + half_width + 1)
    return (csum[hi] - csum[lo]) / (hi - lo)


def plot_training_curves(records: list[dict]) -> Figure:
    """records: the lines of metrics.jsonl. Three panels: training loss, temperature
    (1 / exp(logit_scale)), zero-shot top-1 accuracy on seen and held-out compositions."""
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "zeroshot_top1_seen" in r]
    fig = Figure(figsize=(12, 3.4), layout="constrained")
    ax_loss, ax_temp, ax_acc = fig.subplots(1, 3)
    if train:
        steps = np.array([r["step"] for r in train])
        loss = np.array([r["loss"] for r in train])
        ax_loss.plot(steps, loss, color="C0", alpha=0.3, lw=0.8, label="per step")
        ax_loss.plot(steps, _smooth(loss, max(1, len(loss) // 40)), color="C0", lw=1.8, label="moving average")
        ax_loss.set_yscale("log")
        ax_loss.legend(frameon=False)
        ax_temp.plot(steps, [r["temperature"] for r in train], color="C1")
    ax_loss.set(title="training loss", xlabel="step")
    ax_temp.set(title="temperature  1 / exp(logit_scale)", xlabel="step")
    if evals:
        steps = [r["step"] for r in evals]
        ax_acc.plot(steps, [100 * r["zeroshot_top1_seen"] for r in evals], "o-", ms=3,
                    label="seen compositions (val)")
        ax_acc.plot(steps, [100 * r["zeroshot_top1_heldout"] for r in evals], "o-", ms=3,
                    label="held-out compositions")
        ax_acc.legend(frameon=False, loc="lower right")
    ax_acc.set(title="zero-shot top-1 accuracy (%)", xlabel="step", ylim=(0, 101))
    for ax in (ax_loss, ax_temp, ax_acc):
        ax.grid(alpha=0.3)
    return fig


def plot_confusion(cm: np.ndarray, classnames, highlight=()) -> Figure:
    """cm (C, C) counts, row = true class, column = predicted. Rows are shown as shares of
    their row; the classes in ``highlight`` (the held-out ones) get red tick labels."""
    share = cm / np.maximum(1, cm.sum(axis=1, keepdims=True))
    C = len(classnames)
    fig = Figure(figsize=(11, 10), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(C), classnames, rotation=90, fontsize=6)
    ax.set_yticks(range(C), classnames, fontsize=6)
    for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
        for i in highlight:
            labels[i].set_color("red")
    ax.set(xlabel="predicted class", ylabel="true class",
           title="zero-shot confusion (rows sum to 1; held-out compositions in red)")
    fig.colorbar(im, ax=ax, shrink=0.6)
    return fig


def plot_similarity(sim: np.ndarray, images: np.ndarray, captions: list[str]) -> Figure:
    """sim (K, K) cosine similarities, row = image, column = caption. Drawn with the K images
    along the top and the K captions down the side; the matching pairs are on the diagonal."""
    K = len(images)
    sim = np.asarray(sim).T  # (captions, images), as drawn
    fig = Figure(figsize=(4 + 0.75 * K, 1.5 + 0.55 * K), layout="constrained")
    grid = fig.add_gridspec(2, 1, height_ratios=[1, K])
    strip = fig.add_subplot(grid[0])
    strip.imshow(np.concatenate(list(images), axis=1), interpolation="nearest")
    strip.set_axis_off()
    ax = fig.add_subplot(grid[1])
    ax.imshow(sim, cmap="viridis")
    for i in range(K):
        for j in range(K):
            ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if sim[i, j] > sim.mean() else "white")
    ax.set_yticks(range(K), [f"text {i}: {c}" for i, c in enumerate(captions)], fontsize=8)
    ax.set_xticks(range(K), [f"image {i}" for i in range(K)], fontsize=7, rotation=45)
    ax.set_title("cosine similarity: captions (rows) vs images (columns)")
    return fig


def show_predictions(images, titles, colours=None, columns: int = 8) -> Figure:
    """A grid of images with a title each (e.g. the predicted class), titles coloured."""
    n = len(images)
    rows = max(1, -(-n // columns))
    fig = Figure(figsize=(1.6 * columns, 1.8 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i < n:
            ax.imshow(images[i], interpolation="nearest")
            ax.set_title(titles[i], fontsize=7,
                         color=None if colours is None else colours[i])
    return fig
