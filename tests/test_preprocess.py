"""OpenAI's preprocessing, piece by piece, on small images whose answer is known by hand.

torchvision is not a dependency (installing it pulls a CUDA build of torch), so the reference is
what its transforms do on a PIL image: Resize calls ``image.resize(size, BICUBIC)`` with the size
rule below, CenterCrop calls ``image.crop`` at round((H - R) / 2), ToTensor divides uint8 by 255
in float32 and Normalize subtracts and divides per channel in float32.
"""

import numpy as np
import pytest
from PIL import Image

from miniclip.pretrained.preprocess import (
    MEAN,
    STD,
    Preprocess,
    center_crop_box,
    normalize,
    resized_size,
    to_float_chw,
)


def expected_from_rgb(rgb_uint8):
    """uint8 (H, W, 3) -> what OpenAI's ToTensor + Normalize give, computed in float64."""
    x = rgb_uint8.astype(np.float64).transpose(2, 0, 1) / 255.0
    return (x - np.array(MEAN)[:, None, None]) / np.array(STD)[:, None, None]


@pytest.mark.parametrize("size, resolution, expected", [
    ((640, 480), 224, (298, 224)),   # 224 * 640 / 480 = 298.67, rounded down
    ((480, 640), 224, (224, 298)),
    ((224, 224), 224, (224, 224)),
    ((300, 200), 224, (336, 224)),   # upscaling: 224 * 1.5
    ((1, 3), 5, (5, 15)),
    ((1000, 3), 7, (2333, 7)),        # 7 * 1000 / 3 = 2333.33
])
def test_resized_size(size, resolution, expected):
    assert resized_size(*size, resolution) == expected


@pytest.mark.parametrize("size, crop, box", [
    ((298, 224), 224, (37, 0, 261, 224)),
    ((224, 299), 224, (0, 38, 224, 262)),   # 37.5 -> 38 (round half to even)
    ((224, 297), 224, (0, 36, 224, 260)),   # 36.5 -> 36
    ((5, 5), 5, (0, 0, 5, 5)),
])
def test_center_crop_box(size, crop, box):
    assert center_crop_box(*size, crop) == box


def test_center_crop_box_too_small():
    with pytest.raises(ValueError, match="cannot crop 8 x 8 out of a 7 x 9"):
        center_crop_box(7, 9, 8)


def test_image_of_the_right_size_is_only_normalised(rng):
    rgb = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    x = Preprocess(6)(Image.fromarray(rgb))[0]
    assert x.dtype == np.float32 and x.shape == (3, 6, 6)
    np.testing.assert_allclose(x, expected_from_rgb(rgb), rtol=0, atol=2e-6)


def test_float32_arithmetic_is_torchvisions():
    """ToTensor: uint8 -> float32, / 255 in float32; Normalize: float32 mean and std."""
    rgb = np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 16, 3)
    x = to_float_chw(Image.fromarray(rgb))
    np.testing.assert_array_equal(x[0].ravel(), np.arange(256, dtype=np.float32) / np.float32(255))
    y = normalize(x)
    np.testing.assert_array_equal(
        y[1], (x[1] - np.float32(MEAN[1])) / np.float32(STD[1]))


def test_wide_image_of_the_right_height_is_cropped_in_the_middle():
    """30 x 16 with R = 16: no resize (the short side is already 16), columns 7..22 kept."""
    rgb = np.zeros((16, 30, 3), np.uint8)
    rgb[:, :, 0] = np.arange(30, dtype=np.uint8) * 8  # column index in the red channel
    x = Preprocess(16)(Image.fromarray(rgb))[0]
    kept = np.round((x[0, 0] * STD[0] + MEAN[0]) * 255 / 8).astype(int)
    assert kept.tolist() == list(range(7, 23))


def test_constant_image_stays_constant_through_bicubic():
    image = Image.new("RGB", (37, 23), (10, 200, 99))
    x = Preprocess(8)(image)[0]
    expected = expected_from_rgb(np.array([[[10, 200, 99]]], np.uint8))[:, 0, 0]
    np.testing.assert_allclose(x, np.broadcast_to(expected[:, None, None], x.shape), atol=2e-6)


def test_bicubic_resize_is_pillows():
    """A downscale that changes values: the result must be Pillow's BICUBIC resize, then the crop."""
    rgb = (np.indices((12, 20)).sum(axis=0) * 9 % 256).astype(np.uint8)  # (12, 20) stripes
    image = Image.fromarray(np.stack([rgb, rgb.T[:12, :12].repeat(2, axis=1)[:, :20], rgb], -1))
    x = Preprocess(6)(image)[0]
    resized = np.asarray(image.resize((10, 6), Image.BICUBIC))  # 6 * 20 / 12 = 10
    np.testing.assert_allclose(x, expected_from_rgb(resized[:, 2:8]), atol=2e-6)  # left = 2
    nearest = np.asarray(image.resize((10, 6), Image.NEAREST))[:, 2:8]
    assert not np.allclose(x, expected_from_rgb(nearest), atol=1e-3)  # bicubic is not nearest


def test_greyscale_is_repeated_over_channels():
    grey = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16
    x = Preprocess(4)(Image.fromarray(grey, mode="L"))[0]
    np.testing.assert_allclose(x, expected_from_rgb(np.repeat(grey[..., None], 3, -1)), atol=2e-6)


def test_palette_image_is_looked_up_and_resized_with_nearest():
    """Pillow resizes 'P' images with nearest neighbour whatever is asked (OpenAI's too)."""
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9)
    indices = np.array([[0, 1], [2, 0]], np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette(palette)
    x = Preprocess(4)(image)[0]  # 2x2 -> 4x4: every pixel becomes a 2x2 block
    colours = np.array(palette[:9], np.uint8).reshape(3, 3)[indices.repeat(2, 0).repeat(2, 1)]
    np.testing.assert_allclose(x, expected_from_rgb(colours), atol=2e-6)


def test_rgba_drops_alpha_without_compositing():
    rgba = np.zeros((5, 5, 4), np.uint8)
    rgba[..., :3] = (40, 80, 120)
    rgba[..., 3] = 100  # translucent: converting to RGB ignores it (no white background)
    image = Image.fromarray(rgba, mode="RGBA")
    x = Preprocess(5)(image)[0]  # no resize: the colour comes through exactly
    np.testing.assert_allclose(x, expected_from_rgb(rgba[..., :3]), atol=2e-6)
    # Resizing: Pillow premultiplies by alpha, resizes, divides again. 80 * 100 / 255 is not a
    # whole number, so a level can be lost on the way; OpenAI's pipeline does the same.
    x = Preprocess(3)(image)[0]
    via_pillow = np.asarray(image.resize((3, 3), Image.BICUBIC).convert("RGB"))
    np.testing.assert_allclose(x, expected_from_rgb(via_pillow), atol=2e-6)
    assert np.abs(via_pillow.astype(int) - (40, 80, 120)).max() <= 1


def test_16_bit_greyscale_clips_at_255_as_pillow_does():
    values = np.array([[0, 100], [255, 40000]], np.uint16)
    image = Image.frombytes("I;16", (2, 2), values.astype("<u2").tobytes())  # a 16-bit PNG's mode
    x = Preprocess(2)(image)[0]
    clipped = np.array([[0, 100], [255, 255]], np.uint8)
    np.testing.assert_allclose(x, expected_from_rgb(np.repeat(clipped[..., None], 3, -1)),
                               atol=2e-6)


def test_paths_and_batches(tmp_path):
    Image.new("RGB", (9, 7), (1, 2, 3)).save(tmp_path / "a.png")
    Image.new("L", (7, 9), 50).save(tmp_path / "b.png")
    pre = Preprocess(5)
    batch = pre([tmp_path / "a.png", str(tmp_path / "b.png")])
    assert batch.shape == (2, 3, 5, 5) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[1], expected_from_rgb(np.full((5, 5, 3), 50, np.uint8)),
                               atol=2e-6)
    assert repr(pre) == "Preprocess(resolution=5)"


def test_bad_input():
    with pytest.raises(ValueError, match="resolution must be a positive int, got 0"):
        Preprocess(0)
    with pytest.raises(ValueError, match="resolution"):
        Preprocess(2.5)
    with pytest.raises(TypeError, match=r"images\[0\] must be a PIL image, a path or a uint8"):
        Preprocess(4)([1.5])
    with pytest.raises(ValueError, match=r"uint8 \(H, W, 3\) RGB array, got dtype float32"):
        Preprocess(4)(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="non-empty list"):
        Preprocess(4)([])
    with pytest.raises(FileNotFoundError, match="no_such_image.png"):
        Preprocess(4)("no_such_image.png")
    with pytest.raises(TypeError, match=r"dtype must be one of .*float16.*got .*int64"):
        Preprocess(4, dtype=np.int64)


def _three_kinds_of_input(tmp_path):
    """The same 9 x 7 picture as a PIL image, a path and a uint8 array."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(7, 9, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "pic.png")
    return [Image.fromarray(rgb), tmp_path / "pic.png", str(tmp_path / "pic.png"), rgb]


@pytest.mark.parametrize("kind", ["openai", "toy"])
def test_one_convention_for_every_kind(tmp_path, kind):
    """Regression (issue 12): both kinds take one image or a list of PIL images, paths or uint8
    arrays (any size), and a uint8 (N, H, W, 3) batch, and give (N, 3, R, R) in their dtype."""
    from miniclip.pretrained.preprocess import ToyPreprocess

    make = {"openai": lambda dt: Preprocess(5, dtype=dt),
            "toy": lambda dt: ToyPreprocess(5, [0.2, 0.3, 0.4], [0.1, 0.2, 0.3], dtype=dt)}[kind]
    pre = make(np.float32)
    inputs = _three_kinds_of_input(tmp_path)
    one = pre(inputs[0])
    assert one.shape == (1, 3, 5, 5) and one.dtype == np.float32
    for image in inputs[1:]:  # a path, a str path, an array: the same numbers
        np.testing.assert_array_equal(pre(image), one)
    batch = pre(inputs)  # a list mixing all kinds
    assert batch.shape == (4, 3, 5, 5)
    for row in batch:
        np.testing.assert_array_equal(row, one[0])
    np.testing.assert_array_equal(pre(np.stack([inputs[3], inputs[3]])), batch[:2])
    wide = make(np.float64)(inputs)
    assert wide.dtype == np.float64
    np.testing.assert_array_equal(wide, batch.astype(np.float64))
    # an R x R uint8 array goes straight to normalisation in both kinds
    square = np.asarray(inputs[3][:5, :5])
    expected = (square.astype(np.float32) / np.float32(255) - pre.mean.astype(np.float32)) \
        / pre.std.astype(np.float32)
    np.testing.assert_array_equal(pre(square)[0], expected.transpose(2, 0, 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_normalisation_by_table_is_the_pixel_by_pixel_formula(rng, dtype):
    """Preprocess.normalize looks every byte up in a (3, 256) table: bit for bit the float32
    steps 4-5 done pixel by pixel, for every byte value in every channel, then cast to dtype."""
    from miniclip.pretrained.preprocess import ToyPreprocess

    pixels = rng.integers(0, 256, size=(5, 16, 16, 3), dtype=np.uint8)
    pixels[0].reshape(-1, 3)[:256] = np.arange(256, dtype=np.uint8)[:, None]  # every byte
    pre = ToyPreprocess(16, [0.31, 0.42, 0.53], [0.21, 0.26, 0.37], dtype=dtype)
    x = pre.normalize(pixels)
    by_pixel = (pixels.astype(np.float32) / np.float32(255) - pre.mean.astype(np.float32)) \
        / pre.std.astype(np.float32)  # (N, R, R, 3)
    assert x.dtype == dtype and x.shape == (5, 3, 16, 16) and x.flags.c_contiguous
    np.testing.assert_array_equal(x, by_pixel.transpose(0, 3, 1, 2).astype(dtype))
