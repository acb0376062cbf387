"""The architecture diagram of lessons 05-07 and docs/images/architecture.png.

``draw_architecture("ViT-L/14")`` draws both towers of a CLIP config as boxes, the shape of the
tensor on every arrow (for one image and one caption), and how many parameters each box holds,
counted from OpenAI's state-dict keys by ``miniclip.model.params.count_parameters``; the counts
add up to the model's total (427,616,513 for ViT-L/14), which the title shows.

    python lessons/diagrams.py        # rewrites docs/images/architecture.png
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

from miniclip import CONFIGS
from miniclip.model.params import count_parameters


def component_counts(cfg):
    """{box name: parameters} for the boxes of the diagram; the values sum to the total."""
    per_key = count_parameters(cfg)

    def total(pred):
        return sum(n for k, n in per_key.items() if pred(k))

    boxes = {
        "patch embedding": total(lambda k: k == "visual.conv1.weight"),
        "class token + positions": total(lambda k: k in ("visual.class_embedding",
                                                         "visual.positional_embedding")),
        "ln_pre": total(lambda k: k.startswith("visual.ln_pre")),
        "vision blocks": total(lambda k: k.startswith("visual.transformer.")),
        "ln_post": total(lambda k: k.startswith("visual.ln_post")),
        "visual.proj": total(lambda k: k == "visual.proj"),
        "token embedding + positions": total(lambda k: k in ("token_embedding.weight",
                                                             "positional_embedding")),
        "text blocks": total(lambda k: k.startswith("transformer.")),
        "ln_final": total(lambda k: k.startswith("ln_final")),
        "text_projection": total(lambda k: k == "text_projection"),
        "logit_scale": total(lambda k: k in ("logit_scale", "logit_bias")),
    }
    assert sum(boxes.values()) == sum(per_key.values())
    return boxes


def _box(ax, x, y, text, params, color, per_block=""):
    ax.add_patch(FancyBboxPatch((x - 1.85, y - 0.32), 3.7, 0.64, boxstyle="round,pad=0.02",
                                fc=color, ec="black", lw=0.8))
    ax.text(x, y + 0.08, text, ha="center", va="center", fontsize=8.5, weight="bold")
    ax.text(x, y - 0.17, f"{params:,} parameters" + per_block, ha="center", va="center", fontsize=7.5)


def _arrow(ax, x, y0, y1, shape):
    ax.annotate("", xy=(x, y1 + 0.34), xytext=(x, y0 - 0.34),
                arrowprops={"arrowstyle": "->", "lw": 1.0})
    ax.text(x + 0.08, (y0 + y1) / 2, shape, fontsize=7.5, va="center", family="monospace",
            color="#444444")


def draw_architecture(name="ViT-L/14", ax=None):
    """Draw CLIP `name` (a key of miniclip.CONFIGS); returns the matplotlib figure."""
    cfg = CONFIGS[name]
    counts = component_counts(cfg)
    total = sum(counts.values())
    R, P, W = cfg.image_resolution, cfg.vision_patch_size, cfg.vision_width
    G, L, E = R // P, cfg.vision_tokens, cfg.embed_dim
    T, V, Wt = cfg.context_length, cfg.vocab_size, cfg.transformer_width
    if ax is None:
        fig, ax = plt.subplots(figsize=(10, 8.6))
    fig = ax.figure
    ax.set(xlim=(-0.5, 10.5), ylim=(-1.6, 9.1))
    ax.axis("off")
    vision, text, vx, tx = "#dbe9f6", "#fde7d0", 2.4, 7.6
    ys = [7.6, 6.3, 5.0, 3.7, 2.4, 1.1]

    ax.text(vx, 8.45, f"image (3, {R}, {R})", ha="center", fontsize=9)
    _arrow(ax, vx, 8.45 + 0.1, ys[0], f"{G}x{G} patches of 3x{P}x{P}")
    rows_v = [("patch embedding (conv1, no bias)", counts["patch embedding"], f"({G * G}, {W})"),
              ("+ class token, + positions", counts["class token + positions"], f"({L}, {W})"),
              ("ln_pre", counts["ln_pre"], f"({L}, {W})"),
              (f"{cfg.vision_layers} residual blocks, {cfg.vision_heads} heads",
               counts["vision blocks"], f"({L}, {W}) -> class token ({W},)"),
              ("ln_post", counts["ln_post"], f"({W},)"),
              (f"@ visual.proj ({W}, {E})", counts["visual.proj"], f"image feature ({E},)")]
    for (label, n, shape), y, y_next in zip(rows_v, ys, ys[1:] + [-0.2]):
        _box(ax, vx, y, label, n, vision,
             f" = {cfg.vision_layers} x {n // cfg.vision_layers:,}" if "blocks" in label else "")
        _arrow(ax, vx, y, y_next, shape)

    ax.text(tx, 8.45, f"caption: {T} token ids < {V:,}", ha="center", fontsize=9)
    _arrow(ax, tx, 8.45 + 0.1, ys[0], f"({T},) int")
    rows_t = [("token embedding + positions", counts["token embedding + positions"], f"({T}, {Wt})"),
              (f"{cfg.transformer_layers} causal residual blocks, {cfg.transformer_heads} heads",
               counts["text blocks"], f"({T}, {Wt})"),
              ("pool at end-of-text (argmax id)", 0, f"({Wt},)"),
              ("ln_final", counts["ln_final"], f"({Wt},)"),
              (f"@ text_projection ({Wt}, {E})", counts["text_projection"], f"text feature ({E},)")]
    for (label, n, shape), y, y_next in zip(rows_t, ys, ys[1:5] + [-0.2]):
        _box(ax, tx, y, label, n, text,
             f" = {cfg.transformer_layers} x {n // cfg.transformer_layers:,}" if "blocks" in label else "")
        _arrow(ax, tx, y, y_next, shape)

    ax.add_patch(FancyBboxPatch((3.2, -1.45), 3.6, 0.9, boxstyle="round,pad=0.02", fc="#e3f1df",
                                ec="black", lw=0.8))
    ax.text(5.0, -0.85, "normalise, cosine x exp(logit_scale)", ha="center", fontsize=8.5,
            weight="bold")
    ax.text(5.0, -1.1, "(N, N) logits -> symmetric cross-entropy", ha="center", fontsize=7.5)
    ax.text(5.0, -1.32, f"logit_scale: {counts['logit_scale']} parameter", ha="center", fontsize=7.5)
    ax.annotate("", xy=(3.6, -0.5), xytext=(vx, -0.2), arrowprops={"arrowstyle": "->"})
    ax.annotate("", xy=(6.4, -0.5), xytext=(tx, -0.2), arrowprops={"arrowstyle": "->"})
    vis_total = sum(n for k, n in counts.items() if k in (
        "patch embedding", "class token + positions", "ln_pre", "vision blocks", "ln_post",
        "visual.proj"))
    ax.text(vx, 8.85, f"vision tower: {vis_total:,}", ha="center", fontsize=9, weight="bold")
    ax.text(tx, 8.85, f"text tower: {total - vis_total - counts['logit_scale']:,}", ha="center",
            fontsize=8.5)
    ax.set_title(f"CLIP {name}: {total:,} parameters; shapes for one image and one caption",
                 fontsize=11, y=1.02)
    return fig


def save_architecture(path=None, name="ViT-L/14"):
    path = Path(path or Path(__file__).resolve().parents[1] / "docs/images/architecture.png")
    fig = draw_architecture(name)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(save_architecture())
