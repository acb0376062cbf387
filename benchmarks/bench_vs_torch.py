"""A full training step, miniclip against PyTorch (Hugging Face's CLIPModel, SDPA attention).

    python benchmarks/bench_vs_torch.py                       # every config, 1 and all threads
    python benchmarks/bench_vs_torch.py --configs toy,tok65 --threads 2 --reps 5
    python benchmarks/bench_vs_torch.py --quick               # a tiny model, for the test

One step = forward, backward and the AdamW update of every weight (lr 5e-4, betas (0.9, 0.98),
eps 1e-6, weight decay 0.2 on matrices only: CLIP's settings) on one random batch, float32:

    miniclip   CLIP.loss_and_grads + miniclip.train.optim.AdamW.step, on the "numpy" backend
               (the reference) and the "numba" backend: as it is by default ("numba":
               matmul="auto", each product on the hand-written kernel or BLAS, whichever
               this machine measured faster, kernels/numba/routing.py), with every product on
               the hand-written kernel ("numba-kernel"), the same with the fused ops of
               kernels/numba/fused_ops.py off ("numba-plain": the backend before them), and
               with every product on NumPy's BLAS ("numba-blas");
    torch      transformers.CLIPModel(attn_implementation="sdpa") on the same config (QuickGELU,
               causal text mask, pooling at the end-of-text token), with miniclip's initial
               weights copied in (pretrained/hf.openai_to_hf), loss = CLIP's symmetric
               cross-entropy (return_loss=True), torch.optim.AdamW with the same groups.

Both start from the same weights and batch, so the first loss (before any update) must agree:
the table prints both, and the run fails if they differ by more than 1e-4 (relative), or if the
parameter counts differ.

Each framework runs in its own process, one process per repetition, the frameworks taking turns
(numpy, numba-plain, numba-kernel, numba, numba-blas, torch, numpy, ...), so that load from
other programs hits all alike. The measured routes go to a folder of this run (the first
"numba" process measures them, in its warm-up step; the others read them).
A process builds the model, runs one warm-up step (Numba's compilation or cache load, first
touches of memory, AdamW's state), then times ``--steps`` steps; the repetition's number is
their mean. The table gives the median over repetitions and the spread (min-max).

Memory: every worker, PyTorch's included, keeps freed memory for reuse (glibc's mallopt,
miniclip/kernels/memory.py: what the numba backend and the training command do), so no row pays
page faults for fresh pages every step and none is favoured; --allocator default measures with
glibc's own thresholds instead.

Threads: every process gets OMP_NUM_THREADS, MKL_NUM_THREADS, NUMBA_NUM_THREADS,
OPENBLAS_NUM_THREADS and torch.set_num_threads = the thread count, and the miniclip processes
OPENBLAS_THREAD_TIMEOUT=4, what ``python -m miniclip.train`` sets (OpenBLAS's idle threads
sleep at once instead of spinning through the Numba kernel that follows; see
benchmarks/README.md, "Threads"). --numba-blas-threads caps OpenBLAS in the numba rows but
numba-blas (the setting before 2026-11-29 evening was 1).

Beside each config: its FLOPs per step (matmuls and attention products; forward x 3 for forward +
backward), the ideal time at this machine's BLAS speed (a 2048^3 float32 GEMM timed with NumPy
at the same thread count), and where the miniclip step's time goes (each backend op wrapped by
a timer through miniclip.backend.timed_ops; "other" is everything outside the ops: embeddings,
residual adds, the loss, Python).

Longer than 400 lines because it is one script run three ways (the parent that takes turns and
prints the tables, and the miniclip and PyTorch workers it starts, each this file again), which
share the configs, the batch and the FLOP count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

FRAMEWORKS = ("numpy", "numba-plain", "numba-kernel", "numba", "numba-blas", "torch")
LOSS_RTOL = 1e-4  # float32: both frameworks round differently, the same model agrees this far


def bench_configs():
    """name -> (CLIPConfig, batch, what it is)."""
    from miniclip.model.config import CONFIGS, CLIPConfig

    return {
        "toy": (CONFIGS["toy"], 256, "the default training model"),
        "tok65": (CLIPConfig(embed_dim=128, image_resolution=32, vision_layers=4, vision_width=128,
                             vision_patch_size=4, vision_heads=4, context_length=24,
                             vocab_size=1024, transformer_width=128, transformer_heads=4,
                             transformer_layers=4),
                  64, "32 px in 4 px patches (65 tokens), width 128, 4+4 layers, context 24"),
        "vitb32": (replace(CONFIGS["ViT-B/32"], vocab_size=1024), 8,
                   "ViT-B/32 (text tower whole, vocabulary cut to 1024)"),
        "quick": (CONFIGS["tiny"], 4, "tiny, for the test"),
    }


# ---- what a step costs ---------------------------------------------------------------------

def step_flops(cfg, batch) -> float:
    """Multiply-adds x 2 of the matmuls and attention products of one step: forward x 3
    (backward computes dx and dW, each as large as the forward product)."""
    def tower(tokens, width, layers):
        per_block = 2 * tokens * 12 * width * width + 4 * tokens * tokens * width
        return batch * layers * per_block

    grid = cfg.grid_size
    patch = 2 * batch * grid * grid * cfg.vision_width * 3 * cfg.vision_patch_size ** 2
    proj = 2 * batch * (cfg.vision_width + cfg.transformer_width) * cfg.embed_dim
    forward = (tower(cfg.vision_tokens, cfg.vision_width, cfg.vision_layers)
               + tower(cfg.context_length, cfg.transformer_width, cfg.transformer_layers)
               + patch + proj + 2 * batch * batch * cfg.embed_dim)
    return 3.0 * forward


def random_batch(cfg, batch, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    R, T, V = cfg.image_resolution, cfg.context_length, cfg.vocab_size
    images = rng.standard_normal((batch, 3, R, R)).astype(np.float32)
    tokens = np.zeros((batch, T), np.int64)
    for i in range(batch):  # start token, words, end token (the largest id, once), padding
        # the first caption fills the context: miniclip's text tower skips the padding after a
        # batch's longest caption (model/towers.used_context), PyTorch's does not; this way both
        # compute all T positions
        n = T - 2 if i == 0 else int(rng.integers(1, T - 1))
        tokens[i, 0] = V - 2
        tokens[i, 1:1 + n] = rng.integers(1, V - 2, size=n)
        tokens[i, 1 + n] = V - 1
    return images, tokens


# ---- workers (one process each) ------------------------------------------------------------

def _timed_steps(step, steps):
    step()  # warm-up, excluded
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def miniclip_worker(framework, cfg, batch, steps):
    import numpy as np

    from miniclip import backend
    from miniclip.model.clip import CLIP
    from miniclip.train.optim import AdamW

    name, options = {"numpy": ("numpy", {}),
                     "numba-plain": ("numba", {"matmul": "kernel", "fused": False}),
                     "numba-kernel": ("numba", {"matmul": "kernel"}),
                     "numba": ("numba", {"matmul": "auto"}),
                     "numba-blas": ("numba", {"matmul": "blas"})}[framework]
    backend.use_backend(name, **options)
    model = CLIP(cfg, seed=0, dtype=np.float32)
    opt = AdamW(model.params)
    images, tokens = random_batch(cfg, batch)
    losses, profiles, step_copies = [], [], []

    copies = {"arrays": 0, "bytes": 0}
    if name == "numba":
        from miniclip.kernels.numba import ops as numba_ops

        copies = numba_ops.copies  # arrays copied to make them C-contiguous for a kernel

    def step():
        copies.update(arrays=0, bytes=0)
        t0 = time.perf_counter()
        with backend.timed_ops() as timer:
            loss, grads = model.loss_and_grads(images, tokens)
        t1 = time.perf_counter()
        opt.step(grads)
        t2 = time.perf_counter()
        losses.append(float(loss))
        profiles.append({**timer.seconds, "adamw": t2 - t1, "total": t2 - t0})
        step_copies.append(dict(copies))

    times = _timed_steps(step, steps)
    import numba

    return {"times": times, "first_loss": losses[0], "profile": profiles[1:],
            "copies": step_copies[-1],
            "n_params": int(sum(p.size for p in model.params.values())),
            "threads": numba.get_num_threads()}


def torch_worker(cfg, batch, threads, steps):
    import numpy as np
    import torch
    import transformers

    from miniclip.model.clip import CLIP
    from miniclip.pretrained.hf import hf_config_dict, openai_to_hf
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(threads)
    params = CLIP(cfg, seed=0, dtype=np.float32).params
    config = transformers.CLIPConfig.from_dict(hf_config_dict(cfg, float(params["logit_scale"])))
    model = transformers.CLIPModel(config)
    model.set_attn_implementation("sdpa")
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in openai_to_hf(params).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"weights did not map: missing {missing}, unexpected {unexpected}")
    model.train()
    # miniclip.train.optim.decays in HF's names: matrices, except the positional embeddings
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and "position_embedding" not in name else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.2},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=5e-4, betas=(0.9, 0.98), eps=1e-6)
    images, tokens = random_batch(cfg, batch)
    pixels, ids = torch.from_numpy(images), torch.from_numpy(tokens)
    losses = []

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, pixel_values=pixels, return_loss=True).loss
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))

    times = _timed_steps(step, steps)
    return {"times": times, "first_loss": losses[0],
            "n_params": int(sum(p.numel() for p in model.parameters())),
            "threads": torch.get_num_threads()}


def gemm_worker(threads):
    """GFLOP/s of NumPy's BLAS on a 2048^3 float32 product (best of 5)."""
    import numpy as np

    n = 2048
    a, b = (np.random.default_rng(i).standard_normal((n, n), np.float32) for i in (0, 1))
    out = np.empty((n, n), np.float32)
    np.matmul(a, b, out=out)
    best = min(_time(lambda: np.matmul(a, b, out=out)) for _ in range(5))
    return {"gflops": 2 * n ** 3 / best / 1e9, "threads": threads}


def _time(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def worker_main(args):
    threads = args.threads[0]
    # the same allocator setting in every worker, PyTorch's included (--allocator; the numba
    # backend applies it itself unless MINICLIP_KEEP_FREED_MEMORY=0, see worker_env)
    from miniclip.kernels.memory import keep_freed_memory

    keep_freed_memory()
    if args.worker == "gemm":
        result = gemm_worker(threads)
    else:
        cfg, batch, _ = bench_configs()[args.config]
        if args.worker == "torch":
            result = torch_worker(cfg, batch, threads, args.steps)
        else:
            result = miniclip_worker(args.worker, cfg, batch, args.steps)
    print("RESULT " + json.dumps(result), flush=True)


NUMBA_BLAS_THREADS = None  # a cap on OpenBLAS threads beside Numba's pool (--numba-blas-threads)


ALLOCATOR = "keep"  # --allocator
ROUTES_DIR = None  # MINICLIP_CACHE_DIR of this run's workers: the routes the "numba" rows measure


def worker_env(framework, threads):
    env = dict(os.environ)
    env["MINICLIP_KEEP_FREED_MEMORY"] = "1" if ALLOCATOR == "keep" else "0"
    if ROUTES_DIR is not None:
        env["MINICLIP_CACHE_DIR"] = ROUTES_DIR
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    capped = (framework.startswith("numba") and framework != "numba-blas"
              and NUMBA_BLAS_THREADS is not None)
    env["OPENBLAS_NUM_THREADS"] = str(min(threads, NUMBA_BLAS_THREADS) if capped else threads)
    if framework != "torch":  # what python -m miniclip.train sets (train/cli.thread_settings)
        env.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_worker(framework, threads, config=None, steps=1, timeout=1800):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", framework,
           "--threads", str(threads), "--steps", str(steps)]
    if config is not None:
        cmd += ["--config", config]
    child = subprocess.run(cmd, env=worker_env(framework, threads), capture_output=True,
                           text=True, timeout=timeout)
    lines = [ln for ln in child.stdout.splitlines() if ln.startswith("RESULT ")]
    if child.returncode != 0 or not lines:
        raise RuntimeError(f"{framework} worker ({config}, {threads} threads) failed "
                           f"(exit {child.returncode}):\n{child.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


# ---- the parent: taking turns, tables ------------------------------------------------------

def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def have_torch() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))


def profile_shares(profiles):
    """Median seconds per part of the step, from the profiled steps of every repetition."""
    parts = ("matmul (linear ops)", "attention", "layernorm", "activation", "adamw")
    rows = []
    for p in profiles:
        row = {part: sum(v for k, v in p.items() if _part_of(k) == part) for part in parts}
        row["other"] = p["total"] - sum(row.values())
        row["total"] = p["total"]
        rows.append(row)
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def _part_of(op: str) -> str:
    if op == "adamw":
        return "adamw"
    if op.startswith("linear"):  # linear_*, and fused linear + activation ops
        return "matmul (linear ops)"
    if op.startswith("attention"):
        return "attention"
    if op.startswith("layernorm"):
        return "layernorm"
    if "gelu" in op:
        return "activation"
    return "other"


def run_config(name, threads, reps, steps, frameworks):
    cfg, batch, what = bench_configs()[name]
    results = {f: [] for f in frameworks}
    loads = [load_average()]
    for _ in range(reps):
        for f in frameworks:
            results[f].append(run_worker(f, threads, name, steps))
        loads.append(load_average())
    return cfg, batch, what, results, loads


def fmt_ms(times):
    med = statistics.median(times)
    return f"{med * 1e3:.0f} ({min(times) * 1e3:.0f}-{max(times) * 1e3:.0f})"


def report(name, threads, cfg, batch, what, results, loads, gflops):
    step_time = {f: [statistics.mean(r["times"]) for r in rs] for f, rs in results.items()}
    med = {f: statistics.median(t) for f, t in step_time.items()}
    flops = step_flops(cfg, batch)
    ideal = flops / (gflops * 1e9)
    lines = [f"\n#### {name}: {what}, batch {batch}, {threads} thread(s)\n",
             f"- {flops / 1e9:.1f} GFLOP per step; ideal at {gflops:.0f} GFLOP/s (NumPy BLAS, "
             f"2048^3 float32, {threads} thread(s)): {ideal * 1e3:.0f} ms",
             f"- load average (1, 5, 15 min) before and after each round: {' | '.join(loads)}",
             "", "| framework | step ms, median (min-max) | / torch | / numpy | x ideal | "
             "first loss | parameters |", "|---|---:|---:|---:|---:|---:|---:|"]
    for f, t in step_time.items():
        r0 = results[f][0]
        vs_torch = f"{med[f] / med['torch']:.2f}" if "torch" in med else ""
        vs_numpy = f"{med[f] / med['numpy']:.2f}" if "numpy" in med else ""
        lines.append(f"| {f} | {fmt_ms(t)} | {vs_torch} | {vs_numpy} | {med[f] / ideal:.1f} | "
                     f"{r0['first_loss']:.6f} | {r0['n_params']:,} |")
    profiled = [f for f in results if f != "torch"]
    if profiled:
        shares = {f: profile_shares([p for r in results[f] for p in r["profile"]])
                  for f in profiled}
        parts = [k for k in next(iter(shares.values())) if k != "total"]
        lines += ["", "Where the miniclip step goes (median ms per step, share of the step):", "",
                  "| part | " + " | ".join(profiled) + " |",
                  "|---|" + "---:|" * len(profiled)]
        for part in parts:
            cells = [f"{shares[f][part] * 1e3:.0f} ({shares[f][part] / shares[f]['total']:.0%})"
                     for f in profiled]
            lines.append(f"| {part} | " + " | ".join(cells) + " |")
        lines.append("| copies to C order per step | " + " | ".join(
            f"{results[f][0]['copies']['arrays']} ({results[f][0]['copies']['bytes'] / 1e6:.1f} MB)"
            for f in profiled) + " |")
    return "\n".join(lines), check_same_model(name, results)


def check_same_model(name, results):
    """Problems (strings) if the frameworks did not compute the same model."""
    problems = []
    first = {f: rs[0]["first_loss"] for f, rs in results.items()}
    counts = {f: rs[0]["n_params"] for f, rs in results.items()}
    ref = first.get("numpy", next(iter(first.values())))
    for f, loss in first.items():
        if abs(loss - ref) > LOSS_RTOL * abs(ref):
            problems.append(f"{name}: {f}'s first loss {loss:.6f} differs from {ref:.6f}")
    if len(set(counts.values())) > 1:
        problems.append(f"{name}: parameter counts differ: {counts}")
    return problems


def machine_header():
    import platform

    import numpy as np

    from miniclip.kernels.numba.routing import machine

    versions = [f"python {platform.python_version()}", f"numpy {np.__version__}"]
    for mod in ("numba", "torch", "transformers"):
        try:
            import importlib.metadata

            versions.append(f"{mod} {importlib.metadata.version(mod)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{mod} not installed")
    return (f"- machine: {machine()}; {', '.join(versions)}\n"
            f"- started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, "
            f"load average {load_average()}")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="toy,tok65,vitb32",
                    help="comma-separated, from: " + ", ".join(bench_configs()))
    ap.add_argument("--threads", default=f"1,{os.cpu_count() or 1}",
                    help="comma-separated thread counts (default: 1 and every core)")
    ap.add_argument("--reps", type=int, default=5, help="processes per framework (default 5)")
    ap.add_argument("--steps", type=int, default=1,
                    help="timed steps per process, after one warm-up step (default 1)")
    ap.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                    help="comma-separated, from: " + ", ".join(FRAMEWORKS))
    ap.add_argument("--numba-blas-threads", type=int, default=None,
                    help="cap on OpenBLAS threads in the numba rows but numba-blas (default: "
                         "none, the thread count)")
    ap.add_argument("--allocator", choices=("keep", "default"), default="keep",
                    help="keep: every worker (PyTorch's too) keeps freed memory for reuse "
                         "(miniclip/kernels/memory.py, what the numba backend and "
                         "python -m miniclip.train do); default: glibc's own thresholds")
    ap.add_argument("--quick", action="store_true",
                    help="the tiny config, 1 thread, 1 repetition: seconds, for the test")
    ap.add_argument("--worker", choices=(*FRAMEWORKS, "gemm"), help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.configs, args.threads, args.reps = "quick", "1", 1
    try:
        args.threads = [int(t) for t in str(args.threads).split(",")]
    except ValueError:
        ap.error(f"--threads must be comma-separated integers, got {args.threads!r}")
    if any(t < 1 for t in args.threads):
        ap.error(f"--threads must be >= 1, got {args.threads}")
    if args.reps < 1 or args.steps < 1 or (args.numba_blas_threads or 1) < 1:
        ap.error(f"--reps, --steps and --numba-blas-threads must be >= 1, got {args.reps}, "
                 f"{args.steps} and {args.numba_blas_threads}")
    args.configs = args.configs.split(",")
    unknown = [c for c in args.configs if c not in bench_configs()]
    if unknown:
        ap.error(f"unknown config(s) {unknown}; choose from {list(bench_configs())}")
    args.frameworks = args.frameworks.split(",")
    bad = [f for f in args.frameworks if f not in FRAMEWORKS]
    if bad:
        ap.error(f"unknown framework(s) {bad}; choose from {list(FRAMEWORKS)}")
    return args


def main(argv=None):
    global NUMBA_BLAS_THREADS, ALLOCATOR, ROUTES_DIR
    args = parse_args(sys.argv[1:] if argv is None else argv)
    NUMBA_BLAS_THREADS, ALLOCATOR = args.numba_blas_threads, args.allocator
    if args.worker:
        return worker_main(args)
    import tempfile

    ROUTES_DIR = tempfile.mkdtemp(prefix="bench_vs_torch_routes_")
    frameworks = list(args.frameworks)
    if "torch" in frameworks and not have_torch():
        print("(torch or transformers not installed: miniclip only)")
        frameworks.remove("torch")
    print(machine_header(), flush=True)
    print(f"- OPENBLAS_NUM_THREADS = threads (numba rows but numba-blas: at most "
          f"{NUMBA_BLAS_THREADS}); miniclip rows: OPENBLAS_THREAD_TIMEOUT="
          f"{os.environ.get('OPENBLAS_THREAD_TIMEOUT', '4')}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')} (numba: PASSIVE unless set)",
          flush=True)
    print(f"- allocator: {args.allocator} (keep: every worker keeps freed memory for reuse, "
          "miniclip/kernels/memory.py)", flush=True)
    problems = []
    for threads in args.threads:
        gflops = run_worker("gemm", threads)["gflops"]
        print(f"\n### {threads} thread(s): NumPy BLAS {gflops:.0f} GFLOP/s (2048^3 float32)",
              flush=True)
        for name in args.configs:
            cfg, batch, what, results, loads = run_config(name, threads, args.reps, args.steps,
                                                          frameworks)
            table, bad = report(name, threads, cfg, batch, what, results, loads, gflops)
            print(table, flush=True)
            problems += bad
    from miniclip.kernels.numba import routing

    routes = routing.Routes(Path(ROUTES_DIR) / "matmul_routes.json")
    print("\nThe routes the numba rows measured (python -m miniclip.kernels --explain):\n```\n"
          f"{routes.explain()}\n```", flush=True)
    if problems:
        print("\nNOT THE SAME MODEL:\n" + "\n".join(problems), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
