"""Which matmul runs a product: the hand-written kernel or BLAS (``np.matmul``), chosen by timing.

Neither is faster everywhere. On one machine OpenBLAS runs AVX2 kernels and the hand-written
register tiles keep up; on another MKL or AVX-512 BLAS wins by 2x. A rule fixed in the source is
right on one machine at best, so the numba backend measures instead: the first time it meets a
product, it runs it both ways, taking turns five times, and keeps the faster (the kernel only
when it is at least 10% faster: see KERNEL_MARGIN).

A product is known by its key ``(kind, dtype, M, N, K, threads)``, with the sizes that change
from batch to batch (the rows M, and for attention the heads and tokens) rounded up by
``bucket``:

    kind      "forward": x @ W^T (M, K) x (N, K) -> (M, N)
              "dx":      dout @ W (M, N) x (N, K) -> (M, K)
              "dw":      dout^T @ x (N, M) x (M, K) -> (N, K), with the bias gradient
              "attention", "attention-causal": the packed attention op (fused_ops.py), forward
              and backward timed together, M = B*H heads, N = T tokens, K = D, the head size:
              the fused kernel or BLAS products over the heads (attention_blas.py)
    threads   Numba's thread count when it ran (BLAS uses its own pool)

The choices are kept in a JSON file per machine, ``matmul_routes.json`` in ``MINICLIP_CACHE_DIR``
(default ``~/.cache/miniclip``), so a machine measures each product once, ever. See them with
``python -m miniclip.kernels --explain`` (``--forget`` to measure again).
``use_backend("numba", matmul="kernel" | "blas")`` forces one route (lessons, tests and benchmarks
do); ``"auto"`` (the default) measures.

    >>> import numpy as np
    >>> routes = Routes(path=None)                     # in memory only
    >>> slow = lambda: sum(range(20000))
    >>> fast = lambda: None
    >>> routes.choose(("forward", "float32", 4, 4, 4, 1), kernel=fast, blas=slow)
    'kernel'
    >>> routes.choose(("forward", "float32", 4, 4, 4, 1), kernel=slow, blas=fast)   # measured once
    'kernel'
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

ROUTES = ("kernel", "blas")
REPEATS = 5  # timed rounds, each running the kernel then BLAS, after one warm-up run of each
# The kernel is chosen only when it was at least this much faster. Timed alone, a product's two
# routes often came out within 5% of each other, and the kernel won about half of those; in whole
# training steps the same products ran slower on the kernel than on BLAS (2026-11-29, toy, batch
# 256, 2 threads: 170-176 ms per step with every product on the kernel, 143-149 ms with every
# product on BLAS; one thread: BLAS everywhere was 1-4% faster than the routes measured without
# a margin). So near-ties go to BLAS; clear wins, such as ViT-B/32's 8-row projections (kernel
# 3.6x faster), stay on the kernel.
KERNEL_MARGIN = 0.10


def faster_route(kernel_s: float, blas_s: float) -> str:
    """"kernel" if it took at most (1 - KERNEL_MARGIN) of BLAS's time, else "blas".

    >>> faster_route(0.5, 1.0), faster_route(0.95, 1.0)
    ('kernel', 'blas')
    """
    return "kernel" if kernel_s <= (1 - KERNEL_MARGIN) * blas_s else "blas"


def default_path() -> Path:
    """Where this machine's choices are kept."""
    root = os.environ.get("MINICLIP_CACHE_DIR") or Path.home() / ".cache" / "miniclip"
    return Path(root) / "matmul_routes.json"


def machine() -> str:
    """What the timings depend on besides the product: the processor and its core count."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def bucket(size: int) -> int:
    """``size`` rounded up to one of four steps per octave (exact up to 16): 17-20 -> 20,
    4097-5120 -> 5120, 5121-6144 -> 6144.

    The rows of a product (batch x tokens) change from batch to batch where the text tower skips
    a batch's padding (model/towers.used_context) or hard negatives add texts; measuring each
    size anew would time a product a dozen times at almost every step. Sizes within 25% of each
    other share their route instead.

    >>> [bucket(n) for n in (9, 17, 22, 4352, 8192, 8193)]
    [9, 20, 24, 5120, 8192, 10240]
    """
    if size <= 16:
        return int(size)
    step = 1 << (int(size).bit_length() - 3)  # a quarter of the octave that holds size
    return -(-int(size) // step) * step


def _time_both(kernel, blas) -> tuple[float, float]:
    """The best time of ``kernel()`` and of ``blas()`` over REPEATS rounds that alternate them.

    Taking turns, a burst of load from another program slows both alike (timing all of one and
    then all of the other could hand the whole burst to one of them), and the best of the rounds
    is the one least disturbed. The warm-up runs pay Numba's compile (or cache load) and the
    first touch of the output."""
    kernel()
    blas()
    best_kernel = best_blas = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        kernel()
        t1 = time.perf_counter()
        blas()
        t2 = time.perf_counter()
        best_kernel, best_blas = min(best_kernel, t1 - t0), min(best_blas, t2 - t1)
    return best_kernel, best_blas


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):  # not on every platform
        return None


class Routes:
    """The measured choices: key -> {"route", "kernel_s", "blas_s"}, saved after each new one."""

    def __init__(self, path: Path | None):
        self.path, self.machine = path, machine()
        self.table = self._read()

    def _read(self) -> dict:
        """The choices in the file ({} if there is none, or it is unreadable, or it is another
        processor's: those timings do not apply here)."""
        if self.path is None or not self.path.is_file():
            return {}
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return saved.get("routes", {}) if saved.get("machine") == self.machine else {}

    @staticmethod
    def name(key) -> str:
        kind, dtype, m, n, k, threads = key
        return f"{kind} {dtype} {m}x{n}x{k} threads={threads}"

    def choose(self, key, kernel, blas) -> str:
        """The route for ``key``: the stored choice, or time ``kernel()`` and ``blas()`` (each
        computes the product) and keep the faster."""
        name = self.name(key)
        if name not in self.table:
            self.table.update(self._read())  # another process may have measured it meanwhile
        if name not in self.table:
            kernel_s, blas_s = _time_both(kernel, blas)
            self.table[name] = {"route": faster_route(kernel_s, blas_s),
                                "kernel_s": kernel_s, "blas_s": blas_s, "load": _load_average()}
            self.save()
        return self.table[name]["route"]

    def save(self) -> None:
        """Add this table's choices to the file, atomically (a temporary file, then a rename).
        A choice already in the file wins over ours, so that every process on the machine routes
        a product the same way (and computes the same bits). A read-only or full disk only
        means measuring again next time."""
        if self.path is None:
            return
        self.table = {**self.table, **self._read()}
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".matmul_routes.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump({"machine": self.machine, "routes": self.table}, f, indent=1)
            os.replace(tmp, self.path)
        except OSError:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)

    def explain(self) -> str:
        """The choices as a table."""
        if not self.table:
            return f"no products measured yet on this machine ({self.machine}); file {self.path}"
        lines = [f"matmul routes on {self.machine} ({self.path})",
                 f"{'product':<44}{'kernel ms':>11}{'BLAS ms':>10}{'ratio':>8}  route   load"]
        busy = 0
        for name, e in sorted(self.table.items()):
            ratio = e["blas_s"] / e["kernel_s"] if e["kernel_s"] > 0 else float("inf")
            load = e.get("load")
            busy += load is not None and load > (os.cpu_count() or 1)
            lines.append(f"{name:<44}{e['kernel_s'] * 1e3:>11.3f}{e['blas_s'] * 1e3:>10.3f}"
                         f"{ratio:>7.2f}x  {e['route']:<7}{'?' if load is None else load:>5}")
        if busy:
            lines.append(f"{busy} product(s) were measured with more runnable programs than cores "
                         "(load > cores): `python -m miniclip.kernels --forget` on a quiet "
                         "machine measures them again")
        return "\n".join(lines)


_routes: Routes | None = None
_routes_for = None  # the (MINICLIP_CACHE_DIR, HOME) that _routes was read for


def routes() -> Routes:
    """This process's table, read from this machine's file on first use (and again if
    MINICLIP_CACHE_DIR or HOME changes). Every product asks for it, so the check compares two
    strings instead of building default_path() (tens of microseconds, a few ms per step)."""
    global _routes, _routes_for
    where = (os.environ.get("MINICLIP_CACHE_DIR"), os.environ.get("HOME"))
    if _routes is None or _routes_for != where:
        _routes, _routes_for = Routes(default_path()), where
    return _routes
