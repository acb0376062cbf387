"""Training on your own images and captions: ``--data`` names a CSV/TSV file or WebDataset shards.

    python -m miniclip.train --data pairs.tsv --model toy --steps 2000
    python -m miniclip.train --data 'shards/{000..003}.tar' --val-data val.tsv \\
        --zeroshot-classes classes.txt

What changes against the toy world (``train/data.py``):

* batches: a CSV is read at random, the pairs of batch ``step`` chosen by ``batch_indices`` as for
  the toy data; shards are a stream (``datasets/shards.py``), each shard once per epoch in an
  order drawn from (seed, epoch), and the checkpoint records how far the stream got;
* images: decoded when their batch needs them, cropped at random (``random_resized_crop``, area
  90-100 %, OpenCLIP's training scale), then the model's preprocessing: OpenAI's (CLIP's mean and
  std), the same that ``miniclip.load`` gives back for the trained model (resize + centre crop);
* a corrupt or missing image is skipped with a warning that counts the skips; the batch is one
  pair shorter, nothing else is lost;
* captions longer than the context are cut (``truncate=True``), as OpenCLIP does;
* evaluation (in ``train/evaluate.py``): ``--val-data`` (same formats) for image <-> text
  retrieval, ``--zeroshot-classes`` for zero-shot accuracy on the val images whose caption names
  exactly one class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from miniclip.datasets.csv_pairs import CsvPairs
from miniclip.datasets.images import SkipCounter, random_resized_crop, read_image
from miniclip.datasets.shards import (
    ShardStream,
    expand_shards,
    iter_shard_samples,
    read_shard_pairs,
)
from miniclip.datasets.sources import own_data_kind
from miniclip.pretrained.preprocess import Preprocess
from miniclip.train.data import batch_indices

MAX_TOKENIZER_CAPTIONS = 100_000  # captions a from-scratch BPE is trained on (the first ones)


class CsvSource:
    """Batches from a CSV: random access, so batch ``step`` depends on (step, seed) alone."""

    kind = "csv"

    def __init__(self, spec, args, resolution):
        self.pairs = CsvPairs(spec, args.csv_img_key, args.csv_caption_key, args.csv_separator)
        self.resolution, self.skips = resolution, SkipCounter()

    def __len__(self):
        return len(self.pairs)

    def captions_for_tokenizer(self):
        return self.pairs.captions[:MAX_TOKENIZER_CAPTIONS]

    def identity(self) -> dict:
        return {"kind": self.kind, "path": str(self.pairs.path.resolve()), "n_pairs": len(self)}

    def position(self):
        return None

    def batch(self, step, batch_size, seed, rng):
        """-> uint8 (b, R, R, 3) cropped images, their captions (b <= batch_size: skips)."""
        images, captions = [], []
        for i in batch_indices(step, len(self), batch_size, seed):
            image = read_image(self.pairs.paths[i], str(self.pairs.paths[i]), self.skips)
            if image is not None:
                images.append(random_resized_crop(image, self.resolution, rng))
                captions.append(self.pairs.captions[i])
        return images, captions


class ShardSource:
    """Batches from WebDataset shards, streamed; ``position`` goes into each checkpoint."""

    kind = "shards"

    def __init__(self, spec, args, resolution, position=None):
        self.urls = expand_shards(spec)
        self.spec, self.resolution, self.skips = str(spec), resolution, SkipCounter()
        self.stream = ShardStream(self.urls, args.seed, position)

    def captions_for_tokenizer(self):
        pairs = read_shard_pairs(self.urls, MAX_TOKENIZER_CAPTIONS, captions_only=True)
        return [c for _, _, c in pairs if c]

    def count_pairs(self) -> int:
        """One pass over the shards (only for --epochs): samples in an epoch."""
        return sum(1 for _ in iter_shard_samples(self.urls))

    def identity(self) -> dict:
        return {"kind": self.kind, "shards": [str(Path(u).resolve()) for u in self.urls]}

    def position(self):
        return self.stream.position

    def batch(self, step, batch_size, seed, rng):
        images, captions = [], []
        for _ in range(batch_size):
            key, data, caption = next(self.stream)
            where = f"{key} in the shards"
            if data is None or caption is None:
                self.skips.skip(where, ValueError("the sample lacks an image or a .txt caption"))
                continue
            image = read_image(data, where, self.skips)
            if image is not None:
                images.append(random_resized_crop(image, self.resolution, rng))
                captions.append(caption)
        return images, captions


def open_source(args, resolution, position=None):
    kind = own_data_kind(args.data)
    if kind == "csv":
        return CsvSource(args.data, args, resolution)
    return ShardSource(args.data, args, resolution, position)


def own_preprocess(cfg) -> Preprocess:
    """The preprocessing of a model trained on your own data: OpenAI's (also at inference)."""
    return Preprocess(cfg.image_resolution)


def next_batch(run):
    """Hook of ``run_steps``: (uint8 images (b, R, R, 3), tokens (b, T)) of batch ``run.step``."""
    images, captions = run.source.batch(run.step, run.args.batch_size, run.args.seed,
                                        run.aug_rng)
    if not images:
        raise ValueError(f"step {run.step + 1}: every image of the batch was unreadable "
                         f"({run.source.skips.count} skipped so far)")
    tokens = run.tokenizer(captions, truncate=True)  # (b, T)
    return np.stack(images), tokens


# ---- setup -----------------------------------------------------------------------------------------

def setup_own_data(args, ckpt, init, log=print):
    """Steps 1-3 of ``train.loop.setup`` for your own data -> dict of what the Run holds:
    source, tokenizer, cfg, preprocess, n_pairs (None for shards without --epochs), meta.

    The tokenizer and config come from the checkpoint (--resume), else from --init, else a BPE
    is trained on the captions and the config is ``args.model``'s with its vocabulary."""
    from dataclasses import replace

    from miniclip.model.config import CONFIGS
    from miniclip.text.tokenizer import ModelTokenizer
    from miniclip.train.data import train_tokenizer

    if ckpt is not None:
        cfg = ckpt.config
        tokenizer = ModelTokenizer(ckpt.tokenizer["merges"], cfg.context_length)
        position = ckpt.extra.get("data_position")
    elif init is not None:
        cfg, tokenizer, position = replace(init.cfg, loss=args.loss), init.tokenizer, None
    else:
        cfg, tokenizer, position = CONFIGS[args.model], None, None
    source = open_source(args, cfg.image_resolution, position)
    if ckpt is not None and ckpt.data.get("source") != source.identity():
        raise ValueError(f"--data {args.data} is not the data the checkpoint was trained on: "
                         f"{source.identity()} vs {ckpt.data.get('source')}")
    if tokenizer is None:
        log(f"training a BPE tokenizer on the captions of {args.data} ...")
        tokenizer = train_tokenizer(source.captions_for_tokenizer(), args.vocab_size,
                                    cfg.context_length)
        cfg = replace(cfg, vocab_size=tokenizer.vocab_size, loss=args.loss)
    if source.kind == "csv":
        n_pairs = len(source)
    else:
        n_pairs = source.count_pairs() if args.epochs is not None else None
    if n_pairs is not None and n_pairs < args.batch_size:
        raise ValueError(f"batch_size {args.batch_size} is larger than the {n_pairs} training "
                         "pairs")
    preprocess = own_preprocess(cfg)
    meta = {"source": source.identity(), "preprocess": preprocess.to_dict()}
    return dict(source=source, tokenizer=tokenizer, cfg=cfg, preprocess=preprocess,
                n_pairs=n_pairs, meta=meta)
