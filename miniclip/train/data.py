"""The training data of the toy world: which pairs make up each batch (from the seed alone, so
a resumed run draws the same batches), the tokenizer trained on the captions, the dataset made or
checked, and the small zero-shot probe behind the accuracy curves."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from miniclip.text.tokenizer import ModelTokenizer

_PERMUTATION = {}  # (n_pairs, seed, epoch) -> the permutation of that epoch, the latest only


def batch_indices(step: int, n_pairs: int, batch_size: int, seed: int,
                  shape_groups=None) -> np.ndarray:
    """Which training pairs make up batch ``step``: a slice of a permutation of the pairs drawn
    from (seed, epoch). The last partial batch of an epoch is dropped. With ``shape_groups``
    (train/shapegroups.py, --shape-groups) a share of its one-object images is then redrawn in
    groups alike but for the shape.

    Depends only on its arguments, so a resumed run draws the same batches.
    """
    per_epoch = n_pairs // batch_size
    epoch, i = divmod(step, per_epoch)
    key = (n_pairs, seed, epoch)
    if key not in _PERMUTATION:
        _PERMUTATION.clear()
        _PERMUTATION[key] = np.random.default_rng([seed, epoch]).permutation(n_pairs)
    drawn = _PERMUTATION[key][i * batch_size:(i + 1) * batch_size]
    return drawn if shape_groups is None else shape_groups.batch(drawn, step, seed)


def train_tokenizer(captions, vocab_size: int, context_length: int) -> ModelTokenizer:
    """BPE on the training captions; checks that every caption fits the context."""
    from miniclip.text.bpe import BPETokenizer

    with warnings.catch_warnings():  # "only N merges were possible": fine, noted below
        warnings.simplefilter("ignore", UserWarning)
        merges = BPETokenizer.train(list(captions), vocab_size).merges
    tokenizer = ModelTokenizer(merges, context_length)
    return tokenizer


def tokenize_captions(tokenizer: ModelTokenizer, captions) -> np.ndarray:
    try:
        return tokenizer(list(captions))
    except ValueError as e:
        raise ValueError(f"a caption does not fit the model's context_length "
                         f"{tokenizer.context_length}: {e}. Use a config with a longer context.") \
            from e


def prepare_dataset(data_dir, n_train: int | None, log=print, regenerate: bool = False,
                    world: str | None = None, resolution: int = 32) -> dict:
    """The dataset's meta, every split checked against it (sizes, content hashes). A missing or
    empty folder gets a freshly generated dataset of ``world`` (None: the classic one) at
    ``resolution`` (the model's); an incomplete, edited or outdated one is an error saying how to
    regenerate it, unless ``regenerate``: then it is replaced. ``world`` given: a folder holding
    the other world is an error (--world)."""
    from miniclip.datasets import DatasetError, check_dataset, generate_dataset
    from miniclip.datasets.storage import is_empty_folder

    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise NotADirectoryError(f"--data {data_dir} is a file, not a dataset folder")
    if not is_empty_folder(data_dir):
        try:
            meta = check_dataset(data_dir)
        except (FileNotFoundError, DatasetError) as e:
            if not regenerate:
                raise DatasetError(f"--data {data_dir}: {e}") from e
            log(f"--regenerate: replacing the dataset in {data_dir} ({e})")
        else:
            sizes = meta["split_sizes"]
            if n_train is not None and sizes["train"] != n_train:
                raise ValueError(f"--n-train {n_train}: the dataset in {data_dir} already has "
                                 f"{sizes['train']} training pairs; leave --n-train out, or use "
                                 "another --data")
            held = meta.get("world", "classic")
            if world is not None and held != world:
                raise ValueError(f"--world {world}: the dataset in {data_dir} is the {held} "
                                 f"world; leave --world out to train on it, or give another "
                                 f"--data")
            return meta
    world = world or "classic"
    log(f"generating the toy dataset ({world} world, {resolution}x{resolution}) in {data_dir} "
        f"(once) ...")
    t0 = time.perf_counter()
    meta = generate_dataset(data_dir, regenerate=regenerate, world=world, resolution=resolution,
                            **({} if n_train is None else {"n_train": n_train}))
    log(f"  done in {time.perf_counter() - t0:.0f}s")
    return meta


# ---- evaluation during training (small, for the curves) ---------------------------------------

class CurveProbe:
    """Zero-shot top-1 on a fixed few hundred single-object images of val (seen compositions)
    and of the held-out split, for the accuracy curve. The final numbers come from the full
    test and held-out splits (``miniclip.evaluate``)."""

    def __init__(self, data_dir, n_images: int):
        from miniclip.datasets import load_split

        val, held = load_split(data_dir, "val"), load_split(data_dir, "heldout")
        self.sets = {}
        for name, split in (("seen", val), ("heldout", held)):
            keep = np.flatnonzero(split.label >= 0)[:n_images]
            self.sets[name] = (split.images[keep], split.label[keep].astype(np.int64))

    def __call__(self, model, preprocess, tokenizer) -> dict:
        from miniclip.datasets import CLASSNAMES
        from miniclip.train.evaluate import encode_images, topk_accuracy, zero_shot_weights

        weights = zero_shot_weights(model, tokenizer, CLASSNAMES)  # (56, E)
        out = {}
        for name, (images, labels) in self.sets.items():
            if len(labels):
                scores = encode_images(model, preprocess, images) @ weights.T
                out[f"zeroshot_top1_{name}"] = topk_accuracy(scores, labels, ks=(1,))[1]
        return out
