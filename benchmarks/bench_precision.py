"""Mixed precision, measured: memory of weights and of a training step's activations, and the
speed of a training step in each precision on each CPU backend.

    python benchmarks/bench_precision.py             # a few minutes on 2 cores

1. Resident size of ViT-B/32: a random ViT-B/32-shaped model is written to a temporary
   float16 .safetensors file (as OpenAI ships its weights), then loaded with ``dtype=None``
   (upcast to float32) and with ``dtype="bfloat16"``; the table sums the nbytes of the loaded
   parameters.
2. Activations of one training step of the toy model (batch 256): the bytes held by the caches
   of both towers and the loss between forward and backward (every array counted once; the
   weights that caches point to are not counted), and tracemalloc's peak over one
   loss_and_grads call (NumPy's allocations; Numba's allocations inside kernels are not seen).
3. One optimizer step (loss and gradients, AdamW; for bf16/fp16 also unscaling and refreshing
   the 16-bit copies from the float32 masters), best of 3 after a warm-up, per backend and
   precision.
"""

import gc
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from miniclip import backend  # noqa: E402
from miniclip.kernels.dtypes import PRECISIONS  # noqa: E402
from miniclip.model.clip import CLIP  # noqa: E402
from miniclip.model.config import CONFIGS  # noqa: E402
from miniclip.model.gradcache import loss_and_grads  # noqa: E402
from miniclip.model.loss import batch_loss_forward  # noqa: E402
from miniclip.model.towers import text_forward, vision_forward  # noqa: E402
from miniclip.train.optim import AdamW  # noqa: E402
from miniclip.train.precision import MixedPrecision, mixed_step  # noqa: E402

BATCH = 256


def mb(n):
    return f"{n / 2**20:,.1f} MB"


def resident_vit_b32():
    from miniclip.pretrained.loading import load_model, save_weights

    cfg = CONFIGS["ViT-B/32"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vit-b-32-fp16.safetensors"
        save_weights(CLIP(cfg, seed=0, dtype="float16"), path)
        file_bytes = path.stat().st_size
        for dtype in (None, "bfloat16", "float16"):
            gc.collect()
            model = load_model(path, dtype=dtype)
            nbytes = sum(v.nbytes for v in model.params.values())
            rows.append((str(dtype), str(model.params["visual.proj"].dtype), nbytes))
            del model
    print(f"ViT-B/32, float16 safetensors file of {mb(file_bytes)}, loaded with:")
    print(f"{'dtype=':<10}{'weights':>10}{'resident':>14}")
    for asked, got, nbytes in rows:
        print(f"{asked:<10}{got:>10}{mb(nbytes):>14}")
    print()


def cache_bytes(tree, params):
    """Bytes of the arrays in a cache tree, each buffer once, the parameters excluded."""
    seen, total = set(), 0
    weights = [p for p in params.values() if isinstance(p, np.ndarray)]

    def walk(x):
        nonlocal total
        if isinstance(x, (tuple, list)):
            for y in x:
                walk(y)
        elif hasattr(x, "inner") and hasattr(x, "act_dtype"):  # kernels.mixed.HalfCache
            walk(x.inner)
        elif hasattr(x, "array") and not isinstance(x, np.ndarray):  # kernels.mixed._Half
            walk(x.array)
        elif isinstance(x, np.ndarray) and x.nbytes > 0:
            base = x if x.base is None else x.base
            if id(base) in seen or any(np.may_share_memory(x, w) for w in weights):
                return
            seen.add(id(base))
            total += base.nbytes

    walk(tree)
    return total


def toy_batch(cfg, rng):
    images = rng.standard_normal((BATCH, 3, cfg.image_resolution, cfg.image_resolution),
                                 dtype=np.float32)
    tokens = rng.integers(1, cfg.vocab_size - 1, size=(BATCH, cfg.context_length))
    tokens[:, 12] = cfg.vocab_size - 1
    return images, tokens


def activations(cfg, images, tokens):
    print(f"toy model, batch {BATCH}: activations kept for the backward")
    print(f"{'backend':<10}{'precision':<11}{'caches':>12}{'tracemalloc peak':>20}")
    for name, precision in [(b, p) for b in ("numpy", "numba") for p in PRECISIONS]:
        dtype = PRECISIONS[precision]
        with backend.use_backend(name):
            model = CLIP(cfg, seed=0, dtype=dtype)
            img, c_vis = vision_forward(model.params, cfg, images)
            txt, c_txt = text_forward(model.params, cfg, tokens)
            _, c_loss = batch_loss_forward(cfg.loss, img, txt, {"logit_scale":
                                                                model.params["logit_scale"]})
            held = cache_bytes((c_vis, c_txt, c_loss), model.params)
            del c_vis, c_txt, c_loss
            gc.collect()
            tracemalloc.start()
            loss_and_grads(model.params, cfg, images, tokens)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"{name:<10}{precision:<11}{mb(held):>12}{mb(peak):>20}")
    print()


def step_speed(cfg, images, tokens):
    args = SimpleNamespace(accum=1, grad_clip=None)
    print(f"toy model, batch {BATCH}: one optimizer step, best of 3")
    print(f"{'backend':<10}{'precision':<11}{'s/step':>8}{'images/s':>10}{'vs fp32':>9}")
    for name in ("numpy", "numba"):
        with backend.use_backend(name):
            fp32 = None
            for precision in PRECISIONS:
                master = CLIP(cfg, seed=0)
                opt = AdamW(master.params)
                if precision == "fp32":
                    def step(master=master, opt=opt):
                        _, grads = loss_and_grads(master.params, cfg, images, tokens)
                        opt.step(grads)
                else:
                    mp = MixedPrecision(master.params, cfg, precision)
                    work = mp.working_model(0)

                    def step(mp=mp, work=work, opt=opt):
                        mixed_step(work, opt, mp, images, tokens, 1e-4, args, 0,
                                   lambda *a: None, 4.6)
                step()  # warm-up: Numba compiles
                times = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    step()
                    times.append(time.perf_counter() - t0)
                best = min(times)
                fp32 = fp32 or best
                print(f"{name:<10}{precision:<11}{best:>8.2f}{BATCH / best:>10.0f}"
                      f"{fp32 / best:>8.2f}x")


def main():
    import numba

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}; NumPy {np.__version__}, Numba {numba.__version__}\n")
    resident_vit_b32()
    cfg = replace(CONFIGS["toy"], vocab_size=720)
    images, tokens = toy_batch(cfg, np.random.default_rng(0))
    activations(cfg, images, tokens)
    step_speed(cfg, images, tokens)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
