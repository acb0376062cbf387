"""Count CLIP's parameters from a config alone, without allocating a single weight.

``parameter_shapes(cfg)`` lists every tensor of OpenAI's state dict with its shape; counting is
then a product per tensor. ViT-L/14 has 427,616,513 parameters (1.7 GB in float32), and this
module needs none of that memory to say so.

A note on a breakdown you may see quoted for ViT-L/14, "vision 303,965,184, total 427,615,489":
it is 1,024 short, and the difference is two mistakes that nearly cancel. It gives the patch
convolution a bias (+1,024 = width), but CLIP's ``conv1`` has ``bias=False``; and it leaves out
``ln_pre``, the LayerNorm CLIP applies after adding positions (-2,048 = gain + bias of width
1,024). OpenAI's state dict settles it: ``visual.conv1.weight`` is the only conv tensor and
``visual.ln_pre.weight`` / ``visual.ln_pre.bias`` are there.

    python -m miniclip.params ViT-L/14       # prints the table below, layer by layer
"""

from __future__ import annotations

import argparse
from math import prod

from miniclip.model.config import CONFIGS, CLIPConfig


def block_shapes(prefix: str, width: int) -> dict[str, tuple[int, ...]]:
    """Shapes of one pre-LN residual attention block of the given width (MLP ratio 4)."""
    w = width
    return {
        f"{prefix}.attn.in_proj_weight": (3 * w, w),  # rows: q, k, v
        f"{prefix}.attn.in_proj_bias": (3 * w,),
        f"{prefix}.attn.out_proj.weight": (w, w),
        f"{prefix}.attn.out_proj.bias": (w,),
        f"{prefix}.ln_1.weight": (w,),
        f"{prefix}.ln_1.bias": (w,),
        f"{prefix}.mlp.c_fc.weight": (4 * w, w),
        f"{prefix}.mlp.c_fc.bias": (4 * w,),
        f"{prefix}.mlp.c_proj.weight": (w, 4 * w),
        f"{prefix}.mlp.c_proj.bias": (w,),
        f"{prefix}.ln_2.weight": (w,),
        f"{prefix}.ln_2.bias": (w,),
    }


def parameter_shapes(cfg: CLIPConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of OpenAI's CLIP state dict, in OpenAI's order, with its shape."""
    if not isinstance(cfg, CLIPConfig):
        raise TypeError(f"cfg must be a CLIPConfig, got {type(cfg).__name__}")
    vw, tw, e = cfg.vision_width, cfg.transformer_width, cfg.embed_dim
    p = cfg.vision_patch_size
    shapes: dict[str, tuple[int, ...]] = {
        "positional_embedding": (cfg.context_length, tw),
        "text_projection": (tw, e),
        "logit_scale": (),
        "visual.class_embedding": (vw,),
        "visual.positional_embedding": (cfg.vision_tokens, vw),
        "visual.proj": (vw, e),
    }
    c_in = 3
    for i, c_out in enumerate(cfg.vision_stem):  # 3 x 3 convs with a bias (model/stem.py)
        shapes[f"visual.stem.{i}.weight"] = (c_out, c_in, 3, 3)
        shapes[f"visual.stem.{i}.bias"] = (c_out,)
        c_in = c_out
    shapes.update({
        "visual.conv1.weight": (vw, cfg.patch_channels, p, p),  # no bias
        "visual.ln_pre.weight": (vw,),
        "visual.ln_pre.bias": (vw,),
    })
    for i in range(cfg.vision_layers):
        shapes.update(block_shapes(f"visual.transformer.resblocks.{i}", vw))
    shapes["visual.ln_post.weight"] = (vw,)
    shapes["visual.ln_post.bias"] = (vw,)
    for i in range(cfg.transformer_layers):
        shapes.update(block_shapes(f"transformer.resblocks.{i}", tw))
    shapes["token_embedding.weight"] = (cfg.vocab_size, tw)
    shapes["ln_final.weight"] = (tw,)
    shapes["ln_final.bias"] = (tw,)
    if cfg.loss == "siglip":  # SigLIP's learned bias on the logits; OpenAI's CLIP has none
        shapes["logit_bias"] = ()
    return shapes


def count_parameters(cfg: CLIPConfig) -> dict[str, int]:
    """OpenAI state-dict key -> number of scalars. ``sum(...values())`` is the total."""
    return {name: prod(shape) for name, shape in parameter_shapes(cfg).items()}


def _component(name: str) -> tuple[str, str]:
    """Map a key to (tower, component): 'visual.transformer.resblocks.3.mlp...' -> ('vision', 'block 3')."""
    tower = "vision" if name.startswith("visual.") else "text"
    if name in ("logit_scale", "logit_bias"):
        return "other", name
    short = name.removeprefix("visual.")
    if ".resblocks." in name:
        layer = short.split(".")[2]
        return tower, f"block {layer}"
    if short.startswith("stem."):
        return tower, f"stem conv {short.split('.')[1]}"
    names = {
        "conv1.weight": "patch embedding (conv1, no bias)",
        "class_embedding": "class token",
        "positional_embedding": "positional embedding",
        "proj": "projection",
        "text_projection": "projection",
        "token_embedding.weight": "token embedding",
    }
    if short in names:
        return tower, names[short]
    return tower, short.rsplit(".", 1)[0]  # ln_pre, ln_post, ln_final


def parameter_breakdown(cfg: CLIPConfig) -> dict[str, dict[str, int]]:
    """{tower: {component: count}} with towers 'vision', 'text', 'other', in state-dict order."""
    out: dict[str, dict[str, int]] = {"vision": {}, "text": {}, "other": {}}
    for name, n in count_parameters(cfg).items():
        tower, comp = _component(name)
        out[tower][comp] = out[tower].get(comp, 0) + n
    vision_order = ["patch embedding (conv1, no bias)", "class token", "positional embedding",
                    "ln_pre"]
    v = out["vision"]
    ordered = {k: v[k] for k in v if k.startswith("stem conv")}
    ordered.update({k: v[k] for k in vision_order})
    ordered.update({k: v[k] for k in v if k.startswith("block")})
    ordered.update({k: v[k] for k in ("ln_post", "projection")})
    out["vision"] = ordered
    t = out["text"]
    ordered = {k: t[k] for k in ("token embedding", "positional embedding")}
    ordered.update({k: t[k] for k in t if k.startswith("block")})
    ordered.update({k: t[k] for k in ("ln_final", "projection")})
    out["text"] = ordered
    return out


def format_breakdown(cfg: CLIPConfig, name: str = "") -> str:
    """A table of the breakdown, one line per component, with tower subtotals and the total."""
    bd = parameter_breakdown(cfg)
    lines = [f"CLIP {name} parameters".replace("  ", " ")]
    for tower, comps in bd.items():
        lines.append(f"  {tower}")
        for comp, n in comps.items():
            lines.append(f"    {comp:<36}{n:>14,}")
        lines.append(f"    {'= ' + tower + ' total':<36}{sum(comps.values()):>14,}")
    total = sum(sum(c.values()) for c in bd.values())
    lines.append(f"  {'total':<38}{total:>14,}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m miniclip.model.params",
                                 description="Print CLIP's parameter count, layer by layer.")
    ap.add_argument("config", nargs="?", default="ViT-L/14", choices=sorted(CONFIGS))
    args = ap.parse_args(argv)
    print(format_breakdown(CONFIGS[args.config], args.config))


if __name__ == "__main__":
    main()
