"""CLIP model configurations.

Field names are the ones OpenAI's ``clip.model.build_model`` reads off a state dict, so a config
can be written down from a checkpoint's shapes and compared with OpenAI's code line by line.

    >>> cfg = CONFIGS["ViT-B/32"]
    >>> cfg.vision_heads, cfg.vision_tokens
    (12, 50)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

ACTIVATIONS = ("quick_gelu", "gelu")
LOSSES = ("clip", "siglip")


@dataclass(frozen=True)
class CLIPConfig:
    embed_dim: int  # size of the shared image-text embedding space
    # vision tower (a ViT)
    image_resolution: int  # R: images are (3, R, R)
    vision_layers: int
    vision_width: int
    vision_patch_size: int  # P: R must be a multiple of P; (R/P)^2 patches
    # text tower (a causal transformer)
    context_length: int  # T: token sequences are (T,)
    vocab_size: int
    transformer_width: int
    transformer_heads: int
    transformer_layers: int
    vision_heads: int | None = None  # None -> vision_width // 64, as OpenAI does
    activation: str = "quick_gelu"  # OpenAI's checkpoints use QuickGELU; "gelu" is exact GELU
    # "clip": OpenAI's softmax contrastive loss; "siglip": the sigmoid loss, which adds a learned
    # scalar ``logit_bias`` to the parameters (see miniclip/model/loss.py)
    loss: str = "clip"
    # Output channels of the convolutions that run before the patch embedding, each 3 x 3 with
    # stride 2 and padding 1 (model/stem.py). Empty for OpenAI's ViTs: their patch embedding reads
    # the pixels. Each conv halves the image, so the patch embedding cuts (R / 2^len) pixels
    # into P x P patches of vision_stem[-1] channels.
    vision_stem: tuple[int, ...] = ()

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "vision_stem":
                if isinstance(value, list):  # read back from JSON
                    value = tuple(value)
                    object.__setattr__(self, "vision_stem", value)
                if not isinstance(value, tuple) or not all(
                        isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in value):
                    raise ValueError(f"vision_stem must be a tuple of positive ints (channels), "
                                     f"got {value!r}")
                continue
            if f.name == "activation":
                if value not in ACTIVATIONS:
                    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {value!r}")
                continue
            if f.name == "loss":
                if value not in LOSSES:
                    raise ValueError(f"loss must be one of {LOSSES}, got {value!r}")
                continue
            if f.name == "vision_heads" and value is None:
                object.__setattr__(self, "vision_heads", max(1, self.vision_width // 64))
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{f.name} must be a positive int, got {value!r}")
        if self.image_resolution % (self.stem_stride * self.vision_patch_size):
            stem = f" times the stem's stride ({self.stem_stride})" if self.vision_stem else ""
            raise ValueError(
                f"image_resolution ({self.image_resolution}) must be a multiple of "
                f"vision_patch_size ({self.vision_patch_size}){stem}"
            )
        if self.vision_width % self.vision_heads:
            raise ValueError(
                f"vision_width ({self.vision_width}) must be divisible by "
                f"vision_heads ({self.vision_heads})"
            )
        if self.transformer_width % self.transformer_heads:
            raise ValueError(
                f"transformer_width ({self.transformer_width}) must be divisible by "
                f"transformer_heads ({self.transformer_heads})"
            )

    @property
    def stem_stride(self) -> int:
        """How many pixels of the image one pixel of the stem's output covers: 2^len(vision_stem)."""
        return 2 ** len(self.vision_stem)

    @property
    def patch_channels(self) -> int:
        """Channels the patch embedding reads: 3 (RGB), or the stem's last conv's."""
        return self.vision_stem[-1] if self.vision_stem else 3

    @property
    def grid_size(self) -> int:
        """Patches along one side of the image: R / P (R / (2^len(vision_stem) P) with a stem)."""
        return self.image_resolution // (self.stem_stride * self.vision_patch_size)

    @property
    def vision_tokens(self) -> int:
        """Sequence length of the vision transformer: one class token plus (R/P)^2 patches."""
        return self.grid_size**2 + 1

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.vision_stem:  # a ViT without a stem is written as before the stem existed
            del d["vision_stem"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CLIPConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown CLIPConfig fields: {unknown}")
        return cls(**d)


_OPENAI_TEXT = dict(context_length=77, vocab_size=49408)

CONFIGS: dict[str, CLIPConfig] = {
    # The four released ViT models, as OpenAI's checkpoints describe them.
    "ViT-B/32": CLIPConfig(
        embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
        vision_patch_size=32, transformer_width=512, transformer_heads=8,
        transformer_layers=12, **_OPENAI_TEXT,
    ),
    "ViT-B/16": CLIPConfig(
        embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
        vision_patch_size=16, transformer_width=512, transformer_heads=8,
        transformer_layers=12, **_OPENAI_TEXT,
    ),
    "ViT-L/14": CLIPConfig(
        embed_dim=768, image_resolution=224, vision_layers=24, vision_width=1024,
        vision_patch_size=14, transformer_width=768, transformer_heads=12,
        transformer_layers=12, **_OPENAI_TEXT,
    ),
    "ViT-L/14@336px": CLIPConfig(
        embed_dim=768, image_resolution=336, vision_layers=24, vision_width=1024,
        vision_patch_size=14, transformer_width=768, transformer_heads=12,
        transformer_layers=12, **_OPENAI_TEXT,
    ),
    # Small configs for lessons, tests and CPU training. Heads are set explicitly: width // 64
    # would give a single head at these widths.
    "tiny": CLIPConfig(
        embed_dim=16, image_resolution=8, vision_layers=1, vision_width=16,
        vision_patch_size=4, vision_heads=2, context_length=7, vocab_size=50,
        transformer_width=16, transformer_heads=2, transformer_layers=1,
    ),
    "small": CLIPConfig(
        embed_dim=64, image_resolution=32, vision_layers=2, vision_width=64,
        vision_patch_size=8, vision_heads=2, context_length=16, vocab_size=512,
        transformer_width=64, transformer_heads=2, transformer_layers=2,
    ),
    # The smallest model that trains on the toy captions (context 32 fits every caption): for
    # tests and for lessons that train in seconds. vocab_size is replaced by the tokenizer's.
    "toy-tiny": CLIPConfig(
        embed_dim=32, image_resolution=32, vision_layers=1, vision_width=64,
        vision_patch_size=8, vision_heads=2, context_length=32, vocab_size=1024,
        transformer_width=48, transformer_heads=2, transformer_layers=1,
    ),
    # The model `python -m miniclip.train` trains by default: about 0.5M parameters, 17 image
    # tokens (32 x 32 pixels in 8 x 8 patches), captions up to 32 tokens. Chosen to reach >= 97%
    # zero-shot accuracy on seen and >= 90% on held-out compositions in about 5 minutes on two
    # CPU cores. vocab_size is replaced by the size of the tokenizer trained on the captions.
    "toy": CLIPConfig(
        embed_dim=64, image_resolution=32, vision_layers=3, vision_width=96,
        vision_patch_size=8, vision_heads=3, context_length=32, vocab_size=1024,
        transformer_width=64, transformer_heads=2, transformer_layers=2,
    ),
    # The same model for the toy world drawn at 64 x 64 pixels (`python -m miniclip.datasets
    # generate --resolution 64`): 16 x 16 patches, so the same 17 image tokens and about the same
    # step time; only the patch embedding is 4x larger (12,288 inputs per patch instead of 3,072).
    "toy-64": CLIPConfig(
        embed_dim=64, image_resolution=64, vision_layers=3, vision_width=96,
        vision_patch_size=16, vision_heads=3, context_length=32, vocab_size=1024,
        transformer_width=64, transformer_heads=2, transformer_layers=2,
    ),
    # toy-64 with a convolutional stem (model/stem.py): two 3 x 3 stride-2 convs (3 -> 16 -> 32
    # channels) take the 64 x 64 image to 16 x 16, and the patch embedding reads 4 x 4 patches of
    # that: the same 17 image tokens. It learns the varied world's shapes in far fewer steps.
    "toy-64-stem": CLIPConfig(
        embed_dim=64, image_resolution=64, vision_layers=3, vision_width=96,
        vision_patch_size=4, vision_heads=3, context_length=32, vocab_size=1024,
        transformer_width=64, transformer_heads=2, transformer_layers=2, vision_stem=(16, 32),
    ),
}
