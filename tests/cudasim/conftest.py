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

A kernel that never waits at a barrier (element-wise maps, reductions with one thread per output,
gathers, scatters: most of the DeviceArray kernels) gives the same result whatever order its
threads run in, so for those the block's threads run one after the other on a single Python
thread, which saves starting a thread per CUDA thread. Whether a kernel has a barrier is read from
its code and the device functions it calls; if one is called anyway, the test fails with a
message (it cannot deadlock).
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
            if not uses_barrier(self._f):
                return self._run_in_turn(grid_point, points, args)
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

        def _run_in_turn(self, grid_point, points, args):
            """Every thread of the block, one after the other, on one Python thread."""
            block_dim = sim.Dim3(*self._block_dim)

            def target():
                me = threading.current_thread()
                for point in points:
                    me.threadIdx = sim.Dim3(*point)
                    me.thread_id = point[0] + block_dim.x * (
                        (point[1] if len(point) > 1 else 0)
                        + block_dim.y * (point[2] if len(point) > 2 else 0))
                    self._f(*args)

            thread = thread_class(target, self, grid_point, points[0], self._debug)
            thread.syncthreads = _unexpected_barrier
            thread.start()
            thread.join()
            if thread.exception:
                exc, tb = thread.exception
                raise exc.with_traceback(tb)

    sim.BlockManager = BarrierBlockManager
    return True


BARRIER_NAMES = {"syncthreads", "syncthreads_count", "syncthreads_and", "syncthreads_or",
                 "syncwarp", "shfl_sync", "shfl_down_sync", "shfl_up_sync", "shfl_xor_sync"}
_barrier_cache = {}


def uses_barrier(fn, _seen=None):
    """Whether the kernel function fn, or a device function it calls, names a barrier or a warp
    intrinsic: a scan of its code (nested code objects included), its globals and its closure."""
    if fn in _barrier_cache:
        return _barrier_cache[fn]
    seen = set() if _seen is None else _seen
    seen.add(fn)
    codes, found = [fn.__code__], False
    referenced = [cell.cell_contents for cell in (fn.__closure__ or ()) if _cell_full(cell)]
    while codes:
        code = codes.pop()
        codes += [c for c in code.co_consts if hasattr(c, "co_names")]
        found |= bool(BARRIER_NAMES & set(code.co_names))
        referenced += [fn.__globals__.get(name) for name in code.co_names]
    for obj in referenced:
        inner = getattr(obj, "fn", None)  # a simulator device function wraps its Python function
        if not found and callable(inner) and hasattr(inner, "__code__") and inner not in seen:
            found = uses_barrier(inner, seen)
    _barrier_cache[fn] = found
    return found


def _cell_full(cell):
    try:
        _ = cell.cell_contents
    except ValueError:  # a closure variable not assigned yet
        return False
    return True


def _unexpected_barrier(*_args):
    raise RuntimeError("this kernel was run without barriers (its code names none), yet it "
                       "called one: see uses_barrier in tests/cudasim/conftest.py")


if SIMULATOR and os.environ.get("MINICLIP_STOCK_CUDASIM") != "1":
    _use_barrier_block_manager()
