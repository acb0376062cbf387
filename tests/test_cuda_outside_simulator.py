"""The CUDA kernels outside the simulator, in the main test process.

The simulator (tests/cudasim) checks what the kernels compute, but it runs them as Python: it
never type-checks them for a GPU. Here every kernel variant is compiled to PTX for sm_90 by
numba-cuda's real compiler, which needs NVIDIA's NVVM library (installed with the CUDA toolkit,
or pip's nvidia-nvvm and nvidia-cuda-nvrtc wheels) but no GPU; the test skips where NVVM is
missing. It also checks that the float32 kernels contain no float64 arithmetic (a bare Python
float constant silently promotes a float32 expression to float64, which is slow on most GPUs).
"""

import os
import re
from unittest import mock

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the simulator is on in this process", allow_module_level=True)

from numba import cuda, types  # noqa: E402

CC = (9, 0)


class _Device:  # what numba asks of the current device when it compiles a device function
    compute_capability = CC


def _nvvm_available():
    try:
        cuda.compile_ptx(lambda a: None, (types.float32[::1],), cc=CC)
        return True
    except Exception:  # NVVM or NVRTC not found, in one of several exception types
        return False


def _kernels(dtype):
    """(name, kernel, argument types) for every kernel variant the backend launches."""
    from miniclip.kernels.cuda import attention as at
    from miniclip.kernels.cuda import elementwise as ew
    from miniclip.kernels.cuda import matmul as mm
    from miniclip.kernels.cuda.common import DEFAULT_TILES as T

    d = np.dtype(dtype)
    real = types.float32 if d == np.float32 else types.float64
    a1, a2, a3 = (types.Array(real, n, "C") for n in (1, 2, 3))
    yield from (
        (f"matmul ta={ta} tb={tb} bias={bias}",
         mm.matmul_kernel(d, ta, tb, bias, T.matmul_block, T.matmul_depth, T.matmul_micro),
         (a2, a2, a1 if bias else a2, a2, a2))  # no table: C stands in for it
        for ta, tb, bias in [(False, True, True), (False, True, False), (False, False, False),
                             (True, False, False)])
    D = 64
    for causal in (False, True):
        fwd_block, bwd_block = at._block_for(D, d, T, 2), at._block_for(D, d, T, 4)
        yield (f"attention forward causal={causal}",
               at.attention_forward_kernel(d, D, fwd_block, causal),
               (a3, a3, a3, a3, a2, real, a2))
        yield (f"attention dk dv causal={causal}", at.attention_dkdv_kernel(d, D, bwd_block, causal),
               (a3, a3, a3, a3, a2, a2, a3, a3, real, a2))
        yield (f"attention dq causal={causal}", at.attention_dq_kernel(d, D, bwd_block, causal),
               (a3, a3, a3, a3, a2, a2, a3, real, a2))
    if d == np.float32:  # 16-bit operands (uint16 patterns) widened through a float32 table
        yield from _half_kernels(d, real, a1, a2, a3)
    yield "attention delta", at.attention_delta_kernel(d, D), (a3, a3, a2)
    yield ("layernorm forward", ew.layernorm_forward_kernel(d, T.threads),
           (a2, a1, a1, a2, a1, a1, real))
    yield ("layernorm backward", ew.layernorm_backward_kernel(d, T.threads),
           (a2, a2, a1, a1, a1, a2, a2))
    yield "column sum", ew.column_sum_kernel(d), (a2, a2, types.int64)
    for name in ("quick_gelu", "gelu"):
        forward, backward = ew.activation_kernels(d, name)
        yield f"{name} forward", forward, (a1, a1)
        yield f"{name} backward", backward, (a1, a1, a1)
    yield from _device_array_kernels(d, real, a1)


def _half_kernels(d, real, a1, a2, a3):
    """The matmul and attention kernels reading 16-bit patterns (mixed precision)."""
    from miniclip.kernels.cuda import attention as at
    from miniclip.kernels.cuda import matmul as mm
    from miniclip.kernels.cuda.common import DEFAULT_TILES as T

    h2, h3 = (types.Array(types.uint16, n, "C") for n in (2, 3))
    for ta, tb, bias, half_a, half_b in [(False, True, True, True, False),  # x W^T + b
                                         (True, False, False, False, True),  # dy^T x
                                         (False, True, False, True, True)]:
        yield (f"matmul 16-bit a={half_a} b={half_b}",
               mm.matmul_kernel(d, ta, tb, bias, T.matmul_block, T.matmul_depth, T.matmul_micro,
                                half_a, half_b),
               (h2 if half_a else a2, h2 if half_b else a2, a1 if bias else a2, a2, a1))
    D = 64
    fwd_block, bwd_block = at._block_for(D, d, T, 2), at._block_for(D, d, T, 4)
    yield ("attention forward 16-bit", at.attention_forward_kernel(d, D, fwd_block, True, True),
           (h3, h3, h3, a3, a2, real, a1))
    yield ("attention dk dv 16-bit", at.attention_dkdv_kernel(d, D, bwd_block, True, True),
           (h3, h3, h3, a3, a2, a2, a3, a3, real, a1))
    yield ("attention dq 16-bit", at.attention_dq_kernel(d, D, bwd_block, True, True),
           (h3, h3, h3, a3, a2, a2, a3, real, a1))


def _device_array_kernels(d, real, a1):
    """The DeviceArray kernels (cuda_array_kernels.py), for 1, 2 and 4 axes."""
    from miniclip.kernels.cuda.device import array_kernels as ak

    i64 = types.int64
    for n in (1, 2, 4):
        tup = types.UniTuple(i64, n)  # a shape or strides
        strided = (a1, tup, i64)  # buffer, strides, offset
        for name in ak.UNARY:
            yield (f"DeviceArray {name} ({n} axes)", ak.unary_kernel(name),
                   (*strided, tup, *strided))
        for name in ak.BINARY:
            yield (f"DeviceArray {name} ({n} axes)", ak.binary_kernel(name),
                   (*strided, tup, *strided, *strided))
            yield (f"DeviceArray {name} with a number ({n} axes)", ak.scalar_kernel(name),
                   (*strided, tup, *strided, real, types.boolean))
    for name in ("sum", "max"):
        yield f"DeviceArray {name}", ak.reduce_kernel(name, d), (a1, i64, i64, i64, i64, a1)
    rows = types.Array(i64, 1, "C")
    yield "DeviceArray gather rows", ak.gather_rows_kernel, (a1, a1, i64, i64, rows)
    yield ("DeviceArray scatter rows", ak.scatter_rows_kernel,
           (a1, i64, i64, rows, a1, types.boolean))
    from miniclip.kernels.cuda.adamw import adamw_kernel

    yield "AdamW", adamw_kernel, (a1, a1, a1, a1, *[real] * 9)


@pytest.mark.slow
@pytest.mark.skipif(not _nvvm_available(), reason="NVVM (CUDA toolkit) not found: cannot compile")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_kernel_compiles_for_a_gpu(dtype):
    with mock.patch("numba.cuda.dispatcher.get_current_device", return_value=_Device()):
        for name, kernel, signature in _kernels(dtype):
            ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=CC)
            assert ".entry" in ptx, name
            if dtype == np.float32:
                assert not re.search(r"\.f64\b", ptx), f"{name}: float64 arithmetic in float32"


@pytest.mark.skipif(cuda.is_available(), reason="a GPU is present")
def test_backend_without_gpu_says_how_to_use_the_simulator():
    from miniclip import backend

    before = backend.get_backend()
    with pytest.raises(RuntimeError, match="NUMBA_ENABLE_CUDASIM=1"):
        backend.use_backend("cuda")
    assert backend.get_backend() == before  # a failed switch leaves the backend as it was


@pytest.mark.skipif(cuda.is_available(), reason="a GPU is present")
def test_train_cli_without_gpu_is_a_clear_error(tmp_path, capsys):
    from miniclip.train.cli import main

    assert main(["--backend", "cuda", "--out", str(tmp_path / "run"),
                 "--data", str(tmp_path / "data"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "backend 'cuda' cannot be used here" in err and "NUMBA_ENABLE_CUDASIM=1" in err
