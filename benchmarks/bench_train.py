"""Training-step throughput of the default `toy` model: backends side by side, and what gradient
accumulation (miniclip.gradcache) costs.

    python benchmarks/bench_train.py                 # about a minute on 2 cores

One "step" is loss_and_grads on a batch of 256 random (image, caption) pairs: both towers
forward and backward and the loss, as in `python -m miniclip.train` (the optimizer step,
augmentation and data loading add a few percent there). Each row is the best of 5 timed steps
after one warm-up step (which compiles Numba kernels). Ratios are against the NumPy reference
measured in the same run. One BLAS thread unless OPENBLAS_NUM_THREADS says otherwise, as in the
training CLI (see the note in miniclip/train/__main__.py).
"""

import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from miniclip import backend  # noqa: E402
from miniclip.model.clip import CLIP  # noqa: E402
from miniclip.model.config import CONFIGS  # noqa: E402
from miniclip.model.gradcache import loss_and_grads  # noqa: E402

BATCH = 256


def best_step_seconds(params, cfg, images, tokens, accum, repeats=5):
    loss_and_grads(params, cfg, images, tokens, accum)  # warm-up (and Numba compilation)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        loss_and_grads(params, cfg, images, tokens, accum)
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    import numba

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}; Python {platform.python_version()}, NumPy {np.__version__}, "
          f"Numba {numba.__version__}; OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    cfg = replace(CONFIGS["toy"], vocab_size=720)
    rng = np.random.default_rng(0)
    params = CLIP(cfg, seed=0).params
    images = rng.standard_normal((BATCH, 3, cfg.image_resolution, cfg.image_resolution),
                                 dtype=np.float32)
    tokens = rng.integers(1, cfg.vocab_size - 1, size=(BATCH, cfg.context_length))
    tokens[:, 12] = cfg.vocab_size - 1  # the end-of-text token
    print(f"toy model, batch {BATCH}\n")
    print(f"{'backend':<10}{'accum':>6}{'s/step':>10}{'images/s':>11}{'vs numpy':>10}")
    reference = None
    for name in backend.available_backends():
        if name == "cuda":
            continue  # benchmarks/ for the GPU live elsewhere
        try:
            backend.use_backend(name)
        except (ImportError, NotImplementedError) as e:
            print(f"{name:<10}  not available ({type(e).__name__}: {e})")
            continue
        for accum in (1, 4):
            seconds = best_step_seconds(params, cfg, images, tokens, accum)
            if reference is None:
                reference = seconds
            print(f"{name:<10}{accum:>6}{seconds:>10.3f}{BATCH / seconds:>11.0f}"
                  f"{reference / seconds:>9.2f}x")
    backend.use_backend("numpy")


if __name__ == "__main__":
    main()
