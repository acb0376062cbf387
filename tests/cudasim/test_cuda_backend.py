"""The "cuda" backend behind backend.use_backend: every op against the NumPy reference, its
argument checks, the copies it makes, and a whole CLIP training step against the numpy backend."""

import numpy as np
import pytest

from miniclip import CONFIGS, CLIPConfig, backend
from miniclip.kernels.cuda import ops as cuda_backend
from miniclip.model.block import block_backward, block_forward
from miniclip.model.clip import CLIP
from miniclip.nn import ops as numpy_backend
from miniclip.nn.attention import split_heads
from miniclip.nn.gradcheck import check_gradient

from ..gradcheck_helpers import block_params
from .helpers import DTYPES, assert_close, randn


def both_backends(op, *args):
    """(forward output, backward grads) of `op` on the numpy and the cuda backend."""
    results = []
    for impl in (numpy_backend, cuda_backend):
        out, cache = getattr(impl, f"{op}_forward")(*args)
        dout = np.random.default_rng(1).standard_normal(out.shape).astype(out.dtype)
        grads = getattr(impl, f"{op}_backward")(dout, cache)
        results.append((out, grads if isinstance(grads, tuple) else (grads,)))
    return results


def assert_same(results):
    (out_ref, grads_ref), (out, grads) = results
    assert_close(out, out_ref, "out")
    assert len(grads) == len(grads_ref)
    for i, (got, want) in enumerate(zip(grads, grads_ref, strict=True)):
        if want is None:
            assert got is None, f"grad {i}: expected None"
        else:
            assert_close(got, want, f"grad {i}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,bias", [((2, 3, 5), True), ((7, 3), False), ((1, 1), True)])
def test_linear(rng, dtype, x_shape, bias):
    x, w = randn(rng, x_shape, dtype), randn(rng, (4, x_shape[-1]), dtype)
    b = randn(rng, 4, dtype) if bias else None
    assert_same(both_backends("linear", x, w, b))


@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm(rng, dtype):
    x = randn(rng, (2, 3, 6), dtype) * 2 + 1
    assert_same(both_backends("layernorm", x, randn(rng, 6, dtype), randn(rng, 6, dtype), 1e-5))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["quick_gelu", "gelu"])
def test_activations(rng, name, dtype):
    assert_same(both_backends(name, randn(rng, (3, 2, 5), dtype) * 3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_attention_on_head_views(rng, dtype, causal):
    """q, k, v as the self-attention layer hands them over: transposed views of one array."""
    qkv = randn(rng, (2, 5, 3 * 6), dtype)
    q, k, v = (split_heads(qkv[..., i * 6:(i + 1) * 6], 3) for i in range(3))  # (2, 3, 5, 2)
    assert not q.flags.c_contiguous
    assert_same(both_backends("attention", q, k, v, causal))


def test_attention_gradient_float64(rng):
    """Central differences through the kernels themselves (float64)."""
    q, k, v = (randn(rng, (1, 2, 3, 2), np.float64) for _ in range(3))
    out, cache = cuda_backend.attention_forward(q, k, v, True)
    dout = randn(rng, out.shape, np.float64)
    grads = cuda_backend.attention_backward(dout, cache)
    f = lambda _: cuda_backend.attention_forward(q, k, v, True)[0]  # noqa: E731
    for name, x, g in zip("qkv", (q, k, v), grads, strict=True):
        assert check_gradient(f, x, dout, g) <= 1e-7, f"d{name}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_residual_block_through_the_switch(rng, dtype):
    """The composite block calls every op through backend.ops: cuda equals numpy."""
    C = 6
    p = {k: v.astype(dtype) for k, v in block_params(rng, C).items()}
    x, dout = randn(rng, (2, 5, C), dtype), randn(rng, (2, 5, C), dtype)
    results = []
    for name in ("numpy", "cuda"):
        with backend.use_backend(name):
            out, cache = block_forward(x, p, n_heads=2, causal=True)
            results.append((out, block_backward(dout, cache)))
    (out_ref, (dx_ref, g_ref)), (out, (dx, g)) = results
    assert_close(out, out_ref, "out")
    assert_close(dx, dx_ref, "dx")
    for key in p:
        assert_close(g[key], g_ref[key], key)


TINY_WITH_STEM = CLIPConfig(**(CONFIGS["tiny"].to_dict() | {
    "image_resolution": 16, "vision_patch_size": 2, "vision_stem": (3, 4)}))


@pytest.mark.parametrize("cfg", [CONFIGS["tiny"], TINY_WITH_STEM], ids=["tiny", "tiny-stem"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_loss_and_grads_match_numpy_backend(dtype, cfg):
    """A whole training step of CONFIGS["tiny"] (and of it behind a convolutional stem, whose
    convs run as im2col on the host and the backend's products): loss and every gradient, cuda
    vs numpy. Tile sizes that are not powers of 2, unlike the other tests', and smaller than the
    widths, so every product spans several tiles with ragged edges."""
    rng = np.random.default_rng(0)
    model = CLIP(cfg, seed=0, dtype=dtype)
    images = rng.standard_normal((3, 3, cfg.image_resolution, cfg.image_resolution)).astype(dtype)
    tokens = rng.integers(1, cfg.vocab_size - 1, size=(3, cfg.context_length))
    tokens[:, 4] = cfg.vocab_size - 1  # the end-of-text token, where the text tower pools
    before = backend.get_backend()
    with backend.use_backend("numpy"):
        loss_ref, grads_ref = model.loss_and_grads(images, tokens)
    with backend.use_backend("cuda", matmul_block=12, matmul_depth=8, matmul_micro=3,
                             attention_block=3, threads=16):
        loss, grads = model.loss_and_grads(images, tokens)
    assert backend.get_backend() == before  # the context manager restored it
    assert abs(loss - loss_ref) <= (1e-5 if dtype == np.float32 else 1e-12) * max(1, abs(loss_ref))
    assert list(grads) == list(grads_ref)
    for key, want in grads_ref.items():
        assert_close(np.asarray(grads[key]), np.asarray(want), key)


# ----- argument checks -----

def test_rejects_mixed_dtypes_and_bad_shapes(rng):
    x32, w64 = randn(rng, (2, 3), np.float32), randn(rng, (4, 3), np.float64)
    with pytest.raises(TypeError, match="w must have the input's dtype float32"):
        cuda_backend.linear_forward(x32, w64)
    with pytest.raises(ValueError, match=r"w must be \(C_out, 3\)"):
        cuda_backend.linear_forward(x32, randn(rng, (4, 2), np.float32))
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        cuda_backend.quick_gelu_forward(np.arange(3))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        cuda_backend.gelu_forward([1.0, 2.0])
    q = randn(rng, (1, 1, 2, 2), np.float64)
    with pytest.raises(ValueError, match=r"\(B, H, T, D\)"):
        cuda_backend.attention_forward(q, q, q[..., :1])


def test_rejects_foreign_caches_and_bad_dout(rng):
    x, w = randn(rng, (2, 3), np.float64), randn(rng, (4, 3), np.float64)
    _, numpy_cache = numpy_backend.linear_forward(x, w)
    with pytest.raises(TypeError, match="cache must come from the cuda backend's linear_forward"):
        cuda_backend.linear_backward(np.ones((2, 4)), numpy_cache)
    _, cache = cuda_backend.linear_forward(x, w)
    with pytest.raises(ValueError, match=r"dout must be \(2, 4\) float64"):
        cuda_backend.linear_backward(np.ones((2, 5)), cache)
    with pytest.raises(ValueError, match="dout must be"):
        cuda_backend.linear_backward(np.ones((2, 4), np.float32), cache)
    _, gelu_cache = cuda_backend.gelu_forward(x)
    with pytest.raises(TypeError, match="from quick_gelu_forward, got one from gelu_forward"):
        cuda_backend.quick_gelu_backward(np.ones_like(x), gelu_cache)


# ----- settings and copies -----

def test_configure_through_use_backend_and_restore():
    before = cuda_backend.tiles()
    with backend.use_backend("cuda", matmul_block=6, matmul_micro=3):
        assert cuda_backend.tiles().matmul_block == 6
        x, w = np.ones((7, 5)), np.ones((9, 5))
        assert_close(backend.ops.linear_forward(x, w)[0], np.full((7, 9), 5.0), "ones")
    assert cuda_backend.tiles() == before
    with pytest.raises(ValueError, match="unknown cuda backend options"):
        cuda_backend.configure(tile=3)
    with pytest.raises(ValueError, match="multiple of matmul_micro"):
        cuda_backend.configure(matmul_block=5)
    with pytest.raises(ValueError, match="power of 2"):
        cuda_backend.configure(threads=12)
    assert cuda_backend.tiles() == before


def test_copies_per_op(rng):
    """Backward uploads only dout: the forward's inputs stay on the device in the cache."""
    x, w, b = randn(rng, (2, 3, 4), np.float64), randn(rng, (5, 4), np.float64), np.zeros(5)
    cuda_backend.reset_transfer_stats()
    out, cache = cuda_backend.linear_forward(x, w, b)
    stats = cuda_backend.transfer_stats()
    assert (stats["host_to_device"], stats["device_to_host"]) == (3, 1)
    assert stats["host_to_device_bytes"] == x.nbytes + w.nbytes + b.nbytes
    cuda_backend.reset_transfer_stats()
    cuda_backend.linear_backward(np.ones_like(out), cache)
    stats = cuda_backend.transfer_stats()
    assert (stats["host_to_device"], stats["device_to_host"], stats["host_copies"]) == (1, 3, 0)


def test_numpy_path_uploads_every_input_and_returns_plain_arrays(rng):
    """The drop-in path for NumPy weights: every op uploads its inputs and returns ordinary,
    writeable NumPy arrays (keeping a step on the GPU is the DeviceArray path's job)."""
    x = randn(rng, (2, 3, 4), np.float64)
    w1, b1, w2, b2 = (randn(rng, s, np.float64) for s in ((8, 4), 8, (4, 8), 4))
    cuda_backend.reset_transfer_stats()
    h, c1 = cuda_backend.linear_forward(x, w1, b1)
    a, c2 = cuda_backend.quick_gelu_forward(h)
    out, c3 = cuda_backend.linear_forward(a, w2, b2)
    da = cuda_backend.linear_backward(np.ones_like(out), c3)[0]
    dh = cuda_backend.quick_gelu_backward(da, c2)
    dx = cuda_backend.linear_backward(dh, c1)[0]
    stats = cuda_backend.transfer_stats()
    assert stats["host_to_device"] == 10  # x, w1, b1, h, a, w2, b2, the first dout, da, dh
    assert all(arr.flags.writeable for arr in (h, a, out, da, dh, dx))
    ref_h = x @ w1.T + b1
    ref_a = numpy_backend.quick_gelu_forward(ref_h)[0]
    assert_close(out, ref_a @ w2.T + b2, "out")
    ref_dh = numpy_backend.quick_gelu_backward(np.ones_like(out) @ w2,
                                               numpy_backend.quick_gelu_forward(ref_h)[1])
    assert_close(dx, ref_dh @ w1, "dx")
