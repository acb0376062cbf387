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

**Your own data** (a run trained with ``--data`` CSV or shards): retrieval on the ``--val-data``
pairs, and zero-shot with the ``--zeroshot-classes`` names on the val images whose caption names
exactly one class (``caption_labels``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
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
    """uint8 (N, R, R, 3) (or a list of images or paths) -> L2-normalised image embeddings
    (N, E), in batches."""
    parts = [model.encode_image(preprocess(images_uint8[i:i + batch_size]))
             for i in range(0, len(images_uint8), batch_size)]
    return l2_normalize_forward(np.concatenate(parts))[0]


def encode_texts(model, tokenizer, texts, batch_size: int = 500):
    """list of str -> L2-normalised text embeddings (N, E), in batches."""
    texts = list(texts)
    parts = [model.encode_text(tokenizer(texts[i:i + batch_size], model.cfg.context_length))
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


def save_pictures(details: dict, out_dir) -> list[Path]:
    """confusion.png (56 x 56, seen and held-out test images together) and similarity.png
    (12 test images against their 12 captions). Returns the paths written."""
    from miniclip.datasets import HELDOUT_PAIRS, class_index
    from miniclip.train.plots import plot_confusion, plot_similarity

    out_dir = Path(out_dir)
    labels = np.concatenate([details["seen"]["labels"], details["heldout"]["labels"]])
    preds = np.concatenate([details["seen"]["predictions"], details["heldout"]["predictions"]])
    names = details["classnames"]
    cm = confusion_matrix(labels, preds, len(names))
    heldout_classes = [class_index(*p) for p in HELDOUT_PAIRS]
    paths = [out_dir / "confusion.png", out_dir / "similarity.png"]
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


# ---- your own data (--data CSV / shards: train/owndata.py) ----------------------------------------------------------------------------------

def read_eval_pairs(spec, args, limit=1000):
    """The first ``limit`` readable (PIL image, caption) pairs of --val-data (CSV or shards)."""
    from miniclip.datasets.csv_pairs import CSV_SUFFIXES, CsvPairs
    from miniclip.datasets.images import SkipCounter, read_image
    from miniclip.datasets.shards import expand_shards, is_shard_spec, iter_shard_samples

    kind = "csv" if str(spec).endswith(CSV_SUFFIXES) else "shards" if is_shard_spec(spec) else None
    skips, out = SkipCounter(), []
    if kind == "csv":
        pairs = CsvPairs(spec, args.csv_img_key, args.csv_caption_key, args.csv_separator)
        for path, caption in zip(pairs.paths, pairs.captions, strict=True):
            image = read_image(path, str(path), skips)
            if image is not None:
                out.append((image, caption))
            if len(out) >= limit:
                break
    elif kind == "shards":
        for key, data, caption in iter_shard_samples(expand_shards(spec)):
            image = read_image(data, key, skips) if data is not None else None
            if image is not None and caption is not None:
                out.append((image, caption))
            if len(out) >= limit:
                break
    else:
        raise ValueError(f"--val-data must be a .csv/.tsv file or .tar shards, got {spec!r}")
    if not out:
        raise ValueError(f"--val-data {spec}: no readable pairs")
    return out


def read_zeroshot_classes(path):
    """One class name per line; a line with '{}' is a prompt template (blank lines and lines
    starting with # are skipped). -> (classes, templates); no template: ["a photo of a {}."]."""
    lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    templates = [ln for ln in lines if "{}" in ln]
    classes = [ln for ln in lines if "{}" not in ln]
    if not classes:
        raise ValueError(f"--zeroshot-classes {path}: no class names in it")
    return classes, templates or ["a photo of a {}."]


def caption_labels(captions, classes):
    """The class each caption names -> (N,) labels, -1 where it names none or several. A class
    whose name is part of another named one ("red circle" in "dark red circle") does not count.

    >>> caption_labels(["A red circle.", "a dark red circle", "a cat"],
    ...                ["red circle", "dark red circle", "dog"]).tolist()
    [0, 1, -1]
    """
    names = [" " + re.sub(r"[^\w]+", " ", c.lower()).strip() + " " for c in classes]
    labels = []
    for caption in captions:
        text = " " + re.sub(r"[^\w]+", " ", caption.lower()).strip() + " "
        found = [k for k, name in enumerate(names) if name in text]
        found = [k for k in found if not any(j != k and names[k] in names[j] for j in found)]
        labels.append(found[0] if len(found) == 1 else -1)
    return np.array(labels, dtype=np.int64)


def evaluate_own(model, preprocess, tokenizer, args) -> dict:
    """Retrieval on --val-data and zero-shot with --zeroshot-classes -> metrics."""
    if args.val_data is None:
        return {}
    pairs = read_eval_pairs(args.val_data, args)  # unreadable images: skipped with a warning
    images = [im for im, _ in pairs]
    captions = [c for _, c in pairs]
    feats = np.concatenate([model.encode_image(preprocess(images[i:i + 256]))
                            for i in range(0, len(images), 256)])
    img = l2_normalize_forward(feats)[0]  # (N, E)
    txt = l2_normalize_forward(model.encode_text(tokenizer(captions, truncate=True)))[0]
    sim = img @ txt.T  # (N, N)
    metrics = {**retrieval_metrics(sim, "retrieval_i2t"), **retrieval_metrics(sim.T, "retrieval_t2i"),
               "retrieval_n": len(pairs)}
    if args.zeroshot_classes is not None:
        classes, templates = read_zeroshot_classes(args.zeroshot_classes)
        labels = caption_labels(captions, classes)
        keep = labels >= 0
        prompts = [[t.format(c) for t in templates] for c in classes]
        weights = classifier_from_prompts(model, tokenizer, prompts)  # (C, E)
        if keep.any():
            acc = topk_accuracy(img[keep] @ weights.T, labels[keep], ks=(1, 5))
            metrics.update({"zeroshot_top1": acc[1], "zeroshot_top5": acc[5]})
        metrics["zeroshot_n"] = int(keep.sum())
    return metrics


def format_own_metrics(m: dict) -> str:
    if not m:
        return "no --val-data: no evaluation"
    line = (f"retrieval on {m['retrieval_n']} val pairs: image->text R@1/5 "
            f"{m['retrieval_i2t_r1']:.1%}/{m['retrieval_i2t_r5']:.1%}, text->image "
            f"{m['retrieval_t2i_r1']:.1%}/{m['retrieval_t2i_r5']:.1%}")
    if "zeroshot_n" in m:
        line += (f"; zero-shot top-1 {m['zeroshot_top1']:.1%} on {m['zeroshot_n']} images"
                 if m["zeroshot_n"] else "; zero-shot: no val caption names exactly one class")
    return line


def main(argv=None) -> int:
    from miniclip.pretrained.checkpoint import (
        load_checkpoint,
        load_trained,
        resolve_checkpoint_path,
    )

    ap = argparse.ArgumentParser(prog="python -m miniclip.evaluate",
                                 description="Zero-shot and retrieval metrics of a trained model.")
    ap.add_argument("path", help="a run folder (runs/NAME) or its checkpoint file")
    ap.add_argument("--data", help="dataset folder (default: the one the model was trained on)")
    ap.add_argument("--out", help="where metrics.json and the pictures go (default: beside the "
                                  "checkpoint)")
    ap.add_argument("--val-data", help="a run on your own data: CSV or shards for retrieval "
                                       "(default: the run's --val-data)")
    ap.add_argument("--zeroshot-classes", help="a run on your own data: class names file "
                                               "(default: the run's)")
    args = ap.parse_args(argv)
    try:
        ckpt_path = resolve_checkpoint_path(args.path)
        ckpt = load_checkpoint(ckpt_path)
        model, preprocess, tokenizer = load_trained(ckpt_path)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if "source" in ckpt.data:  # trained on your own data: retrieval on --val-data (owndata.py)
        return _evaluate_own_run(ckpt, model, preprocess, tokenizer, args)
    data_dir = args.data or ckpt.data.get("dir")
    out_dir = Path(args.out) if args.out else ckpt_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        metrics, details = evaluate(model, preprocess, tokenizer, data_dir)
    except FileNotFoundError as e:
        print(f"error: {e}\n(the model was trained on the dataset in {data_dir!r}; point --data at "
              "it if it moved)", file=sys.stderr)
        return 2
    seconds = ckpt.extra.get("train_seconds")
    metrics.update({"steps": ckpt.step, "train_seconds": None if seconds is None else round(seconds, 1),
                    "eval_seconds": round(time.perf_counter() - started, 2)})
    path = out_dir / "metrics.json"
    if path.is_file():  # keep what training wrote there (images/s, ...), update the rest
        metrics = {**json.loads(path.read_text()), **metrics}
    path.write_text(json.dumps(metrics, indent=1) + "\n")
    paths = save_pictures(details, out_dir)
    print(format_metrics(metrics))
    print(f"wrote {out_dir / 'metrics.json'}, " + ", ".join(str(p) for p in paths))
    return 0


def _evaluate_own_run(ckpt, model, preprocess, tokenizer, args) -> int:
    """``miniclip-eval RUN`` for a run trained with --data CSV/shards: its --val-data retrieval
    and --zeroshot-classes zero-shot (or the ones given now), printed and returned in JSON."""
    from dataclasses import replace

    from miniclip.train.args import TrainArgs

    run_args = TrainArgs(**ckpt.train_args)
    run_args = replace(run_args, val_data=args.val_data or run_args.val_data,
                       zeroshot_classes=args.zeroshot_classes or run_args.zeroshot_classes)
    if run_args.val_data is None:
        print("error: this run was trained on your own data without --val-data; give "
              "--val-data CSV_OR_SHARDS", file=sys.stderr)
        return 2
    try:
        metrics = evaluate_own(model, preprocess, tokenizer, run_args)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_own_metrics(metrics))
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
