"""Count the host <-> device copies of one device-resident training step, in the CUDA simulator
(no GPU needed: what is copied does not depend on one).

    python benchmarks/cuda_copies.py                # toy shapes at batch 128, several minutes
    python benchmarks/cuda_copies.py --batch 8      # seconds

The weights are put on the device with backend.to_device, as `python -m miniclip.train --backend
cuda` does; then one loss_and_grads, gradient clipping and an AdamW step run, and the copies of
each part are printed. What crosses the bus depends on the batch, the image size and the context
length, not on the widths, so the model has the toy config's shapes with width 8 (the simulator
runs a Python thread per CUDA thread: the real widths would take hours).
"""

import argparse
import dataclasses
import os
import sys
from pathlib import Path

os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before numba is imported
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import tests.cudasim.conftest  # noqa: E402,F401  (the faster simulator barrier)
from miniclip import CLIP, CONFIGS, backend  # noqa: E402
from miniclip.kernels.cuda import ops as cuda_backend  # noqa: E402
from miniclip.train.optim import AdamW, clip_grad_norm  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args(argv)
    toy = CONFIGS["toy"]
    cfg = dataclasses.replace(toy, vision_width=8, transformer_width=8, vision_heads=1,
                              transformer_heads=1, embed_dim=8)
    rng = np.random.default_rng(0)
    R, T = cfg.image_resolution, cfg.context_length
    images = rng.standard_normal((args.batch, 3, R, R)).astype(np.float32)
    tokens = rng.integers(1, cfg.vocab_size - 1, (args.batch, T))
    tokens[:, T // 2] = cfg.vocab_size - 1  # the end-of-text token
    rows = []

    def counted(part, fn, *fn_args):
        """fn(*fn_args), with the copies it made appended to rows."""
        cuda_backend.reset_transfer_stats()
        result = fn(*fn_args)
        s = cuda_backend.transfer_stats()
        rows.append((part, s["host_to_device"], s["host_to_device_bytes"], s["device_to_host"],
                     s["device_to_host_bytes"]))
        return result

    with backend.use_backend("cuda", matmul_block=32, matmul_depth=32, matmul_micro=8):
        model = CLIP(cfg, seed=0)
        model.params = backend.to_device(model.params)
        optimizer = AdamW(model.params)
        _, grads = counted("loss_and_grads", model.loss_and_grads, images, tokens)
        counted("clip_grad_norm", clip_grad_norm, grads, 1.0)
        counted("AdamW step", optimizer.step, grads)
    print(f"toy shapes ({R} px images, {T}-token captions), batch {args.batch}, weights on the "
          "device\n")
    print("| part | copies up | bytes up | copies down | bytes down |")
    print("|---|---|---|---|---|")
    for part, *counts in rows:
        print(f"| {part} | " + " | ".join(f"{c:,}" for c in counts) + " |")
    total = [sum(r[i] for r in rows) for i in range(1, 5)]
    print("| **step** | " + " | ".join(f"{c:,}" for c in total) + " |")


if __name__ == "__main__":
    main()
