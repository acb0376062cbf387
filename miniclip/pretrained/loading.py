"""Load CLIP weights from a file or folder: ``model, preprocess, tokenizer = load(path)``.

What ``load`` accepts (``ACCEPTED`` below says the same to a user who passes something else):

* a Hugging Face folder: ``model.safetensors`` (or shards listed in
  ``model.safetensors.index.json``) with ``config.json`` beside it, e.g. a download of
  ``openai/clip-vit-base-patch32``;
* one ``.safetensors`` file, in HF's layout or OpenAI's (told apart by the key names);
* an ``.npz`` of OpenAI-named arrays;
* a run folder of ``python -m miniclip.train`` or its ``model.safetensors`` /
  ``checkpoint.safetensors`` (or an older run's .npz), handed to
  ``miniclip.pretrained.checkpoint.load_trained``, which also restores the run's tokenizer and
  preprocessing.

OpenAI's own ``.pt`` releases are PyTorch pickles: convert them once with
``python -m miniclip.convert ViT-B-32.pt ViT-B-32.safetensors`` (needs torch) and load the result.

The config is read off the shapes the way OpenAI's ``build_model`` does it (``infer_config``):
layers from the count of blocks, resolution from the positional embedding, heads from width / 64.
Heads and the activation cannot be seen in shapes, so an HF ``config.json``, or the config that
miniclip writes into its own files' metadata, is used when present.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np

from miniclip.kernels.dtypes import bfloat16, dtype_of, is_float, is_half
from miniclip.model.clip import CLIP
from miniclip.model.config import CLIPConfig
from miniclip.model.params import parameter_shapes
from miniclip.pretrained.hf import (
    config_fields_from_hf,
    hf_key,
    hf_to_openai,
    is_hf_layout,
    read_hf_mean_std,
    read_hf_tokenizer_merges,
)
from miniclip.pretrained.weights_io import (
    read_npz,
    read_safetensors,
    upcast_half,
    write_npz,
    write_safetensors,
)

ACCEPTED = (
    "a Hugging Face CLIP folder (model.safetensors or model.safetensors.index.json, with "
    "config.json), a .safetensors file (HF or OpenAI layout), an .npz of OpenAI-named arrays, "
    "or a `python -m miniclip.train` run folder or its model.safetensors / "
    "checkpoint.safetensors, or a name from miniclip.available_models() or an HF repo id "
    "(\"ViT-B/32\", \"openai/clip-vit-base-patch32\"). "
    "OpenAI's .pt files: convert first with `python -m miniclip.convert IN.pt OUT.safetensors`."
)
CONFIG_METADATA_KEY = "miniclip_config"  # metadata entry holding CLIPConfig.to_dict() as JSON
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")  # ints in OpenAI's .pt


# ---- config from shapes, as OpenAI's build_model does it ----------------------------------

def _need(state, key):
    if key not in state:
        raise ValueError(f"state dict has no {key!r}, which every OpenAI-layout CLIP (ViT) "
                         f"checkpoint has; found keys such as {sorted(state)[:5]}")
    return state[key]


def _count_blocks(state, prefix):
    """Number of blocks under prefix ('transformer.resblocks'); they must be 0..L-1."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    found = sorted({int(m.group(1)) for k in state if (m := pattern.match(k))})
    if found != list(range(len(found))):
        raise ValueError(f"blocks under {prefix!r} must be numbered 0..L-1, found {found}")
    return len(found)


def infer_config(state, vision_heads=None, transformer_heads=None, activation="quick_gelu"):
    """CLIPConfig from an OpenAI-named state dict's shapes.

    Heads default to width // 64 (at least 1), which is right for OpenAI's released models.

    >>> from miniclip.model.config import CONFIGS
    >>> shapes = parameter_shapes(CONFIGS["ViT-B/32"])
    >>> infer_config({k: np.empty(s, np.float16) for k, s in shapes.items()}) == CONFIGS["ViT-B/32"]
    True
    """
    if any(k.startswith("visual.layer1.") for k in state):
        raise ValueError("this is a ResNet CLIP (RN50, RN101, ...): miniclip implements the "
                         "ViT models only")
    conv1 = _need(state, "visual.conv1.weight")  # (W, 3, P, P)
    vision_width, patch = conv1.shape[0], conv1.shape[-1]
    n_positions = _need(state, "visual.positional_embedding").shape[0]  # 1 + G^2
    grid = round((n_positions - 1) ** 0.5)
    if grid * grid + 1 != n_positions:
        raise ValueError(f"visual.positional_embedding has {n_positions} rows; a square grid of "
                         "patches plus the class token needs 1 + G^2")
    transformer_width = _need(state, "ln_final.weight").shape[0]
    return CLIPConfig(
        embed_dim=_need(state, "text_projection").shape[1],
        image_resolution=patch * grid,
        vision_layers=_count_blocks(state, "visual.transformer.resblocks"),
        vision_width=vision_width,
        vision_patch_size=patch,
        context_length=_need(state, "positional_embedding").shape[0],
        vocab_size=_need(state, "token_embedding.weight").shape[0],
        transformer_width=transformer_width,
        transformer_heads=transformer_heads or max(1, transformer_width // 64),
        transformer_layers=_count_blocks(state, "transformer.resblocks"),
        vision_heads=vision_heads or max(1, vision_width // 64),
        activation=activation,
    )


def check_state_dict(state, cfg, hf=False):
    """Raise ValueError naming every missing, unexpected and mis-shaped key (HF names too if hf)."""
    expected = parameter_shapes(cfg)

    def name(k):
        return f"{k} (HF: {hf_key(k)})" if hf and k in expected else k

    missing = [name(k) for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{name(k)}: {tuple(state[k].shape)}, expected {expected[k]}"
             for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        found = (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
        parts = [f"{label}: {items}" for label, items in found if items]
        raise ValueError(f"checkpoint does not match {cfg}:\n  " + "\n  ".join(parts))
    bad = [k for k in expected  # bfloat16 is an extension type: not np.floating, but is_float
           if not (np.issubdtype(state[k].dtype, np.floating) or is_float(state[k].dtype))]
    if bad:
        raise ValueError(f"these tensors are not floating point: {bad}")
    broken = [name(k) for k in expected if not np.isfinite(state[k]).all()]
    if broken:
        raise ValueError(f"these tensors contain NaN or inf: {broken[:10]}"
                         + (f" and {len(broken) - 10} more" if len(broken) > 10 else ""))


def model_from_state_dict(state, cfg, dtype=None):
    """A CLIP holding these weights (see CLIP.from_state_dict), after checking every key
    and shape against cfg with errors that give the Hugging Face names too. dtype: None keeps
    the widest stored precision; an explicit one may lower it."""
    check_state_dict(state, cfg)
    return CLIP.from_state_dict(cfg, state, dtype)


# ---- reading files ------------------------------------------------------------------------

def _read_hf_shards(index_path, keep_16_bit=False):
    """Tensors of a sharded HF checkpoint: model.safetensors.index.json names the shard files."""
    index = json.loads(Path(index_path).read_text())
    tensors, metadata = {}, {}
    for shard in sorted(set(index["weight_map"].values())):
        part, metadata = read_safetensors(Path(index_path).parent / shard, keep_16_bit)
        tensors.update(part)
    return tensors, metadata


def read_weights(path, keep_16_bit=False):
    """path -> (tensors as stored, metadata, hf_config dict or None). See ``ACCEPTED``.
    BF16 safetensors come back as float32, or as bfloat16 with ``keep_16_bit``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}. load accepts {ACCEPTED}")
    hf_config = None
    if path.is_dir():
        if (path / "model.safetensors").is_file():
            tensors, metadata = read_safetensors(path / "model.safetensors", keep_16_bit)
        elif (path / "model.safetensors.index.json").is_file():
            tensors, metadata = _read_hf_shards(path / "model.safetensors.index.json",
                                                keep_16_bit)
        elif (path / "pytorch_model.bin").is_file():
            raise ValueError(f"folder {path} has PyTorch weights only (pytorch_model.bin). "
                             "Download model.safetensors instead, or convert (needs torch): "
                             f"python -m miniclip.convert {path / 'pytorch_model.bin'} "
                             f"{path / 'model.safetensors'}")
        else:
            raise ValueError(f"folder {path} has neither model.safetensors nor "
                             f"model.safetensors.index.json. load accepts {ACCEPTED}")
        config_path = path / "config.json"
    elif path.suffix == ".safetensors":
        tensors, metadata = read_safetensors(path, keep_16_bit)
        config_path = path.parent / "config.json"  # an HF file keeps its config beside it
    elif path.suffix == ".npz":
        tensors, metadata = read_npz(path)
        config_path = None
    elif path.suffix in (".pt", ".pth", ".bin"):
        raise ValueError(f"{path} is a PyTorch file; miniclip reads no pickles. Convert it once "
                         f"(needs torch): python -m miniclip.convert {path} "
                         f"{path.with_suffix('.safetensors')}")
    else:
        raise ValueError(f"don't know how to read {path} (suffix {path.suffix!r}). load accepts "
                         f"{ACCEPTED}")
    if config_path is not None and config_path.is_file() and is_hf_layout(tensors):
        hf_config = json.loads(config_path.read_text())
    return tensors, metadata, hf_config


def _hf_pooling_warning(hf_config, cfg):
    text = hf_config.get("text_config") or hf_config.get("text_config_dict") or {}
    eos = text.get("eos_token_id")
    if eos is not None and eos not in (2, cfg.vocab_size - 1):
        warnings.warn(f"config.json has eos_token_id={eos}: transformers pools text at the first "
                      f"token {eos}, miniclip (like OpenAI) at the largest id, "
                      f"{cfg.vocab_size - 1} being the end token in OpenAI's vocabulary. They "
                      "agree only on texts whose largest id is that eos token.", stacklevel=3)


def to_openai_state(tensors, metadata=None, hf_config=None, config=None, where="checkpoint",
                    keep_16_bit=False):
    """Tensors in either layout -> (OpenAI-named state dict, CLIPConfig), checked.

    The config is, in order: `config` if given; the one miniclip wrote into the metadata; else
    inferred from the shapes, with heads and activation from an HF config.json when there is
    one (which must then agree with the shapes). float16 is upcast to float32, unless
    ``keep_16_bit`` (a 16-bit model is being built from it).
    """
    if config is not None and not isinstance(config, CLIPConfig):
        raise TypeError(f"config must be a CLIPConfig or None, got {type(config).__name__}")
    metadata = metadata or {}
    hf = is_hf_layout(tensors)
    if hf:
        state = hf_to_openai(tensors)
    elif "visual.conv1.weight" in tensors or "token_embedding.weight" in tensors:
        state = {k: v for k, v in tensors.items() if k not in OPENAI_EXTRA_KEYS}
    else:
        raise ValueError(f"{where}: unknown layout. Expected HF CLIPModel keys "
                         "('vision_model.*', 'text_model.*', ...) or OpenAI's "
                         f"('visual.conv1.weight', 'token_embedding.weight', ...); found keys such "
                         f"as {sorted(tensors)[:6]}")
    if not keep_16_bit:
        state = upcast_half(state)
    if config is None:
        if CONFIG_METADATA_KEY in metadata:  # written by save_weights: exact, heads included
            config = CLIPConfig.from_dict(json.loads(metadata[CONFIG_METADATA_KEY]))
        else:
            stated = config_fields_from_hf(hf_config) if hf_config else {}
            config = infer_config(state, stated.get("vision_heads"),
                                  stated.get("transformer_heads"),
                                  stated.get("activation", "quick_gelu"))
            disagree = {k: (v, getattr(config, k)) for k, v in stated.items()
                        if getattr(config, k) != v}
            if disagree:
                raise ValueError("config.json and the weights' shapes disagree (field: "
                                 f"(config.json, shapes)): {disagree}")
            if hf_config:
                _hf_pooling_warning(hf_config, config)
    try:
        check_state_dict(state, config, hf=hf)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e
    return state, config


def load_model(path, dtype=None, config=None):
    """Read weights from `path` (see ``ACCEPTED``) into a CLIP model.

    dtype: None -> float32, or float64 when the file holds float64 (fp16 and bf16 weights are
    upcast to float32; nothing is lowered unless you ask with an explicit dtype). "bfloat16" or
    "float16" keeps a 16-bit checkpoint 16-bit (half the memory: ViT-L/14 in 0.86 GB, not 1.7);
    a float16 file asked for as bfloat16 is rounded once, to nearest.
    config: a CLIPConfig to use instead of the one inferred; it must fit the shapes.
    """
    if config is not None and not isinstance(config, CLIPConfig):
        raise TypeError(f"config must be a CLIPConfig or None, got {type(config).__name__}")
    # a 16-bit model is built from the 16-bit file as it is stored: no float32 copy of it exists
    keep_16_bit = dtype is not None and is_half(dtype_of(dtype))
    tensors, metadata, hf_config = read_weights(path, keep_16_bit)
    state, config = to_openai_state(tensors, metadata, hf_config, config, where=str(path),
                                    keep_16_bit=keep_16_bit)
    if dtype is None:
        wide = any(v.dtype == np.float64 for v in state.values())
        dtype = np.float64 if wide else np.float32
    return model_from_state_dict(state, config, dtype)


def load(path, dtype=None, config=None):
    """-> (model, preprocess, tokenizer) for a CLIP checkpoint (see ``ACCEPTED``), or a name
    from ``miniclip.available_models()`` or any HF repo id (downloaded once into the hub's
    cache: ``pretrained/hub.py``).

    Whatever was loaded, the three follow one convention:

    * ``preprocess(image_or_images)``: one PIL image, path or uint8 (H, W, 3) array, or a list
      of them, or a uint8 (N, H, W, 3) batch -> (N, 3, R, R) in the model's dtype;
    * ``tokenizer(list_of_str)`` -> (N, context_length) int64 ids;
    * ``model.encode_image``, ``model.encode_text`` and ``model(images, tokens)``.

    A miniclip training run (folder or checkpoint) gives its own preprocessing (the kind it was
    trained with) and its own BPE tokenizer; ``config`` applies only to HF / OpenAI weights.
    HF / OpenAI weights give ``Preprocess`` (OpenAI's pipeline) and OpenAI's ``SimpleTokenizer``
    when the model has OpenAI's 49,408-token vocabulary; the BPE of an HF folder's merges.txt
    for another vocabulary (a run exported with ``python -m miniclip.convert RUN OUT --hf``);
    else None (there is no way to know its tokenizer).
    """
    from miniclip.pretrained.checkpoint import is_trained_checkpoint, load_trained
    from miniclip.pretrained.hub import download, is_model_name
    from miniclip.pretrained.preprocess import Preprocess
    from miniclip.text.tokenizer import OPENAI_VOCAB_SIZE, ModelTokenizer, SimpleTokenizer

    if is_model_name(path):  # "ViT-B/32", "openai/clip-vit-base-patch32": the hub's cache
        path = download(path)
    if is_trained_checkpoint(path):
        if config is not None:
            raise ValueError("config applies to HF / OpenAI weights only; a miniclip run "
                             f"carries its own (got a run at {path})")
        return load_trained(path, dtype=dtype)
    model = load_model(path, dtype=dtype, config=config)
    stats = read_hf_mean_std(path) if Path(path).is_dir() else None  # else CLIP's mean, std
    preprocess = Preprocess(model.cfg.image_resolution, *(stats or ()), dtype=model.dtype)
    tokenizer = None
    merges = read_hf_tokenizer_merges(path) if Path(path).is_dir() else None
    if model.cfg.vocab_size == OPENAI_VOCAB_SIZE:
        tokenizer = SimpleTokenizer(context_length=model.cfg.context_length)
    elif merges is not None and len(merges) + 514 == model.cfg.vocab_size:  # an exported run
        tokenizer = ModelTokenizer(merges, model.cfg.context_length)
    return model, preprocess, tokenizer


def save_weights(model, path, dtype=None):
    """Write a model's weights in OpenAI's layout to .safetensors or .npz, config in the metadata.

    dtype: None keeps the model's; np.float16 halves the file (lossy, so only when asked).
    """
    path = Path(path)
    tensors = model.state_dict()
    if dtype is not None:
        tensors = {k: v.astype(dtype) for k, v in tensors.items()}
    metadata = {"format": "openai-clip", CONFIG_METADATA_KEY: json.dumps(model.cfg.to_dict())}
    if path.suffix == ".safetensors":
        write_safetensors(tensors, path, metadata)
    elif path.suffix == ".npz":
        if any(v.dtype == bfloat16 for v in tensors.values()):  # NumPy would store it as void
            raise TypeError(f"{path.name}: .npz cannot hold bfloat16 (NumPy knows no such type); "
                            "save a bfloat16 model to .safetensors")
        write_npz(tensors, path, metadata)
    else:
        raise ValueError(f"path must end in .safetensors or .npz, got {path.name!r}")
    return path
