"""Data-parallel training over MPI: images/s at W = 1 and 2 processes on this machine, what the
three collective calls cost here, and a model of the time per step up to W = 1024.

    python benchmarks/bench_distributed.py          # a few minutes on 2 cores; needs mpiexec
                                                    # (pip install -e ".[distributed]")

One "step" is miniclip.distributed_loss_and_grads on a global batch of 256 random pairs of the
`toy` model, numba backend, float32: each process embeds its share, Allgatherv, local loss,
Reduce_scatter, backward, Allreduce of every gradient. The optimizer step is left out (it is the
same at every W). Each process runs with ONE thread (OPENBLAS_NUM_THREADS=NUMBA_NUM_THREADS=1),
so W = 2 uses the machine's two cores; the row "W = 1, 2 threads" is one process using both
cores through Numba's parallel attention kernels, for comparison. Configurations take turns
(twice each) and each reports its best of 5 timed steps after one warm-up step.

The model (printed at the end, formula in benchmarks/README.md) takes the compute per image
measured here, and a stated network, and asks how the step time splits as W grows.
"""

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH = 256
REPEATS = 5
# the network of the model: 10 Gbit/s Ethernet between machines, 20 us per message step
BANDWIDTH = 10e9 / 8  # bytes/s per process link
LATENCY = 20e-6  # seconds per step of a ring
BYTES = 4  # float32


def worker():
    """Under mpiexec: time the step and each collective; rank 0 prints one JSON line."""
    import numpy as np
    from mpi4py import MPI

    from miniclip import backend
    from miniclip.model.clip import CLIP
    from miniclip.model.config import CONFIGS
    from miniclip.model.distributed import distributed_loss_and_grads
    from miniclip.model.gradcache import micro_batches

    backend.use_backend("numba")
    comm = MPI.COMM_WORLD
    cfg = replace(CONFIGS["toy"], vocab_size=720)
    params = CLIP(cfg, seed=0).params
    rng = np.random.default_rng(0)
    images = rng.standard_normal((BATCH, 3, cfg.image_resolution, cfg.image_resolution),
                                 dtype=np.float32)
    tokens = rng.integers(1, cfg.vocab_size - 1, size=(BATCH, cfg.context_length))
    tokens[:, 12] = cfg.vocab_size - 1
    mine = micro_batches(BATCH, comm.size)[comm.rank]

    def best(fn):
        fn()  # warm-up
        times = []
        for _ in range(REPEATS):
            comm.Barrier()
            t0 = time.perf_counter()
            fn()
            times.append(comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
        return min(times)

    step = best(lambda: distributed_loss_and_grads(params, cfg, images[mine], tokens[mine], comm))
    E, P = cfg.embed_dim, sum(p.size for p in params.values())
    n = mine.stop - mine.start
    sizes = np.array(comm.allgather(n))
    both = np.empty((BATCH, 2 * E), np.float32)
    own = np.ones((n, 2 * E), np.float32)
    flat, total = np.ones(P, np.float32), np.empty(P, np.float32)
    gather = best(lambda: comm.Allgatherv(own, [both, (sizes * 2 * E, np.concatenate(
        [[0], np.cumsum(sizes)[:-1]]) * 2 * E)]))
    scatter = best(lambda: comm.Reduce_scatter(np.ones((BATCH, 2 * E), np.float32), own,
                                               recvcounts=sizes * 2 * E))
    allreduce = best(lambda: comm.Allreduce(flat, total))
    if comm.rank == 0:
        print(json.dumps({"W": comm.size, "step": step, "gather": gather, "scatter": scatter,
                          "allreduce": allreduce, "E": E, "P": int(P)}))


def run(W, threads):
    mpiexec = Path(sys.executable).parent / "mpiexec"
    mpiexec = str(mpiexec) if mpiexec.exists() else shutil.which("mpiexec")
    if mpiexec is None:
        sys.exit("mpiexec not found: pip install -e '.[distributed]'")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([mpiexec, "-n", str(W), sys.executable, __file__, "--worker"],
                         env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        sys.exit(f"W={W} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def model_step(c, N, W, E, P):
    """Seconds per step: compute / W + ring all-gather + reduce-scatter of N x 2E numbers +
    ring all-reduce of P numbers (benchmarks/README.md)."""
    f = (W - 1) / W
    compute = c * N / W
    embeddings = 2 * ((W - 1) * LATENCY + f * 2 * N * E * BYTES / BANDWIDTH)
    parameters = 2 * (W - 1) * LATENCY + 2 * f * P * BYTES / BANDWIDTH
    return compute, embeddings, parameters


def batch_for_10_percent(c, W, E, P):
    """The smallest global batch N (a multiple of W) whose communication is <= 10% of the step:
    comm <= compute / 9. None if no batch is enough (the embedding traffic per image alone is
    more than 1/9 of the compute per image)."""
    f = (W - 1) / W
    per_image = c / W - 9 * 2 * f * 2 * E * BYTES / BANDWIDTH  # compute minus 9 x traffic
    fixed = 9 * (2 * (W - 1) * LATENCY + 2 * (W - 1) * LATENCY + 2 * f * P * BYTES / BANDWIDTH)
    if W == 1:
        return 1
    if per_image <= 0:
        return None
    n = fixed / per_image
    return int(-(-n // W) * W)


def main():
    import numba
    import numpy as np

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}; Python {platform.python_version()}, NumPy {np.__version__}, "
          f"Numba {numba.__version__}")
    configs = [(1, 1), (2, 1), (1, 2)]  # (processes, threads per process)
    results = {}
    for _ in range(2):  # take turns
        for W, threads in configs:
            r = run(W, threads)
            key = (W, threads)
            if key not in results or r["step"] < results[key]["step"]:
                results[key] = r
    E, P = results[(1, 1)]["E"], results[(1, 1)]["P"]
    print(f"toy model ({P:,} parameters, E = {E}), global batch {BATCH}, float32, numba\n")
    print("| processes W | threads each | s/step | images/s | vs W=1 | all-gather ms | "
          "reduce-scatter ms | all-reduce ms |")
    print("|---|---|---|---|---|---|---|---|")
    base = results[(1, 1)]["step"]
    for (W, threads), r in results.items():
        print(f"| {W} | {threads} | {r['step']:.3f} | {BATCH / r['step']:.0f} | "
              f"{base / r['step']:.2f}x | {1e3 * r['gather']:.2f} | {1e3 * r['scatter']:.2f} | "
              f"{1e3 * r['allreduce']:.2f} |")

    c = base / BATCH  # measured compute seconds per image, one thread
    print(f"\nmodel: compute {1e3 * c:.2f} ms per image per thread (measured above, W=1); "
          f"network {BANDWIDTH * 8 / 1e9:.0f} Gbit/s, {LATENCY * 1e6:.0f} us per ring step; "
          f"float32")
    print("\ntoy model, 256 pairs per process (global batch N = 256 W)")
    print("| W | N | compute ms | embeddings ms | parameters ms | comm share | "
          "smallest N for comm <= 10% |")
    print("|---|---|---|---|---|---|---|")
    for W in (1, 2, 8, 64, 256, 1024):
        N = 256 * W
        comp, emb, par = model_step(c, N, W, E, P)
        share = (emb + par) / (comp + emb + par)
        need = batch_for_10_percent(c, W, E, P)
        print(f"| {W} | {N:,} | {1e3 * comp:.0f} | {1e3 * emb:.1f} | {1e3 * par:.1f} | "
              f"{share:.1%} | {'none' if need is None else f'{need:,}'} |")
    E_, P_ = 512, 151_277_313
    print(f"\nViT-B/32's sizes (E = {E_}, P = {P_:,}), 256 pairs per process: communication "
          "per step, and the compute per image a process needs for it to be <= 10% of the step")
    print("| W | N | embeddings ms | parameters ms | compute needed, ms per image |")
    print("|---|---|---|---|---|")
    for W in (2, 8, 64, 256, 1024):
        N = 256 * W
        _, emb, par = model_step(0.0, N, W, E_, P_)
        print(f"| {W} | {N:,} | {1e3 * emb:.1f} | {1e3 * par:.1f} | "
              f"{1e3 * 9 * (emb + par) / 256:.2f} |")

if __name__ == "__main__":
    if "--worker" in sys.argv:
        worker()
    else:
        main()
