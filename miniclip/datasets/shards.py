"""Your own (image, caption) pairs from WebDataset ``.tar`` shards, read as a stream.

A shard is a tar file of samples; a sample is the files that share a key:
``{key}.jpg`` (or ``.png``, ``.jpeg``, ``.webp``) and ``{key}.txt`` (the caption, UTF-8).
``--data`` names the shards as a folder (every ``*.tar`` in it, sorted), a brace pattern
(``shards/{000..003}.tar``, expanded the way the ``webdataset`` library does it) or one file.

The samples are read with the ``webdataset`` library's tar iterator one shard at a time, so memory
holds one sample, never the dataset. ``ShardStream`` walks the shards in an order drawn from
(seed, epoch), each shard once per epoch, and can say where it is (``position``) and start
again there (skipping, not decoding, what was already read): that is what makes a resumed
run draw the very same batches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


def _webdataset():
    try:
        import webdataset
    except ImportError as e:
        raise ImportError("reading WebDataset shards needs the webdataset package: "
                          "pip install 'miniclip[data]'") from e
    return webdataset


def is_shard_spec(spec) -> bool:
    """Does ``spec`` name tar shards (a folder of them, a brace pattern, a .tar file)?"""
    spec = str(spec)
    if "{" in spec or spec.endswith(".tar"):
        return True
    path = Path(spec)
    return path.is_dir() and any(path.glob("*.tar"))


def expand_shards(spec) -> list[str]:
    """A folder, brace pattern or file -> the list of shard paths; each must exist."""
    spec = str(spec)
    if Path(spec).is_dir():
        urls = sorted(str(p) for p in Path(spec).glob("*.tar"))
    else:
        from braceexpand import braceexpand  # a dependency of webdataset

        urls = list(braceexpand(spec))
    if not urls:
        raise FileNotFoundError(f"no .tar shards in {spec}")
    missing = [u for u in urls if not Path(u).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of the {len(urls)} shards named by {spec!r} do "
                                f"not exist, e.g. {missing[:3]}")
    return urls


def shard_samples(url):
    """One shard -> its samples, in tar order, as (key, image bytes or None, caption or None)."""
    wds = _webdataset()
    for sample in wds.tariterators.tarfile_samples([{"url": url}]):
        image = next((sample[ext] for ext in IMAGE_EXTENSIONS if ext in sample), None)
        text = sample.get("txt")
        caption = text.decode("utf-8", errors="replace").strip() if text is not None else None
        yield sample["__key__"], image, caption


def shard_order(n_shards: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the shards in an epoch: a permutation drawn from (seed, epoch)."""
    return np.random.default_rng([seed, epoch, 7]).permutation(n_shards)


class ShardStream:
    """Samples of the shards, epoch after epoch, each shard once per epoch.

    ``position`` = {"epoch", "consumed"}: the epoch and how many samples of it were handed out.
    ``ShardStream(urls, seed, position)`` continues from there.
    """

    def __init__(self, urls, seed: int, position: dict | None = None):
        self.urls, self.seed = list(urls), int(seed)
        position = position or {"epoch": 0, "consumed": 0}
        self.epoch, self.consumed = int(position["epoch"]), int(position["consumed"])
        self._it = self._epoch_samples(self.epoch, skip=self.consumed)

    @property
    def position(self) -> dict:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def _epoch_samples(self, epoch, skip=0):
        for shard in shard_order(len(self.urls), self.seed, epoch):
            for sample in shard_samples(self.urls[shard]):
                if skip:
                    skip -= 1
                    continue
                yield sample

    def __next__(self):
        """-> (key, image bytes, caption); a new epoch starts after the last shard."""
        for _ in range(2):
            try:
                sample = next(self._it)
            except StopIteration:
                if self.consumed == 0:
                    raise ValueError(f"the shards {self.urls[:3]} hold no samples") from None
                self.epoch, self.consumed = self.epoch + 1, 0
                self._it = self._epoch_samples(self.epoch)
                continue
            self.consumed += 1
            return sample
        raise ValueError(f"the shards {self.urls[:3]} hold no samples")

    def __iter__(self):
        return self


def iter_shard_samples(urls):
    """Every sample of the shards in file order, one at a time (key, image bytes, caption)."""
    for url in urls:
        yield from shard_samples(url)


def read_shard_pairs(urls, limit: int | None = None, captions_only: bool = False):
    """The first ``limit`` samples of the shards in file order (for training a tokenizer, and
    small checks) -> list of (key, image bytes or None, caption)."""
    out = []
    for key, image, caption in iter_shard_samples(urls):
        if limit is not None and len(out) >= limit:
            break
        out.append((key, None if captions_only else image, caption))
    return out
