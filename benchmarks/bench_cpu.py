"""CPU speed of miniclip's backends, side by side in one run.

    python benchmarks/bench_cpu.py            # full tables (a few minutes on 2 cores)
    python benchmarks/bench_cpu.py --quick    # fewer repetitions

Prints markdown tables:
  1. matmul GFLOP/s: the hand-written Numba kernel vs NumPy's BLAS, on the products of the
     training config CONFIGS["toy"] at batch 128 (forward, dx, dW) and on squares;
  2. attention forward + backward: the fused Numba kernel vs the NumPy reference;
  3. one training step (loss_and_grads + AdamW) of CONFIGS["toy"] at batch 128: NumPy backend,
     numba backend, numba with the hand-written matmul forced, and the same model in PyTorch
     (same weights, checked by comparing the loss) when torch is installed.

Every time is the best of several repetitions, and the variants of one row are run in turn
(A B C A B C ...), so a burst of load from other processes hits all of them alike. Timings on a
shared machine are still noisy: compare ratios within one run, not across runs.

PyTorch runs in a child process (before and after the miniclip variants; the better of the two
counts): in one process, two OpenMP runtimes (PyTorch's and Numba's) and OpenBLAS's threads
compete for the cores and slow each other down by up to 100x on small products, which would
measure the interference, not the code. Threads: NumPy's OpenBLAS, Numba and PyTorch each use
every core by default; for a one-core comparison run with
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import glob
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from miniclip import CONFIGS  # noqa: E402
from miniclip.train.optim import decays  # noqa: E402

BATCH = 128


def best_times(fns, reps):
    """Best wall time of each function over ``reps`` rounds, the functions taking turns."""
    best = [float("inf")] * len(fns)
    for _ in range(reps):
        for i, f in enumerate(fns):
            start = time.perf_counter()
            f()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def blas_core():
    """OpenBLAS's kernel family for this CPU, if NumPy's OpenBLAS can be asked."""
    import ctypes

    libdir = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for path in glob.glob(str(libdir / "*openblas*")):
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_get_corename64_", "openblas_get_corename64_",
                     "openblas_get_corename"):
            if hasattr(lib, name):
                fn = getattr(lib, name)
                fn.restype = ctypes.c_char_p
                return fn().decode()
    return "unknown"


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_header():
    import llvmlite.binding
    import numba

    from miniclip.kernels.numba import elementwise as numba_elementwise

    one = np.ones(1, np.float32)
    numba_elementwise.quick_gelu_forward_kernel(one, one.copy())  # starts the thread pool
    blas = np.__config__.CONFIG.get("Build Dependencies", {}).get("blas", {})
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = "not installed"
    lines = [
        f"- machine: {cpu_name()}, {os.cpu_count()} cores (`os.cpu_count()`), LLVM target "
        f"{llvmlite.binding.get_host_cpu_name()}",
        f"- python {platform.python_version()}, numpy {np.__version__} "
        f"(BLAS: {blas.get('name', '?')} {blas.get('version', '')}, kernel family {blas_core()}), "
        f"numba {numba.__version__} ({numba.get_num_threads()} threads, threading layer "
        f"{numba.threading_layer()}), torch {torch_version}",
        f"- OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}",
    ]
    return "\n".join(lines)


# ---- 1. matmul -----------------------------------------------------------------------------

def matmul_cases(cfg):
    """(label, kind, M, N, K) for the products of one training step of cfg at BATCH.

    kind "forward": out (M, N) = x (M, K) W^T;  "dx": dx (M, N) = dy (M, K) W (K, N);
    "dw": dW (M, N) = dy^T x summed over K rows (with db).
    """
    w, hidden = cfg.vision_width, 4 * cfg.vision_width
    vis, txt = BATCH * cfg.vision_tokens, BATCH * cfg.context_length
    cases = [
        ("vision qkv: x W^T", "forward", vis, 3 * w, w),
        ("vision out_proj: x W^T", "forward", vis, w, w),
        ("vision c_fc: x W^T", "forward", vis, hidden, w),
        ("vision c_proj: x W^T", "forward", vis, w, hidden),
        ("vision c_fc: dx = dy W", "dx", vis, w, hidden),
        ("vision c_proj: dx = dy W", "dx", vis, hidden, w),
        ("vision qkv: dW = dy^T x", "dw", 3 * w, w, vis),
        ("vision c_fc: dW = dy^T x", "dw", hidden, w, vis),
        ("vision c_proj: dW = dy^T x", "dw", w, hidden, vis),
        ("text c_fc: x W^T", "forward", txt, hidden, cfg.transformer_width),
        ("text c_fc: dW = dy^T x", "dw", hidden, cfg.transformer_width, txt),
    ]
    cases += [(f"square {n}", "forward", n, n, n) for n in (256, 512, 1024)]
    return cases


def matmul_pair(kind, M, N, K, dtype, rng):
    """(hand-written, BLAS) functions computing the same product into preallocated outputs."""
    import numba

    from miniclip.kernels.numba import matmul as numba_matmul

    if kind == "forward":  # out = a @ b^T
        a, b = rng.standard_normal((M, K), dtype), rng.standard_normal((N, K), dtype)
        out, zeros = np.empty((M, N), dtype), np.zeros(N, dtype)
        return (lambda: numba_matmul.matmul_nt(a, b, zeros, out),
                lambda: np.matmul(a, b.T, out=out))
    if kind == "dx":  # out = dy @ W, W (K, N): the layer transposes W, then out = dy @ (W^T)^T
        dy, w = rng.standard_normal((M, K), dtype), rng.standard_normal((K, N), dtype)
        out, w_t, zeros = np.empty((M, N), dtype), np.empty((N, K), dtype), np.zeros(N, dtype)

        def handwritten():
            numba_matmul.transpose(w, w_t)
            numba_matmul.matmul_nt(dy, w_t, zeros, out)

        return handwritten, lambda: np.matmul(dy, w, out=out)
    # dW (M, N) = dy^T x, summed over K rows; and db, as the layer needs it
    dy, x = rng.standard_normal((K, M), dtype), rng.standard_normal((K, N), dtype)
    out, db = np.empty((M, N), dtype), np.empty(M, dtype)
    threads = numba.get_num_threads()

    def blas():
        np.matmul(dy.T, x, out=out)
        dy.sum(axis=0, out=db)

    return lambda: numba_matmul.weight_grad(dy, x, out, db, threads), blas


def bench_matmul(reps, dtype=np.float32):
    rng = np.random.default_rng(0)
    rows = []
    for label, kind, M, N, K in matmul_cases(CONFIGS["toy"]):
        mine, blas = matmul_pair(kind, M, N, K, dtype, rng)
        mine()  # compile / warm up
        t_mine, t_blas = best_times([mine, blas], reps)
        gflop = 2.0 * M * N * K / 1e9
        rows.append((label, f"{M}x{N}x{K}", gflop / t_mine, gflop / t_blas, t_blas / t_mine))
    lines = ["| product | M x N x K | hand-written GFLOP/s | BLAS GFLOP/s | hand-written / BLAS |",
             "|---|---|---:|---:|---:|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]:.0f} | {r[3]:.0f} | {r[4]:.2f} |" for r in rows]
    train = [r[4] for r in rows if not r[0].startswith("square")]
    lines.append(f"\nTraining shapes: hand-written / BLAS from {min(train):.2f} to "
                 f"{max(train):.2f} (geometric mean {np.exp(np.mean(np.log(train))):.2f}).")
    return "\n".join(lines)


# ---- 2. attention --------------------------------------------------------------------------

def attention_fns(q, k, v, dout, causal):
    """[NumPy fwd+bwd, Numba fwd+bwd, NumPy fwd, Numba fwd]"""
    from miniclip.kernels.numba import ops as numba_backend
    from miniclip.nn import ops as reference

    def fwd_bwd(backend):
        out, cache = backend.attention_forward(q, k, v, causal)
        backend.attention_backward(dout, cache)

    return [lambda: fwd_bwd(reference), lambda: fwd_bwd(numba_backend),
            lambda: reference.attention_forward(q, k, v, causal),
            lambda: numba_backend.attention_forward(q, k, v, causal)]


def bench_attention(reps, dtype=np.float32):
    cfg = CONFIGS["toy"]
    rng = np.random.default_rng(0)
    lines = ["| attention (B, H, T, D) | NumPy fwd+bwd ms | Numba fwd+bwd ms | speed-up | "
             "NumPy fwd ms | Numba fwd ms | speed-up |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    cases = [("vision", cfg.vision_heads, cfg.vision_tokens, cfg.vision_width, False),
             ("text, causal", cfg.transformer_heads, cfg.context_length, cfg.transformer_width,
              True)]
    for name, H, T, width, causal in cases:
        D = width // H
        q, k, v, dout = (rng.standard_normal((BATCH, H, T, D), dtype) for _ in range(4))

        fns = attention_fns(q, k, v, dout, causal)
        fns[1]()
        t = best_times(fns, reps)
        lines.append(f"| {name} ({BATCH}, {H}, {T}, {D}) | {t[0] * 1e3:.1f} | {t[1] * 1e3:.1f} | "
                     f"{t[0] / t[1]:.2f}x | {t[2] * 1e3:.1f} | {t[3] * 1e3:.1f} | "
                     f"{t[2] / t[3]:.2f}x |")
    return "\n".join(lines)


# ---- 3. one training step ------------------------------------------------------------------

def random_batch(cfg, rng, dtype=np.float32):
    R, T, V = cfg.image_resolution, cfg.context_length, cfg.vocab_size
    images = rng.standard_normal((BATCH, 3, R, R)).astype(dtype)
    tokens = np.zeros((BATCH, T), np.int64)
    for i in range(BATCH):  # start token, words, end token (the largest id), padding
        n = int(rng.integers(1, T - 1))
        tokens[i, 0] = V - 2
        tokens[i, 1:1 + n] = rng.integers(1, V - 2, size=n)
        tokens[i, 1 + n] = V - 1
    return images, tokens


def torch_step_fn(cfg, params, images, tokens, device="cpu"):
    """The same CLIP in PyTorch (QuickGELU, causal text mask, pooling at the end-of-text
    token), with miniclip's weights copied in, on ``device`` ("cpu" or "cuda"); returns
    (step function, first loss). The step reads its loss back, as miniclip's does."""
    import torch
    import torch.nn.functional as F

    P = {k: torch.tensor(v, requires_grad=True, device=device) for k, v in params.items()}
    imgs, toks = torch.from_numpy(images).to(device), torch.from_numpy(tokens).to(device)

    def block(x, prefix, heads, causal):
        g = lambda name: P[prefix + name]  # noqa: E731
        N, T, C = x.shape
        h = F.layer_norm(x, (C,), g("ln_1.weight"), g("ln_1.bias"), 1e-5)
        qkv = F.linear(h, g("attn.in_proj_weight"), g("attn.in_proj_bias"))
        q, k, v = (t.reshape(N, T, heads, C // heads).transpose(1, 2) for t in qkv.chunk(3, -1))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        x = x + F.linear(a.transpose(1, 2).reshape(N, T, C), g("attn.out_proj.weight"),
                         g("attn.out_proj.bias"))
        h = F.layer_norm(x, (C,), g("ln_2.weight"), g("ln_2.bias"), 1e-5)
        h = F.linear(h, g("mlp.c_fc.weight"), g("mlp.c_fc.bias"))
        h = h * torch.sigmoid(1.702 * h)  # QuickGELU
        return x + F.linear(h, g("mlp.c_proj.weight"), g("mlp.c_proj.bias"))

    def loss_fn():
        W = cfg.vision_width
        x = F.conv2d(imgs, P["visual.conv1.weight"], stride=cfg.vision_patch_size)
        x = x.flatten(2).transpose(1, 2)  # (N, G*G, W)
        cls = P["visual.class_embedding"].expand(x.shape[0], 1, W)
        x = torch.cat([cls, x], 1) + P["visual.positional_embedding"]
        x = F.layer_norm(x, (W,), P["visual.ln_pre.weight"], P["visual.ln_pre.bias"], 1e-5)
        for i in range(cfg.vision_layers):
            x = block(x, f"visual.transformer.resblocks.{i}.", cfg.vision_heads, False)
        x = F.layer_norm(x[:, 0], (W,), P["visual.ln_post.weight"], P["visual.ln_post.bias"],
                         1e-5)
        img = x @ P["visual.proj"]
        y = P["token_embedding.weight"][toks] + P["positional_embedding"]
        for i in range(cfg.transformer_layers):
            y = block(y, f"transformer.resblocks.{i}.", cfg.transformer_heads, True)
        y = y[torch.arange(y.shape[0], device=device), toks.argmax(-1)]
        y = F.layer_norm(y, (y.shape[-1],), P["ln_final.weight"], P["ln_final.bias"], 1e-5)
        txt = y @ P["text_projection"]
        logits = P["logit_scale"].exp() * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
        labels = torch.arange(logits.shape[0], device=device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))

    groups = [{"params": [p for k, p in P.items() if decays(k, params[k])], "weight_decay": 0.2},
              {"params": [p for k, p in P.items() if not decays(k, params[k])],
               "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=5e-4, betas=(0.9, 0.98), eps=1e-6)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        return float(loss.detach())

    with torch.no_grad():
        first_loss = float(loss_fn())
    return step, first_loss


def torch_worker(data_path, reps):
    """Child process: time the PyTorch step on the saved weights and batch; print JSON."""
    data = np.load(data_path)
    cfg = CONFIGS["toy"]
    params = {k[2:]: data[k] for k in data.files if k.startswith("p:")}
    step, first_loss = torch_step_fn(cfg, params, data["images"], data["tokens"])
    step()  # warm up
    import torch

    print(json.dumps({"time": best_times([step], reps)[0], "first_loss": first_loss,
                      "threads": torch.get_num_threads()}))


def run_torch_worker(data_path, reps):
    """The PyTorch step timed in a child process, or None without torch."""
    try:
        importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None
    child = subprocess.run([sys.executable, __file__, "--torch-worker", data_path, str(reps)],
                           capture_output=True, text=True, check=True)
    return json.loads(child.stdout.strip().splitlines()[-1])


def bench_training_step(reps):
    from miniclip import backend
    from miniclip.model.clip import CLIP
    from miniclip.train.optim import AdamW

    cfg = CONFIGS["toy"]
    images, tokens = random_batch(cfg, np.random.default_rng(0))
    torch_label = "PyTorch (same model, same weights; own process)"
    with tempfile.TemporaryDirectory() as tmp:
        data_path = os.path.join(tmp, "batch.npz")
        params = CLIP(cfg, seed=0, dtype=np.float32).params
        np.savez(data_path, images=images, tokens=tokens, **{f"p:{k}": v for k, v in params.items()})
        torch_runs = [run_torch_worker(data_path, reps)]
        variants = [("numpy backend", "numpy", {}), ("numba backend", "numba", {}),
                    ("numba, hand-written matmul forced", "numba", {"handwritten_matmul": True})]
        steps, losses = {}, {}
        for label, backend, options in variants:
            model = CLIP(cfg, seed=0, dtype=np.float32)
            opt = AdamW(model.params)

            def step(model=model, opt=opt, backend=backend, options=options):
                with backend.use_backend(backend, **options):
                    loss, grads = model.loss_and_grads(images, tokens)
                    opt.step(grads)
                return loss

            with backend.use_backend(backend, **options):
                losses[label] = model.loss_and_grads(images, tokens)[0]  # also compiles
            steps[label] = step
        for s in steps.values():
            s()  # warm up
        times = dict(zip(steps, best_times(list(steps.values()), reps), strict=True))
        torch_runs.append(run_torch_worker(data_path, reps))
    if torch_runs[0] is not None:
        times[torch_label] = min(run["time"] for run in torch_runs)
        losses[torch_label] = torch_runs[0]["first_loss"]
    base = times["numpy backend"]
    lines = [f"One step of CONFIGS['toy'] (vision {cfg.vision_layers} x {cfg.vision_width}, "
             f"{cfg.vision_tokens} tokens; text {cfg.transformer_layers} x "
             f"{cfg.transformer_width}, {cfg.context_length} tokens) at batch {BATCH}, float32, "
             "loss_and_grads + AdamW (the first loss, before any update, shows it is one model):\n",
             "| variant | step ms | speed-up vs NumPy backend | first loss |",
             "|---|---:|---:|---:|"]
    lines += [f"| {k} | {t * 1e3:.0f} | {base / t:.2f}x | {losses[k]:.6f} |"
              for k, t in times.items()]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--torch-worker"]:
        return torch_worker(argv[1], int(argv[2]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--only", choices=["matmul", "attention", "step"], default=None)
    args = parser.parse_args(argv)
    reps = 3 if args.quick else 9
    from miniclip.kernels.numba import ops as numba_backend  # noqa: F401  (sets its thread policy first)

    print(machine_header(), flush=True)
    if args.only in (None, "matmul"):
        print("\n### Matmul, float32\n", flush=True)
        print(bench_matmul(reps), flush=True)
    if args.only in (None, "attention"):
        print("\n### Attention, float32\n", flush=True)
        print(bench_attention(reps), flush=True)
    if args.only in (None, "step"):
        print("\n### Training step\n", flush=True)
        print(bench_training_step(max(3, reps // 2)), flush=True)


if __name__ == "__main__":
    main()
