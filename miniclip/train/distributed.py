"""Training on W processes with MPI: ``mpiexec -n W python -m miniclip.train --distributed ...``.

--batch-size stays the GLOBAL batch. At every step each process:

    idx = batch_indices(step, ...)          the same global batch as a one-process run (data.py)
    augment(images[idx], aug_rng)           the whole batch, with the same generator everywhere,
                                            so every process's generator stays in the same state
    rows = micro_batches(B, W)[rank]        its consecutive share of the batch (sizes differ by 1)
    distributed_loss_and_grads(...)         the whole batch's loss and gradient, on every process
    AdamW                                   the same update everywhere: the weights stay equal

So the run sees the same examples, with the same augmentation, as a one-process run with the same
seed, and its gradients equal that run's to rounding. A checkpoint holds nothing that depends on
W (the weights, the optimizer, the step, the one augmentation generator): a run saved at W=4
resumes at W=1 or W=2.

Process 0 (the root) alone writes: the checkpoints, metrics.jsonl, the progress bar, the curve
points and the final evaluation. If one process fails, ``main_distributed`` prints what happened
and calls ``MPI.Abort``, which ends every process of the job; a process that is killed makes
mpiexec end the others. No process waits forever for one that is gone.
"""

from __future__ import annotations

import os
import sys
import time
import traceback

import numpy as np

from miniclip.model.distributed import distributed_loss_and_grads
from miniclip.model.gradcache import micro_batches

HOW_TO_START = "start it with: mpiexec -n 2 python -m miniclip.train --distributed ..."
INSTALL = "pip install 'miniclip[distributed]' (or: pip install mpi4py mpich)"
# set by mpiexec (MPICH's hydra: PMI_*; Open MPI: OMPI_*; PMIx launchers: PMIX_RANK)
LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")


class DistributedStartError(RuntimeError):
    """--distributed without mpi4py, or outside mpiexec."""


class World:
    """The processes of one training job, as seen from one of them."""

    def __init__(self, comm):
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.is_root = self.rank == 0

    def rows(self, batch_size: int) -> slice:
        """This process's share of a global batch: consecutive, in rank order."""
        if batch_size < self.size:
            raise ValueError(f"batch_size {batch_size} is smaller than the {self.size} "
                             "processes: every process needs at least one pair")
        return micro_batches(batch_size, self.size)[self.rank]

    def loss_and_grads(self, params, cfg, images, tokens, accum_steps):
        """distributed_loss_and_grads over this job, with this process's shard."""
        if accum_steps > images.shape[0]:
            raise ValueError(f"accum {accum_steps} is more than the {images.shape[0]} pairs of "
                             f"process {self.rank}'s share of the batch (the batch is split over "
                             f"{self.size} processes); use a smaller --accum")
        return distributed_loss_and_grads(params, cfg, images, tokens, self.comm, accum_steps)

    def any(self, flag: bool) -> bool:
        """True on every process if it is True on any (e.g. a Ctrl-C seen by one)."""
        total = np.zeros(1, dtype=np.int64)
        self.comm.Allreduce(np.array([int(bool(flag))], dtype=np.int64), total)
        return bool(total[0])

    def root_first(self, fn, *args):
        """fn(*args) on the root, then on the others: e.g. the root makes the dataset once and
        the others read it."""
        if self.is_root:
            result = fn(*args)
        self.wait_for_all()
        if not self.is_root:
            result = fn(*args)
        return result

    def wait_for_all(self, poll_seconds: float = 0.05) -> None:
        """A barrier that sleeps while it waits. MPICH's blocking calls spin on a core while
        they wait; the processes waiting for the root to make a dataset would take cores it
        could use."""
        request = self.comm.Ibarrier()
        while not request.Test():
            time.sleep(poll_seconds)


def start_world() -> World:
    """The job this process belongs to; DistributedStartError if mpi4py is missing or the
    process was not started by mpiexec."""
    if not any(v in os.environ for v in LAUNCHER_VARIABLES):  # checked first: MPI not started
        raise DistributedStartError(f"--distributed: this process was not started by mpiexec; "
                                    f"{HOW_TO_START}")
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise DistributedStartError(f"--distributed needs mpi4py and an MPI library ({e}): "
                                    f"{INSTALL}; then {HOW_TO_START}") from e
    return World(MPI.COMM_WORLD)


EXPECTED = {"TrainingDiverged": 1, "CheckpointError": 2, "FileExistsError": 2,
            "FileNotFoundError": 2, "ValueError": 2, "KeyboardInterrupt": 130}


def main_distributed(train_fn) -> int:
    """Run ``train_fn(world, log)`` on this process; on an error anywhere end the whole job.

    An expected error (bad arguments, a diverged loss, ...) prints one line; anything else its
    traceback too. Then ``MPI.Abort``: the other processes may be waiting for this one inside a
    collective call, and would otherwise wait forever.
    """
    try:
        world = start_world()
    except DistributedStartError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        train_fn(world, print if world.is_root else _quiet)
    except BaseException as e:  # noqa: B036 (KeyboardInterrupt and SystemExit end the job too)
        name = type(e).__name__
        code = EXPECTED.get(name, 1)
        if name not in EXPECTED:
            traceback.print_exc()
        print(f"error (process {world.rank} of {world.size}): {name}: {e}; ending all "
              f"{world.size} processes", file=sys.stderr, flush=True)
        sys.stdout.flush()
        world.comm.Abort(code)
    return 0


def _quiet(*_args, **_kwargs):
    pass
