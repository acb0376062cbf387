"""The kernels behind ``DeviceArray`` (array.py): element-wise maps over strided arrays,
reductions along one axis, and row gathers and scatters.

Every array here is a flat 1-D device buffer plus a *layout*: a shape, strides counted in
elements (not bytes), and an offset. Element (i0, i1, ..., i_{n-1}) of the array sits at

    buffer[offset + i0 * strides[0] + i1 * strides[1] + ... + i_{n-1} * strides[n-1]]

which is how NumPy finds an element too. A transpose permutes the strides, a slice changes the
offset and the strides, a broadcast sets a stride to 0: none of them moves data, and every kernel
below takes any such view. Shapes and strides reach the kernels as tuples, so numba compiles one
version per number of axes (and per dtype).

Element-wise kernels give thread r the flat output indices r, r + n, r + 2n, ... (n threads in
all: a grid-stride loop) and turn each flat index back into (i0, ..., i_{n-1}) with divisions by
the shape, last axis first.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda

# ----- index arithmetic ------------------------------------------------------------------


@cuda.jit(device=True)
def position(flat, shape, strides, offset):
    """Buffer position of the element with C-order flat index ``flat`` in a (shape, strides,
    offset) view: position(5, (2, 3), (1, 2), 0) = 1*1 + 2*2 = 5 for the transpose of (3, 2)."""
    pos = offset
    for d in range(len(shape) - 1, -1, -1):
        n = shape[d]
        pos += (flat % n) * strides[d]
        flat //= n
    return pos


# ----- the element-wise operations, as device functions -----------------------------------

def _device(fn):
    return cuda.jit(device=True)(fn)


def _minimum(a, b):
    return a if (a < b or a != a) else b  # a NaN on either side wins, as in np.minimum


def _maximum(a, b):
    return a if (a > b or a != a) else b


UNARY = {  # name -> device function of one value
    "copy": _device(lambda x: x),
    "negative": _device(lambda x: -x),
    "absolute": _device(lambda x: abs(x)),
    "exp": _device(lambda x: math.exp(x)),
    "log": _device(lambda x: math.log(x)),
    "log1p": _device(lambda x: math.log1p(x)),
    "sqrt": _device(lambda x: math.sqrt(x)),
    "square": _device(lambda x: x * x),
}

BINARY = {  # name -> device function of two values
    "add": _device(lambda a, b: a + b),
    "subtract": _device(lambda a, b: a - b),
    "multiply": _device(lambda a, b: a * b),
    "divide": _device(lambda a, b: a / b),
    "power": _device(lambda a, b: a ** b),
    "minimum": _device(_minimum),
    "maximum": _device(_maximum),
    "right": _device(lambda a, b: b),  # b itself: with a number as b, a fill
}


@functools.lru_cache(maxsize=None)
def unary_kernel(name):
    """Kernel(out, out_strides, out_offset, shape, a, a_strides, a_offset):
    out[i] = f(a[i]) for every index i of ``shape``; out and a are strided views. With f = copy
    this is the one kernel behind contiguous(), astype() and assignment into a slice."""
    f = UNARY[name]

    @cuda.jit
    def kernel(out, out_strides, out_offset, shape, a, a_strides, a_offset):
        n = 1
        for d in range(len(shape)):
            n *= shape[d]
        for flat in range(cuda.grid(1), n, cuda.gridsize(1)):
            out[position(flat, shape, out_strides, out_offset)] = f(
                a[position(flat, shape, a_strides, a_offset)])

    return kernel


@functools.lru_cache(maxsize=None)
def binary_kernel(name):
    """Kernel(out, out_strides, out_offset, shape, a, a_strides, a_offset, b, b_strides,
    b_offset): out[i] = f(a[i], b[i]). Broadcasting is done by the caller with 0 strides."""
    f = BINARY[name]

    @cuda.jit
    def kernel(out, out_strides, out_offset, shape, a, a_strides, a_offset, b, b_strides,
               b_offset):
        n = 1
        for d in range(len(shape)):
            n *= shape[d]
        for flat in range(cuda.grid(1), n, cuda.gridsize(1)):
            out[position(flat, shape, out_strides, out_offset)] = f(
                a[position(flat, shape, a_strides, a_offset)],
                b[position(flat, shape, b_strides, b_offset)])

    return kernel


@functools.lru_cache(maxsize=None)
def scalar_kernel(name):
    """Kernel(out, out_strides, out_offset, shape, a, a_strides, a_offset, scalar,
    scalar_first): out[i] = f(scalar, a[i]) if scalar_first else f(a[i], scalar). A Python
    number is a kernel argument: it is never uploaded as an array."""
    f = BINARY[name]

    @cuda.jit
    def kernel(out, out_strides, out_offset, shape, a, a_strides, a_offset, scalar,
               scalar_first):
        n = 1
        for d in range(len(shape)):
            n *= shape[d]
        for flat in range(cuda.grid(1), n, cuda.gridsize(1)):
            x = a[position(flat, shape, a_strides, a_offset)]
            out[position(flat, shape, out_strides, out_offset)] = (
                f(scalar, x) if scalar_first else f(x, scalar))

    return kernel


# ----- reductions -------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def reduce_kernel(name, dtype):
    """Kernel(src, offset, length, inner, chunk, out) for name "sum" or "max".

    src holds a C-contiguous (outer, length, inner) array from ``offset``; it is reduced along
    the middle axis in chunks of ``chunk`` entries: out is (outer, n_chunks, inner), flat, with
    n_chunks = ceil(length / chunk). One thread per output value, looping over its chunk. A
    second launch with chunk >= n_chunks finishes the job, so a long axis is summed by many
    threads first, then by one."""
    t = np.dtype(dtype).type
    initial = t(0) if name == "sum" else t(-np.inf)
    is_sum = name == "sum"

    @cuda.jit
    def kernel(src, offset, length, inner, chunk, out):
        n_chunks = (length + chunk - 1) // chunk
        for flat in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            i = flat % inner
            c = (flat // inner) % n_chunks
            o = flat // (inner * n_chunks)
            base = offset + o * length * inner + i
            acc = initial
            for j in range(c * chunk, min(length, (c + 1) * chunk)):
                x = src[base + j * inner]
                if is_sum:
                    acc += x
                elif x > acc or x != x:  # max; a NaN stays
                    acc = x
            out[flat] = acc

    return kernel


# ----- rows picked by an index array --------------------------------------------------------

@cuda.jit
def gather_rows_kernel(out, src, src_offset, row_length, rows):
    """out[r, c] = src[rows[r], c]: src is a contiguous (R, row_length) array from src_offset,
    out (len(rows), row_length) flat. This is W[tokens] of the token embedding."""
    for flat in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        r, c = flat // row_length, flat % row_length
        out[flat] = src[src_offset + rows[r] * row_length + c]


@cuda.jit
def scatter_rows_kernel(dst, dst_offset, row_length, rows, src, accumulate):
    """dst[rows[r], c] = src[r, c], or += if accumulate. Accumulation is an atomic add: two
    threads may add to one row (a token id used twice in a batch), and a plain ``+=`` would lose
    one of the two. Without accumulate, which of two writes to one row wins is undefined, as in
    NumPy."""
    for flat in range(cuda.grid(1), src.size, cuda.gridsize(1)):
        r, c = flat // row_length, flat % row_length
        pos = dst_offset + rows[r] * row_length + c
        if accumulate:
            cuda.atomic.add(dst, pos, src[flat])
        else:
            dst[pos] = src[flat]
