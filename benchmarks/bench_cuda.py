"""GPU benchmark of miniclip's numba-cuda kernels, side by side with PyTorch in one run.

    python benchmarks/bench_cuda.py                 # needs an NVIDIA GPU; PyTorch with CUDA optional
    python benchmarks/bench_cuda.py --repeat 20 --skip-step

Three tables, all float32:
  1. matmul GFLOP/s: the tiled kernel (miniclip.kernels.cuda_matmul) vs torch.matmul (cuBLAS,
     TF32 off so both do full float32 arithmetic), on the linear layers of CONFIGS["toy"] at
     batch 128 (forward y = x W^T and both backward products) and on square sizes;
  2. attention forward + backward: the flash-style kernels vs
     torch.nn.functional.scaled_dot_product_attention (which picks its own fused kernel);
  3. a full training step of CONFIGS["toy"] at batch 128 (loss_and_grads + AdamW): the cuda
     backend with the weights on the GPU (what `python -m miniclip.train --backend cuda` runs),
     the cuda backend with NumPy weights (every op copies its inputs up and its results down),
     the numpy and numba CPU backends, and the same model in PyTorch on the GPU; with the bytes
     each cuda row copied between host and device per step.
Times are medians over --repeat runs after one warm-up run (which also compiles the kernels).
Data are uploaded before timing, so tables 1 and 2 time the kernels alone; table 3 times
everything a step does, copies included.

It refuses to run in numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1), where kernels run as Python
threads and timings mean nothing, and exits with a message when no GPU is present. (Its functions
do run in the simulator, on tiny shapes: tests/cudasim/test_bench_cuda.py checks that they work.)
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

import numpy as np  # noqa: E402
from numba import cuda  # noqa: E402

try:
    import torch  # noqa: E402
except ImportError:
    torch = None


def torch_on_gpu() -> bool:
    return torch is not None and torch.cuda.is_available()


# ----- timing -----

def median_ms(fn, sync, repeat):
    """Median wall time of fn() in ms, synchronising the GPU around each call; one warm-up."""
    fn()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def torch_sync():
    torch.cuda.synchronize()


def fmt(value, spec=".1f"):
    return "-" if value is None else format(value, spec)


def print_table(title, header, rows):
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


# ----- 1. matmul -----

def model_matmul_shapes(cfg, batch):
    """(label, M, K, N) of the forward products y = x W^T of cfg's linear layers."""
    vision_tokens = (cfg.image_resolution // cfg.vision_patch_size) ** 2 + 1
    shapes = []
    for tower, M, width in (("vision", batch * vision_tokens, cfg.vision_width),
                            ("text", batch * cfg.context_length, cfg.transformer_width)):
        shapes += [(f"{tower} qkv", M, width, 3 * width), (f"{tower} out_proj", M, width, width),
                   (f"{tower} c_fc", M, width, 4 * width), (f"{tower} c_proj", M, 4 * width, width)]
    return shapes


def bench_matmul(shapes, repeat, device="cuda"):
    """Rows (label, product, M, K, N, ours GFLOP/s, torch GFLOP/s, ours / torch)."""
    from miniclip.kernels.cuda.matmul import matmul

    rng = np.random.default_rng(0)
    rows = []
    for label, M, K, N, products in shapes:
        x = rng.standard_normal((M, K), dtype=np.float32)
        w = rng.standard_normal((N, K), dtype=np.float32)
        dy = rng.standard_normal((M, N), dtype=np.float32)
        x_d, w_d, dy_d = cuda.to_device(x), cuda.to_device(w), cuda.to_device(dy)
        ours = {"y = x W^T": partial(matmul, x_d, w_d, transpose_b=True),
                "dx = dy W": partial(matmul, dy_d, w_d),
                "dW = dy^T x": partial(matmul, dy_d, x_d, transpose_a=True)}
        theirs = {}
        if torch is not None and (device == "cpu" or torch_on_gpu()):
            xt, wt, dyt = (torch.from_numpy(a).to(device) for a in (x, w, dy))
            theirs = {"y = x W^T": partial(torch.matmul, xt, wt.T),
                      "dx = dy W": partial(torch.matmul, dyt, wt),
                      "dW = dy^T x": partial(torch.matmul, dyt.T, xt)}
        for product in products:
            flops = 2.0 * M * N * K
            ms = median_ms(ours[product], cuda.synchronize, repeat)
            gflops = flops / ms / 1e6
            ref = None
            if product in theirs:
                sync = torch_sync if device == "cuda" else (lambda: None)
                ref = flops / median_ms(theirs[product], sync, repeat) / 1e6
            rows.append((label, product, M, K, N, fmt(gflops, ".0f"), fmt(ref, ".0f"),
                         fmt(None if ref is None else gflops / ref, ".2f")))
    return rows


# ----- 2. attention -----

def miniclip_attention(q, k, v, dout, causal):
    """Forward and backward on (BH, T, D) device arrays."""
    from miniclip.kernels.cuda.attention import flash_attention_backward, flash_attention_forward

    out, lse = flash_attention_forward(q, k, v, causal)
    flash_attention_backward(dout, q, k, v, out, lse, causal)


def torch_attention(q, k, v, dout, causal):
    """Forward and backward of PyTorch's fused attention on (B, H, T, D) tensors."""
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.autograd.grad(out, (q, k, v), dout)


def bench_attention(shapes, repeat, device="cuda"):
    """Rows (label, B, H, T, D, causal, ours ms, torch ms, torch / ours)."""
    rng = np.random.default_rng(0)
    rows = []
    for label, B, H, T, D, causal in shapes:
        q, k, v, dout = (rng.standard_normal((B, H, T, D), dtype=np.float32) for _ in range(4))
        on_device = [cuda.to_device(a.reshape(B * H, T, D)) for a in (q, k, v, dout)]
        ms = median_ms(partial(miniclip_attention, *on_device, causal), cuda.synchronize, repeat)
        ref = None
        if torch is not None and (device == "cpu" or torch_on_gpu()):
            qt, kt, vt = (torch.from_numpy(a).to(device).requires_grad_() for a in (q, k, v))
            dout_t = torch.from_numpy(dout).to(device)
            ref = median_ms(partial(torch_attention, qt, kt, vt, dout_t, causal),
                            torch_sync if device == "cuda" else (lambda: None), repeat)
        rows.append((label, B, H, T, D, causal, fmt(ms, ".3f"), fmt(ref, ".3f"),
                     fmt(None if ref is None else ref / ms, ".2f")))
    return rows


# ----- 3. training step -----

STEP_ROWS = {  # label -> (backend, weights on the GPU?)
    "cuda, weights on the GPU": ("cuda", True),
    "cuda, NumPy weights (copies per op)": ("cuda", False),
    "numba (CPU)": ("numba", False),
    "numpy (CPU)": ("numpy", False),
}


def bench_training_step(cfg, batch, repeat, rows=tuple(STEP_ROWS), with_torch=True):
    """Rows (label, ms per step, numpy ms / this, MB host->device, MB device->host per step,
    first loss). Every row starts from the same weights, so the first losses must agree."""
    from miniclip import backend
    from miniclip.kernels.cuda import ops as cuda_backend
    from miniclip.model.clip import CLIP
    from miniclip.train.optim import AdamW

    rng = np.random.default_rng(0)
    R, T, V = cfg.image_resolution, cfg.context_length, cfg.vocab_size
    images = rng.standard_normal((batch, 3, R, R), dtype=np.float32)
    tokens = rng.integers(1, V - 1, size=(batch, T))
    tokens[np.arange(batch), rng.integers(1, T, size=batch)] = V - 1  # end-of-text, pooled
    results = {}
    for label in rows:
        backend_name, on_gpu = STEP_ROWS[label]
        try:
            switch = backend.use_backend(backend_name)
        except (ImportError, NotImplementedError, RuntimeError) as err:
            print(f"({label!r} skipped: {err})")
            continue
        with switch:
            model = CLIP(cfg, seed=0, dtype=np.float32)
            if on_gpu:
                model.params = backend.to_device(model.params)
            opt = AdamW(model.params, lr=1e-4)
            first_loss = model.loss_and_grads(images, tokens)[0]

            def step(model=model, opt=opt):
                loss, grads = model.loss_and_grads(images, tokens)  # reads the loss back
                opt.step(grads)

            sync = cuda.synchronize if backend_name == "cuda" else (lambda: None)
            ms = median_ms(step, sync, repeat)
            moved = (None, None)
            if backend_name == "cuda":
                cuda_backend.reset_transfer_stats()
                step()
                sync()
                stats = cuda_backend.transfer_stats()
                moved = (stats["host_to_device_bytes"] / 1e6, stats["device_to_host_bytes"] / 1e6)
            results[label] = (ms, moved, first_loss)
    if with_torch and torch_on_gpu():
        from bench_cpu import torch_step_fn  # the same model in PyTorch, weights copied in

        params = CLIP(cfg, seed=0, dtype=np.float32).params
        step, first_loss = torch_step_fn(cfg, params, images, tokens, device="cuda")
        results["PyTorch on the GPU (same model)"] = (
            median_ms(step, torch_sync, repeat), (None, None), first_loss)
    base = results.get("numpy (CPU)", (None,))[0]
    return [(label, fmt(ms, ".2f"), fmt(None if base is None else base / ms, ".1f"),
             fmt(moved[0], ".2f"), fmt(moved[1], ".6f"), f"{loss:.5f}")
            for label, (ms, moved, loss) in results.items()]


# ----- main -----

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per entry (median)")
    parser.add_argument("--batch", type=int, default=128, help="batch of the model shapes")
    parser.add_argument("--skip-step", action="store_true", help="skip the training-step table")
    args = parser.parse_args(argv)

    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        sys.exit("bench_cuda.py: NUMBA_ENABLE_CUDASIM=1 is set. The simulator runs each CUDA "
                 "thread as a Python thread, so its timings mean nothing; unset it and run on a "
                 "GPU.")
    if not cuda.is_available():
        sys.exit("bench_cuda.py: no CUDA GPU found (numba.cuda.is_available() is False). This "
                 "benchmark needs an NVIDIA GPU and driver; the kernels' correctness tests run "
                 "without one: NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cudasim")

    import numba

    from miniclip import CONFIGS

    if torch_on_gpu():
        torch.backends.cuda.matmul.allow_tf32 = False  # cuBLAS in full float32, like our kernel
        torch.backends.cudnn.allow_tf32 = False
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else device.name
    try:
        from importlib.metadata import version
        numba_cuda_version = version("numba-cuda")
    except Exception:
        numba_cuda_version = "?"
    print(f"GPU: {name} (compute capability {'.'.join(map(str, device.compute_capability))})")
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"numpy {np.__version__}, numba {numba.__version__}, numba-cuda {numba_cuda_version}, "
          f"torch {torch.__version__ if torch is not None else 'not installed'}"
          f"{' (CUDA ' + str(torch.version.cuda) + ')' if torch_on_gpu() else ''}, "
          f"python {platform.python_version()}")
    print(f"float32 throughout; medians of {args.repeat} runs")

    cfg = CONFIGS["toy"]
    all_products = ("y = x W^T", "dx = dy W", "dW = dy^T x")
    shapes = [(label, M, K, N, all_products)
              for label, M, K, N in model_matmul_shapes(cfg, args.batch)]
    shapes += [(f"square {n}", n, n, n, ("y = x W^T",)) for n in (512, 1024, 2048, 4096)]
    print_table(f"matmul, GFLOP/s (toy model shapes at batch {args.batch}, then square)",
                ["layer", "product", "M", "K", "N", "miniclip", "torch (cuBLAS)",
                 "miniclip / torch"], bench_matmul(shapes, args.repeat))

    vision_tokens = (cfg.image_resolution // cfg.vision_patch_size) ** 2 + 1
    attention_shapes = [
        ("toy vision", args.batch, cfg.vision_heads, vision_tokens,
         cfg.vision_width // cfg.vision_heads, False),
        ("toy text", args.batch, cfg.transformer_heads, cfg.context_length,
         cfg.transformer_width // cfg.transformer_heads, True),
        ("ViT-B/32 vision", 32, 12, 50, 64, False),
        ("CLIP text", 32, 8, 77, 64, True),
        ("long", 8, 8, 1024, 64, True),
    ]
    print_table("attention forward + backward, ms",
                ["shape", "B", "H", "T", "D", "causal", "miniclip", "torch SDPA",
                 "torch / miniclip"], bench_attention(attention_shapes, args.repeat))

    if not args.skip_step:
        print_table(f"training step of CONFIGS['toy'] at batch {args.batch} (loss_and_grads + "
                    "AdamW), ms", ["backend", "ms / step", "speed-up vs numpy",
                                   "MB host->device", "MB device->host", "first loss"],
                    bench_training_step(cfg, args.batch, max(3, math.ceil(args.repeat / 3))))


if __name__ == "__main__":
    main()
