"""Evaluation: zero-shot classification and image-text retrieval on the toy dataset.

**Zero-shot classification.** The model was never trained to classify. Each of the 56
(colour, shape) classes becomes text instead: a handful of prompts ("a red circle.", "a photo of a
red circle.", ...), each embedded and L2-normalised, averaged, and normalised again (prompt
ensembling). An image is assigned the class whose text embedding is closest (cosine similarity).
It is measured on test images of compositions seen in training, and on the held-out compositions
("blue circle", ...) that never appeared together in any training image.

**Retrieval.** Image i and caption i of the test split are a pair (miniclip/train/metrics.py).

    python -m miniclip.evaluate runs/toy        # a run folder or a checkpoint file

**Your own data** (a run trained with ``--data`` CSV or shards): retrieval on the ``--val-data``
pairs, and zero-shot with the ``--zeroshot-classes`` names on the val images whose caption names
exactly one class (``caption_labels``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

from miniclip.nn.normalize import l2_normalize_forward
from miniclip.pretrained.zeroshot import classifier_from_prompts
from miniclip.train.evaluate_own import evaluate_own, format_own_metrics
from miniclip.train.metrics import (  # noqa: F401 - the evaluation's names, for callers
    confusion_matrix,
    retrieval_metrics,
    retrieval_ranks,
    topk_accuracy,
)

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


def evaluate(model, preprocess, tokenizer, data_dir, max_retrieval: int = 1000,
             generalisation: bool = True) -> tuple[dict, dict]:
    """Zero-shot (seen and held-out compositions) and retrieval (test split); with
    ``generalisation``, also binding, relations and the renderer shift, each with its chance
    level (train/generalisation.py).

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
    if generalisation:
        from miniclip.train.generalisation import evaluate_generalisation

        metrics.update(evaluate_generalisation(model, preprocess, tokenizer))
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
    from miniclip.train.generalisation import format_generalisation

    extra = "\n" + format_generalisation(m) if "binding_acc" in m else ""
    return (f"zero-shot top-1: seen {m['zeroshot_top1_seen']:.1%}, held-out "
            f"{m['zeroshot_top1_heldout']:.1%}   (top-5: {m['zeroshot_top5_seen']:.1%}, "
            f"{m['zeroshot_top5_heldout']:.1%})\n"
            f"retrieval on {m['retrieval_n']} test pairs: image->text R@1/5/10 "
            f"{m['retrieval_i2t_r1']:.1%}/{m['retrieval_i2t_r5']:.1%}/{m['retrieval_i2t_r10']:.1%}"
            f" (median rank {m['retrieval_i2t_median_rank']:g}), text->image "
            f"{m['retrieval_t2i_r1']:.1%}/{m['retrieval_t2i_r5']:.1%}/{m['retrieval_t2i_r10']:.1%}"
            f" (median rank {m['retrieval_t2i_median_rank']:g})" + extra)


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
    ap.add_argument("path", help="a run folder (runs/NAME) or its checkpoint file")
    ap.add_argument("--data", help="dataset folder (default: the one the model was trained on). "
                                   "On another dataset the results go to metrics-<folder>.json "
                                   "(and confusion-<folder>.png ...), never over the run's own")
    ap.add_argument("--out", help="where metrics.json and the pictures go (default: beside the "
                                  "checkpoint)")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace earlier results of an evaluation on the same --data")
    ap.add_argument("--val-data", help="a run on your own data: CSV or shards for retrieval "
                                       "(default: the run's --val-data)")
    ap.add_argument("--zeroshot-classes", help="a run on your own data: class names file "
                                               "(default: the run's)")
    args = ap.parse_args(argv)
    for flag in ("data", "out"):
        value = getattr(args, flag)
        if value is not None and not value.strip():
            ap.error(f"argument --{flag}: expected a folder, got an empty string")
    ckpt_path = resolve_checkpoint_path(args.path)
    ckpt = load_checkpoint(ckpt_path)
    model, preprocess, tokenizer = load_trained(ckpt_path)
    if "source" in ckpt.data:  # trained on your own data: retrieval on --val-data (owndata.py)
        return _evaluate_own_run(ckpt, model, preprocess, tokenizer, args)
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
    owned = (out_dir / LOCK_FILE).exists() or any(out_dir.glob("checkpoint.*"))
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
