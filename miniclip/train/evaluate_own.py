"""Evaluation of a run trained on your own data (``--data`` CSV or shards): retrieval on the
``--val-data`` pairs, and zero-shot with the ``--zeroshot-classes`` names on the val images whose
caption names exactly one class (``caption_labels``)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from miniclip.nn.normalize import l2_normalize_forward
from miniclip.pretrained.zeroshot import classifier_from_prompts
from miniclip.train.metrics import retrieval_metrics, topk_accuracy


def read_eval_pairs(spec, args, limit=1000):
    """The first ``limit`` readable (PIL image, caption) pairs of --val-data (CSV or shards)."""
    from miniclip.datasets.csv_pairs import CsvPairs
    from miniclip.datasets.images import SkipCounter, read_image
    from miniclip.datasets.shards import expand_shards, iter_shard_samples
    from miniclip.datasets.sources import own_data_kind

    kind = own_data_kind(spec)
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
