"""LayerNorm and the activations for the GPU, written with numba-cuda.

Three kinds of kernel, by how the work is shared among threads:

* element-wise (QuickGELU, GELU): thread r handles elements r, r + n, r + 2n, ... of the
  flattened array, n the number of threads launched (a *grid-stride loop*), so any launch size
  covers any array.
* row-wise (LayerNorm): one thread block per row. Its threads each sum a strided part of the row,
  then combine their partial sums in shared memory by a *tree reduction*: half the threads add the
  other half's values, then a quarter, ... log2(threads) steps, a barrier between each.
* column sums (the parameter gradients of LayerNorm and the linear bias): thread c sums column c
  over a chunk of rows (neighbouring threads read neighbouring addresses); a second launch of the
  same kernel adds up the chunks.

LayerNorm keeps per row only the mean and 1/std for backward (two numbers per row); xhat is
recomputed from x. QuickGELU's and GELU's backward recompute the sigmoid / the normal CDF from x.
The NumPy references (miniclip.nn.layernorm, miniclip.nn.activations) keep xhat, sigmoid and CDF
instead; both choices give the same gradients.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda

from miniclip.kernels.cuda.common import DEFAULT_TILES, Tiles, numba_float

QUICK_GELU_ALPHA = 1.702
ROWS_PER_CHUNK = 64  # rows each thread sums in the first pass of a column sum


@cuda.jit(device=True)
def block_sum(partial, value):
    """Sum ``value`` over the threads of the block; every thread gets the total.

    partial: a shared array with one slot per thread (the block size, a power of 2).
    Every thread of the block must call this (it has barriers).
    """
    tid = cuda.threadIdx.x
    partial[tid] = value
    cuda.syncthreads()
    half = cuda.blockDim.x // 2
    while half > 0:  # 8 threads: slots 0..3 += 4..7, then 0..1 += 2..3, then 0 += 1
        if tid < half:
            partial[tid] += partial[tid + half]
        cuda.syncthreads()
        half //= 2
    total = partial[0]
    cuda.syncthreads()  # everyone has read the total before partial is reused
    return total


@functools.lru_cache(maxsize=None)
def layernorm_forward_kernel(dtype, threads):
    """Kernel(x, w, b, out, mean, rstd, eps): x, out (R, C); w, b (C,); mean, rstd (R,).
    Launch with R blocks of ``threads`` threads."""
    real = numba_float(dtype)
    zero = np.dtype(dtype).type(0)
    one = np.dtype(dtype).type(1)

    @cuda.jit
    def kernel(x, w, b, out, mean, rstd, eps):
        row = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        C = x.shape[1]
        n = real(C)  # C as a float of the kernel's type: float32 / int64 would give float64
        partial = cuda.shared.array(threads, real)

        s = zero
        for c in range(tid, C, threads):
            s += x[row, c]
        mu = block_sum(partial, s) / n
        s = zero  # the variance from the centred values (two passes: no cancellation)
        for c in range(tid, C, threads):
            centred = x[row, c] - mu
            s += centred * centred
        r = one / math.sqrt(block_sum(partial, s) / n + eps)
        for c in range(tid, C, threads):
            out[row, c] = (x[row, c] - mu) * r * w[c] + b[c]
        if tid == 0:
            mean[row] = mu
            rstd[row] = r

    return kernel


@functools.lru_cache(maxsize=None)
def layernorm_backward_kernel(dtype, threads):
    """Kernel(dout, x, w, mean, rstd, dx, dout_xhat): all (R, C) but w (C,), mean, rstd (R,).

    dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * w (see miniclip.nn.layernorm).
    Also writes dout * xhat, whose column sums are dw. Launch with R blocks of ``threads``.
    """
    real = numba_float(dtype)
    zero = np.dtype(dtype).type(0)

    @cuda.jit
    def kernel(dout, x, w, mean, rstd, dx, dout_xhat):
        row = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        C = x.shape[1]
        n = real(C)
        partial = cuda.shared.array(threads, real)
        mu, r = mean[row], rstd[row]

        sum_g = zero
        sum_g_xhat = zero
        for c in range(tid, C, threads):
            xhat = (x[row, c] - mu) * r  # recomputed, not stored by the forward
            g = dout[row, c] * w[c]
            sum_g += g
            sum_g_xhat += g * xhat
            dout_xhat[row, c] = dout[row, c] * xhat
        mean_g = block_sum(partial, sum_g) / n
        mean_g_xhat = block_sum(partial, sum_g_xhat) / n
        for c in range(tid, C, threads):
            xhat = (x[row, c] - mu) * r
            dx[row, c] = r * (dout[row, c] * w[c] - mean_g - xhat * mean_g_xhat)

    return kernel


@functools.lru_cache(maxsize=None)
def column_sum_kernel(dtype):
    """Kernel(src, dst, rows_per_chunk): dst[chunk, c] = sum of src[r, c] over the rows r of
    that chunk. Launch with grid (ceil(C / threads), n_chunks)."""
    zero = np.dtype(dtype).type(0)

    @cuda.jit
    def kernel(src, dst, rows_per_chunk):
        R, C = src.shape
        c = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        chunk = cuda.blockIdx.y
        if c < C:
            s = zero
            for r in range(chunk * rows_per_chunk, min(R, (chunk + 1) * rows_per_chunk)):
                s += src[r, c]
            dst[chunk, c] = s

    return kernel


@functools.lru_cache(maxsize=None)
def activation_kernels(dtype, name):
    """(forward, backward) kernels of ``name`` ("quick_gelu" or "gelu") on flat arrays:
    forward(x, out), backward(dout, x, dx). Any 1-D launch (grid-stride loops)."""
    t = np.dtype(dtype).type
    one, half, alpha = t(1), t(0.5), t(QUICK_GELU_ALPHA)
    inv_sqrt2, inv_sqrt_2pi = t(1 / math.sqrt(2)), t(1 / math.sqrt(2 * math.pi))

    @cuda.jit(device=True)
    def sigmoid(z):  # stable for large |z|: exp of a non-positive number only
        e = math.exp(-abs(z))
        return one / (one + e) if z >= 0 else e / (one + e)

    if name == "quick_gelu":
        @cuda.jit(device=True)
        def value(x):  # x * sigmoid(1.702 x)
            return x * sigmoid(alpha * x)

        @cuda.jit(device=True)
        def slope(x):  # s + a x s (1 - s)
            s = sigmoid(alpha * x)
            return s + alpha * x * s * (one - s)
    elif name == "gelu":
        @cuda.jit(device=True)
        def value(x):  # x * Phi(x)
            return x * half * (one + math.erf(x * inv_sqrt2))

        @cuda.jit(device=True)
        def slope(x):  # Phi(x) + x phi(x)
            cdf = half * (one + math.erf(x * inv_sqrt2))
            return cdf + x * inv_sqrt_2pi * math.exp(-half * x * x)
    else:
        raise ValueError(f"activation must be 'quick_gelu' or 'gelu', got {name!r}")

    @cuda.jit
    def forward(x, out):
        for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
            out[i] = value(x[i])

    @cuda.jit
    def backward(dout, x, dx):
        for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
            dx[i] = dout[i] * slope(x[i])

    return forward, backward


# ----- launchers: device arrays in, device arrays out -----

def _blocks(n, threads):
    return max(1, min(math.ceil(n / threads), 65535))  # the grid-stride loop covers the rest


def layernorm_forward(x, w, b, eps, tiles: Tiles = DEFAULT_TILES):
    """x (R, C), w, b (C,) -> out (R, C), mean (R,), rstd (R,)."""
    R, C = x.shape
    out = cuda.device_array((R, C), dtype=x.dtype)
    mean = cuda.device_array(R, dtype=x.dtype)
    rstd = cuda.device_array(R, dtype=x.dtype)
    if R:
        kernel = layernorm_forward_kernel(np.dtype(x.dtype), tiles.threads)
        kernel[R, tiles.threads](x, w, b, out, mean, rstd, np.dtype(x.dtype).type(eps))
    return out, mean, rstd


def column_sum(a, tiles: Tiles = DEFAULT_TILES):
    """a (R, C) -> (C,): the sum over rows, in two launches (chunks of rows, then the chunks).

    >>> import numpy as np
    >>> column_sum(cuda.to_device(np.arange(6.0).reshape(3, 2))).copy_to_host()
    array([6., 9.])
    """
    R, C = a.shape
    kernel = column_sum_kernel(np.dtype(a.dtype))
    threads = tiles.threads
    n_chunks = max(1, math.ceil(R / ROWS_PER_CHUNK))
    partial = cuda.device_array((n_chunks, C), dtype=a.dtype)
    total = cuda.device_array((1, C), dtype=a.dtype)
    if C:
        kernel[(math.ceil(C / threads), n_chunks), threads](a, partial, ROWS_PER_CHUNK)
        kernel[(math.ceil(C / threads), 1), threads](partial, total, n_chunks)
    return total.reshape(C)


def layernorm_backward(dout, x, w, mean, rstd, tiles: Tiles = DEFAULT_TILES):
    """dout, x (R, C), w (C,), mean, rstd (R,) -> dx (R, C), dw (C,), db (C,)."""
    R, C = x.shape
    dx = cuda.device_array((R, C), dtype=x.dtype)
    dout_xhat = cuda.device_array((R, C), dtype=x.dtype)  # scratch for dw's column sum
    if R:
        kernel = layernorm_backward_kernel(np.dtype(x.dtype), tiles.threads)
        kernel[R, tiles.threads](dout, x, w, mean, rstd, dx, dout_xhat)
    return dx, column_sum(dout_xhat, tiles), column_sum(dout, tiles)


def activation_forward(name, x, tiles: Tiles = DEFAULT_TILES):
    """x: flat (n,) device array -> out (n,)."""
    forward, _ = activation_kernels(np.dtype(x.dtype), name)
    out = cuda.device_array(x.shape, dtype=x.dtype)
    if x.size:
        forward[_blocks(x.size, tiles.threads), tiles.threads](x, out)
    return out


def activation_backward(name, dout, x, tiles: Tiles = DEFAULT_TILES):
    """dout, x: flat (n,) device arrays -> dx (n,)."""
    _, backward = activation_kernels(np.dtype(x.dtype), name)
    dx = cuda.device_array(x.shape, dtype=x.dtype)
    if x.size:
        backward[_blocks(x.size, tiles.threads), tiles.threads](dout, x, dx)
    return dx
