"""Evaluation: zero-shot classification and image-text retrieval on the toy dataset.

**Zero-shot classification.** The model was never trained to classify. Each of the 56
(colour, shape) classes becomes text instead: a handful of prompts ("a red circle.", "a photo of a
red circle.", ...), each embedded and L2-normalised, averaged, and normalised again (prompt
ensembling). An image is assigned the class whose text embedding is closest (cosine similarity).
It is measured on test images of compositions seen in training, and on the held-out compositions
("blue circle", ...) that never appeared together in any training image.

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

    python -m miniclip.evaluate runs/toy        # a run folder or a checkpoint file
"""

from __future__ import annotations

import contextlib
import os
import re
import sys

if __name__ == "__main__" and "numpy" not in sys.modules:  # one BLAS thread: see miniclip/train.py
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse
import json
import time
from pathlib import Path

import numpy as np

from miniclip.nn.normalize import l2_normalize_forward
from miniclip.pretrained.zeroshot import classifier_from_prompts

# ---- metrics on similarity matrices (pure NumPy, no model) ------------------------------------

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


# ---- embedding with a model -------------------------------------------------------------------

def encode_images(model, preprocess, images_uint8: np.ndarray, batch_size: int = 500):
    """uint8 (N, R, R, 3) -> L2-normalised image embeddings (N, E), in batches."""
    parts = [model.encode_image(preprocess(images_uint8[i:i + batch_size]))
             for i in range(0, len(images_uint8), batch_size)]
    return l2_normalize_forward(np.concatenate(parts))[0]


def encode_texts(model, tokenizer, texts, batch_size: int = 500):
    """list of str -> L2-normalised text embeddings (N, E), in batches."""
    texts = list(texts)
    parts = [model.encode_text(tokenizer.tokenize(texts[i:i + batch_size],
                                                  model.cfg.context_length))
             for i in range(0, len(texts), batch_size)]
    return l2_normalize_forward(np.concatenate(parts))[0]


def zero_shot_weights(model, tokenizer, classnames, templates=None) -> np.ndarray:
    """One unit vector per class (C, E) from the toy world's prompts ("a red circle.", ...):
    miniclip.pretrained.zeroshot's classifier, with the prompts written by the dataset."""
    from miniclip.datasets import PROMPT_TEMPLATES, prompts_for

    templates = PROMPT_TEMPLATES if templates is None else tuple(templates)
    prompts = [prompts_for(name, templates) for name in classnames]  # C lists of P texts
    return classifier_from_prompts(model, tokenizer, prompts, batch_size=500)


# ---- the whole evaluation ---------------------------------------------------------------------

def evaluate_zero_shot(model, preprocess, tokenizer, split, class_weights) -> dict:
    """Zero-shot scores on the single-object images of a split -> dict with top1, top5,
    labels, predictions, scores."""
    keep = split.label >= 0
    labels = split.label[keep].astype(np.int64)
    feats = encode_images(model, preprocess, split.images[keep])  # (N, E)
    scores = feats @ class_weights.T  # (N, C) cosine similarities
    acc = topk_accuracy(scores, labels, ks=(1, 5))
    return {"top1": acc[1], "top5": acc[5], "labels": labels,
            "predictions": scores.argmax(axis=1), "scores": scores}


def evaluate(model, preprocess, tokenizer, data_dir, max_retrieval: int = 1000) -> tuple[dict, dict]:
    """Zero-shot (seen and held-out compositions) and retrieval (test split).

    -> (metrics: dict of floats, details: arrays for the pictures)
    """
    from miniclip.datasets import CLASSNAMES, load_split

    test, heldout = load_split(data_dir, "test"), load_split(data_dir, "heldout")
    weights = zero_shot_weights(model, tokenizer, CLASSNAMES)
    seen = evaluate_zero_shot(model, preprocess, tokenizer, test, weights)
    held = evaluate_zero_shot(model, preprocess, tokenizer, heldout, weights)
    metrics = {"zeroshot_top1_seen": seen["top1"], "zeroshot_top5_seen": seen["top5"],
               "zeroshot_top1_heldout": held["top1"], "zeroshot_top5_heldout": held["top5"],
               "zeroshot_n_seen": int(len(seen["labels"])),
               "zeroshot_n_heldout": int(len(held["labels"]))}

    n = min(max_retrieval, len(test))
    img = encode_images(model, preprocess, test.images[:n])  # (n, E)
    txt = encode_texts(model, tokenizer, test.captions[:n])  # (n, E)
    sim = img @ txt.T  # (n, n): row = image, column = caption
    metrics.update(retrieval_metrics(sim, "retrieval_i2t"))
    metrics.update(retrieval_metrics(sim.T, "retrieval_t2i"))
    metrics["retrieval_n"] = int(n)
    details = {"seen": seen, "heldout": held, "sim": sim, "test": test, "heldout_split": heldout,
               "classnames": CLASSNAMES}
    return metrics, details


def save_pictures(details: dict, out_dir, suffix: str = "") -> list[Path]:
    """confusion.png (56 x 56, seen and held-out test images together) and similarity.png
    (12 test images against their 12 captions), ``suffix`` before ".png". -> the paths written."""
    from miniclip.datasets import HELDOUT_PAIRS, class_index
    from miniclip.train.plots import plot_confusion, plot_similarity

    out_dir = Path(out_dir)
    labels = np.concatenate([details["seen"]["labels"], details["heldout"]["labels"]])
    preds = np.concatenate([details["seen"]["predictions"], details["heldout"]["predictions"]])
    names = details["classnames"]
    cm = confusion_matrix(labels, preds, len(names))
    heldout_classes = [class_index(*p) for p in HELDOUT_PAIRS]
    paths = [out_dir / f"confusion{suffix}.png", out_dir / f"similarity{suffix}.png"]
    plot_confusion(cm, names, heldout_classes).savefig(paths[0], dpi=110)
    test, k = details["test"], 12
    plot_similarity(details["sim"][:k, :k], test.images[:k], list(test.captions[:k])).savefig(
        paths[1], dpi=110)
    return paths


def format_metrics(m: dict) -> str:
    """A few human lines of the main numbers."""
    return (f"zero-shot top-1: seen {m['zeroshot_top1_seen']:.1%}, held-out "
            f"{m['zeroshot_top1_heldout']:.1%}   (top-5: {m['zeroshot_top5_seen']:.1%}, "
            f"{m['zeroshot_top5_heldout']:.1%})\n"
            f"retrieval on {m['retrieval_n']} test pairs: image->text R@1/5/10 "
            f"{m['retrieval_i2t_r1']:.1%}/{m['retrieval_i2t_r5']:.1%}/{m['retrieval_i2t_r10']:.1%}"
            f" (median rank {m['retrieval_i2t_median_rank']:g}), text->image "
            f"{m['retrieval_t2i_r1']:.1%}/{m['retrieval_t2i_r5']:.1%}/{m['retrieval_t2i_r10']:.1%}"
            f" (median rank {m['retrieval_t2i_median_rank']:g})")


def main(argv=None) -> int:
    """The command line; expected failures are one line and exit code 2 (``miniclip.cli``)."""
    from miniclip.cli import run_main

    return run_main(_main, argv)


def _data_suffix(data_dir) -> str:
    """'-<folder name>' for files of an evaluation on another dataset than the training one."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(data_dir).resolve().name) or "data"
    return f"-{name}"


def _main(argv=None) -> int:
    from miniclip.datasets import check_dataset
    from miniclip.datasets.folder import data_identity, same_dataset
    from miniclip.pretrained.checkpoint import (
        load_checkpoint,
        load_trained,
        resolve_checkpoint_path,
    )
    from miniclip.train.runfolder import LOCK_FILE, RunFolderLock

    ap = argparse.ArgumentParser(prog="python -m miniclip.evaluate",
                                 description="Zero-shot and retrieval metrics of a trained model.")
    ap.add_argument("path", help="a run folder (runs/NAME) or a checkpoint .npz")
    ap.add_argument("--data", help="dataset folder (default: the one the model was trained on). "
                                   "On another dataset the results go to metrics-<folder>.json "
                                   "(and confusion-<folder>.png ...), never over the run's own")
    ap.add_argument("--out", help="where metrics.json and the pictures go (default: beside the "
                                  "checkpoint)")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace earlier results of an evaluation on the same --data")
    args = ap.parse_args(argv)
    for flag in ("data", "out"):
        value = getattr(args, flag)
        if value is not None and not value.strip():
            ap.error(f"argument --{flag}: expected a folder, got an empty string")
    ckpt_path = resolve_checkpoint_path(args.path)
    ckpt = load_checkpoint(ckpt_path)
    model, preprocess, tokenizer = load_trained(ckpt_path)
    trained_on = ckpt.data.get("dir")
    data_dir = args.data or trained_on
    if data_dir is None:
        raise ValueError(f"{ckpt_path} does not say which dataset it was trained on; give --data")
    if not Path(data_dir).exists():
        raise FileNotFoundError(f"--data: no dataset folder at {data_dir}" + (
            "" if args.data else " (the model was trained there; point --data at it if it moved)"))
    meta = check_dataset(data_dir)
    own = trained_on is not None and Path(data_dir).resolve() == Path(trained_on).resolve()
    if own and not same_dataset(data_identity(meta, data_dir), ckpt.data):
        if args.data is None:
            raise ValueError(f"the dataset in {data_dir} is no longer the one {ckpt_path} was "
                             "trained on (regenerated or edited); to evaluate on it anyway, "
                             f"give it as --data {data_dir}")
        own = False  # asked for explicitly: evaluated, but filed under its own name
    out_dir = Path(args.out) if args.out else ckpt_path.parent
    suffix = "" if own else _data_suffix(data_dir)
    path = out_dir / f"metrics{suffix}.json"
    pictures = [out_dir / f"confusion{suffix}.png", out_dir / f"similarity{suffix}.png"]
    merge = own and args.out is None  # the run's own metrics.json: update it, keep the rest
    taken = [p for p in ([] if merge else [path]) + pictures if p.exists()]
    if taken and not args.overwrite and not merge:
        raise FileExistsError(f"{', '.join(str(p) for p in taken)} already exist(s): an "
                              "evaluation is never written over another; pass --overwrite to "
                              "replace it, or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    # a run folder belongs to its run: evaluate while none is training in it, and hold it
    owned = (out_dir / LOCK_FILE).exists() or (out_dir / "checkpoint.npz").exists()
    with RunFolderLock(out_dir) if owned else contextlib.nullcontext():
        _evaluate_and_write(args, ckpt, model, preprocess, tokenizer, data_dir, out_dir, path,
                            suffix, merge)
    return 0


def _evaluate_and_write(args, ckpt, model, preprocess, tokenizer, data_dir, out_dir, path,
                        suffix, merge):
    from miniclip.train.runfolder import write_text_atomic

    started = time.perf_counter()
    metrics, details = evaluate(model, preprocess, tokenizer, data_dir)
    seconds = ckpt.extra.get("train_seconds")
    metrics.update({"steps": ckpt.step, "train_seconds": None if seconds is None else round(seconds, 1),
                    "eval_seconds": round(time.perf_counter() - started, 2),
                    "data": str(Path(data_dir).resolve())})
    if merge and path.is_file():  # keep what training wrote there (images/s, ...), update the rest
        try:
            metrics = {**json.loads(path.read_text()), **metrics}
        except ValueError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); move it away, or evaluate with "
                             "--out OTHER") from e
    write_text_atomic(path, json.dumps(metrics, indent=1) + "\n")
    paths = save_pictures(details, out_dir, suffix)
    print(format_metrics(metrics))
    print(f"wrote {path}, " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    sys.exit(main())
