"""Solutions to the exercises of lessons/15_real_weights.ipynb.

Each section, from its `# %% exercise: <id>` line to the next, replaces the source of the exercise cell
with that id when tests/test_lessons.py runs the lesson in "solutions" mode. Try the exercise
before you read its section.
"""

# %% exercise: infer_config
def my_infer_config(state):
    W, _, _, P = state["visual.conv1.weight"].shape
    G = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)   # patches a side
    def layers(prefix):                    # the distinct block indices under prefix
        return len({k.split(".")[len(prefix.split("."))] for k in state if k.startswith(prefix + ".")})
    w = state["ln_final.weight"].shape[0]
    return CLIPConfig(
        embed_dim=state["text_projection"].shape[1], image_resolution=P * G,
        vision_layers=layers("visual.transformer.resblocks"), vision_width=W, vision_patch_size=P,
        context_length=state["positional_embedding"].shape[0],
        vocab_size=state["token_embedding.weight"].shape[0], transformer_width=w,
        transformer_heads=w // 64, transformer_layers=layers("transformer.resblocks"))

# %% exercise: resize_and_crop
def my_resize_and_crop(width, height, R):
    if width <= height:
        size = (R, int(R * height / width))
    else:
        size = (int(R * width / height), R)
    left, top = round((size[0] - R) / 2), round((size[1] - R) / 2)
    return size, (left, top, left + R, top + R)

# %% exercise: openai_block_to_hf
def my_openai_block_to_hf(params, prefix_openai, prefix_hf):
    out = {}
    for kind in ("weight", "bias"):
        stacked = params[f"{prefix_openai}.attn.in_proj_{kind}"]           # (3C, C) or (3C,)
        C = stacked.shape[0] // 3
        for i, name in enumerate("qkv"):
            out[f"{prefix_hf}.self_attn.{name}_proj.{kind}"] = stacked[i * C:(i + 1) * C]
    for openai_suffix, hf_suffix in hf.BLOCK.items():
        out[f"{prefix_hf}.{hf_suffix}"] = params[f"{prefix_openai}.{openai_suffix}"]
    return out
