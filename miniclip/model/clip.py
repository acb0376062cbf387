"""CLIP: a vision transformer and a text transformer trained to agree (towers.py), with the
contrastive loss (loss.py) and its exact gradient (gradcache.py).

Parameters live in one flat dict whose keys are exactly OpenAI's state-dict names, so a weight
can be traced from OpenAI's checkpoint to the line that uses it here.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from miniclip import backend
from miniclip.kernels.dtypes import compute_dtype, dtype_of, is_float, is_half
from miniclip.model.config import CLIPConfig
from miniclip.model.gradcache import LOSS_PARAMS, loss_and_grads
from miniclip.model.loss import (
    SIGLIP_INIT_LOGIT_BIAS,
    SIGLIP_INIT_LOGIT_SCALE,
    clip_logits,
)
from miniclip.model.params import parameter_shapes
from miniclip.model.towers import text_forward, vision_forward


def parameter_dtype(name: str, dtype) -> np.dtype:
    """The dtype a model of ``dtype`` holds parameter ``name`` in: ``dtype`` itself, except that
    the loss's own parameters (logit_scale, logit_bias) stay float32 in a 16-bit model: the
    temperature exp(logit_scale) multiplies every logit, and bfloat16 would store ln(1/0.07) =
    2.6593 as 2.6562, a 0.3% different temperature, and could not take AdamW's small steps.

    >>> parameter_dtype("logit_scale", "bfloat16"), parameter_dtype("visual.proj", "bfloat16")
    (dtype('float32'), dtype(bfloat16))
    """
    dtype = dtype_of(dtype)
    return compute_dtype(dtype) if name in LOSS_PARAMS else dtype


# ------------------------------------------------------------------------------------------
# initialisation
# ------------------------------------------------------------------------------------------

def initialize_parameters(cfg: CLIPConfig, seed: int = 0, dtype=np.float32,
                          temperature: float | None = None) -> dict:
    """Random weights drawn as OpenAI's ``CLIP.initialize_parameters`` does (in float64, then
    rounded to ``dtype``: the same seed gives the same weights to the format's rounding).

    OpenAI re-initialises only some tensors; the rest keep PyTorch's defaults, reproduced here:
      * token embedding N(0, 0.02^2); text positions N(0, 0.01^2)
      * text blocks: in_proj N(0, w^-1), out_proj and c_proj N(0, w^-1 (2L)^-1), c_fc N(0, (2w)^-1)
      * text_projection N(0, w^-1)
      * vision: class token, positions and proj are scale * N(0, 1) with scale = width^-1/2
      * PyTorch defaults elsewhere: LayerNorm gain 1, bias 0; attention in_proj Xavier-uniform
        with zero in_proj/out_proj biases; other Linear and conv weights (and Linear biases)
        U(-1/sqrt(fan_in), 1/sqrt(fan_in))
      * logit_scale = ln(1 / 0.07); for a SigLIP config (cfg.loss == "siglip") logit_scale = ln 10
        and logit_bias = -10, as in the SigLIP paper; ``temperature`` T, if given, starts
        logit_scale at ln(1 / T) instead (a training choice: ``--temperature``)
    Draws happen in OpenAI's state-dict order from one seeded generator: same seed, same weights.
    """
    rng = np.random.default_rng(seed)
    shapes = parameter_shapes(cfg)
    tw, tl = cfg.transformer_width, cfg.transformer_layers
    text_std = {
        "attn.in_proj_weight": tw**-0.5,
        "attn.out_proj.weight": tw**-0.5 * (2 * tl) ** -0.5,
        "mlp.c_fc.weight": (2 * tw) ** -0.5,
        "mlp.c_proj.weight": tw**-0.5 * (2 * tl) ** -0.5,
    }

    def uniform(shape, fan_in):
        bound = 1.0 / math.sqrt(fan_in)
        return rng.uniform(-bound, bound, size=shape)

    params = {}
    for name, shape in shapes.items():
        leaf = name.split(".resblocks.")[-1].split(".", 1)[-1]  # 'attn.in_proj_weight', ...
        if name == "logit_scale":
            value = np.array(math.log(1 / temperature) if temperature is not None
                             else SIGLIP_INIT_LOGIT_SCALE if cfg.loss == "siglip"
                             else math.log(1 / 0.07))
        elif name == "logit_bias":
            value = np.array(SIGLIP_INIT_LOGIT_BIAS)
        elif name == "token_embedding.weight":
            value = 0.02 * rng.standard_normal(shape)
        elif name == "positional_embedding":
            value = 0.01 * rng.standard_normal(shape)
        elif name == "text_projection":
            value = tw**-0.5 * rng.standard_normal(shape)
        elif name in ("visual.class_embedding", "visual.positional_embedding", "visual.proj"):
            value = cfg.vision_width**-0.5 * rng.standard_normal(shape)
        elif name.startswith("transformer.") and leaf in text_std:
            value = text_std[leaf] * rng.standard_normal(shape)
        elif ".ln_" in name or name.split(".")[-2].startswith("ln_"):
            value = np.ones(shape) if name.endswith("weight") else np.zeros(shape)
        elif leaf == "attn.in_proj_weight":  # Xavier-uniform over the packed (3w, w) matrix
            bound = math.sqrt(6.0 / (shape[0] + shape[1]))
            value = rng.uniform(-bound, bound, size=shape)
        elif leaf in ("attn.in_proj_bias", "attn.out_proj.bias"):
            value = np.zeros(shape)
        elif name.endswith("weight"):  # Linear and conv: fan_in = all but the first axis
            value = uniform(shape, math.prod(shape[1:]))
        elif name.endswith("bias"):  # Linear and conv bias: fan_in of its weight
            value = uniform(shape, math.prod(shapes[name[: -len("bias")] + "weight"][1:]))
        else:  # pragma: no cover - every key above is handled
            raise AssertionError(f"no initialiser for {name}")
        params[name] = np.array(value, dtype=parameter_dtype(name, dtype), order="C")
    return params


# ------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------

class CLIP:
    """CLIP with NumPy weights keyed by OpenAI's state-dict names.

    dtype: "float32" (default), "float64" (gradient checks), or "bfloat16" / "float16" (also as
    NumPy types): the weights are held in that format. A 16-bit model computes as mixed
    precision does (kernels/mixed.py): 16-bit weights and activations, float32 arithmetic and
    sums inside every op, LayerNorm statistics, softmax and the loss in float32; its
    logit_scale (and logit_bias) stay float32 (``parameter_dtype``).

    >>> import miniclip, numpy as np
    >>> model = miniclip.CLIP(miniclip.CONFIGS["tiny"], seed=0)
    >>> images = np.zeros((2, 3, 8, 8), np.float32); tokens = np.array([[1, 49, 0] + [0] * 4] * 2)
    >>> logits_per_image, logits_per_text = model(images, tokens)
    >>> logits_per_image.shape
    (2, 2)
    """

    def __init__(self, cfg: CLIPConfig, seed: int = 0, dtype=np.float32,
                 temperature: float | None = None):
        self._set_config(cfg, dtype)
        if temperature is not None and not (isinstance(temperature, numbers.Real)
                                            and not isinstance(temperature, bool)
                                            and 0 < temperature < math.inf):
            raise ValueError(f"temperature must be a positive number (or None), got "
                             f"{temperature!r}")
        self.params = initialize_parameters(cfg, seed, self.dtype, temperature)

    @classmethod
    def from_state_dict(cls, cfg: CLIPConfig, state_dict: dict, dtype=None) -> "CLIP":
        """A model holding these weights, without drawing random ones first (for ViT-L/14 that
        would cost seconds and 1.7 GB only to be overwritten). Strict, as load_state_dict.

        dtype: None -> float64 if any weight is float64, else float32 (nothing lowered); an
        explicit dtype is the caller's choice, lowering included."""
        explicit = dtype is not None
        if dtype is None:
            wide = any(np.asarray(backend.to_host(v)).dtype == np.float64
                       for v in state_dict.values()) if isinstance(state_dict, dict) else False
            dtype = np.float64 if wide else np.float32
        model = cls.__new__(cls)
        model._set_config(cfg, dtype)
        model.params = {k: np.empty(s, parameter_dtype(k, model.dtype))
                        for k, s in parameter_shapes(cfg).items()}
        model.load_state_dict(state_dict, allow_lower_precision=explicit)
        return model

    def _set_config(self, cfg, dtype):
        if not isinstance(cfg, CLIPConfig):
            raise TypeError(f"cfg must be a CLIPConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.dtype = dtype_of(dtype)  # a TypeError naming the four formats for anything else

    # ---- input checks ----------------------------------------------------------------

    def _check_images(self, images):
        R = self.cfg.image_resolution
        if not isinstance(images, np.ndarray):
            raise TypeError(f"images must be a numpy array, got {type(images).__name__}")
        if not is_float(images.dtype):
            raise TypeError(f"images must be a float array (normalised pixels), got dtype "
                            f"{images.dtype}; see miniclip's preprocess for uint8 images")
        if images.ndim != 4 or images.shape[1:] != (3, R, R) or images.shape[0] == 0:
            raise ValueError(f"images must have shape (N, 3, {R}, {R}) with N >= 1, "
                             f"got {images.shape}")
        # a 16-bit model computes in float32: its first matmul takes float32 pixels unrounded
        wide = compute_dtype(self.dtype)
        if images.dtype.itemsize > wide.itemsize:
            raise TypeError(f"images are {images.dtype} but the model computes in {wide}: cast "
                            f"them yourself (images.astype(np.{wide})); miniclip never lowers "
                            "precision silently")
        if not np.isfinite(images.astype(wide, copy=False)).all():
            raise ValueError("images contain NaN or inf")
        return np.ascontiguousarray(images, dtype=wide)

    def _check_tokens(self, tokens):
        T, V = self.cfg.context_length, self.cfg.vocab_size
        if not isinstance(tokens, np.ndarray):
            raise TypeError(f"tokens must be a numpy array, got {type(tokens).__name__}")
        if not np.issubdtype(tokens.dtype, np.integer):
            raise TypeError(f"tokens must be an integer array, got dtype {tokens.dtype}")
        if tokens.ndim != 2 or tokens.shape[1] != T or tokens.shape[0] == 0:
            raise ValueError(f"tokens must have shape (N, {T}) (context_length {T}) with N >= 1, "
                             f"got {tokens.shape}")
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or hi >= V:
            raise ValueError(f"tokens must be ids in [0, {V}) (vocab_size {V}), got values in "
                             f"[{lo}, {hi}]")
        return tokens.astype(np.int64, copy=False)

    # ---- inference -------------------------------------------------------------------

    def encode_image(self, images):
        """images (N, 3, R, R) float, already normalised -> (N, embed_dim), not normalised.
        A NumPy array, also for a model whose params are on the GPU (the features are copied)."""
        feats, _ = vision_forward(self.params, self.cfg, self._check_images(images))
        return backend.to_host(feats)

    def encode_text(self, tokens):
        """tokens (N, context_length) int -> (N, embed_dim), not normalised. A NumPy array."""
        feats, _ = text_forward(self.params, self.cfg, self._check_tokens(tokens))
        return backend.to_host(feats)

    def __call__(self, images, tokens):
        """-> logits_per_image (N_img, N_txt), logits_per_text (N_txt, N_img).

        For a SigLIP model the logits include its learned bias (sigmoid(logit) is P(match))."""
        logits = clip_logits(self.encode_image(images), self.encode_text(tokens),
                             backend.to_host(self.params["logit_scale"]))
        if "logit_bias" in self.params:
            logits = logits + backend.to_host(self.params["logit_bias"])
        return logits, logits.T

    # ---- training --------------------------------------------------------------------

    def loss_and_grads(self, images, tokens):
        """Contrastive loss on N matching pairs and its gradient for every parameter.

        The loss is the config's: OpenAI's softmax loss, or SigLIP's sigmoid loss.

        -> (loss: float, grads: dict with exactly the keys of self.params). The grads live where
        the params live: DeviceArrays for a model on the GPU.
        """
        images, tokens = self._check_images(images), self._check_tokens(tokens)
        if images.shape[0] != tokens.shape[0]:
            raise ValueError(f"images and tokens must pair up: got {images.shape[0]} images and "
                             f"{tokens.shape[0]} texts")
        return loss_and_grads(self.params, self.cfg, images, tokens)  # one micro-batch

    # ---- weights ---------------------------------------------------------------------

    def state_dict(self) -> dict:
        """A copy of the weights as NumPy arrays, keyed by OpenAI's names (copied to the host for
        a model whose params are on the GPU)."""
        return {k: backend.to_host(v).copy() for k, v in self.params.items()}

    def load_state_dict(self, state_dict: dict, allow_lower_precision: bool = False):
        """Load weights, strictly: every key present, none extra, every shape equal, every value
        finite (a NaN or inf is a ValueError naming the tensor).

        Values are converted to the model's dtype (chosen at construction; a float32 or float16
        checkpoint loaded into a bfloat16 model is rounded to it, as asked). Lowering precision
        into a float32/float64 model (float64 weights into a float32 model) is a TypeError unless
        ``allow_lower_precision``: miniclip never rounds weights silently. NumPy arrays or
        DeviceArrays; the weights stay where the model's were (on the GPU after
        ``backend.to_device(model.params)``).
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        missing = [k for k in self.params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in self.params]
        if missing or unexpected:
            raise KeyError(f"state_dict does not match the model: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        new = {}
        for k, ref in self.params.items():
            v = backend.to_host(state_dict[k])
            if not isinstance(v, np.ndarray) and not np.isscalar(v):
                raise TypeError(f"state_dict[{k!r}] must be a numpy array, got {type(v).__name__}")
            v = np.asarray(v)
            if not is_float(v.dtype):
                raise TypeError(f"state_dict[{k!r}] must be floating point, got {v.dtype}")
            if v.shape != ref.shape:
                raise ValueError(f"state_dict[{k!r}] has shape {v.shape}, the model expects "
                                 f"{ref.shape}")
            lowers = v.dtype.itemsize > ref.dtype.itemsize and not is_half(ref.dtype)
            if lowers and not allow_lower_precision:
                raise TypeError(f"state_dict[{k!r}] is {v.dtype} but the model is {ref.dtype}: "
                                "loading would round it. Build the model with dtype=np."
                                f"{v.dtype}, or pass allow_lower_precision=True (an explicit "
                                "dtype= to load / from_state_dict) to round on purpose")
            if not np.isfinite(v).all():
                n_bad = int(v.size - np.isfinite(v).sum())
                raise ValueError(f"state_dict[{k!r}] contains NaN or inf ({n_bad} of {v.size} "
                                 "values): the weights are broken")
            new[k] = np.array(v, dtype=ref.dtype, order="C")  # a copy, C-contiguous, 0-d stays 0-d
        if any(backend.on_device(p) for p in self.params.values()):
            if is_half(self.dtype):
                raise TypeError(f"a {self.dtype} model cannot live on the GPU yet (DeviceArrays "
                                "are float32 or float64)")
            new = backend.to_device(new)
        self.params = new
