"""The convolution (nn/conv2d.py), its Numba data movement (kernels/numba/conv.py) and the
convolutional stem of the model (model/stem.py): against the definition, finite differences and
each other."""

import json
import warnings

import numpy as np
import pytest

from miniclip import CONFIGS, CLIPConfig, backend, count_parameters
from miniclip.kernels.numba import conv as nb_conv
from miniclip.model.clip import CLIP
from miniclip.nn import conv2d
from miniclip.nn.gradcheck import check_gradient

from .gradcheck_helpers import assert_grads_close, record
from .test_model import random_batch

# (N, H, W, C_in, C_out, k, stride, padding): the stem's 3x3 s2 p1, odd sizes, no padding,
# overlapping and non-overlapping windows, one channel
CASES = [(2, 8, 8, 3, 4, 3, 2, 1), (1, 7, 5, 2, 3, 3, 2, 1), (2, 6, 6, 3, 2, 2, 2, 0),
         (1, 5, 6, 1, 2, 3, 1, 1), (3, 4, 4, 2, 5, 1, 1, 0)]


def convolve_by_definition(x, w, b, stride, padding):
    """out[n, oy, ox, o] = b[o] + sum over (c, ky, kx) of w[o, c, ky, kx] * x[n, y, x, c] at
    y = oy*stride + ky - padding (likewise x), 0 outside the image: one output at a time."""
    N, H, W, C = x.shape
    C_out, _, k, _ = w.shape
    Ho, Wo = conv2d.output_size(H, k, stride, padding), conv2d.output_size(W, k, stride, padding)
    out = np.zeros((N, Ho, Wo, C_out))
    for n in range(N):
        for oy in range(Ho):
            for ox in range(Wo):
                for o in range(C_out):
                    total = b[o]
                    for ky in range(k):
                        for kx in range(k):
                            y, xx = oy * stride + ky - padding, ox * stride + kx - padding
                            if 0 <= y < H and 0 <= xx < W:
                                total += w[o, :, ky, kx] @ x[n, y, xx]
                    out[n, oy, ox, o] = total
    return out


def random_conv(rng, case):
    """x (N, H, W, C_in), w (C_out, C_in, k, k), b (C_out,) for a case, then stride, padding."""
    N, H, W, C, C_out, k, s, p = case
    return (rng.standard_normal((N, H, W, C)), rng.standard_normal((C_out, C, k, k)),
            rng.standard_normal(C_out), s, p)


@pytest.mark.parametrize("case", CASES)
def test_conv2d_is_the_convolution(rng, case):
    x, w, b, s, p = random_conv(rng, case)
    out, _ = conv2d.conv2d_forward(x, w, b, stride=s, padding=p)
    np.testing.assert_allclose(out, convolve_by_definition(x, w, b, s, p), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_conv2d_gradients(rng, case):
    x, w, b, s, p = random_conv(rng, case)
    out, cache = conv2d.conv2d_forward(x, w, b, stride=s, padding=p)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv2d.conv2d_backward(dout, cache)
    assert_grads_close("conv2d", lambda _: conv2d.conv2d_forward(x, w, b, s, p)[0], dout,
                       {"x": (x, dx), "w": (w, dw), "b": (b, db)})


def test_conv2d_without_bias_and_without_dx(rng):
    x, w = rng.standard_normal((2, 6, 6, 3)), rng.standard_normal((4, 3, 3, 3))
    out, cache = conv2d.conv2d_forward(x, w, None, stride=2, padding=1)
    dx, dw, db = conv2d.conv2d_backward(np.ones_like(out), cache, need_dx=False)
    assert dx is None and db is None and dw.shape == w.shape
    with pytest.raises(ValueError, match=r"x must be \(N, H, W, 3\)"):
        conv2d.conv2d_forward(x.transpose(0, 3, 1, 2), w, None)


@pytest.mark.parametrize("case", CASES)
def test_col2im_is_the_adjoint_of_im2col(rng, case):
    """<im2col(x), y> = <x, col2im(y)> for every x, y: col2im is exactly im2col's transpose."""
    N, H, W, C, _, k, s, p = case
    x = rng.standard_normal((N, H, W, C))
    cols = conv2d.im2col(x, k, s, p)
    y = rng.standard_normal(cols.shape)
    lhs, rhs = np.sum(cols * y), np.sum(x * conv2d.col2im(y, x.shape, k, s, p))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES)
def test_numba_im2col_and_col2im_match_the_reference(rng, case, dtype):
    N, H, W, C, _, k, s, p = case
    x = rng.standard_normal((N, H, W, C)).astype(dtype)
    cols = nb_conv.im2col(x, k, s, p)
    assert cols.dtype == dtype
    np.testing.assert_array_equal(cols, conv2d.im2col(x, k, s, p))  # copies: exact
    dcols = rng.standard_normal(cols.shape).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 1e-5  # sums of up to k*k terms, in another order
    np.testing.assert_allclose(nb_conv.col2im(dcols, x.shape, k, s, p),
                               conv2d.col2im(dcols, x.shape, k, s, p), rtol=tol, atol=tol)
    # a non-contiguous view (the stem passes a transposed image) gives the same windows
    xt = np.ascontiguousarray(x.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(nb_conv.im2col(xt, k, s, p), cols)


# ---- the stem in the model ---------------------------------------------------------------

STEM = CLIPConfig(**(CONFIGS["tiny"].to_dict() | {"image_resolution": 16, "vision_patch_size": 2,
                                                  "vision_stem": (3, 4)}))


def test_stem_config_shapes_and_counts():
    assert STEM.stem_stride == 4 and STEM.patch_channels == 4 and STEM.grid_size == 2
    assert STEM.vision_tokens == 5
    counts = count_parameters(STEM)
    assert counts["visual.stem.0.weight"] == 3 * 3 * 3 * 3 and counts["visual.stem.0.bias"] == 3
    assert counts["visual.stem.1.weight"] == 4 * 3 * 3 * 3
    assert counts["visual.conv1.weight"] == STEM.vision_width * 4 * 2 * 2
    model = CLIP(CONFIGS["toy-64-stem"])
    assert {k: v.size for k, v in model.params.items()} == count_parameters(CONFIGS["toy-64-stem"])
    assert CONFIGS["toy-64-stem"].vision_tokens == CONFIGS["toy-64"].vision_tokens == 17


def test_stem_config_round_trips_through_json_and_old_configs_are_unchanged():
    assert CLIPConfig.from_dict(json.loads(json.dumps(STEM.to_dict()))) == STEM
    assert "vision_stem" not in CONFIGS["toy"].to_dict()  # written as before the stem existed


@pytest.mark.parametrize("bad, match", [
    ({"vision_stem": (3, 0)}, "vision_stem must be a tuple of positive ints"),
    ({"vision_stem": 8}, "vision_stem must be a tuple of positive ints"),
    ({"vision_stem": (4, True)}, "vision_stem must be a tuple of positive ints"),
    ({"image_resolution": 12}, r"multiple of vision_patch_size \(2\) times the stem's stride \(4\)"),
])
def test_bad_stem_configs(bad, match):
    with pytest.raises(ValueError, match=match):
        CLIPConfig(**(STEM.to_dict() | bad))


@pytest.mark.parametrize("backend_name", ["numpy", "numba"])
def test_model_with_a_stem_gradients(rng, backend_name):
    """Every stem tensor and the patch embedding behind it, against central differences, on the
    reference and on the numba backend (its im2col / col2im kernels and fused linear+activation)."""
    with backend.use_backend(backend_name):
        model = CLIP(STEM, seed=3, dtype=np.float64)
        images, tokens = random_batch(STEM, 3, rng)
        _, grads = model.loss_and_grads(images, tokens)
        assert set(grads) == set(model.params)
        for name in ("visual.stem.0.weight", "visual.stem.0.bias", "visual.stem.1.weight",
                     "visual.stem.1.bias", "visual.conv1.weight", "visual.positional_embedding"):
            idx = rng.choice(model.params[name].size, size=min(8, model.params[name].size),
                             replace=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                err = check_gradient(lambda _: model.loss_and_grads(images, tokens)[0],
                                     model.params[name], np.array(1.0), grads[name], indices=idx)
            record("model stem (sampled)", err)
            assert err <= 1e-6, f"{name}: relative error {err:.2e}"


def test_stem_features_agree_across_backends(rng):
    images, tokens = random_batch(STEM, 4, rng)
    out = {}
    for name in ("numpy", "numba"):
        with backend.use_backend(name):
            model = CLIP(STEM, seed=4, dtype=np.float64)
            out[name] = (model.encode_image(images), model.loss_and_grads(images, tokens)[1])
    np.testing.assert_allclose(out["numba"][0], out["numpy"][0], rtol=1e-10, atol=1e-12)
    for key in ("visual.stem.0.weight", "visual.stem.1.bias"):
        np.testing.assert_allclose(out["numba"][1][key], out["numpy"][1][key], rtol=1e-9,
                                   atol=1e-12)


def test_stem_refuses_arrays_that_are_not_numpy(rng):
    from miniclip.model.stem import stem_forward

    model = CLIP(STEM, seed=0, dtype=np.float64)

    class DeviceLike:  # what a model kept on the GPU passes: not a NumPy array
        shape = (1, 3, 16, 16)

    with pytest.raises(NotImplementedError, match="runs on host \\(NumPy\\) arrays only"):
        stem_forward(DeviceLike(), model.params, STEM)


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float16"])
def test_model_with_a_stem_in_16_bits(rng, dtype_name):
    """16-bit weights and images through the stem (the reference im2col and the plain ops, as
    every 16-bit call takes): the loss and the stem's gradients near float32's."""
    import ml_dtypes

    dtype = getattr(ml_dtypes, dtype_name, None) or getattr(np, dtype_name)
    images, tokens = random_batch(STEM, 3, rng)
    loss32, g32 = CLIP(STEM, seed=1, dtype=np.float32).loss_and_grads(
        images.astype(np.float32), tokens)
    loss16, g16 = CLIP(STEM, seed=1, dtype=dtype).loss_and_grads(images.astype(dtype), tokens)
    assert abs(float(loss16) - float(loss32)) < 2e-2 * abs(float(loss32))
    for key in ("visual.stem.0.weight", "visual.stem.1.bias"):
        diff = np.abs(np.asarray(g16[key], np.float32) - g32[key]).max()
        assert diff < 0.1 * np.abs(g32[key]).max(), key
