"""How fast does an image tower learn the varied world's shapes, on its own? (PyTorch, optional)

Not a speed benchmark: a question asked of the architecture. The toy model's image tower (3
blocks of width 96, 17 tokens), with and without a convolutional stem, is trained here as a plain
classifier, colour head plus shape head, on the one-object images of a varied 64 px dataset, and
scored on its test and held-out splits. It answers, in a few minutes, whether a change to the
tower can help before miniclip's own training is run with it (docs/toy_world_experiments.md,
"A convolutional stem"). PyTorch stands in because only the architecture is being asked about.

    python -m miniclip.datasets generate --world varied --resolution 64 --out data/toy-varied-64
    python benchmarks/image_tower_proxy.py --stem none --steps 2000
    python benchmarks/image_tower_proxy.py --stem 16,32 --steps 2000
"""

import argparse
import time

import numpy as np

try:
    import torch
    import torch.nn as tnn
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - torch is an optional reference
    raise SystemExit("this script needs PyTorch (pip install torch==2.13.0 --index-url "
                     "https://download.pytorch.org/whl/cpu)") from None


def load(data_dir, split):
    """The one-object images of a split: (N, 3, R, R) in [0, 1], colour ids, shape ids."""
    d = np.load(f"{data_dir}/{split}.npz")
    one = d["n_objects"] == 1
    images = torch.tensor(d["images"][one]).permute(0, 3, 1, 2).float() / 255.0
    return images, torch.tensor(d["colour"][one, 0]).long(), torch.tensor(d["shape"][one, 0]).long()


class Block(tnn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.ln_1, self.ln_2 = tnn.LayerNorm(width), tnn.LayerNorm(width)
        self.attn = tnn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = tnn.Sequential(tnn.Linear(width, 4 * width), tnn.GELU(),
                                  tnn.Linear(4 * width, width))

    def forward(self, x):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Tower(tnn.Module):
    """toy-64's image tower (16 x 16 patches of 64 x 64 pixels), or toy-64-stem's (3 x 3
    stride-2 convs with the given channels, then patches of what is left, 4 x 4 tokens)."""

    def __init__(self, stem, resolution=64, width=96, layers=3, heads=3, grid=4):
        super().__init__()
        convs, c_in = [], 3
        for c_out in stem:
            convs += [tnn.Conv2d(c_in, c_out, 3, 2, 1), tnn.GELU()]
            c_in = c_out
        patch = resolution // (2 ** len(stem)) // grid
        self.stem = tnn.Sequential(*convs, tnn.Conv2d(c_in, width, patch, patch, bias=False))
        self.cls = tnn.Parameter(torch.zeros(1, 1, width))
        self.pos = tnn.Parameter(0.02 * torch.randn(1, grid * grid + 1, width))
        self.ln_pre, self.ln_post = tnn.LayerNorm(width), tnn.LayerNorm(width)
        self.blocks = tnn.Sequential(*[Block(width, heads) for _ in range(layers)])
        self.colour_head, self.shape_head = tnn.Linear(width, 8), tnn.Linear(width, 7)

    def forward(self, x):
        t = self.stem(x).flatten(2).transpose(1, 2)  # (N, 16, width)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], 1) + self.pos
        f = self.ln_post(self.blocks(self.ln_pre(t))[:, 0])
        return self.colour_head(f), self.shape_head(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/toy-varied-64")
    ap.add_argument("--stem", default="none", help="'none' or channels, e.g. 16,32")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    stem = () if args.stem == "none" else tuple(int(c) for c in args.stem.split(","))
    x_train, colour_train, shape_train = load(args.data, "train")
    mean, std = x_train.mean((0, 2, 3), keepdim=True), x_train.std((0, 2, 3), keepdim=True)
    evals = {split: load(args.data, split) for split in ("test", "heldout")}
    model = Tower(stem)
    opt = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=args.steps, pct_start=0.05)

    def accuracy(x, colour, shape):
        model.eval()
        with torch.no_grad():
            c, s = model((x - mean) / std)
        model.train()
        return (100 * (c.argmax(1) == colour).float().mean().item(),
                100 * (s.argmax(1) == shape).float().mean().item())

    print(f"stem {stem or 'none'}: {sum(p.numel() for p in model.parameters()):,} parameters")
    t0 = time.time()
    for step in range(1, args.steps + 1):
        i = torch.randint(0, len(x_train), (128,))
        c, s = model((x_train[i] - mean) / std)
        loss = F.cross_entropy(c, colour_train[i]) + F.cross_entropy(s, shape_train[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % max(1, args.steps // 4) == 0:
            scores = ", ".join(f"{split} colour {a:.1f}% shape {b:.1f}%"
                               for split, (a, b) in ((k, accuracy(*v)) for k, v in evals.items()))
            print(f"step {step} ({time.time() - t0:.0f} s): {scores}", flush=True)


if __name__ == "__main__":
    main()
