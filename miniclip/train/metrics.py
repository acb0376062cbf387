"""Scores on similarity matrices, pure NumPy (no model): top-k accuracy, retrieval ranks and
recall, the confusion matrix.

**Retrieval.** Image i and caption i of the test split are a pair. Image -> text: rank all
captions by similarity to image i; the rank of caption i (1 = first) tells how well it did.
R@k is the share of images whose caption ranks k or better. Text -> image likewise. A tie counts
against the model: rank = 1 + the number of candidates scoring at least as high as the true one,
not counting the true one itself.

    >>> sim = np.array([[0.9, 0.1, 0.0],     # image 0: its caption first       -> rank 1
    ...                 [0.8, 0.2, 0.1],     # image 1: its caption second      -> rank 2
    ...                 [0.5, 0.6, 0.4]])    # image 2: its caption third       -> rank 3
    >>> retrieval_ranks(sim).tolist()
    [1, 2, 3]
    >>> m = retrieval_metrics(sim, "i2t"); m["i2t_r1"], m["i2t_r5"], m["i2t_median_rank"]
    (0.3333333333333333, 1.0, 2.0)
"""

from __future__ import annotations

import numpy as np


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, ks=(1, 5)) -> dict[int, float]:
    """scores (N, C), labels (N,) -> {k: share of rows whose label is among the k best scores}.

    A tie with the true class counts against it, as in ``retrieval_ranks``.

    >>> topk_accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1]), ks=(1, 2))
    {1: 0.5, 2: 1.0}
    """
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"scores must be (N, C) and labels (N,), got {scores.shape} and "
                         f"{labels.shape}")
    true = scores[np.arange(len(labels)), labels][:, None]  # (N, 1)
    rank = (scores >= true).sum(axis=1)  # 1 + how many others score at least as high
    return {k: float((rank <= k).mean()) for k in ks}


def retrieval_ranks(sim: np.ndarray) -> np.ndarray:
    """sim (N, N), row i = query i against every candidate, candidate i the right one
    -> (N,) rank of the right candidate for each query, 1 = best."""
    sim = np.asarray(sim)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"sim must be a square (N, N) matrix, got shape {sim.shape}")
    true = np.diag(sim)[:, None]  # (N, 1)
    return (sim >= true).sum(axis=1)  # the true candidate counts itself once: rank >= 1


def retrieval_metrics(sim: np.ndarray, prefix: str) -> dict[str, float]:
    """R@1, R@5, R@10, mean and median rank of the diagonal of sim, keys '{prefix}_r1', ..."""
    ranks = retrieval_ranks(sim)
    out = {f"{prefix}_r{k}": float((ranks <= k).mean()) for k in (1, 5, 10)}
    out[f"{prefix}_mean_rank"] = float(ranks.mean())
    out[f"{prefix}_median_rank"] = float(np.median(ranks))
    return out


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class.

    >>> confusion_matrix(np.array([0, 0, 1]), np.array([0, 1, 1]), 2).tolist()
    [[1, 1], [0, 1]]
    """
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (labels, predictions), 1)
    return cm
