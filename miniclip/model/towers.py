"""The two towers of CLIP, as functions of the parameter dict (keys are OpenAI's state-dict names).
``*_forward`` returns (features, cache); ``*_backward`` turns d(features) into gradients keyed like
the params.

Vision (images (N, 3, R, R) -> (N, E)):
    patch embed + class token + positions -> ln_pre -> L blocks -> ln_post(class token) @ proj
Text (tokens (N, T) -> (N, E)):
    token embedding + positions -> L causal blocks -> ln_final -> pool at end-of-text
    -> @ text_projection
"""

from __future__ import annotations

import numpy as np

from miniclip import backend
from miniclip.model.block import block_backward, block_forward, sub_params
from miniclip.model.patch_embed import patch_embed_backward, patch_embed_forward
from miniclip.model.stem import stem_backward, stem_forward
from miniclip.nn.embedding import token_embedding_backward, token_embedding_forward
from miniclip.nn.layernorm import EPS  # LayerNorm's eps, 1e-5, in every layer
from miniclip.nn.pooling import eot_pool_backward, eot_pool_forward


def vision_forward(params, cfg, images):
    """images (N, 3, R, R) -> features (N, E), cache = (c_patch, c_pre, c_blocks, c_post, c_proj,
    x_shape); behind a convolutional stem (cfg.vision_stem), c_patch is (the patch embedding's
    cache, the stem's)."""
    ops = backend.ops
    c_stem = None
    if cfg.vision_stem:  # convolutions first: (N, 3, R, R) -> (N, C, R / 2^S, R / 2^S)
        images, c_stem = stem_forward(images, params, cfg)
    x, c_patch = patch_embed_forward(images, params["visual.conv1.weight"],
                                     params["visual.class_embedding"],
                                     params["visual.positional_embedding"])  # (N, L, W)
    x, c_pre = ops.layernorm_forward(x, params["visual.ln_pre.weight"], params["visual.ln_pre.bias"],
                                   EPS)
    c_blocks = []
    for i in range(cfg.vision_layers):
        p = sub_params(params, f"visual.transformer.resblocks.{i}")
        x, c = block_forward(x, p, cfg.vision_heads, causal=False, activation=cfg.activation)
        c_blocks.append(c)
    cls = x[:, 0].copy()  # (N, W), contiguous: the class token sums up the image
    h, c_post = ops.layernorm_forward(cls, params["visual.ln_post.weight"],
                                      params["visual.ln_post.bias"], EPS)
    feats, c_proj = ops.linear_forward(h, params["visual.proj"].T, None)  # h @ proj: (N, E)
    if c_stem is not None:  # the cache keeps its six parts (lesson 5 unpacks them)
        c_patch = (c_patch, c_stem)
    return feats, (c_patch, c_pre, c_blocks, c_post, c_proj, x.shape)


def vision_backward(dfeats, cache, cfg):
    """dfeats (N, E) -> grads for every 'visual.*' key."""
    ops = backend.ops
    c_patch, c_pre, c_blocks, c_post, c_proj, x_shape = cache
    c_stem = None
    if cfg.vision_stem:
        c_patch, c_stem = c_patch
    g = {}
    dh, dproj_t, _ = ops.linear_backward(dfeats, c_proj)
    g["visual.proj"] = dproj_t.T
    dcls, g["visual.ln_post.weight"], g["visual.ln_post.bias"] = ops.layernorm_backward(dh, c_post)
    dx = np.zeros_like(dcls, shape=x_shape)  # only the class token was used; (zeros_like:
    # the zeros are made where dcls lives, on the GPU for a model on the GPU, in its format)
    dx[:, 0] = dcls
    for i in reversed(range(cfg.vision_layers)):
        dx, gb = block_backward(dx, c_blocks[i])
        g.update({f"visual.transformer.resblocks.{i}.{k}": v for k, v in gb.items()})
    dx, g["visual.ln_pre.weight"], g["visual.ln_pre.bias"] = ops.layernorm_backward(dx, c_pre)
    dstem, g["visual.conv1.weight"], g["visual.class_embedding"], g["visual.positional_embedding"] = (
        patch_embed_backward(dx, c_patch, need_dimages=c_stem is not None))
    if c_stem is not None:
        g.update(stem_backward(dstem, c_stem, cfg))
    return g


def used_context(tokens) -> int:
    """How many leading positions of a batch of token rows (N, T) the text tower needs: up to the
    last end-of-text token (each row's largest id) in the batch.

    The blocks are causal (a position attends only to itself and the ones before it) and the
    features are read at the end-of-text token, so the padding after the batch's longest caption
    changes nothing that is read. Cutting it gives the same features and gradients for less work:
    the toy captions use 11 of their 32 positions on average, 22 at most.

    >>> used_context(np.array([[5, 9, 0, 0], [5, 7, 9, 0]]))
    3
    """
    return int(tokens.argmax(axis=-1).max()) + 1


def text_forward(params, cfg, tokens, trim_padding=True):
    """tokens (N, T) int -> features (N, E), cache. Runs on the first used_context(tokens)
    positions only (the rest is padding that no feature depends on); trim_padding=False runs on
    all T, for comparison (the same features and gradients, up to rounding)."""
    ops = backend.ops
    T_used = used_context(tokens) if trim_padding else tokens.shape[1]
    tokens = tokens[:, :T_used]  # (N, T_used)
    x, c_emb = token_embedding_forward(tokens, params["token_embedding.weight"],
                                       params["positional_embedding"][:T_used])  # (N, T_used, W)
    c_blocks = []
    for i in range(cfg.transformer_layers):
        p = sub_params(params, f"transformer.resblocks.{i}")
        x, c = block_forward(x, p, cfg.transformer_heads, causal=True, activation=cfg.activation)
        c_blocks.append(c)
    # OpenAI applies ln_final to every position and then pools. LayerNorm acts on each position
    # alone, so pooling first gives the same numbers for 1/T of the work.
    pooled, c_pool = eot_pool_forward(x, tokens)  # (N, W)
    h, c_ln = ops.layernorm_forward(pooled, params["ln_final.weight"], params["ln_final.bias"], EPS)
    feats, c_proj = ops.linear_forward(h, params["text_projection"].T, None)  # (N, E)
    return feats, (c_emb, c_blocks, c_pool, c_ln, c_proj)


def text_backward(dfeats, cache, cfg):
    """dfeats (N, E) -> grads for every text key."""
    ops = backend.ops
    c_emb, c_blocks, c_pool, c_ln, c_proj = cache
    g = {}
    dh, dproj_t, _ = ops.linear_backward(dfeats, c_proj)
    g["text_projection"] = dproj_t.T
    dpooled, g["ln_final.weight"], g["ln_final.bias"] = ops.layernorm_backward(dh, c_ln)
    dx = eot_pool_backward(dpooled, c_pool)  # (N, T, W)
    for i in reversed(range(cfg.transformer_layers)):
        dx, gb = block_backward(dx, c_blocks[i])
        g.update({f"transformer.resblocks.{i}.{k}": v for k, v in gb.items()})
    g["token_embedding.weight"], dpos_used = token_embedding_backward(dx, c_emb)  # (T_used, W)
    if dpos_used.shape[0] == cfg.context_length:
        g["positional_embedding"] = dpos_used
    else:  # the positions past the batch's last end-of-text token were not used: gradient 0
        g["positional_embedding"] = np.zeros_like(
            dpos_used, shape=(cfg.context_length, dpos_used.shape[1]))
        g["positional_embedding"][:dpos_used.shape[0]] = dpos_used
    return g
