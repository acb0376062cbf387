"""OpenAI's image preprocessing, step for step, with Pillow and NumPy.

OpenAI's ``clip.load`` returns ``preprocess`` = torchvision's
``Compose([Resize(R, BICUBIC), CenterCrop(R), convert("RGB"), ToTensor(), Normalize(MEAN, STD)])``.
On a PIL image each torchvision step is one Pillow call or one line of arithmetic, so the same
calls in the same order give the same floats without torchvision:

1. Resize the shorter side to R, the longer one to ``int(R * long / short)`` (rounded down),
   with ``Image.resize(..., Image.BICUBIC)``. Pillow resizes palette ("P") and 1-bit images
   with nearest-neighbour whatever you ask for, and RGBA with premultiplied alpha; both happen
   in OpenAI's pipeline too, because it makes the same call.
2. Centre crop R x R: the top-left corner at ``int(round((H - R) / 2.0))`` and
   ``int(round((W - R) / 2.0))`` (Python's round: halves go to the even number).
3. Convert to RGB: grey is repeated over the channels, a palette is looked up, alpha is
   dropped (not composited). 16-bit greyscale ("I;16") is clipped to 0..255 by Pillow, not
   rescaled: that is what OpenAI's pipeline does with such an image too.
4. uint8 (H, W, 3) -> float32 (3, H, W) in [0, 1]: divide by 255 in float32, as ToTensor does.
5. Normalise per channel in float32: (x - MEAN) / STD.

Hugging Face's ``CLIPImageProcessor`` (its Pillow backend) gives the same pixels, bit for bit, on
RGB and greyscale images (tests/test_hf_parity.py). It differs on two kinds: it converts to RGB
before resizing (palette images then resize bicubically), and it composites transparent images
onto white instead of dropping alpha.

    >>> from PIL import Image
    >>> x = Preprocess(224)(Image.new("RGB", (640, 480), (255, 0, 0)))
    >>> x.shape, x.dtype, round(float(x[0, 0, 0, 0]), 4)    # red: (1 - 0.4815) / 0.2686
    ((1, 3, 224, 224), dtype('float32'), 1.9303)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from miniclip.kernels.dtypes import dtype_of

MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's training-set channel means (RGB)
STD = (0.26862954, 0.26130258, 0.27577711)  # and standard deviations


def _check_resolution(resolution):
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive int, got {resolution!r}")


def resized_size(width, height, resolution):
    """(width, height) after resizing the shorter side to `resolution`; long side rounded down.

    >>> resized_size(640, 480, 224)      # 224 * 640 / 480 = 298.67 -> 298
    (298, 224)
    >>> resized_size(100, 300, 224)
    (224, 672)
    """
    _check_resolution(resolution)
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = resolution, int(resolution * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def center_crop_box(width, height, size):
    """(left, top, right, bottom) of the size x size square in the middle of a width x height image.

    >>> center_crop_box(298, 224, 224)   # (298 - 224) / 2 = 37
    (37, 0, 261, 224)
    >>> center_crop_box(227, 225, 224)   # 1.5 -> 2 and 0.5 -> 0: round half to even
    (2, 0, 226, 224)
    """
    if size > width or size > height:
        raise ValueError(f"cannot crop {size} x {size} out of a {width} x {height} image")
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return left, top, left + size, top + size


def resize_shorter_side(image, resolution):
    """Step 1: Pillow's bicubic resize to ``resized_size`` (unchanged if already that size)."""
    size = resized_size(image.width, image.height, resolution)
    if size == image.size:
        return image  # torchvision returns the image untouched here too
    return image.resize(size, Image.BICUBIC)


def center_crop(image, size):
    """Step 2."""
    return image.crop(center_crop_box(image.width, image.height, size))


def to_float_chw(image):
    """Steps 3 and 4: any PIL image -> RGB -> float32 (3, H, W) in [0, 1]."""
    rgb = np.asarray(image.convert("RGB"))  # (H, W, 3) uint8
    return rgb.transpose(2, 0, 1).astype(np.float32) / np.float32(255)


def normalize(x):
    """Step 5: x (3, H, W) float32 -> (x - MEAN) / STD per channel, in float32."""
    mean = np.asarray(MEAN, dtype=np.float32)[:, None, None]  # (3, 1, 1)
    std = np.asarray(STD, dtype=np.float32)[:, None, None]
    return (x - mean) / std


def _is_pil(x) -> bool:
    return isinstance(x, Image.Image)


def _is_one_image(x) -> bool:
    """One image: a path, a PIL image or a uint8 (H, W, 3) array (as opposed to a batch)."""
    return isinstance(x, (str, Path)) or _is_pil(x) or (isinstance(x, np.ndarray) and x.ndim == 3)


def open_image(path) -> Image.Image:
    """Read an image file whole, now. FileNotFoundError for a missing file, ValueError naming
    the file for one that is not an image, is truncated or is corrupt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {str(path)!r}: no such file"
                                + (" (it is a folder)" if path.is_dir() else ""))
    try:
        with Image.open(path) as opened:
            opened.load()  # decodes every pixel: a truncated file fails here, not later
            return opened.copy()
    except Exception as e:  # UnidentifiedImageError, "image file is truncated", SyntaxError ...
        raise ValueError(f"{path} is not a readable image ({type(e).__name__}: {e})") from e


def _check_array(image, where):
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{where} must be a uint8 (H, W, 3) RGB array, got dtype {image.dtype} "
                         f"and shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{where} must not be empty, got shape {image.shape}")


class Preprocess:
    """OpenAI's CLIP preprocessing for one resolution: image(s) -> float (N, 3, R, R).

    The one preprocessing convention of miniclip (``ToyPreprocess`` below is the other kind):

        preprocess(image)            one PIL image, path or uint8 (H, W, 3) array -> (1, 3, R, R)
        preprocess([im1, "b.png"])   a list of those                             -> (N, 3, R, R)
        preprocess(uint8 (N, H, W, 3))  a batch as one array                     -> (N, 3, R, R)

    The result is in ``dtype`` (the model's, when ``miniclip.load`` builds it); the arithmetic
    is float32, as OpenAI's, and is widened at the end for a float64 model.
    """

    def __init__(self, resolution, mean=MEAN, std=STD, dtype=np.float32):
        _check_resolution(resolution)
        self.resolution = resolution
        self.mean, self.std = _check_stats(mean, "mean"), _check_stats(std, "std")
        if not (self.std > 0).all():
            raise ValueError(f"std must be positive, got {self.std.tolist()}")
        self.dtype = dtype_of(dtype)  # TypeError unless float64/32, bfloat16 or float16

    def __repr__(self):
        return f"{type(self).__name__}(resolution={self.resolution})"

    def pixels(self, image):
        """One PIL image -> uint8 (R, R, 3): steps 1-3 (resize the shorter side, centre crop,
        RGB). ``ToyPreprocess`` squashes instead."""
        image = resize_shorter_side(image, self.resolution)
        return np.asarray(center_crop(image, self.resolution).convert("RGB"))

    def normalize(self, pixels):
        """uint8 (N, R, R, 3) -> (N, 3, R, R): steps 4-5 in float32, then ``dtype``.

        A byte has only 256 values, so each channel's 256 results are computed once (a (3, 256)
        table, the very float32 operations of steps 4-5) and every pixel is looked up: the same
        numbers as computing them pixel by pixel, in one pass instead of five (about 3x faster
        for a training batch)."""
        byte = np.arange(256, dtype=np.float32) / np.float32(255)  # (256,) in [0, 1]
        table = ((byte[None, :] - self.mean.astype(np.float32)[:, None])
                 / self.std.astype(np.float32)[:, None]).astype(self.dtype)  # (3, 256)
        channels_first = pixels.transpose(0, 3, 1, 2)  # (N, 3, R, R), a view
        out = np.empty(channels_first.shape, self.dtype)
        for c in range(3):
            out[:, c] = table[c][channels_first[:, c]]
        return out

    def _one(self, image, where):
        if isinstance(image, (str, Path)):
            image = open_image(image)
        elif isinstance(image, np.ndarray):
            _check_array(image, where)
            R = self.resolution
            if image.shape[:2] == (R, R):
                return image  # both kinds leave an R x R image as it is
            image = Image.fromarray(image)
        elif not _is_pil(image):
            raise TypeError(f"{where} must be a PIL image, a path or a uint8 (H, W, 3) array, "
                            f"got {type(image).__name__}")
        if image.width < 1 or image.height < 1:
            raise ValueError(f"{where} must not be empty, got size {image.size}")
        return self.pixels(image)

    def __call__(self, images):
        R = self.resolution
        if isinstance(images, np.ndarray) and images.ndim == 4:  # a batch in one array
            if images.dtype != np.uint8 or images.shape[3] != 3:
                raise ValueError(f"images must be uint8 (N, H, W, 3), got dtype {images.dtype} "
                                 f"and shape {images.shape}")
            if images.shape[1:3] == (R, R):
                return self.normalize(images)
            images = list(images)
        if _is_one_image(images):
            images = [images]
        if not isinstance(images, (list, tuple)) or len(images) == 0:
            raise ValueError("images must be one image (PIL, path or uint8 (H, W, 3) array) or a "
                             f"non-empty list of them, got {type(images).__name__}"
                             + (" of length 0" if isinstance(images, (list, tuple)) else ""))
        pixels = np.stack([self._one(im, f"images[{i}]") for i, im in enumerate(images)])
        return self.normalize(pixels)  # (N, 3, R, R)

    def to_dict(self):
        """What a checkpoint stores to rebuild this preprocessing (``preprocess_from_dict``)."""
        return {"kind": KINDS_BY_CLASS[type(self).__name__], "resolution": self.resolution,
                "mean": self.mean.tolist(), "std": self.std.tolist()}


class ToyPreprocess(Preprocess):
    """The toy world's preprocessing: a PIL image is squashed to R x R (bicubic, no crop; the
    toy images are square and R x R already), then normalised with the training set's own
    per-channel mean and std. Same inputs and output as ``Preprocess``."""

    def __init__(self, resolution, mean, std, dtype=np.float32):
        super().__init__(resolution, mean, std, dtype)

    def __repr__(self):
        mean, std = [round(m, 4) for m in self.mean.tolist()], [round(s, 4) for s in self.std.tolist()]
        return f"ToyPreprocess(resolution={self.resolution}, mean={mean}, std={std})"

    def pixels(self, image):
        R = self.resolution
        return np.asarray(image.convert("RGB").resize((R, R), Image.BICUBIC))


KINDS = {"openai": Preprocess, "toy": ToyPreprocess}
KINDS_BY_CLASS = {cls.__name__: kind for kind, cls in KINDS.items()}


def preprocess_from_dict(d, dtype=np.float32):
    """The preprocessing a checkpoint describes (``Preprocess.to_dict``)."""
    if not isinstance(d, dict) or d.get("kind") not in KINDS:
        raise ValueError(f"a preprocessing description needs 'kind' in {sorted(KINDS)}, got {d!r}")
    return KINDS[d["kind"]](d["resolution"], d["mean"], d["std"], dtype=dtype)


def _check_stats(values, name):
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (3,) or not np.isfinite(arr).all():
        raise ValueError(f"{name} must be 3 finite numbers (one per channel), got {values!r}")
    return arr
