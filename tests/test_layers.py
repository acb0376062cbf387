"""Every layer's backward pass against central differences, in float64.

Each test builds a random input and a random upstream gradient ``dout``, runs the hand-written
backward, and compares every gradient it returns with the numerical one (the bar for every layer: <= 1e-7).
The worst error per layer is recorded in ``MAX_ERRORS`` and printed at the end of the run.
"""

import numpy as np
import pytest

from miniclip.model.attention import self_attention_backward, self_attention_forward
from miniclip.model.block import block_backward, block_forward
from miniclip.model.mlp import mlp_backward, mlp_forward
from miniclip.nn.activations import (
    gelu_backward,
    gelu_forward,
    quick_gelu_backward,
    quick_gelu_forward,
)
from miniclip.nn.attention import attention_backward, attention_forward
from miniclip.nn.gradcheck import check_gradient
from miniclip.nn.layernorm import layernorm_backward, layernorm_forward
from miniclip.nn.linear import linear_backward, linear_forward

from .gradcheck_helpers import assert_grads_close, block_params

TOL = 1e-7


def test_linear(rng):
    x, w, b = rng.standard_normal((2, 3, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    out, cache = linear_forward(x, w, b)
    np.testing.assert_allclose(out, np.einsum("bti,oi->bto", x, w) + b, rtol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = linear_backward(dout, cache)
    f = lambda _: linear_forward(x, w, b)[0]  # noqa: E731  (x, w, b perturbed in place)
    assert_grads_close("linear", f, dout, {"x": (x, dx), "w": (w, dw), "b": (b, db)})


def test_linear_without_bias(rng):
    x, w = rng.standard_normal((7, 3)), rng.standard_normal((2, 3))
    out, cache = linear_forward(x, w, None)
    dx, dw, db = linear_backward(np.ones_like(out), cache)
    assert db is None
    f = lambda _: linear_forward(x, w, None)[0]  # noqa: E731
    assert_grads_close("linear", f, np.ones_like(out), {"x": (x, dx), "w": (w, dw)})


@pytest.mark.parametrize("shape", [(1, 1, 4), (2, 3, 6), (5, 1)])
def test_layernorm(rng, shape):
    x = rng.standard_normal(shape) * 3 + 1
    w, b = rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
    out, cache = layernorm_forward(x, w, b)
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = layernorm_backward(dout, cache)
    f = lambda _: layernorm_forward(x, w, b)[0]  # noqa: E731
    assert_grads_close("layernorm", f, dout, {"x": (x, dx), "w": (w, dw), "b": (b, db)})


@pytest.mark.parametrize("name,fwd,bwd", [("quick_gelu", quick_gelu_forward, quick_gelu_backward),
                                          ("gelu", gelu_forward, gelu_backward)])
def test_activation(rng, name, fwd, bwd):
    x = np.concatenate([rng.standard_normal(20) * 3, [0.0, -40.0, 40.0]])  # tails too
    out, cache = fwd(x)
    dout = rng.standard_normal(out.shape)
    dx = bwd(dout, cache)
    assert_grads_close(name, lambda _: fwd(x)[0], dout, {"x": (x, dx)})


def test_activation_values():
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_allclose(quick_gelu_forward(x)[0], x / (1 + np.exp(-1.702 * x)), rtol=1e-14)
    # GELU(1) = Phi(1) = 0.8413447460685429 (standard normal CDF at 1)
    np.testing.assert_allclose(gelu_forward(np.array([1.0]))[0], [0.8413447460685429], rtol=1e-14)
    assert np.isfinite(quick_gelu_forward(np.array([-1e4, 1e4]))[0]).all()


@pytest.mark.parametrize("B,H,T,D,causal", [(1, 1, 1, 1, True), (2, 1, 5, 3, False),
                                            (1, 3, 7, 2, True), (2, 2, 4, 4, True)])
def test_attention(rng, B, H, T, D, causal):
    q, k, v = (rng.standard_normal((B, H, T, D)) for _ in range(3))
    out, cache = attention_forward(q, k, v, causal)
    dout = rng.standard_normal(out.shape)
    dq, dk, dv = attention_backward(dout, cache)
    f = lambda _: attention_forward(q, k, v, causal)[0]  # noqa: E731
    assert_grads_close("attention", f, dout, {"q": (q, dq), "k": (k, dk), "v": (v, dv)})


def test_causal_attention_ignores_the_future(rng):
    q, k, v = (rng.standard_normal((1, 2, 6, 3)) for _ in range(3))
    out, _ = attention_forward(q, k, v, causal=True)
    k2, v2 = k.copy(), v.copy()
    k2[..., 4:, :] += 10.0  # change only the last two positions
    v2[..., 4:, :] -= 3.0
    out2, _ = attention_forward(q, k2, v2, causal=True)
    np.testing.assert_array_equal(out[..., :4, :], out2[..., :4, :])
    assert not np.allclose(out[..., 4:, :], out2[..., 4:, :])


@pytest.mark.parametrize("H,causal,T", [(1, False, 5), (2, True, 5), (4, True, 3)])
def test_self_attention_layer(rng, H, causal, T):
    C = 8
    x = rng.standard_normal((2, T, C))
    p = {k[5:]: v for k, v in block_params(rng, C).items() if k.startswith("attn.")}
    out, cache = self_attention_forward(x, p, H, causal)
    dout = rng.standard_normal(out.shape)
    dx, grads = self_attention_backward(dout, cache)
    f = lambda _: self_attention_forward(x, p, H, causal)[0]  # noqa: E731
    assert_grads_close("self_attention", f, dout,
                       {"x": (x, dx)} | {k: (p[k], grads[k]) for k in p})


def test_packed_projection_rows_are_q_k_v(rng):
    """With in_proj rows q, k, v: making k's rows zero makes every score equal, so attention
    averages v uniformly over the visible tokens."""
    C, H, T = 4, 2, 3
    p = {k[5:]: v for k, v in block_params(rng, C).items() if k.startswith("attn.")}
    p["in_proj_weight"][C:2 * C] = 0.0
    p["in_proj_bias"][C:2 * C] = 0.0
    p["out_proj.weight"] = np.eye(C)
    p["out_proj.bias"] = np.zeros(C)
    x = rng.standard_normal((1, T, C))
    out, _ = self_attention_forward(x, p, H, causal=False)
    v = x @ p["in_proj_weight"][2 * C:].T + p["in_proj_bias"][2 * C:]
    np.testing.assert_allclose(out[0], np.broadcast_to(v[0].mean(0), (T, C)), rtol=1e-12)


@pytest.mark.parametrize("activation", ["quick_gelu", "gelu"])
def test_mlp(rng, activation):
    C = 4
    x = rng.standard_normal((3, 2, C))
    p = {k[4:]: v for k, v in block_params(rng, C).items() if k.startswith("mlp.")}
    out, cache = mlp_forward(x, p, activation)
    dout = rng.standard_normal(out.shape)
    dx, grads = mlp_backward(dout, cache)
    f = lambda _: mlp_forward(x, p, activation)[0]  # noqa: E731
    assert_grads_close("mlp", f, dout, {"x": (x, dx)} | {k: (p[k], grads[k]) for k in p})


@pytest.mark.parametrize("B,T,H,causal", [(1, 1, 1, True), (2, 5, 2, False), (1, 4, 4, True)])
def test_residual_block(rng, B, T, H, causal):
    C = 8
    x = rng.standard_normal((B, T, C))
    p = block_params(rng, C)
    out, cache = block_forward(x, p, H, causal)
    dout = rng.standard_normal(out.shape)
    dx, grads = block_backward(dout, cache)
    assert set(grads) == set(p)
    f = lambda _: block_forward(x, p, H, causal)[0]  # noqa: E731
    assert_grads_close("block", f, dout, {"x": (x, dx)} | {k: (p[k], grads[k]) for k in p})


def test_float32_layers_stay_float32(rng):
    x = rng.standard_normal((2, 3, 8)).astype(np.float32)
    p = {k: v.astype(np.float32) for k, v in block_params(rng, 8).items()}
    out, cache = block_forward(x, p, 2, True)
    dx, grads = block_backward(np.ones_like(out), cache)
    assert out.dtype == dx.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())
    out64, _ = block_forward(x.astype(np.float64), {k: v.astype(np.float64) for k, v in p.items()},
                             2, True)
    np.testing.assert_allclose(out, out64, rtol=1e-4, atol=1e-5)


def test_check_gradient_catches_a_wrong_backward(rng):
    """The checker itself must be able to fail: a backward that is off by 1% is caught."""
    x = rng.standard_normal(5)
    dout = rng.standard_normal(5)
    wrong = 1.01 * quick_gelu_backward(dout, quick_gelu_forward(x)[1])
    assert check_gradient(lambda _: quick_gelu_forward(x)[0], x, dout, wrong) > 1e-3
