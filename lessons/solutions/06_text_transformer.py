"""Solutions to the exercises of lessons/06_text_transformer.ipynb.

Each section, from its `# %% exercise: <id>` line to the next, replaces the source of the exercise cell
with that id when tests/test_lessons.py runs the lesson in "solutions" mode. Try the exercise
before you read its section.
"""

# %% exercise: token_embedding_backward
def my_token_embedding_backward(dout, cache):
    tokens, V = cache
    C = dout.shape[-1]
    dW = np.zeros((V, C), dtype=dout.dtype)
    np.add.at(dW, tokens.reshape(-1), dout.reshape(-1, C))    # repeated ids are summed
    return dW, dout.sum(axis=0)

# %% exercise: text_backward
def my_text_backward(dfeats, cache, cfg):
    c_emb, c_blocks, c_pool, c_ln, c_proj = cache
    g = {}
    dh, dproj_t, _ = ops.linear_backward(dfeats, c_proj)
    g["text_projection"] = dproj_t.T
    dpooled, g["ln_final.weight"], g["ln_final.bias"] = ops.layernorm_backward(dh, c_ln)
    dx = eot_pool_backward(dpooled, c_pool)                     # (N, T, C), zero off the EOT
    for i in reversed(range(cfg.transformer_layers)):
        dx, gb = block_backward(dx, c_blocks[i])
        g.update({f"transformer.resblocks.{i}.{k}": v for k, v in gb.items()})
    g["token_embedding.weight"], g["positional_embedding"] = token_embedding_backward(dx, c_emb)
    return g

# %% exercise: pool_at_id
def pool_at_id(x, tokens, eot_id):
    positions = (tokens == eot_id).argmax(axis=-1)         # first True in each row
    return x[np.arange(len(tokens)), positions]
