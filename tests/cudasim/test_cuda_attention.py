"""Flash-style attention kernels against the NumPy reference (which builds the full softmax)."""

import numpy as np
import pytest
from numba import cuda

from miniclip.kernels.cuda.attention import flash_attention_backward, flash_attention_forward
from miniclip.kernels.cuda.common import SIMULATOR_TILES, Tiles
from miniclip.nn.attention import attention_backward, attention_forward, causal_mask

from .helpers import DTYPES, assert_close, randn

# (B, H, T, D), with the simulator's attention block of 4 rows: one token; one head and several;
# T below, at, and across block edges (5, 9); odd head sizes.
SHAPES = [(1, 1, 1, 1), (1, 1, 4, 2), (2, 3, 5, 4), (1, 2, 9, 3)]


def _run(q, k, v, dout, causal, tiles=SIMULATOR_TILES):
    B, H, T, D = q.shape
    dev = [cuda.to_device(a.reshape(B * H, T, D)) for a in (q, k, v)]
    out, lse = flash_attention_forward(*dev, causal, tiles=tiles)
    grads = flash_attention_backward(cuda.to_device(dout.reshape(B * H, T, D)), *dev, out, lse,
                                     causal, tiles=tiles)
    host = [a.copy_to_host().reshape(q.shape) for a in (out, *grads)]
    return host[0], lse.copy_to_host().reshape(B, H, T), host[1:]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference(rng, shape, causal, dtype):
    q, k, v, dout = (randn(rng, shape, dtype) for _ in range(4))
    expected, cache = attention_forward(q, k, v, causal)
    expected_grads = attention_backward(dout, cache)
    out, lse, grads = _run(q, k, v, dout, causal)
    assert_close(out, expected, "out")
    for name, got, want in zip(("dq", "dk", "dv"), grads, expected_grads, strict=True):
        assert_close(got, want, name)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_log_sum_exp_is_kept(rng, causal):
    """lse is log sum_j exp(s_ij) of the masked, scaled scores: all that backward needs."""
    q, k, v = (randn(rng, (1, 2, 6, 3), np.float64) for _ in range(3))
    _, lse, _ = _run(q, k, v, np.zeros_like(q), causal)
    scores = q @ k.swapaxes(-1, -2) / np.sqrt(3)
    if causal:
        scores = scores + causal_mask(6)
    peak = scores.max(-1)
    assert_close(lse, peak + np.log(np.exp(scores - peak[..., None]).sum(-1)), "lse")


def test_causal_first_token_sees_only_itself(rng):
    q, k, v = (randn(rng, (1, 1, 7, 2), np.float64) for _ in range(3))
    out, _, _ = _run(q, k, v, np.zeros_like(q), causal=True)
    assert_close(out[0, 0, 0], v[0, 0, 0], "out[t=0] = v[0]")


def test_large_scores_do_not_overflow(rng):
    """The online softmax subtracts the running max: scores of +-1e4 stay finite."""
    q, k, v = (randn(rng, (1, 1, 6, 2), np.float32) for _ in range(3))
    q *= 3e3
    expected, _ = attention_forward(q, k, v)
    out, lse, _ = _run(q, k, v, np.zeros_like(q), False)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(lse))
    assert_close(out, expected, "out")


def test_block_of_one_row(rng):
    """attention_block=1: every key tile is a single key, the online softmax at its finest."""
    q, k, v, dout = (randn(rng, (1, 1, 3, 2), np.float64) for _ in range(4))
    expected, cache = attention_forward(q, k, v, True)
    out, _, grads = _run(q, k, v, dout, True, tiles=Tiles(attention_block=1, threads=1))
    assert_close(out, expected, "out")
    for got, want in zip(grads, attention_backward(dout, cache), strict=True):
        assert_close(got, want, "grad")
