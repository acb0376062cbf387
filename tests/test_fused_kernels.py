"""The numba backend's fused ops (kernels/numba/fused_ops.py) against the plain NumPy reference
ops they replace, on awkward shapes, both matmul routes, float64 and float32; and the model
using them (backend.fused) only where they exist and only for float32/float64.

Bounds: float64 within 1e-10 of the largest entry (the kernels only sum in another order);
float32 within 1e-5 of it (a sum of up to 1500 float32 products, each rounded at ~6e-8).
"""

import numpy as np
import pytest

from miniclip import backend
from miniclip.kernels.dtypes import bfloat16
from miniclip.kernels.numba import all_ops as nb
from miniclip.kernels.numba import ops as plain_ops
from miniclip.model.block import block_backward, block_forward
from miniclip.model.mlp import mlp_backward, mlp_forward
from miniclip.nn import ops as ref

from .gradcheck_helpers import assert_grads_close, block_params

TOL = {np.float64: 1e-10, np.float32: 1e-5}
DTYPES = [np.float64, np.float32]
SHAPES = [((1, 1), 1), ((5, 3), 7), ((2, 33, 17), 9), ((70, 1500), 45)]  # x shape, C_out


def assert_close(actual, expected, dtype, what):
    assert actual.dtype == np.dtype(dtype) and actual.shape == expected.shape, what
    scale = max(float(np.abs(expected).max()), 1e-30)
    err = float(np.abs(actual.astype(np.float64) - expected).max()) / scale
    assert err <= TOL[dtype], f"{what}: relative error {err:.2e} > {TOL[dtype]:.0e}"


@pytest.fixture(params=["kernel", "blas"])
def route(request):
    with backend.use_backend("numba", matmul=request.param):
        yield request.param


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,n_out", SHAPES)
@pytest.mark.parametrize("activation", ["quick_gelu", "gelu"])
def test_linear_act_matches_linear_then_activation(rng, route, dtype, x_shape, n_out,
                                                   activation):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((n_out, x_shape[-1])).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    out, cache = nb.linear_act_forward(x, w, b, activation)
    h, c_lin = ref.linear_forward(x, w, b)
    out_ref, c_act = getattr(ref, f"{activation}_forward")(h)
    assert_close(out, out_ref, dtype, "forward")
    dout = rng.standard_normal(out.shape).astype(dtype)
    grads = nb.linear_act_backward(dout, cache)
    dh = getattr(ref, f"{activation}_backward")(dout, c_act)
    for name, g, g_ref in zip(("dx", "dw", "db"), grads, ref.linear_backward(dh, c_lin),
                              strict=True):
        assert_close(g, g_ref, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,n_out", SHAPES)
def test_linear_residual_matches_linear_plus_residual(rng, route, dtype, x_shape, n_out):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((n_out, x_shape[-1])).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    r = rng.standard_normal((*x_shape[:-1], n_out)).astype(dtype)
    out, cache = nb.linear_residual_forward(x, w, b, r)
    lin, c_lin = ref.linear_forward(x, w, b)
    assert_close(out, r + lin, dtype, "forward")
    dout = rng.standard_normal(out.shape).astype(dtype)
    for name, g, g_ref in zip(("dx", "dw", "db"), nb.linear_backward(dout, cache),
                              ref.linear_backward(dout, c_lin), strict=True):
        assert_close(g, g_ref, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 70, 33), (600, 8)])
def test_layernorm_backward_add_matches_backward_plus_residual(rng, dtype, shape):
    x = rng.standard_normal(shape).astype(dtype)
    w = (1 + 0.1 * rng.standard_normal(shape[-1])).astype(dtype)
    b = rng.standard_normal(shape[-1]).astype(dtype)
    dout, dres = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    _, cache = nb.layernorm_forward(x, w, b, 1e-5)
    _, c_ref = ref.layernorm_forward(x, w, b, 1e-5)
    dx_ref, dw_ref, db_ref = ref.layernorm_backward(dout, c_ref)
    dx, dw, db = nb.layernorm_backward_add(dout, cache, dres)
    assert_close(dx, dres + dx_ref, dtype, "dx")
    assert_close(dw, dw_ref, dtype, "dw")
    assert_close(db, db_ref, dtype, "db")


def test_fused_ops_reject_bad_input(rng):
    x, w, b = rng.standard_normal((4, 3)), rng.standard_normal((5, 3)), rng.standard_normal(5)
    with pytest.raises(ValueError, match="activation"):
        nb.linear_act_forward(x, w, b, "relu")
    with pytest.raises(ValueError, match="residual"):
        nb.linear_residual_forward(x, w, b, np.zeros((4, 4)))
    with pytest.raises(TypeError):
        nb.linear_residual_forward(x, w, b, np.zeros((4, 5), np.float32))
    _, cache = nb.layernorm_forward(x, np.ones(3), np.zeros(3), 1e-5)
    with pytest.raises(ValueError, match="dresidual"):
        nb.layernorm_backward_add(x, cache, np.zeros((4, 2)))


def test_fused_is_offered_only_by_the_numba_backend_and_never_for_16_bit():
    with backend.use_backend("numpy"):
        assert backend.fused("linear_act_forward") is None
    with backend.use_backend("numba"):
        assert backend.fused("linear_act_forward", np.zeros(2, np.float32)) is not None
        assert backend.fused("linear_act_forward", np.zeros(2, bfloat16)) is None
    with pytest.raises(ValueError, match="name"):
        backend.fused("matmul_everything")


def test_the_mlp_runs_the_fused_ops_on_numba_and_the_plain_ones_on_numpy(rng):
    C = 6
    x = rng.standard_normal((2, 3, C))
    p = {k[4:]: v for k, v in block_params(rng, C).items() if k.startswith("mlp.")}
    seen = {}
    for name in ("numpy", "numba"):
        with backend.use_backend(name), backend.timed_ops() as timer:
            out, cache = mlp_forward(x, p, residual=x)
            mlp_backward(np.ones_like(out), cache)
        seen[name] = set(timer.calls)
    assert "linear_act_forward" in seen["numba"] and "linear_residual_forward" in seen["numba"]
    assert "quick_gelu_forward" not in seen["numba"]
    assert seen["numpy"] == {"linear_forward", "linear_backward", "quick_gelu_forward",
                             "quick_gelu_backward"}


@pytest.mark.parametrize("activation", ["quick_gelu", "gelu"])
def test_block_gradients_through_the_fused_ops(rng, activation):
    """Finite differences through the fused path (float64, layers: <= 1e-7), and the same
    numbers as the numpy backend to 1e-10."""
    x, p = rng.standard_normal((2, 5, 8)), block_params(rng, 8)
    dout = rng.standard_normal(x.shape)
    results = {}
    for name in ("numpy", "numba"):
        with backend.use_backend(name):
            out, cache = block_forward(x, p, 2, causal=True, activation=activation)
            results[name] = (out, *block_backward(dout, cache))
    with backend.use_backend("numba"):
        f = lambda _: block_forward(x, p, 2, causal=True, activation=activation)[0]  # noqa: E731
        dx, grads = results["numba"][1:]
        some = {k: (p[k], grads[k]) for k in ("mlp.c_fc.weight", "mlp.c_fc.bias",
                                              "attn.out_proj.bias", "ln_2.weight")}
        assert_grads_close("fused block", f, dout, {"x": (x, dx)} | some)
    (out_a, dx_a, g_a), (out_b, dx_b, g_b) = results["numpy"], results["numba"]
    assert_close(out_b, out_a, np.float64, "out")
    assert_close(dx_b, dx_a, np.float64, "dx")
    for k in g_a:
        assert_close(g_b[k], g_a[k], np.float64, k)


@pytest.mark.parametrize("route", ["kernel", "blas"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("B,H,T,D", [(1, 1, 1, 1), (2, 3, 5, 4), (3, 2, 65, 7), (1, 4, 17, 32)])
def test_packed_attention_matches_split_attention_merged(rng, route, dtype, causal, B, H, T, D):
    """Both routes of the packed op (the fused kernel; BLAS products over the heads,
    attention_blas.py) against the reference on split heads, forward and backward."""
    from miniclip.nn.attention import merge_heads, split_heads

    C = H * D
    qkv = rng.standard_normal((B, T, 3 * C)).astype(dtype)
    old = plain_ops.configure(matmul=route)
    try:
        out, cache = nb.attention_qkv_forward(qkv, H, causal)
    finally:
        plain_ops.configure(**old)
    assert cache[-1] == route  # the backward below follows the forward's route, whatever is set
    q, k, v = (split_heads(qkv[..., i * C:(i + 1) * C], H) for i in range(3))
    heads, c_ref = ref.attention_forward(q, k, v, causal)
    assert_close(out, merge_heads(heads), dtype, "out")
    dout = rng.standard_normal(out.shape).astype(dtype)
    dq, dk, dv = ref.attention_backward(split_heads(dout, H), c_ref)
    expected = np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)
    assert_close(nb.attention_qkv_backward(dout, cache), expected, dtype, "dqkv")


def test_packed_attention_rejects_bad_input(rng):
    with pytest.raises(ValueError, match="qkv"):
        nb.attention_qkv_forward(np.zeros((2, 3, 8)), 2)
    with pytest.raises(ValueError, match="n_heads"):
        nb.attention_qkv_forward(np.zeros((2, 3, 9)), 2)
    with pytest.raises(TypeError, match="causal"):
        nb.attention_qkv_forward(np.zeros((2, 3, 6)), 1, causal=1)


def test_packed_attention_keeps_long_sequences_on_the_kernel(rng):
    """Past attention_blas.MAX_TOKENS the BLAS route would keep a (B, H, T, T) array of
    probabilities: the fused kernel takes them, whatever the route setting."""
    from miniclip.kernels.numba.attention_blas import MAX_TOKENS

    old = plain_ops.configure(matmul="blas")
    try:
        short = nb.attention_qkv_forward(np.zeros((1, MAX_TOKENS, 6)), 1)[1]
        long = nb.attention_qkv_forward(np.zeros((1, MAX_TOKENS + 1, 6)), 1)[1]
    finally:
        plain_ops.configure(**old)
    assert short[-1] == "blas" and long[-1] == "kernel"


def test_the_fused_step_copies_no_activations(rng):
    """ops._contiguous counts every copy made to hand a kernel C-contiguous arrays. With the
    fused ops a whole training step copies only the two projection matrices, which the towers
    pass transposed (visual.proj.T, text_projection.T); the plain ops also copy q, k, v and the
    attention gradients of every layer."""
    from miniclip import CONFIGS
    from miniclip.model.clip import CLIP

    cfg = CONFIGS["tiny"]
    images = rng.standard_normal((3, 3, cfg.image_resolution, cfg.image_resolution))
    tokens = np.array([[48, 5, 49, 0, 0, 0, 0]] * 3)
    counted = {}
    for fused in (False, True):
        with backend.use_backend("numba", fused=fused):
            model = CLIP(cfg, seed=0, dtype=np.float64)
            plain_ops.copies.update(arrays=0, bytes=0)
            model.loss_and_grads(images, tokens)
            counted[fused] = dict(plain_ops.copies)
    projections = model.params["visual.proj"].nbytes + model.params["text_projection"].nbytes
    assert counted[True] == {"arrays": 2, "bytes": projections}
    layers = cfg.vision_layers + cfg.transformer_layers
    assert counted[False]["arrays"] >= 2 + 3 * layers  # q, k, v of each layer at least
