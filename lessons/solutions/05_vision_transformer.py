"""Solutions to the exercises of lessons/05_vision_transformer.ipynb.

Each section, from its `# %% exercise: <id>` line to the next, replaces the source of the exercise cell
with that id when tests/test_lessons.py runs the lesson in "solutions" mode. Try the exercise
before you read its section.
"""

# %% exercise: patchify
def my_patchify(images, P):
    N, ch, R, _ = images.shape
    G = R // P
    x = images.reshape(N, ch, G, P, G, P)          # (N, ch, gy, py, gx, px)
    x = x.transpose(0, 2, 4, 1, 3, 5)              # (N, gy, gx, ch, py, px)
    return x.reshape(N, G * G, ch * P * P)         # one row per patch, flattened (ch, py, px)

# %% exercise: block_backward
def my_block_backward(dout, cache):
    c_ln1, c_attn, c_ln2, c_mlp = cache
    grads = {}
    dh, g = mlp_backward(dout, c_mlp)                         # the MLP branch
    grads.update({f"mlp.{k}": v for k, v in g.items()})
    dx_ln2, grads["ln_2.weight"], grads["ln_2.bias"] = ops.layernorm_backward(dh, c_ln2)
    dx1 = dout + dx_ln2                                       # residual: a copy, plus the branch
    dh, g = self_attention_backward(dx1, c_attn)              # the attention branch
    grads.update({f"attn.{k}": v for k, v in g.items()})
    dx_ln1, grads["ln_1.weight"], grads["ln_1.bias"] = ops.layernorm_backward(dh, c_ln1)
    return dx1 + dx_ln1, grads

# %% exercise: vision_backward
def my_vision_backward(dfeats, cache, cfg):
    c_patch, c_pre, c_blocks, c_post, c_proj, x_shape = cache
    g = {}
    dh, dproj_t, _ = ops.linear_backward(dfeats, c_proj)               # undoes h @ proj
    g["visual.proj"] = dproj_t.T
    dcls, g["visual.ln_post.weight"], g["visual.ln_post.bias"] = ops.layernorm_backward(dh, c_post)
    dx = np.zeros(x_shape)
    dx[:, 0] = dcls                                                    # only the class token was read
    for i in reversed(range(cfg.vision_layers)):
        dx, gb = block_backward(dx, c_blocks[i])
        g.update({f"visual.transformer.resblocks.{i}.{k}": v for k, v in gb.items()})
    dx, g["visual.ln_pre.weight"], g["visual.ln_pre.bias"] = ops.layernorm_backward(dx, c_pre)
    _, g["visual.conv1.weight"], g["visual.class_embedding"], g["visual.positional_embedding"] = (
        patch_embed_backward(dx, c_patch))
    return g
