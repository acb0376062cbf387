"""Tests of the CUDA kernels, run in numba's CUDA simulator, in a process of their own.

The simulator replaces numba.cuda only if ``NUMBA_ENABLE_CUDASIM=1`` is set before numba is first
imported, and the main test run imports numba long before. So the tests in this directory are
collected only when that variable is set:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cudasim -q

``tests/test_cuda_simulator.py`` runs exactly that in a subprocess during the ordinary run. Without
the variable, ``collect_ignore_glob`` below makes pytest skip every file here unread (this file
itself imports nothing from numba), so a plain ``pytest`` never compiles these kernels for a GPU.

Speed. The stock simulator runs each CUDA thread as a Python thread and implements
``cuda.syncthreads()`` by a loop that polls every thread of the block until all are waiting.
With the GIL handed around every few milliseconds, each barrier costs milliseconds, and a tiled
matmul has two barriers per tile step. Here each block gets a ``threading.Barrier`` instead:
same semantics (no thread passes until all have arrived), about 15x faster, and stricter: a
barrier that some threads of a block never reach (undefined behaviour on a real GPU, tolerated by
the stock simulator) fails the test after a timeout instead of passing. Set
``MINICLIP_STOCK_CUDASIM=1`` to run on the unmodified simulator.
"""

import os
import threading

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
BARRIER_TIMEOUT_S = 120

if not SIMULATOR:
    collect_ignore_glob = ["test_*.py"]


def _use_barrier_block_manager():
    """Replace the simulator's polling block manager by one built on threading.Barrier.
    Returns False (and changes nothing) if the simulator's internals are not as expected."""
    import numpy as np
    from numba.cuda.simulator import kernel as sim

    base, thread_class = getattr(sim, "BlockManager", None), getattr(sim, "BlockThread", None)
    if base is None or thread_class is None or not hasattr(base, "run"):
        return False

    class BarrierBlockManager(base):
        def run(self, grid_point, *args):
            points = list(np.ndindex(*self._block_dim))
            barrier = threading.Barrier(len(points), timeout=BARRIER_TIMEOUT_S)

            def target():
                try:
                    self._f(*args)
                except BaseException:
                    barrier.abort()  # release the threads waiting for this one
                    raise

            threads = [thread_class(target, self, grid_point, point, self._debug)
                       for point in points]
            for thread in threads:
                thread.syncthreads = barrier.wait  # also serves syncthreads_count/and/or
                thread.start()
            for thread in threads:
                thread.join()
            errors = [t.exception for t in threads if t.exception]
            # the first real error, not the BrokenBarrierError of the threads it released
            errors.sort(key=lambda e: isinstance(e[0], threading.BrokenBarrierError))
            if errors:
                exc, tb = errors[0]
                raise exc.with_traceback(tb)

    sim.BlockManager = BarrierBlockManager
    return True


if SIMULATOR and os.environ.get("MINICLIP_STOCK_CUDASIM") != "1":
    _use_barrier_block_manager()
