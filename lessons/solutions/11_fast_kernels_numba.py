"""Solutions to the exercises of lessons/11_fast_kernels_numba.ipynb.

Each section, from its `# %% exercise: <id>` line to the next, replaces the source of the exercise cell
with that id when tests/test_lessons.py runs the lesson in "solutions" mode. Try the exercise
before you read its section.
"""

# %% exercise: matmul_ipj
@njit
def matmul_ipj(a, bt, c):
    M, K = a.shape
    N = bt.shape[1]
    for i in range(M):
        c[i, :] = 0
        for p in range(K):
            a_ip = a[i, p]
            for j in range(N):               # contiguous in c and bt: SIMD
                c[i, j] += a_ip * bt[p, j]

# %% exercise: softmax_rows
@njit(parallel=True, fastmath={"reassoc", "contract"})
def softmax_rows(x, out):
    for i in prange(x.shape[0]):
        row_max = x[i, 0]
        for j in range(1, x.shape[1]):
            row_max = max(row_max, x[i, j])
        total = x.dtype.type(0)
        for j in range(x.shape[1]):
            out[i, j] = fast_exp(x[i, j] - row_max)
            total += out[i, j]
        inv = x.dtype.type(1) / total
        for j in range(x.shape[1]):
            out[i, j] *= inv
