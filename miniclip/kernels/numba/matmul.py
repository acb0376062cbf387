"""A matrix multiply written by hand in Numba: register tiles, cache blocks, threads. No BLAS.

Every product of the linear layer is one kernel, ``C = A @ B^T`` on row-major arrays (the
"NT" product: both operands are read along their contiguous rows):

    forward   y  = x  W^T + b      A = x   (M, K)    B = W    (N, K)
    backward  dx = dy W            A = dy  (M, N)    B = W^T  (K, N)   (W^T copied: it is small)
    backward  dW = dy^T x          A = dy^T (N, M)   B = x^T  (K, M)   (transposed in chunks)

How it is made fast, from the inside out (lesson 11 builds each step and times it):

1. Register tile. ``_tile_4x4`` computes a 4 x 4 block of C with 16 scalar accumulators. Each
   step of the k loop loads 8 numbers and does 16 multiply-adds, so the arithmetic is not
   waiting on memory; LLVM vectorises the k loop (16 float32 lanes with AVX-512), keeping 16
   vector accumulators in registers, and sums each one's lanes at the end.
   That reordering of the sum needs ``fastmath={"reassoc", "contract"}`` (see FASTMATH).
2. Cache blocks. ``block_nt`` walks 4 x 4 tiles over a block of C; ``matmul_nt`` hands each
   thread 64 rows of A at a time and walks B in blocks of ~128 KiB, so the 4 rows of A stay in
   L1 and the block of B in L2 while they are reused.
3. Threads. ``prange`` splits the row blocks of C between cores. For dW the sum runs over the
   long axis M, so each thread sums its own share of M into a private dW and the shares are
   added at the end (no two threads ever write the same number).

Edges (sizes that are not multiples of 4) fall back to one dot product per entry.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Only the two fast-math flags the kernels need: "reassoc" lets LLVM split a sum over k into 16
# partial sums (one per SIMD lane) and "contract" lets it fuse a*b+c into one FMA. Both change
# the rounding of a sum, by about one unit in the last place per term; neither assumes "no NaN"
# or "no inf", so masked (-inf) scores and overflow keep their IEEE meaning.
FASTMATH = {"reassoc", "contract"}

ROWS_PER_TASK = 64  # rows of C one thread computes at a time
B_BLOCK_ELEMENTS = 32 * 1024  # elements of B kept hot while a row block sweeps over it (L2)
CHUNK_M = 256  # rows of dy and x transposed at a time for dW (fits in L2)


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _tile_4x4(a, b, c, i, j, k0, k1, accumulate):
    """c[i:i+4, j:j+4] (+)= a[i:i+4, k0:k1] @ b[j:j+4, k0:k1]^T with 16 register accumulators."""
    zero = a.dtype.type(0)
    c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = zero
    c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = zero
    # Row views, indexed from 0: Numba then knows no index is negative and drops its
    # wrap-around check (a[-1] is the last row), which would otherwise keep LLVM from
    # vectorising the loop (6x slower).
    ar0, ar1, ar2, ar3 = a[i, k0:k1], a[i + 1, k0:k1], a[i + 2, k0:k1], a[i + 3, k0:k1]
    br0, br1, br2, br3 = b[j, k0:k1], b[j + 1, k0:k1], b[j + 2, k0:k1], b[j + 3, k0:k1]
    for p in range(k1 - k0):
        a0, a1, a2, a3 = ar0[p], ar1[p], ar2[p], ar3[p]
        b0, b1, b2, b3 = br0[p], br1[p], br2[p], br3[p]
        c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3  # noqa: E702
        c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3  # noqa: E702
        c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3  # noqa: E702
        c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3  # noqa: E702
    if accumulate:
        c00 += c[i, j]; c01 += c[i, j + 1]; c02 += c[i, j + 2]; c03 += c[i, j + 3]  # noqa: E702
        c10 += c[i + 1, j]; c11 += c[i + 1, j + 1]; c12 += c[i + 1, j + 2]; c13 += c[i + 1, j + 3]  # noqa: E702
        c20 += c[i + 2, j]; c21 += c[i + 2, j + 1]; c22 += c[i + 2, j + 2]; c23 += c[i + 2, j + 3]  # noqa: E702
        c30 += c[i + 3, j]; c31 += c[i + 3, j + 1]; c32 += c[i + 3, j + 2]; c33 += c[i + 3, j + 3]  # noqa: E702
    c[i, j] = c00; c[i, j + 1] = c01; c[i, j + 2] = c02; c[i, j + 3] = c03  # noqa: E702
    c[i + 1, j] = c10; c[i + 1, j + 1] = c11; c[i + 1, j + 2] = c12; c[i + 1, j + 3] = c13  # noqa: E702
    c[i + 2, j] = c20; c[i + 2, j + 1] = c21; c[i + 2, j + 2] = c22; c[i + 2, j + 3] = c23  # noqa: E702
    c[i + 3, j] = c30; c[i + 3, j + 1] = c31; c[i + 3, j + 2] = c32; c[i + 3, j + 3] = c33  # noqa: E702


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _dot(a, b, c, i, j, k0, k1, accumulate):
    """c[i, j] (+)= a[i, k0:k1] . b[j, k0:k1]: the edge case, one entry at a time."""
    total = c[i, j] if accumulate else a.dtype.type(0)
    a_row, b_row = a[i, k0:k1], b[j, k0:k1]
    for p in range(k1 - k0):
        total += a_row[p] * b_row[p]
    c[i, j] = total


@njit(fastmath=FASTMATH, cache=True)
def block_nt(a, b, c, i0, i1, j0, j1, k0, k1, accumulate):
    """c[i0:i1, j0:j1] (+)= a[i0:i1, k0:k1] @ b[j0:j1, k0:k1]^T, serially.

    a: (M, K), b: (N, K), c: (M, N), all C-contiguous. The building block of every product here
    and of the attention kernel (one call per head, inside its own parallel loop).
    """
    i4 = i0 + (i1 - i0) // 4 * 4  # rows covered by whole 4 x 4 tiles
    j4 = j0 + (j1 - j0) // 4 * 4
    for i in range(i0, i4, 4):
        for j in range(j0, j4, 4):
            _tile_4x4(a, b, c, i, j, k0, k1, accumulate)
        for j in range(j4, j1):  # right edge: fewer than 4 columns left
            for r in range(i, i + 4):
                _dot(a, b, c, r, j, k0, k1, accumulate)
    for r in range(i4, i1):  # bottom edge: fewer than 4 rows left
        for j in range(j0, j1):
            _dot(a, b, c, r, j, k0, k1, accumulate)


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def matmul_nt(a, b, bias, out):
    """out = a @ b^T + bias.   a: (M, K), b: (N, K), bias: (N,), out: (M, N), C-contiguous.

    For the forward pass of a linear layer (b = W) and for dx (b = W^T, bias = zeros).
    """
    M, K = a.shape
    N = b.shape[0]
    b_rows = max(4, B_BLOCK_ELEMENTS // max(K, 1) // 4 * 4)  # rows of b per cache block
    for task in prange((M + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        i0 = task * ROWS_PER_TASK
        i1 = min(M, i0 + ROWS_PER_TASK)
        for j0 in range(0, N, b_rows):
            block_nt(a, b, out, i0, i1, j0, min(N, j0 + b_rows), 0, K, False)
        for i in range(i0, i1):  # bias, while the rows are still in cache
            for j in range(N):
                out[i, j] += bias[j]


@njit(fastmath=FASTMATH, cache=True, inline="always")
def transpose_rows(src, m0, rows, dst):
    """dst[:, :rows] = src[m0:m0+rows, :]^T in 8 x 8 tiles.

    src: (M, N), dst: (N, >= rows). A tile touches 8 cache lines on each side, so both reads
    and writes stay in L1; an untiled loop writes one number per cache line and is ~6x slower.
    """
    N = src.shape[1]
    rows8, cols8 = rows // 8 * 8, N // 8 * 8
    for m in range(0, rows8, 8):
        for n in range(0, cols8, 8):
            for dm in range(8):
                for dn in range(8):
                    dst[n + dn, m + dm] = src[m0 + m + dm, n + dn]
        for n in range(cols8, N):
            for dm in range(8):
                dst[n, m + dm] = src[m0 + m + dm, n]
    for m in range(rows8, rows):
        for n in range(N):
            dst[n, m] = src[m0 + m, n]


@njit(fastmath=FASTMATH, cache=True)
def transpose(src, dst):
    """dst = src^T for C-contiguous 2-D arrays, src: (M, N), dst: (N, M)."""
    transpose_rows(src, 0, src.shape[0], dst)


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def weight_grad(dy, x, dw, db, n_threads):
    """dw = dy^T x and db = sum of dy's rows.   dy: (M, N), x: (M, K), dw: (N, K), db: (N,).

    The sum runs over M (every row of the batch). Each of ``n_threads`` parts takes a
    contiguous share of the rows, transposes them CHUNK_M at a time into (N, CHUNK_M) and
    (K, CHUNK_M) buffers (so the sum over m is along contiguous rows, as block_nt wants) and
    adds the chunk's product into its own partial dw. The partials are summed at the end.
    """
    M, N = dy.shape
    K = x.shape[1]
    n_chunks, n_parts, chunks_per_part = _split_rows(M, n_threads)
    partial_dw = np.zeros((n_parts, N, K), dw.dtype)
    partial_db = np.zeros((n_parts, N), db.dtype)
    for part in prange(n_parts):
        dy_t = np.empty((N, CHUNK_M), dy.dtype)  # this chunk of dy, transposed
        x_t = np.empty((K, CHUNK_M), x.dtype)
        for chunk in range(part * chunks_per_part, min(n_chunks, (part + 1) * chunks_per_part)):
            m0 = chunk * CHUNK_M
            rows = min(M, m0 + CHUNK_M) - m0
            transpose_rows(dy, m0, rows, dy_t)
            transpose_rows(x, m0, rows, x_t)
            _add_chunk(dy_t, x_t, rows, partial_dw[part], partial_db[part])
    add_parts(partial_dw, partial_db, dw, db)


@njit(cache=True, inline="always")
def _split_rows(M, n_threads):
    """-> (chunks of CHUNK_M rows, parts, chunks per part): how weight_grad shares M rows."""
    n_chunks = (M + CHUNK_M - 1) // CHUNK_M
    n_parts = max(1, min(n_threads, n_chunks))
    return n_chunks, n_parts, (n_chunks + n_parts - 1) // n_parts


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _add_chunk(dy_t, x_t, rows, dw_part, db_part):
    """One chunk of weight_grad: dw_part += dy_t[:, :rows] @ x_t[:, :rows]^T and db_part += the
    sums of dy_t[:, :rows]'s rows.   dy_t: (N, CHUNK_M), x_t: (K, CHUNK_M), both transposed."""
    N, K = dy_t.shape[0], x_t.shape[0]
    b_rows = max(4, B_BLOCK_ELEMENTS // CHUNK_M // 4 * 4)
    for n in range(N):  # db: undoes the broadcast of b over the rows
        total = dy_t.dtype.type(0)
        for m in range(rows):
            total += dy_t[n, m]
        db_part[n] += total
    for j0 in range(0, K, b_rows):
        block_nt(dy_t, x_t, dw_part, 0, N, j0, min(K, j0 + b_rows), 0, rows, True)


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def add_parts(partial_dw, partial_db, dw, db):
    """dw = the sum of partial_dw (parts, N, K) over its parts, db likewise (parts, N), in
    part order: the last step of weight_grad and weight_grad_half."""
    n_parts, N, K = partial_dw.shape
    for n in prange(N):
        db[n] = partial_db[0, n]
        for k in range(K):
            dw[n, k] = partial_dw[0, n, k]
        for part in range(1, n_parts):
            db[n] += partial_db[part, n]
            for k in range(K):
                dw[n, k] += partial_dw[part, n, k]


# ---- 16-bit inputs (mixed precision) -------------------------------------------------------

@njit(fastmath=FASTMATH, parallel=True, cache=True)
def matmul_nt_half(a_bits, table, b, bias, out):
    """out = widen(a) @ b^T + bias, with a read in 16 bits and every sum in float32.

    a_bits: (M, K) uint16, the bit patterns of a bfloat16 or float16 matrix; table: (65536,)
    uint32, the float32 bits of every pattern (halfconv.widen_table); b: (N, K), bias: (N,),
    out: (M, N), float32. Each thread widens its ROWS_PER_TASK rows of a into a float32 buffer
    (ROWS_PER_TASK x K, in L2) just before multiplying them, so the full float32 copy of a is
    never made; then the same block_nt as matmul_nt, so the result is bit for bit that of
    matmul_nt on the widened a.
    """
    M, K = a_bits.shape
    N = b.shape[0]
    b_rows = max(4, B_BLOCK_ELEMENTS // max(K, 1) // 4 * 4)
    for task in prange((M + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        i0 = task * ROWS_PER_TASK
        i1 = min(M, i0 + ROWS_PER_TASK)
        rows = i1 - i0
        buf_bits = np.empty((rows, K), np.uint32)
        for i in range(rows):
            for k in range(K):
                buf_bits[i, k] = table[a_bits[i0 + i, k]]
        buf = buf_bits.view(np.float32)  # (rows, K) float32: this task's rows of a, widened
        c = out[i0:i1]
        for j0 in range(0, N, b_rows):
            block_nt(buf, b, c, 0, rows, j0, min(N, j0 + b_rows), 0, K, False)
        for i in range(rows):
            for j in range(N):
                c[i, j] += bias[j]


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _transpose_rows_widened(src_bits, table, m0, rows, dst_bits):
    """transpose_rows for 16-bit patterns: dst_bits[:, :rows] = the float32 bits of
    src_bits[m0:m0+rows, :]^T, widened through ``table`` as they are moved (same 8 x 8 tiles)."""
    N = src_bits.shape[1]
    rows8, cols8 = rows // 8 * 8, N // 8 * 8
    for m in range(0, rows8, 8):
        for n in range(0, cols8, 8):
            for dm in range(8):
                for dn in range(8):
                    dst_bits[n + dn, m + dm] = table[src_bits[m0 + m + dm, n + dn]]
        for n in range(cols8, N):
            for dm in range(8):
                dst_bits[n, m + dm] = table[src_bits[m0 + m + dm, n]]
    for m in range(rows8, rows):
        for n in range(N):
            dst_bits[n, m] = table[src_bits[m0 + m, n]]


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def weight_grad_half(dy_bits, x_bits, table, dw, db, n_threads):
    """weight_grad for 16-bit dy and x (uint16 bit patterns, one format; ``table`` as in
    matmul_nt_half): dw (N, K) and db (N,) are float32. The chunks that weight_grad transposes
    into its (N, CHUNK_M) and (K, CHUNK_M) buffers are widened on the way, so no float32 copy of
    dy or x is made, and every sum is the same float32 sum, in the same order, as weight_grad's
    on the widened arrays: the results are bit for bit equal."""
    M, N = dy_bits.shape
    K = x_bits.shape[1]
    n_chunks, n_parts, chunks_per_part = _split_rows(M, n_threads)
    partial_dw = np.zeros((n_parts, N, K), np.float32)
    partial_db = np.zeros((n_parts, N), np.float32)
    for part in prange(n_parts):
        dy_t_bits = np.empty((N, CHUNK_M), np.uint32)
        x_t_bits = np.empty((K, CHUNK_M), np.uint32)
        dy_t = dy_t_bits.view(np.float32)  # this chunk of dy, widened and transposed
        x_t = x_t_bits.view(np.float32)
        for chunk in range(part * chunks_per_part, min(n_chunks, (part + 1) * chunks_per_part)):
            m0 = chunk * CHUNK_M
            rows = min(M, m0 + CHUNK_M) - m0
            _transpose_rows_widened(dy_bits, table, m0, rows, dy_t_bits)
            _transpose_rows_widened(x_bits, table, m0, rows, x_t_bits)
            _add_chunk(dy_t, x_t, rows, partial_dw[part], partial_db[part])
    add_parts(partial_dw, partial_db, dw, db)
