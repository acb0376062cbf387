"""Images of your own dataset: read them (skipping corrupt ones, counted) and the train-time
random-resized crop.

``random_resized_crop`` is torchvision's ``RandomResizedCrop`` with OpenCLIP's training scale
(0.9, 1.0): pick a box of 90-100 % of the image's area with an aspect ratio between 3/4 and 4/3
(drawn on a log scale), at a random place, and resize it to R x R (bicubic). After 10 failed
draws it falls back to the largest centred box of an allowed ratio. The result is a uint8
(R, R, 3) array, which the model's preprocessing then normalises (it leaves an R x R image as it
is: one normalisation path for training and inference).

    >>> from PIL import Image
    >>> rng = np.random.default_rng(0)
    >>> random_resized_crop(Image.new("RGB", (64, 48)), 32, rng).shape
    (32, 32, 3)
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

TRAIN_SCALE = (0.9, 1.0)  # OpenCLIP's default area range for training crops
TRAIN_RATIO = (3 / 4, 4 / 3)


class SkipCounter:
    """Counts images that could not be read; each skip warns with the running count."""

    def __init__(self):
        self.count = 0

    def skip(self, where, error) -> None:
        self.count += 1
        warnings.warn(f"skipped image {where} ({type(error).__name__}: {error}); "
                      f"{self.count} image(s) skipped so far", stacklevel=3)


def read_image(source, where, skips: SkipCounter | None = None):
    """A path or the encoded bytes of an image -> an RGB PIL image, or None (and a counted
    warning) when it is missing, truncated or not an image."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else Path(source)) as im:
            im.load()
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        if skips is None:
            raise
        skips.skip(where, e)
        return None


def random_resized_crop(image, size: int, rng: np.random.Generator, scale=TRAIN_SCALE,
                        ratio=TRAIN_RATIO) -> np.ndarray:
    """RGB PIL image -> uint8 (size, size, 3): a random box of ``scale`` of the area and an
    aspect ratio in ``ratio``, resized to size x size (bicubic)."""
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"scale must be 0 < lo <= hi <= 1, got {scale}")
    width, height = image.size
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            break
    else:  # the largest centred box whose ratio is allowed
        in_ratio = width / height
        if in_ratio < ratio[0]:
            w, h = width, int(round(width / ratio[0]))
        elif in_ratio > ratio[1]:
            w, h = int(round(height * ratio[1])), height
        else:
            w, h = width, height
        top, left = (height - h) // 2, (width - w) // 2
    box = image.crop((left, top, left + w, top + h))
    return np.asarray(box.resize((size, size), Image.BICUBIC).convert("RGB"))
