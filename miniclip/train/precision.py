"""Mixed-precision training (``--precision bf16`` or ``fp16``): float32 master weights, 16-bit
working copies, and for float16 a dynamic loss scale.

What one step does, as in OpenAI's fp16 CLIP training and OpenCLIP's AMP:

1. forward and backward run on the model's 16-bit working copies of the weights; every op
   accumulates in float32 (kernels/mixed.py) and the loss, softmax and temperature are float32;
2. the weight gradients come out in float32 and are divided by the loss scale;
3. fp16 only: if any gradient is inf or NaN, the step is skipped and the scale halved
   (``LossScaler``); after ``growth_interval`` clean steps in a row it is doubled again;
4. AdamW updates the float32 *master* weights with float32 moments: a 16-bit weight could not
   take the update (bfloat16 keeps 8 significant bits, so w + 1e-4 w == w, and Adam's eps of
   1e-6 is 0 in float16 squared: openai/CLIP #57, #83);
5. the working copies are refreshed from the masters: rounded to nearest, or stochastically
   (``round_stochastic``: a copy is rounded up with probability equal to how far the master sits
   towards the upper neighbour, so a run of small updates is not lost on average).

Why fp16 needs loss scaling and bf16 does not: float16's smallest subnormal is 6e-8 and its
smallest normal 6e-5. Activation gradients of a contrastive loss over a batch of 256 are often
1e-6 .. 1e-9: in float16 they flush to 0. Multiplying the loss by 2^16 shifts them into range;
dividing the float32 weight gradients by 2^16 undoes it exactly (a power of two). bfloat16 has
float32's 8 exponent bits, so nothing underflows that would not in float32.

The checkpoint holds the float32 masters (as its params), AdamW's float32 moments and the
scaler's state, so a resumed run continues exactly: the copies are a function of the masters
and the step (the stochastic rounding draws from a generator seeded by (seed, step)).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from miniclip.kernels.dtypes import PRECISIONS, dtype_of, float32, is_half
from miniclip.kernels.mixed import to_half
from miniclip.model.clip import CLIP, parameter_dtype
from miniclip.model.gradcache import loss_and_grads
from miniclip.train.optim import clip_grad_norm


@dataclass
class LossScaler:
    """Dynamic loss scale for float16 (PyTorch's GradScaler defaults).

    >>> s = LossScaler(scale=8.0, growth_interval=2)
    >>> s.update(finite=False), s.scale           # overflow: skip the step, halve
    (False, 4.0)
    >>> s.update(True), s.update(True), s.scale    # two clean steps: double
    (True, True, 8.0)
    """

    scale: float = 2.0**16
    growth_factor: float = 2.0
    backoff_factor: float = 0.5
    growth_interval: int = 2000
    good_steps: int = 0  # clean steps since the last change
    skipped: int = 0  # steps skipped in the whole run

    def update(self, finite: bool) -> bool:
        """Record one step's outcome; -> whether the optimizer may take the step."""
        if not finite:
            self.scale *= self.backoff_factor
            self.good_steps = 0
            self.skipped += 1
            return False
        self.good_steps += 1
        if self.good_steps >= self.growth_interval:
            self.scale *= self.growth_factor
            self.good_steps = 0
        return True


def round_stochastic(x: np.ndarray, dtype, rng: np.random.Generator) -> np.ndarray:
    """x (float32 or float64) -> dtype, rounded to one of its two neighbours in dtype at random,
    up with probability (x - lo) / (hi - lo). Unbiased: E[result] = x (tests check it).

    >>> rng = np.random.default_rng(0)
    >>> x = np.full(100_000, 1 + 1 / 1024, np.float32)   # 1/8 of the way from 1 to 1 + 2^-7
    >>> sr = round_stochastic(x, "bfloat16", rng).astype(np.float64)
    >>> round(float(sr.mean()), 4), sorted(set(sr.tolist()))   # the mean: 1 + 2^-10 = 1.00098
    (1.001, [1.0, 1.0078125])
    """
    dtype = dtype_of(dtype)
    wide = np.asarray(x, np.float64)
    near = wide.astype(dtype)  # nearest: one of the two neighbours
    near_wide = near.astype(np.float64)
    toward = np.where(wide > near_wide, np.inf, -np.inf).astype(dtype)
    other = np.nextafter(near, toward)  # the neighbour on x's other side
    other_wide = other.astype(np.float64)
    gap = other_wide - near_wide
    with np.errstate(invalid="ignore", divide="ignore"):
        p_other = np.where(gap != 0, (wide - near_wide) / np.where(gap != 0, gap, 1.0), 0.0)
    take_other = rng.random(wide.shape) < p_other  # p_other in [0, 1/2]
    return np.where(take_other, other, near).astype(dtype)


class MixedPrecision:
    """The float32 masters of a run, and how its 16-bit working model is made from them.

    master: dict name -> float32 array (AdamW's params); precision: "bf16" or "fp16"."""

    def __init__(self, master: dict, cfg, precision: str, stochastic_rounding: bool = False,
                 seed: int = 0):
        if precision not in PRECISIONS or precision == "fp32":
            raise ValueError(f"precision must be 'bf16' or 'fp16' for mixed precision, got "
                             f"{precision!r}")
        bad = [k for k, v in master.items() if v.dtype != float32]
        if bad:
            raise TypeError(f"master weights must be float32, got {master[bad[0]].dtype} for "
                            f"{bad[0]!r}")
        self.master, self.cfg, self.precision = master, cfg, precision
        self.dtype = PRECISIONS[precision]
        self.stochastic_rounding, self.seed = stochastic_rounding, seed
        self.scaler = LossScaler() if precision == "fp16" else None

    @property
    def loss_scale(self) -> float:
        return self.scaler.scale if self.scaler is not None else 1.0

    def copies(self, step: int) -> dict:
        """The 16-bit working copies of the masters after ``step`` steps (logit_scale and
        logit_bias stay float32: model.clip.parameter_dtype)."""
        rng = np.random.default_rng([self.seed, 2, step]) if self.stochastic_rounding else None
        out = {}
        for k, v in self.master.items():
            dtype = parameter_dtype(k, self.dtype)
            if not is_half(dtype):
                out[k] = v.copy()
            elif rng is not None:
                out[k] = round_stochastic(v, dtype, rng)
            else:
                out[k] = to_half(v, dtype)  # to nearest, ties to even (= v.astype(dtype))
        return out

    def working_model(self, step: int) -> CLIP:
        """A CLIP of the 16-bit format holding the copies."""
        return CLIP.from_state_dict(self.cfg, self.copies(step), dtype=self.dtype)

    def refresh(self, model: CLIP, step: int) -> None:
        """Overwrite the model's copies, in place, from the masters after ``step`` steps."""
        for k, v in self.copies(step).items():
            model.params[k][...] = v

    def unscale(self, grads: dict) -> tuple[dict, bool]:
        """grads of (scale * loss) -> (float32 grads of the loss, all finite?)."""
        inv = 1.0 / self.loss_scale
        out = {k: np.asarray(g, np.float32) * np.float32(inv) for k, g in grads.items()}
        finite = all(np.isfinite(g).all() for g in out.values())
        return out, bool(finite)

    def log_fields(self) -> dict:
        """What metrics.jsonl records of it."""
        if self.scaler is None:
            return {}
        return {"loss_scale": self.scaler.scale, "skipped_steps": self.scaler.skipped}

    def state_dict(self) -> dict:
        """JSON-able state for the checkpoint's ``extra``."""
        return {"precision": self.precision,
                "scaler": asdict(self.scaler) if self.scaler is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if state.get("precision") != self.precision:
            raise ValueError(f"the checkpoint was trained with precision "
                             f"{state.get('precision')!r}, not {self.precision!r}")
        if self.scaler is not None:
            self.scaler = LossScaler(**state["scaler"])


def mixed_step(model, optimizer, precision: MixedPrecision, x, tokens, lr, args, step,
               diverged, max_logit_scale):
    """One optimizer step in mixed precision on preprocessed images x (B, 3, R, R) float32.

    -> (loss, gradient norm before clipping); the norm is inf for a step skipped on overflow.
    ``diverged(loss, grad_norm)`` raises (train/step.py's TrainingDiverged) for a loss that is
    not finite: scaling fixes gradients that overflow, not a forward pass that does.
    ``max_logit_scale``: the clamp of logit_scale (train/step.py), applied to the float32 master."""

    # float16 overflow (inf, then NaN) in the backward is expected while the scale is too large:
    # it is what the scaler watches for, so NumPy's warnings about it are silenced here
    quiet = precision.scaler is not None
    with np.errstate(over="ignore" if quiet else "warn", invalid="ignore" if quiet else "warn"):
        loss, grads = loss_and_grads(model.params, model.cfg, x, tokens, args.accum,
                                     precision.loss_scale)
    if not math.isfinite(loss):
        diverged(loss, math.nan)
    grads, finite = precision.unscale(grads)
    if precision.scaler is not None and not precision.scaler.update(finite):
        if precision.stochastic_rounding:  # the copies stay a function of (masters, step)
            precision.refresh(model, step + 1)
        return loss, math.inf  # skipped: the masters stay as they were
    grad_norm = clip_grad_norm(grads, args.grad_clip or math.inf)
    if not math.isfinite(grad_norm):  # bf16 (no scaler): as in float32, stop
        diverged(loss, grad_norm)
    optimizer.step(grads, lr=lr)  # the float32 masters and moments
    scale = precision.master["logit_scale"]
    np.clip(scale, 0.0, max_logit_scale, out=scale)  # the clamp, in float32
    precision.refresh(model, step + 1)
    return loss, grad_norm


def attach_precision(run, ckpt=None) -> None:
    """The training loop's hook (train/loop.py setup): ``run.model``'s float32 weights become
    the masters that ``run.optimizer`` updates, and ``run.model`` becomes a 16-bit model holding
    their copies. On --resume, the scaler's state comes from the checkpoint."""
    args = run.args
    precision = MixedPrecision(run.model.params, run.cfg, args.precision,
                               args.stochastic_rounding, args.seed)
    if ckpt is not None:
        state = ckpt.extra.get("precision")
        if state is None:
            raise ValueError(f"{ckpt.path} holds no mixed-precision state; it was not trained "
                             f"with --precision {args.precision}")
        precision.load_state_dict(state)
    run.optimizer.params = precision.master
    run.model = precision.working_model(run.step)
    run.precision = precision
