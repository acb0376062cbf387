"""The CUDA kernels reading 16-bit operands (kernels/cuda/common.element_readers).

A bfloat16 / float16 operand goes to the device as its bit patterns (uint16) and each number is
widened to float32 as a kernel loads it. Widening is exact, and the kernel is otherwise the same
float32 kernel doing the same sums in the same order, so the results must equal, bit for bit,
the float32 kernel run on float32 copies of the operands. Against float64 they obey the float32
bound for a sum of K products (Higham, Accuracy and Stability, eq. 3.5):

    |C - C_exact| <= gamma_K |A| |B|,   gamma_K = K u / (1 - K u),   u = 2^-24 (float32)

where |A| |B| is the product of the absolute values: the inputs carry no error of their own,
since the float64 reference is computed from the same widened numbers.
"""

import numpy as np
import pytest
from numba import cuda

from miniclip import backend
from miniclip.kernels.cuda import attention as cuda_attention
from miniclip.kernels.cuda import matmul as cuda_matmul
from miniclip.kernels.cuda import ops as cuda_ops
from miniclip.kernels.cuda.common import (
    SIMULATOR_TILES,
    element_readers,
    widen_table,
    widen_table_host,
)
from miniclip.kernels.dtypes import bfloat16, float16

HALF = [bfloat16, float16]
U32 = 2.0 ** -24


def gamma(n, u=U32):
    return n * u / (1 - n * u)


def half(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def bits_on_device(a):
    return cuda.to_device(np.ascontiguousarray(a).view(np.uint16))


@pytest.mark.parametrize("dtype", HALF)
def test_widen_table_is_every_pattern_exactly(dtype):
    table = widen_table_host(dtype)
    patterns = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    want = patterns.view(dtype).astype(np.float32)
    same = (table.view(np.uint32) == want.view(np.uint32)) | (np.isnan(table) & np.isnan(want))
    assert table.shape == (65536,) and table.dtype == np.float32 and same.all()
    with pytest.raises(TypeError, match="bfloat16 or float16"):
        widen_table_host(np.float32)


@pytest.mark.parametrize("half_operand", ["a", "b", "both"])
@pytest.mark.parametrize("transpose_a,transpose_b", [(False, True), (False, False), (True, False)])
@pytest.mark.parametrize("dtype", HALF)
def test_matmul_reading_16_bits_is_the_float32_kernel_on_widened_operands(
        rng, dtype, transpose_a, transpose_b, half_operand):
    M, N, K = 9, 7, 13  # not multiples of the simulator's tiles: every bounds guard runs
    a = half(rng, (K, M) if transpose_a else (M, K), dtype)
    b = half(rng, (N, K) if transpose_b else (K, N), dtype)
    bias = rng.standard_normal(N).astype(np.float32)
    wide_a, wide_b = a.astype(np.float32), b.astype(np.float32)
    kw = dict(transpose_a=transpose_a, transpose_b=transpose_b, tiles=SIMULATOR_TILES)
    want = cuda_matmul.matmul(cuda.to_device(wide_a), cuda.to_device(wide_b),
                              cuda.to_device(bias), **kw).copy_to_host()
    a_dev = bits_on_device(a) if half_operand in ("a", "both") else cuda.to_device(wide_a)
    b_dev = bits_on_device(b) if half_operand in ("b", "both") else cuda.to_device(wide_b)
    got = cuda_matmul.matmul(a_dev, b_dev, cuda.to_device(bias), half_table=widen_table(dtype),
                             **kw).copy_to_host()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    # and against float64, the float32 bound for K products per entry
    op_a = wide_a.T if transpose_a else wide_a
    op_b = wide_b.T if transpose_b else wide_b
    exact = op_a.astype(np.float64) @ op_b.astype(np.float64) + bias
    bound = gamma(K + 1) * (np.abs(op_a).astype(np.float64) @ np.abs(op_b) + np.abs(bias))
    assert (np.abs(got - exact) <= bound).all()


def test_matmul_refuses_16_bit_patterns_without_their_table(rng):
    a = bits_on_device(half(rng, (4, 3), bfloat16))
    b = cuda.to_device(np.ones((5, 3), np.float32))
    with pytest.raises(TypeError, match="half_table"):
        cuda_matmul.matmul(a, b, transpose_b=True, tiles=SIMULATOR_TILES)
    with pytest.raises(TypeError, match="one dtype"):  # float64 beside a 16-bit operand
        cuda_matmul.matmul(a, cuda.to_device(np.ones((5, 3))), transpose_b=True,
                           tiles=SIMULATOR_TILES, half_table=widen_table(bfloat16))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", HALF)
def test_attention_reading_16_bits_is_the_float32_kernel_on_widened_inputs(rng, dtype, causal):
    BH, T, D = 2, 6, 4
    q, k, v = (half(rng, (BH, T, D), dtype) for _ in range(3))
    dout = rng.standard_normal((BH, T, D)).astype(np.float32)
    wide = [cuda.to_device(a.astype(np.float32)) for a in (q, k, v)]
    out_want, lse_want = cuda_attention.flash_attention_forward(*wide, causal, SIMULATOR_TILES)
    grads_want = cuda_attention.flash_attention_backward(
        cuda.to_device(dout), *wide, out_want, lse_want, causal, SIMULATOR_TILES)
    bits = [bits_on_device(a) for a in (q, k, v)]
    table = widen_table(dtype)
    out, lse = cuda_attention.flash_attention_forward(*bits, causal, SIMULATOR_TILES,
                                                      half_table=table)
    grads = cuda_attention.flash_attention_backward(cuda.to_device(dout), *bits, out, lse,
                                                    causal, SIMULATOR_TILES, half_table=table)
    assert out.dtype == lse.dtype == np.float32
    np.testing.assert_array_equal(out.copy_to_host(), out_want.copy_to_host())
    np.testing.assert_array_equal(lse.copy_to_host(), lse_want.copy_to_host())
    for got, want in zip(grads, grads_want, strict=True):
        np.testing.assert_array_equal(got.copy_to_host(), want.copy_to_host())


def test_attention_refuses_16_bit_patterns_without_their_table(rng):
    q = bits_on_device(half(rng, (1, 3, 2), float16))
    with pytest.raises(TypeError, match="half_table"):
        cuda_attention.flash_attention_forward(q, q, q, tiles=SIMULATOR_TILES)


@pytest.mark.parametrize("dtype", HALF)
def test_backend_uploads_16_bit_activations_as_16_bits(rng, dtype):
    """The cuda backend on a bfloat16/float16 x: x crosses as 2 bytes a number, and the result
    is the float32 kernel's on the widened x, rounded once to 16 bits."""
    x = half(rng, (6, 10), dtype)
    w = half(rng, (5, 10), dtype, 0.3)
    with backend.use_backend("cuda"):
        backend.ops.linear_forward(x, w)  # the table's one-time upload happens here
        cuda_ops.reset_transfer_stats()
        out, cache = backend.ops.linear_forward(x, w)
        stats = cuda_ops.transfer_stats()
        dout = rng.standard_normal(out.shape).astype(dtype)
        dx, dw, _ = backend.ops.linear_backward(dout, cache)
    # uploads: x in 16 bits, w widened to float32 on the host (a weight, not an activation)
    assert stats["host_to_device_bytes"] == x.size * 2 + w.size * 4
    wide_x, wide_w = x.astype(np.float32), w.astype(np.float32)
    with backend.use_backend("cuda"):
        out32, cache32 = backend.ops.linear_forward(wide_x, wide_w)
        dx32, dw32, _ = backend.ops.linear_backward(dout.astype(np.float32), cache32)
    assert out.dtype == dx.dtype == dtype and dw.dtype == np.float32
    np.testing.assert_array_equal(out, out32.astype(dtype))
    np.testing.assert_array_equal(dx, dx32.astype(dtype))
    np.testing.assert_array_equal(dw, dw32)  # weight gradients stay float32


@pytest.mark.parametrize("dtype", HALF)
def test_backend_attention_on_16_bit_q_k_v(rng, dtype):
    q, k, v = (half(rng, (1, 2, 5, 4), dtype) for _ in range(3))
    with backend.use_backend("cuda"):
        out, cache = backend.ops.attention_forward(q, k, v, True)
        dout = rng.standard_normal(out.shape).astype(dtype)
        grads = backend.ops.attention_backward(dout, cache)
        wide = [a.astype(np.float32) for a in (q, k, v)]
        out32, cache32 = backend.ops.attention_forward(*wide, True)
        grads32 = backend.ops.attention_backward(dout.astype(np.float32), cache32)
    assert cache.inner.q.dtype == np.uint16  # kept on the device in 16 bits
    np.testing.assert_array_equal(out, out32.astype(dtype))
    for g, g32 in zip(grads, grads32, strict=True):
        assert g.dtype == dtype
        np.testing.assert_array_equal(g, g32.astype(dtype))
    with backend.use_backend("cuda"), pytest.raises(TypeError, match="k must be a"):
        backend.ops.attention_forward(q, k.astype(np.float32), v)


def test_element_readers_are_compiled_once_per_kind():
    assert element_readers(True) is element_readers(True)
    assert element_readers(True) is not element_readers(False)
