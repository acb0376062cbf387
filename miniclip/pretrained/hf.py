"""Hugging Face's CLIP layout <-> OpenAI's, and HF's config.json.

The same weights, two sets of names. miniclip keeps OpenAI's; Hugging Face's ``CLIPModel`` saves:

    OpenAI (miniclip)                               Hugging Face
    visual.conv1.weight          (W, 3, P, P)       vision_model.embeddings.patch_embedding.weight
    visual.class_embedding       (W,)               vision_model.embeddings.class_embedding
    visual.positional_embedding  (1+G^2, W)         vision_model.embeddings.position_embedding.weight
    visual.ln_pre.*                                 vision_model.pre_layrnorm.*  (sic, HF's spelling)
    visual.transformer.resblocks.{i}.*              vision_model.encoder.layers.{i}.*  (table below)
    visual.ln_post.*                                vision_model.post_layernorm.*
    visual.proj                  (W, E)             visual_projection.weight  (E, W): transposed
    token_embedding.weight       (V, w)             text_model.embeddings.token_embedding.weight
    positional_embedding         (T, w)             text_model.embeddings.position_embedding.weight
    transformer.resblocks.{i}.*                     text_model.encoder.layers.{i}.*
    ln_final.*                                      text_model.final_layer_norm.*
    text_projection              (w, E)             text_projection.weight  (E, w): transposed
    logit_scale                  ()                 logit_scale

Inside a block:

    ln_1.*                        layer_norm1.*
    attn.in_proj_weight (3C, C)   self_attn.q_proj.weight, k_proj.weight, v_proj.weight (C, C) each,
                                  stacked in that order (rows q, then k, then v)
    attn.in_proj_bias   (3C,)     self_attn.q_proj.bias, k_proj.bias, v_proj.bias
    attn.out_proj.*               self_attn.out_proj.*
    ln_2.*                        layer_norm2.*
    mlp.c_fc.*                    mlp.fc1.*
    mlp.c_proj.*                  mlp.fc2.*

The projections are transposed because OpenAI stores a matrix used as ``x @ proj`` while HF
stores an ``nn.Linear`` weight, used as ``x @ weight.T``. HF's ``position_ids`` buffers (saved
by old versions of transformers) are index ranges, not weights, and are skipped.

    >>> hf_key("visual.transformer.resblocks.3.mlp.c_fc.weight")
    'vision_model.encoder.layers.3.mlp.fc1.weight'
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from miniclip.model.config import CLIPConfig

# OpenAI name -> HF name, outside the blocks
TOP_LEVEL = {
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "visual.proj": "visual_projection.weight",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "text_projection": "text_projection.weight",
    "logit_scale": "logit_scale",
}
TRANSPOSED = ("visual.proj", "text_projection")  # (in, out) in OpenAI, (out, in) in HF

# block-internal OpenAI suffix -> HF suffix (one to one)
BLOCK = {
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
}
# block-internal OpenAI suffix -> the three HF suffixes stacked into it (q, k, v order)
STACKED = {
    "attn.in_proj_weight": tuple(f"self_attn.{n}_proj.weight" for n in "qkv"),
    "attn.in_proj_bias": tuple(f"self_attn.{n}_proj.bias" for n in "qkv"),
}
TOWERS = {"visual.transformer.resblocks": "vision_model.encoder.layers",
          "transformer.resblocks": "text_model.encoder.layers"}

_HF_BLOCK = re.compile(r"^(vision_model|text_model)\.encoder\.layers\.(\d+)\.(.+)$")
_OPENAI_BLOCK = re.compile(r"^(visual\.transformer\.resblocks|transformer\.resblocks)"
                           r"\.(\d+)\.(.+)$")


def is_hf_layout(keys) -> bool:
    """True if the keys look like HF's CLIPModel (a vision_model.* or text_model.* key)."""
    return any(k.startswith(("vision_model.", "text_model.")) for k in keys)


def hf_key(openai_key: str) -> str:
    """The HF name(s) of an OpenAI key, for messages ('self_attn.{q,k,v}_proj...' when stacked)."""
    if openai_key in TOP_LEVEL:
        return TOP_LEVEL[openai_key]
    m = _OPENAI_BLOCK.match(openai_key)
    if m and m.group(3) in BLOCK:
        return f"{TOWERS[m.group(1)]}.{m.group(2)}.{BLOCK[m.group(3)]}"
    if m and m.group(3) in STACKED:
        leaf = m.group(3).rsplit("_", 1)[-1]  # 'weight' or 'bias'
        return f"{TOWERS[m.group(1)]}.{m.group(2)}.self_attn.{{q,k,v}}_proj.{leaf}"
    raise KeyError(f"{openai_key!r} is not an OpenAI CLIP (ViT) key")


def hf_to_openai(hf_state: dict) -> dict:
    """HF CLIPModel state dict -> OpenAI-named state dict (arrays keep their dtype).

    Raises ValueError naming the keys it does not know, and the q/k/v pieces that are missing
    or do not fit together. Missing top-level tensors are left for the caller's shape check.
    """
    out, used = {}, set()
    for openai_name, hf_name in TOP_LEVEL.items():
        if hf_name in hf_state:
            v = np.asarray(hf_state[hf_name])
            out[openai_name] = v.T.copy() if openai_name in TRANSPOSED else v
            used.add(hf_name)
    blocks: dict[tuple[str, str], dict] = {}  # (openai prefix, i) -> {hf suffix: array}
    hf_prefix_to_openai = {v: k for k, v in TOWERS.items()}
    for name, value in hf_state.items():
        m = _HF_BLOCK.match(name)
        if m:
            prefix = hf_prefix_to_openai[f"{m.group(1)}.encoder.layers"]
            blocks.setdefault((prefix, m.group(2)), {})[m.group(3)] = np.asarray(value)
    to_openai_suffix = {v: k for k, v in BLOCK.items()}
    for (prefix, i), parts in blocks.items():
        hf_block = f"{TOWERS[prefix]}.{i}"
        for suffix, value in parts.items():
            if suffix in to_openai_suffix:
                out[f"{prefix}.{i}.{to_openai_suffix[suffix]}"] = value
                used.add(f"{hf_block}.{suffix}")
        for openai_suffix, qkv in STACKED.items():
            present = [s for s in qkv if s in parts]
            if not present:
                continue  # all three absent: reported as a missing key by the shape check
            missing = [f"{hf_block}.{s}" for s in qkv if s not in parts]
            if missing:
                raise ValueError(f"HF checkpoint is missing {missing}: q, k and v are stacked "
                                 f"into {prefix}.{i}.{openai_suffix} and all three are needed")
            shapes = [parts[s].shape for s in qkv]
            if len(set(shapes)) != 1:
                raise ValueError(f"{hf_block}.self_attn q/k/v projections must have equal "
                                 f"shapes, got {dict(zip(qkv, shapes, strict=True))}")
            out[f"{prefix}.{i}.{openai_suffix}"] = np.concatenate([parts[s] for s in qkv])
            used.update(f"{hf_block}.{s}" for s in qkv)
    unknown = sorted(k for k in hf_state if k not in used and not k.endswith("position_ids"))
    if unknown:
        raise ValueError(f"keys that are not part of HF's CLIPModel (ViT) layout: {unknown}")
    return out


def openai_to_hf(state: dict) -> dict:
    """OpenAI-named state dict -> HF CLIPModel names (the inverse of ``hf_to_openai``)."""
    out = {}
    for name, value in state.items():
        value = np.asarray(value)
        if name in TOP_LEVEL:
            out[TOP_LEVEL[name]] = value.T.copy() if name in TRANSPOSED else value
            continue
        m = _OPENAI_BLOCK.match(name)
        if not m:
            raise ValueError(f"{name!r} is not an OpenAI CLIP (ViT) key")
        hf_block = f"{TOWERS[m.group(1)]}.{m.group(2)}"
        suffix = m.group(3)
        if suffix in BLOCK:
            out[f"{hf_block}.{BLOCK[suffix]}"] = value
        elif suffix in STACKED:
            pieces = np.split(value, 3)  # rows q, k, v
            for piece, hf_suffix in zip(pieces, STACKED[suffix], strict=True):
                out[f"{hf_block}.{hf_suffix}"] = piece.copy()
        else:
            raise ValueError(f"{name!r} is not an OpenAI CLIP (ViT) key")
    return out


# ---- config.json --------------------------------------------------------------------------

HF_ACTIVATIONS = {"quick_gelu": "quick_gelu", "gelu": "gelu"}  # HF hidden_act -> miniclip


def _tower_configs(hf_config: dict):
    # transformers writes "text_config"; some old files also have "text_config_dict"
    text = hf_config.get("text_config") or hf_config.get("text_config_dict") or {}
    vision = hf_config.get("vision_config") or hf_config.get("vision_config_dict") or {}
    return text, vision


def config_fields_from_hf(hf_config: dict) -> dict:
    """The CLIPConfig fields an HF CLIP config.json states (those it leaves out are absent).

    Raises ValueError for settings miniclip does not implement (an activation other than
    QuickGELU or exact GELU, different activations in the two towers, LayerNorm eps other than
    1e-5, an MLP that is not 4x wide).

    >>> config_fields_from_hf({"projection_dim": 512, "text_config": {"hidden_act": "gelu"}})
    {'embed_dim': 512, 'activation': 'gelu'}
    """
    if not isinstance(hf_config, dict):
        raise TypeError(f"hf_config must be a dict (a parsed config.json), got "
                        f"{type(hf_config).__name__}")
    text, vision = _tower_configs(hf_config)
    fields = {}
    for key, value in (("embed_dim", hf_config.get("projection_dim")),
                       ("image_resolution", vision.get("image_size")),
                       ("vision_layers", vision.get("num_hidden_layers")),
                       ("vision_width", vision.get("hidden_size")),
                       ("vision_patch_size", vision.get("patch_size")),
                       ("vision_heads", vision.get("num_attention_heads")),
                       ("context_length", text.get("max_position_embeddings")),
                       ("vocab_size", text.get("vocab_size")),
                       ("transformer_width", text.get("hidden_size")),
                       ("transformer_heads", text.get("num_attention_heads")),
                       ("transformer_layers", text.get("num_hidden_layers"))):
        if value is not None:
            fields[key] = value
    acts = {}
    for tower_name, tower in (("text_config", text), ("vision_config", vision)):
        act = tower.get("hidden_act")
        if act is None:
            continue
        if act not in HF_ACTIVATIONS:
            raise ValueError(f"config.json {tower_name}.hidden_act is {act!r}; miniclip "
                             f"implements {sorted(HF_ACTIVATIONS)}")
        acts[tower_name] = HF_ACTIVATIONS[act]
        eps = tower.get("layer_norm_eps", 1e-5)
        if eps != 1e-5:
            raise ValueError(f"config.json {tower_name}.layer_norm_eps is {eps}; miniclip's "
                             "LayerNorm uses 1e-5, as OpenAI's CLIP does")
        width, inner = tower.get("hidden_size"), tower.get("intermediate_size")
        if width is not None and inner is not None and inner != 4 * width:
            raise ValueError(f"config.json {tower_name}.intermediate_size is {inner}; miniclip's "
                             f"MLP is 4 x hidden_size = {4 * width} wide")
    if len(set(acts.values())) > 1:
        raise ValueError(f"config.json gives the towers different activations {acts}; miniclip "
                         "uses one activation for both")
    if acts:
        fields["activation"] = next(iter(acts.values()))
    return fields


def hf_config_dict(cfg: CLIPConfig, logit_scale: float = 2.6592) -> dict:
    """A config.json for ``transformers.CLIPModel`` describing cfg.

    The end-of-text token is the largest id (vocab_size - 1), as in OpenAI's vocabulary, so HF
    (which pools at the first eos_token_id) and miniclip (which pools at the largest id) agree.
    """
    act = {"quick_gelu": "quick_gelu", "gelu": "gelu"}[cfg.activation]
    return {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": cfg.embed_dim,
        "logit_scale_init_value": float(logit_scale),
        "text_config": {
            "model_type": "clip_text_model",
            "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.transformer_width,
            "intermediate_size": 4 * cfg.transformer_width,
            "num_hidden_layers": cfg.transformer_layers,
            "num_attention_heads": cfg.transformer_heads,
            "max_position_embeddings": cfg.context_length,
            "hidden_act": act,
            "layer_norm_eps": 1e-5,
            "projection_dim": cfg.embed_dim,
            "bos_token_id": max(cfg.vocab_size - 2, 0),
            "eos_token_id": cfg.vocab_size - 1,
            "pad_token_id": 0,
        },
        "vision_config": {
            "model_type": "clip_vision_model",
            "hidden_size": cfg.vision_width,
            "intermediate_size": 4 * cfg.vision_width,
            "num_hidden_layers": cfg.vision_layers,
            "num_attention_heads": cfg.vision_heads,
            "image_size": cfg.image_resolution,
            "patch_size": cfg.vision_patch_size,
            "num_channels": 3,
            "hidden_act": act,
            "layer_norm_eps": 1e-5,
            "projection_dim": cfg.embed_dim,
        },
    }


def save_hf(model, folder, dtype=None, tokenizer=None, preprocess=None):
    """Write a model in HF's layout: folder/model.safetensors + folder/config.json; with a
    ``tokenizer`` (a BPETokenizer) HF's CLIPTokenizer files vocab.json and merges.txt; with a
    ``preprocess`` its mean and std in HF's preprocessor_config.json.

    ``transformers.CLIPModel.from_pretrained(folder)`` and ``miniclip.loading.load`` both read
    it. dtype: None keeps the model's dtype; np.float16 halves the file (a lossy choice you
    make explicitly).
    """
    from miniclip.pretrained.weights_io import write_safetensors

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = openai_to_hf(model.params)
    if dtype is not None:
        tensors = {k: v.astype(dtype) for k, v in tensors.items()}
    # "format": "pt" is what transformers expects to find in a safetensors file's metadata
    write_safetensors(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    config = hf_config_dict(model.cfg, float(model.params["logit_scale"]))
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if tokenizer is not None:
        save_hf_tokenizer(tokenizer, folder)
    if preprocess is not None:
        R = model.cfg.image_resolution
        processor = {"image_processor_type": "CLIPImageProcessor", "do_resize": True,
                     "size": {"shortest_edge": R}, "resample": 3, "do_center_crop": True,
                     "crop_size": {"height": R, "width": R}, "do_rescale": True,
                     "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
                     "image_mean": [float(m) for m in preprocess.mean],
                     "image_std": [float(x) for x in preprocess.std]}
        (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2) + "\n")
    return folder


def read_hf_mean_std(folder):
    """(image_mean, image_std) of an HF folder's preprocessor_config.json, or None."""
    path = Path(folder) / "preprocessor_config.json"
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    if "image_mean" in d and "image_std" in d:
        return d["image_mean"], d["image_std"]
    return None


def save_hf_tokenizer(tokenizer, folder):
    """vocab.json (symbol -> id) and merges.txt, the files of HF's CLIPTokenizer. miniclip's
    byte-level BPE has OpenAI's layout (bytes, bytes + "</w>", merges, the two specials), so
    the ids are the same ones."""
    folder = Path(folder)
    (folder / "vocab.json").write_text(json.dumps(tokenizer.encoder, ensure_ascii=False))
    tokenizer.save(folder / "merges.txt")


def read_hf_tokenizer_merges(folder):
    """The merges of an HF folder's merges.txt, or None if it has none."""
    from miniclip.text.bpe import read_merges

    path = Path(folder) / "merges.txt"
    return read_merges(path) if path.is_file() else None
