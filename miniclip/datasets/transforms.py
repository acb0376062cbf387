"""Augmentation of stored uint8 images that keeps the captions true.

``augment`` changes what a caption cannot see: a little brightness and contrast, a little noise,
a shift of at most one pixel. It never flips (captions say "left" and "above") and never shifts far
enough to move an object into another cell. Turning uint8 images into the normalised float
input of the model is the model's preprocessing (``miniclip.pretrained.preprocess.ToyPreprocess``,
with the training set's mean and std from ``meta.json``): there is one normalisation path.

    >>> out = augment(np.zeros((2, 32, 32, 3), np.uint8), np.random.default_rng(0))
    >>> out.shape, out.dtype
    ((2, 32, 32, 3), dtype('uint8'))
"""

from __future__ import annotations

import numpy as np


def _check_images(images) -> np.ndarray:
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise TypeError(f"images must have dtype uint8, got {images.dtype}")
    if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(
            f"images must have shape (N, R, R, 3), got {images.shape}"
            + (" (for one image, pass images[None])" if images.ndim == 3 else "")
        )
    return images


def augment(
    images: np.ndarray,
    rng: np.random.Generator,
    brightness: float = 0.1,
    contrast: float = 0.1,
    noise_std: float = 3.0,
    max_shift: int = 1,
) -> np.ndarray:
    """Randomly jitter uint8 (N, R, R, 3) images; returns a new uint8 array of the same shape.

    Per image: multiply by a brightness factor in [1 - brightness, 1 + brightness]; stretch the
    contrast around the image's mean by a factor in [1 - contrast, 1 + contrast]; add Gaussian
    noise of standard deviation ``noise_std`` (grey levels); shift by up to ``max_shift`` pixels
    in x and in y, repeating the edge pixels (the background) into the gap.
    """
    _check_images(images)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator, got {type(rng).__name__}")
    for name, value, top in (("brightness", brightness, 0.5), ("contrast", contrast, 0.5)):
        if not 0.0 <= value <= top:
            raise ValueError(f"{name} must be in [0, {top}], got {value!r}")
    if not 0.0 <= noise_std <= 20.0:
        raise ValueError(f"noise_std must be in [0, 20], got {noise_std!r}")
    is_int = isinstance(max_shift, (int, np.integer)) and not isinstance(max_shift, bool)
    if not is_int or not 0 <= max_shift <= 2:
        raise ValueError(f"max_shift must be an int in [0, 2], got {max_shift!r}")
    n, r = images.shape[0], images.shape[1]

    x = images.astype(np.float32)  # (N, R, R, 3)
    gain = rng.uniform(1 - brightness, 1 + brightness, size=(n, 1, 1, 1)).astype(np.float32)
    stretch = rng.uniform(1 - contrast, 1 + contrast, size=(n, 1, 1, 1)).astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)  # (N, 1, 1, 1)
    x = (mean + (x - mean) * stretch) * gain
    x += noise_std * rng.standard_normal(x.shape, dtype=np.float32)

    if max_shift > 0:  # out[i, y, x] = padded[i, y + dy_i, x + dx_i], dy, dx in [0, 2 * max_shift]
        s = max_shift
        padded = np.pad(x, ((0, 0), (s, s), (s, s), (0, 0)), mode="edge")  # (N, R+2s, R+2s, 3)
        dy, dx = rng.integers(0, 2 * max_shift + 1, size=(2, n))  # (N,) each
        x = np.empty_like(x)
        for sy in range(2 * s + 1):  # one slice per shift, for the images that drew it
            for sx in range(2 * s + 1):  # (a gather with an index per pixel was 12x slower)
                chosen = np.flatnonzero((dy == sy) & (dx == sx))
                x[chosen] = padded[chosen, sy:sy + r, sx:sx + r]

    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
