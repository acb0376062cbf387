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
    >>> x.shape, x.dtype, round(float(x[0, 0, 0]), 4)    # red: (1 - 0.4815) / 0.2686
    ((3, 224, 224), dtype('float32'), 1.9303)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

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


def open_image(path) -> Image.Image:
    """Read an image file whole, now. FileNotFoundError for a missing file, ValueError naming
    the file for one that is not an image, is truncated or is corrupt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image file at {path}"
                                + (" (it is a folder)" if path.is_dir() else ""))
    try:
        with Image.open(path) as opened:
            opened.load()  # decodes every pixel: a truncated file fails here, not later
            return opened.copy()
    except Exception as e:  # UnidentifiedImageError, "image file is truncated", SyntaxError ...
        raise ValueError(f"{path} is not a readable image ({type(e).__name__}: {e})") from e


class Preprocess:
    """OpenAI's CLIP preprocessing for one resolution: image or path -> float32 (3, R, R).

    Call it on one image; ``batch`` stacks several into (N, 3, R, R) for ``encode_image``.
    """

    def __init__(self, resolution):
        _check_resolution(resolution)
        self.resolution = resolution

    def __repr__(self):
        return f"Preprocess(resolution={self.resolution})"

    def __call__(self, image):
        if isinstance(image, (str, Path)):
            return self(open_image(image))
        if not isinstance(image, Image.Image):
            raise TypeError(f"image must be a PIL.Image.Image or a path, got "
                            f"{type(image).__name__}")
        if image.width < 1 or image.height < 1:
            raise ValueError(f"image must not be empty, got size {image.size}")
        image = resize_shorter_side(image, self.resolution)
        image = center_crop(image, self.resolution)
        return normalize(to_float_chw(image))  # (3, R, R)

    def batch(self, images):
        """A list of images or paths -> float32 (N, 3, R, R)."""
        if isinstance(images, (str, Path, Image.Image)) or len(images) == 0:
            raise ValueError("images must be a non-empty list of images or paths")
        return np.stack([self(im) for im in images])
