"""Data parallelism: W processes, each with a shard of the batch, compute the exact loss and
gradient of the whole batch, as if one process had it all.

It is gradcache.py with the micro-batches on different processes. Process r holds n_r of the N
pairs (N = n_0 + ... + n_{W-1}); the steps, with the MPI call each one makes:

    1. embed       the towers embed the own n_r pairs: img_r, txt_r (n_r, E)
    2. Allgatherv  every process receives every shard: img, txt (N, E), the same on all
    3. local loss  process r computes the terms of the loss that belong to its own pairs
                   against all N pairs, and their gradient d img, d txt (N, E)
                   (local_loss.py; the W local losses add up to the loss)
    4. Reduce_scatter  the (N, E) gradients are summed over the processes, and process r keeps
                   its own rows: d(loss)/d(img_r), d(loss)/d(txt_r) (n_r, E), complete
    5. backward    the towers back-propagate the own rows: the gradient of the own pairs' share
    6. Allreduce   the parameter gradients (and the local losses) are summed over the processes

Why 4 needs the SUM: the loss of pair i depends on every embedding j (j is a negative of i), so
d(loss)/d(img_j) has a term from every process's local loss, not only from the owner's. Dropping
the other terms (an all-gather whose backward returns only the local slice) loses the negatives'
gradient; using the full loss on every process and then averaging divides the towers' gradient by
W. logit_scale (and SigLIP's logit_bias) appear once in each local loss with their share of the
terms, so summing in step 6 counts them exactly once.

Step 3 with the local loss costs n_r x N logits on each process, 1/W of the N x N loss: the same
split as OpenCLIP's --local-loss --gather-with-grad. Every process could instead compute the whole
N x N loss and keep its rows of the gradient (no Reduce_scatter); that is simpler but repeats the
loss W times, and at N = 32k the N x N matrix (4 GB in float32) is the biggest thing in the step.

Communication per step, in the array's dtype, from buffers (no pickling): N x 2E numbers
gathered, N x 2E reduce-scattered, P parameters all-reduced. With W = 1 this is
gradcache.loss_and_grads to rounding (the tests check W = 1, 2, 3, 4 to 1e-12 in float64).
"""

from __future__ import annotations

import numpy as np

from miniclip.model.gradcache import LOSS_PARAMS, towers_around
from miniclip.model.local_loss import local_loss_and_grads


def shard_sizes(comm, n: int) -> np.ndarray:
    """Every process's number of pairs, (W,) int64, the same on every process (an Allgather)."""
    sizes = np.zeros(comm.Get_size(), dtype=np.int64)
    comm.Allgather(np.array([n], dtype=np.int64), sizes)
    return sizes


def distributed_loss_and_grads(params: dict, cfg, images: np.ndarray, tokens: np.ndarray, comm,
                               accum_steps: int = 1):
    """The loss of the batch that all processes of ``comm`` hold together, and its gradient for
    every parameter, returned on every process.

    params: the same weights on every process. images (n_r, 3, R, R) and tokens (n_r, T): this
    process's shard of the batch, in rank order (rank 0 holds the first pairs). The shards may
    have different sizes; each is cut into accum_steps micro-batches (gradcache.py).
    comm: an mpi4py communicator (e.g. ``MPI.COMM_WORLD``); every process must call this
    function together.
    -> (loss: float, grads: dict keyed like params), equal to
    ``gradcache.loss_and_grads(params, cfg, all images, all tokens)`` up to rounding.
    """
    for method in ("Get_rank", "Get_size", "Allgatherv", "Reduce_scatter", "Allreduce"):
        if not hasattr(comm, method):
            raise TypeError(f"comm must be an mpi4py communicator (e.g. MPI.COMM_WORLD), got "
                            f"{type(comm).__name__} without {method}")
    n = images.shape[0]
    if n < 1:
        raise ValueError(f"images: every process needs at least one pair, rank "
                         f"{comm.Get_rank()} got {n}")
    sizes = shard_sizes(comm, n)  # (W,)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # first pair of each process
    rank, N = comm.Get_rank(), int(sizes.sum())
    own = slice(int(starts[rank]), int(starts[rank] + n))  # this process's pairs among the N
    loss_params = {k: params[k] for k in LOSS_PARAMS if k in params}

    def gathered_local_loss(img, txt):  # own (n, E), (n, E) -> local loss, own d img, d txt
        if not isinstance(img, np.ndarray):
            raise TypeError("distributed_loss_and_grads needs host arrays (the numpy or numba "
                            f"backend); the towers returned {type(img).__name__}")
        E = img.shape[1]
        mine = np.ascontiguousarray(np.concatenate([img, txt], axis=1))  # (n, 2E)
        both = np.empty((N, 2 * E), dtype=mine.dtype)  # (N, 2E): every process's pairs
        comm.Allgatherv(mine, [both, (sizes * 2 * E, starts * 2 * E)])
        loss, dimg, dtxt, grads = local_loss_and_grads(cfg.loss, both[:, :E], both[:, E:], own,
                                                       loss_params)
        d_both = np.ascontiguousarray(np.concatenate([dimg, dtxt], axis=1))  # (N, 2E), partial
        d_mine = np.empty((n, 2 * E), dtype=d_both.dtype)  # (n, 2E), summed over processes
        comm.Reduce_scatter(d_both, d_mine, recvcounts=sizes * 2 * E)
        return loss, d_mine[:, :E], d_mine[:, E:], grads

    local_loss, grads = towers_around(params, cfg, images, tokens, accum_steps,
                                      gathered_local_loss)
    return allreduce_sum(comm, local_loss), allreduce_grads(comm, grads)


def allreduce_sum(comm, value: float) -> float:
    """The sum over the processes of one float, in float64."""
    total = np.zeros(1, dtype=np.float64)
    comm.Allreduce(np.array([value], dtype=np.float64), total)
    return float(total[0])


def allreduce_grads(comm, grads: dict) -> dict:
    """Every gradient summed over the processes, with one Allreduce of one flat buffer in the
    gradients' dtype. -> a new dict, same keys, shapes and dtype."""
    dtypes = {g.dtype for g in grads.values()}
    if len(dtypes) != 1:
        raise TypeError(f"grads must share one dtype to be summed in one buffer, got {dtypes}")
    flat = np.concatenate([np.ravel(g) for g in grads.values()])  # (P,)
    total = np.empty_like(flat)
    comm.Allreduce(flat, total)
    out, at = {}, 0
    for k, g in grads.items():
        out[k] = total[at:at + g.size].reshape(g.shape)
        at += g.size
    return out
