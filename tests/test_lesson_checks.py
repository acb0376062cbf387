"""The lessons' exercise checks (lessons/checks.py) can pass, fail and tell "not done".

For every check: a right answer passes, a wrong one raises ExerciseIncorrect, and the starter
(a function that raises NotImplementedError, or a body of `...` returning None) raises
ExerciseNotDone. The right answers are miniclip's own functions, adapted to the exercise's
signature, or a few lines written here; the wrong ones are plausible mistakes.
"""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lessons"))
import checks  # noqa: E402
from checks import ExerciseIncorrect, ExerciseNotDone  # noqa: E402

from miniclip.backend import ops  # noqa: E402
from miniclip.model.block import block_backward  # noqa: E402
from miniclip.model.loss import (  # noqa: E402
    contrastive_loss_backward,
    contrastive_loss_forward,
    siglip_loss_backward,
    siglip_loss_forward,
)
from miniclip.model.mlp import mlp_backward  # noqa: E402
from miniclip.model.patch_embed import patchify  # noqa: E402
from miniclip.model.towers import text_backward, vision_backward  # noqa: E402
from miniclip.nn import activations, attention, embedding, gradcheck, layernorm, linear  # noqa: E402
from miniclip.nn.pooling import eot_pool_forward  # noqa: E402
from miniclip.text import bpe  # noqa: E402
from miniclip.train import optim  # noqa: E402


def starter(*_, **__):
    raise NotImplementedError("exercise: not written")


def ellipsis_body(*_, **__):
    ...


# ---- right and wrong answers, one pair per check ----------------------------------------------

def linear_bwd(dout, cache):
    x, w = cache
    return linear.linear_backward(dout, (x, w, True))


def linear_bwd_wrong(dout, cache):
    dx, dw, db = linear_bwd(dout, cache)
    return dx, dw, 2 * db                       # double-counted bias


def numgrad_wrong(f, x, dout, h=1e-5):          # one-sided difference, and x not restored
    g = np.zeros_like(x)
    flat, fg = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        base = np.sum(f(x) * dout)
        flat[i] += h
        fg[i] = (np.sum(f(x) * dout) - base) / h
    return g


def proj_fwd(x, proj):
    return x @ proj, (x, proj)


def proj_bwd(dout, cache):
    x, proj = cache
    return dout @ proj.T, x.T @ dout


def proj_bwd_wrong(dout, cache):
    x, proj = cache
    return dout @ proj.T, (x.T @ dout) * 1.01


def ln_bwd(dout, xhat, rstd, w):
    return layernorm.layernorm_backward(dout, (xhat, rstd, w))


def ln_bwd_wrong(dout, xhat, rstd, w):         # forgets the scale projection
    g = dout * w
    lead = tuple(range(dout.ndim - 1))
    return rstd * (g - g.mean(-1, keepdims=True)), (dout * xhat).sum(lead), dout.sum(lead)


def rms_fwd(x, w, eps=1e-5):
    rstd = 1 / np.sqrt((x * x).mean(-1, keepdims=True) + eps)
    return x * rstd * w, (x * rstd, rstd, w)


def rms_bwd(dout, cache):
    xhat, rstd, w = cache
    g = dout * w
    return (rstd * (g - xhat * (g * xhat).mean(-1, keepdims=True)),
            (dout * xhat).reshape(-1, xhat.shape[-1]).sum(0))


def rms_bwd_wrong(dout, cache):                 # LayerNorm's formula: subtracts mean(g) too
    xhat, rstd, w = cache
    g = dout * w
    dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    return dx, (dout * xhat).reshape(-1, xhat.shape[-1]).sum(0)


def quick_bwd_wrong(dout, cache):               # sigma'(1.702 x) without the chain-rule 1.702
    x, s = cache
    return dout * (s + x * s * (1 - s))


def mlp_fwd(x, p):  # through the backend, as mlp_backward expects its caches
    h, c_fc = ops.linear_forward(x, p["c_fc.weight"], p["c_fc.bias"])
    a, c_act = ops.quick_gelu_forward(h)
    y, c_proj = ops.linear_forward(a, p["c_proj.weight"], p["c_proj.bias"])
    return y, (c_fc, c_act, c_proj, "quick_gelu")


def mlp_bwd_wrong(dout, cache):
    dx, g = mlp_backward(dout, cache)
    return dx, {**g, "c_fc.bias": g["c_fc.bias"] * 0}


def best_slope_wrong():
    return 1.6, 0.02


def attn_bwd_wrong(dout, cache):                # forgets the 1/sqrt(D) in dk
    dq, dk, dv = attention.attention_backward(dout, cache)
    return dq, dk * math.sqrt(cache[0].shape[-1]), dv


def mask_wrong(T):
    return np.tril(np.full((T, T), -np.inf), k=-1)


def prefixes(x, p, n_heads):
    from miniclip.model.attention import self_attention_forward
    out = np.empty_like(x)
    for t in range(x.shape[1]):
        out[:, t] = self_attention_forward(x[:, :t + 1], p, n_heads)[0][:, -1]
    return out


def prefixes_wrong(x, p, n_heads):              # unmasked attention on the whole sequence
    from miniclip.model.attention import self_attention_forward
    return self_attention_forward(x, p, n_heads)[0]


def patchify_wrong(images, P):                  # patches flattened (row, column, channel)
    N, ch, R, _ = images.shape
    G = R // P
    return images.reshape(N, ch, G, P, G, P).transpose(0, 2, 4, 3, 5, 1).reshape(N, G * G, -1)


def block_bwd_wrong(dout, cache):               # drops the residual path of the MLP branch
    dx, g = block_backward(dout, cache)
    c_ln1, c_attn, c_ln2, c_mlp = cache
    dh, _ = mlp_backward(dout, c_mlp)
    return dx - dout, g


def vision_bwd(dfeats, cache, cfg):
    return vision_backward(dfeats, cache, cfg)


def vision_bwd_wrong(dfeats, cache, cfg):
    g = vision_backward(dfeats, cache, cfg)
    g.pop("visual.ln_pre.bias")
    return g


def text_bwd_wrong(dfeats, cache, cfg):
    g = text_backward(dfeats, cache, cfg)
    return {**g, "positional_embedding": g["positional_embedding"] * 0.5}


def emb_bwd_wrong(dout, cache):                 # the buffered += that loses repeated ids
    tokens, V = cache
    dW = np.zeros((V, dout.shape[-1]))
    dW[tokens.reshape(-1)] += dout.reshape(-1, dout.shape[-1])
    return dW, dout.sum(0)


def pool_at_id(x, tokens, eot_id):
    return x[np.arange(len(tokens)), (tokens == eot_id).argmax(-1)]


def pool_argmax(x, tokens, eot_id):
    return x[np.arange(len(tokens)), tokens.argmax(-1)]


def contrastive_bwd(x, y, s):
    return contrastive_loss_backward(contrastive_loss_forward(x, y, s)[1])


def contrastive_bwd_wrong(x, y, s):             # ignores the text -> image direction's factor
    dx, dy, ds = contrastive_bwd(x, y, s)
    return 2 * dx, dy, ds


def siglip_loss(x, y, s, b):
    return siglip_loss_forward(x, y, s, b)[0]


def siglip_bwd(x, y, s, b):
    return siglip_loss_backward(siglip_loss_forward(x, y, s, b)[1])


def siglip_bwd_wrong(x, y, s, b):
    dx, dy, ds, db = siglip_bwd(x, y, s, b)
    return dx, dy, ds, -db


def best_log_scale(x, y):
    def d(s):
        return float(contrastive_loss_backward(contrastive_loss_forward(x, y, np.array(s))[1])[2])
    lo, hi = 0.0, math.log(100)
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if d(mid) < 0 else (lo, mid)
    return lo


def text_count(cfg):
    t = cfg.transformer_width
    return (cfg.vocab_size * t + cfg.context_length * t + 2 * t + t * cfg.embed_dim
            + cfg.transformer_layers * (12 * t * t + 13 * t))


def text_count_wrong(cfg):                      # blocks without their LayerNorms
    return text_count(cfg) - cfg.transformer_layers * 4 * cfg.transformer_width


def activations_right(cfg, batch):
    return batch * cfg.vision_layers * cfg.vision_heads * cfg.vision_tokens ** 2


def activations_wrong(cfg, batch):              # one matrix per block, not per head
    return batch * cfg.vision_layers * cfg.vision_tokens ** 2


def merge_wrong(symbols, pair):                 # merges overlapping pairs right to left
    out = list(symbols)
    i = len(out) - 2
    while i >= 0:
        if (out[i], out[i + 1]) == pair:
            out[i:i + 2] = [out[i] + out[i + 1]]
        i -= 1
    return tuple(out)


def train_wrong(word_counts, n):                # ties to the larger pair
    merges = []
    for _ in range(n):
        stats = bpe.get_stats(word_counts)
        if not stats:
            break
        pair = max(stats, key=lambda p: (stats[p], p))
        merges.append(pair)
        word_counts = {bpe.merge(w, pair): c for w, c in word_counts.items()}
    return merges


def combine(m1, l1, m2, l2):
    m = np.maximum(m1, m2)
    return m, l1 * np.exp(m1 - m) + l2 * np.exp(m2 - m)


def combine_wrong(m1, l1, m2, l2):
    return np.maximum(m1, m2), l1 + l2


def eot_pool(x, tokens):
    return eot_pool_forward(x, tokens)[0]


def eot_pool_wrong(x, tokens):
    return x[:, -1]


def adamw_update(p, g, m, v, t, lr, decay):
    m = 0.9 * m + 0.1 * g
    v = 0.98 * v + 0.02 * g * g
    update = (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.98**t)) + 1e-6)
    return p - lr * (update + 0.2 * p * decay), m, v


def adam_coupled(p, g, m, v, t, lr, decay):    # L2 in the gradient: Adam, not AdamW
    return adamw_update(p, g + 0.2 * p * decay, m, v, t, lr, False)


def decays_all_matrices(name, param):           # forgets the positional embeddings
    return param.ndim >= 2


def cosine_no_warmup(step, total, base, warmup=0, low=0.0):
    progress = min(1.0, step / total)
    return low + 0.5 * (base - low) * (1 + math.cos(math.pi * progress))


CASES = {
    "linear_backward": (checks.check_linear_backward, [linear_bwd], [linear_bwd_wrong]),
    "numerical_gradient": (checks.check_numerical_gradient, [gradcheck.numerical_gradient],
                           [numgrad_wrong]),
    "proj": (checks.check_proj, [proj_fwd, proj_bwd], [proj_fwd, proj_bwd_wrong]),
    "layernorm_backward": (checks.check_layernorm_backward, [ln_bwd], [ln_bwd_wrong]),
    "rmsnorm": (checks.check_rmsnorm, [rms_fwd, rms_bwd], [rms_fwd, rms_bwd_wrong]),
    "quick_gelu_backward": (checks.check_quick_gelu_backward, [activations.quick_gelu_backward],
                            [quick_bwd_wrong]),
    "mlp_backward": (checks.check_mlp_backward, [mlp_fwd, mlp_backward], [mlp_fwd, mlp_bwd_wrong]),
    "best_slope": (checks.check_best_slope, [lambda: (1.702, 0.0095)], [best_slope_wrong]),
    "attention_backward": (checks.check_attention_backward, [attention.attention_backward],
                           [attn_bwd_wrong]),
    "causal_mask": (checks.check_causal_mask, [attention.causal_mask], [mask_wrong]),
    "causal_by_prefixes": (checks.check_causal_by_prefixes, [prefixes], [prefixes_wrong]),
    "patchify": (checks.check_patchify, [patchify], [patchify_wrong]),
    "block_backward": (checks.check_block_backward, [block_backward], [block_bwd_wrong]),
    "vision_backward": (checks.check_vision_backward, [vision_bwd], [vision_bwd_wrong]),
    "token_embedding_backward": (checks.check_token_embedding_backward,
                                 [embedding.token_embedding_backward], [emb_bwd_wrong]),
    "text_backward": (checks.check_text_backward, [text_backward], [text_bwd_wrong]),
    "pool_at_id": (checks.check_pool_at_id, [pool_at_id], [pool_argmax]),
    "contrastive_backward": (checks.check_contrastive_backward, [contrastive_bwd],
                             [contrastive_bwd_wrong]),
    "siglip": (checks.check_siglip, [siglip_loss, siglip_bwd], [siglip_loss, siglip_bwd_wrong]),
    "best_log_scale": (checks.check_best_log_scale, [best_log_scale], [lambda x, y: 2.0]),
    "text_tower_count": (checks.check_text_tower_count, [text_count], [text_count_wrong]),
    "activation_count": (checks.check_activation_count, [activations_right], [activations_wrong]),
    "merge_pair": (checks.check_merge_pair, [bpe.merge], [merge_wrong]),
    "train": (checks.check_train, [bpe.train_merges_naive], [train_wrong]),
    "eot_pool": (checks.check_eot_pool, [eot_pool], [eot_pool_wrong]),
    "combine_lse": (checks.check_combine_lse, [combine], [combine_wrong]),
    "adamw_update": (checks.check_adamw_update, [adamw_update], [adam_coupled]),
    "decays": (checks.check_decays, [optim.decays], [decays_all_matrices]),
    "cosine_lr": (checks.check_cosine_lr, [optim.cosine_lr], [cosine_no_warmup]),
}



# ---- lessons 13-16, 18 and the capstone (20): right and wrong answers ---------------------------

def batch_right(step, n, B, seed):
    from miniclip.train.data import batch_indices
    return batch_indices(step, n, B, seed)


def batch_same_every_epoch(step, n, B, seed):   # forgets the epoch: the same order forever
    i = step % (n // B)
    return np.random.default_rng([seed, 0]).permutation(n)[i * B:(i + 1) * B]


def normalise_right(images, mean, std):
    from miniclip.pretrained.preprocess import ToyPreprocess
    return ToyPreprocess(images.shape[1], mean, std)(images)


def normalise_reshaped(images, mean, std):      # reshape is not a transpose
    x = (images.astype(np.float32) / 255 - np.float32(mean)) / np.float32(std)
    return x.reshape(len(images), 3, *images.shape[1:3])


def accumulate_right(params, cfg, images, tokens, accum_steps):
    from miniclip.model.gradcache import loss_and_grads
    return loss_and_grads(params, cfg, images, tokens, accum_steps)


def accumulate_naive(params, cfg, images, tokens, accum_steps):   # mean of micro-batch losses
    from miniclip.model.gradcache import loss_and_grads, micro_batches
    parts = [loss_and_grads(params, cfg, images[s], tokens[s]) for s in
             micro_batches(len(images), accum_steps)]
    return (np.mean([p[0] for p in parts]),
            {k: np.mean([p[1][k] for p in parts], axis=0) for k in parts[0][1]})


def class_weights_right(emb):
    unit = emb / np.linalg.norm(emb, axis=-1, keepdims=True)
    mean = unit.mean(axis=1)
    return mean / np.linalg.norm(mean, axis=-1, keepdims=True)


def class_weights_raw_mean(emb):                # averages the raw embeddings
    mean = emb.mean(axis=1)
    return mean / np.linalg.norm(mean, axis=-1, keepdims=True)


def topk_right(scores, labels, k):
    from miniclip.train.metrics import topk_accuracy
    return topk_accuracy(scores, labels, ks=(k,))[k]


def topk_ties_win(scores, labels, k):           # a tie counts for the model
    true = scores[np.arange(len(labels)), labels][:, None]
    return float(((scores > true).sum(axis=1) < k).mean())


def retrieval_right(sim):
    from miniclip.train.metrics import retrieval_metrics
    m = retrieval_metrics(sim, "i2t")
    return {"r1": m["i2t_r1"], "r5": m["i2t_r5"], "median": m["i2t_median_rank"]}


def retrieval_ties_win(sim):
    ranks = 1 + (sim > np.diag(sim)[:, None]).sum(axis=1)
    return {"r1": float(np.mean(ranks <= 1)), "r5": float(np.mean(ranks <= 5)),
            "median": float(np.median(ranks))}


def infer_config_right(state):
    from miniclip.pretrained.loading import infer_config
    return infer_config(state)


def infer_config_heads_32(state):               # heads of 32 channels instead of 64
    import dataclasses
    cfg = infer_config_right(state)
    return dataclasses.replace(cfg, transformer_heads=cfg.transformer_width // 32)


def block_to_hf_right(params, prefix_openai, prefix_hf):
    from miniclip.pretrained import hf
    return {k: v for k, v in hf.openai_to_hf(params).items() if k.startswith(prefix_hf + ".")}


def block_to_hf_kqv(params, prefix_openai, prefix_hf):   # k and q swapped
    out = block_to_hf_right(params, prefix_openai, prefix_hf)
    q, k = f"{prefix_hf}.self_attn.q_proj.weight", f"{prefix_hf}.self_attn.k_proj.weight"
    out[q], out[k] = out[k], out[q]
    return out


def resize_crop_right(w, h, R):
    from miniclip.pretrained.preprocess import center_crop_box, resized_size
    size = resized_size(w, h, R)
    return size, center_crop_box(*size, R)


def resize_crop_rounded(w, h, R):               # rounds the long side instead of flooring it
    size = (R, round(R * h / w)) if w <= h else (round(R * w / h), R)
    left, top = round((size[0] - R) / 2), round((size[1] - R) / 2)
    return size, (left, top, left + R, top + R)


def reduce_scatter_right(partials, sizes):
    total, bounds = np.sum(partials, axis=0), np.cumsum([0] + list(sizes))
    return [total[bounds[r]:bounds[r + 1]] for r in range(len(sizes))]


def reduce_scatter_own_only(partials, sizes):   # keeps its own partial: no sum over workers
    bounds = np.cumsum([0] + list(sizes))
    return [partials[r][bounds[r]:bounds[r + 1]] for r in range(len(sizes))]


def siglip_b_right(U, V, A, B, shares, params, average=True):
    from miniclip.model.local_loss import local_loss_and_grads
    X, Y = U @ A, V @ B
    dAs, dBs = [], []
    for s in shares:
        _, dX, dY, _ = local_loss_and_grads("siglip", X, Y, s, params)
        dAs.append(U[s].T @ dX[s])
        dBs.append(V[s].T @ dY[s])
    reduce = np.mean if average else np.sum
    return reduce(dAs, axis=0), reduce(dBs, axis=0)


def siglip_b_summed(U, V, A, B, shares, params):   # sums where the framework averages
    return siglip_b_right(U, V, A, B, shares, params, average=False)


def siglip_exact_right(U, V, A, B, params):
    _, cache = siglip_loss_forward(U @ A, V @ B, params["logit_scale"], params["logit_bias"])
    dX, dY = siglip_loss_backward(cache)[:2]
    return U.T @ dX, V.T @ dY


def best_factor_right(wrong, exact):
    c = float((wrong * exact).sum() / (wrong * wrong).sum())
    return c, float(np.abs(c * wrong - exact).max() / np.abs(exact).max())


def best_factor_flipped(wrong, exact):          # <w, e> / <e, e>: the factor the other way
    c = float((wrong * exact).sum() / (exact * exact).sum())
    return c, float(np.abs(c * wrong - exact).max() / np.abs(exact).max())


def bf16_right(x):
    from miniclip.kernels.dtypes import bfloat16
    return np.asarray(x, np.float32).astype(bfloat16).view(np.uint16)


def bf16_truncated(x):                          # drops the low bits without rounding
    return (np.asarray(x, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def scaler_right(scale, good, finite, growth_interval=2000):
    if not finite:
        return False, scale / 2, 0
    good += 1
    return (True, scale * 2, 0) if good == growth_interval else (True, scale, good)


def scaler_never_resets(scale, good, finite, growth_interval=2000):
    if not finite:
        return False, scale / 2, good
    good += 1
    return (True, scale * 2, good) if good % growth_interval == 0 else (True, scale, good)


def vision_fwd(params, cfg, images):
    from miniclip.model.towers import vision_forward
    return vision_forward(params, cfg, images)


def text_fwd(params, cfg, tokens):
    from miniclip.model.towers import text_forward
    return text_forward(params, cfg, tokens)


def vision_bwd_doubled_proj(dfeats, cache, cfg):
    g = vision_backward(dfeats, cache, cfg)
    g["visual.proj"] = 2 * g["visual.proj"]
    return g


def loss_and_grads_right(params, cfg, images, tokens):
    from miniclip.model.gradcache import loss_and_grads
    return loss_and_grads(params, cfg, images, tokens)


def loss_and_grads_scale_halved(params, cfg, images, tokens):   # half of d logit_scale
    loss, grads = loss_and_grads_right(params, cfg, images, tokens)
    grads["logit_scale"] = 0.5 * grads["logit_scale"]
    return loss, grads


CASES.update({
    "batch_indices": (checks.check_batch_indices, [batch_right], [batch_same_every_epoch]),
    "normalise": (checks.check_normalise, [normalise_right], [normalise_reshaped]),
    "accumulated_loss_and_grads": (checks.check_accumulated_loss_and_grads, [accumulate_right],
                                   [accumulate_naive]),
    "class_weights": (checks.check_class_weights, [class_weights_right], [class_weights_raw_mean]),
    "topk_accuracy": (checks.check_topk_accuracy, [topk_right], [topk_ties_win]),
    "retrieval": (checks.check_retrieval, [retrieval_right], [retrieval_ties_win]),
    "infer_config": (checks.check_infer_config, [infer_config_right], [infer_config_heads_32]),
    "openai_block_to_hf": (checks.check_openai_block_to_hf, [block_to_hf_right], [block_to_hf_kqv]),
    "resize_and_crop": (checks.check_resize_and_crop, [resize_crop_right], [resize_crop_rounded]),
    "reduce_scatter": (checks.check_reduce_scatter, [reduce_scatter_right],
                       [reduce_scatter_own_only]),
    "siglip_variant_b": (checks.check_siglip_variant_b, [siglip_b_right, siglip_exact_right],
                         [siglip_b_summed, siglip_exact_right]),
    "best_factor": (checks.check_best_factor, [best_factor_right], [best_factor_flipped]),
    "round_to_bfloat16": (checks.check_round_to_bfloat16, [bf16_right], [bf16_truncated]),
    "scaler_update": (checks.check_scaler_update, [scaler_right], [scaler_never_resets]),
    "own_towers": (checks.check_own_towers, [vision_fwd, vision_backward, text_fwd, text_backward],
                   [vision_fwd, vision_bwd_doubled_proj, text_fwd, text_backward]),
    "own_loss_and_grads": (checks.check_own_loss_and_grads, [loss_and_grads_right],
                           [loss_and_grads_scale_halved]),
})

@pytest.mark.parametrize("name", sorted(CASES))
def test_check_passes_a_right_answer(name, capsys):
    check, right, _ = CASES[name]
    check(*right)
    assert "right" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(CASES))
def test_check_fails_a_wrong_answer(name):
    check, _, wrong = CASES[name]
    with pytest.raises(ExerciseIncorrect):
        check(*wrong)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("start", [starter, ellipsis_body], ids=["NotImplementedError", "..."])
def test_check_says_not_done_for_a_starter(name, start):
    check, right, _ = CASES[name]
    with pytest.raises(ExerciseNotDone):
        check(*[start] * len(right))


def test_encode_word_and_decode_checks():
    from miniclip.text.bpe import BPETokenizer, bpe_word
    captions = ["a red circle", "a blue square", "a red square on the left"] * 20
    tok = BPETokenizer.train(captions, vocab_size=512 + 20 + 2)
    ranks = {p: r for r, p in enumerate(tok.merges)}
    checks.check_encode_word(lambda s: bpe_word(s, ranks), tok.merges)
    with pytest.raises(ExerciseIncorrect):
        checks.check_encode_word(lambda s: s, tok.merges)
    with pytest.raises(ExerciseNotDone):
        checks.check_encode_word(starter, tok.merges)
    checks.check_decode(tok.decode, tok, captions[:3])
    with pytest.raises(ExerciseIncorrect):
        checks.check_decode(lambda ids: tok.decode(ids).strip(), tok, captions[:3])
    with pytest.raises(ExerciseNotDone):
        checks.check_decode(starter, tok, captions[:3])


def test_tokenize_check():
    from miniclip.text.tokenizer import tokenize
    texts = ["a photo of a cat.", "", "a photo of a cat. " * 20]
    checks.check_tokenize(tokenize, texts)
    with pytest.raises(ExerciseIncorrect):   # never truncates: a long text raises instead
        checks.check_tokenize(lambda t, n=77, truncate=False: tokenize(t, n), texts)
    with pytest.raises(ExerciseNotDone):
        checks.check_tokenize(starter, texts)


def test_kernel_checks():
    def matmul(a, bt, c):
        c[:] = a @ bt

    def matmul_wrong(a, bt, c):
        c[:] = a @ bt + 1e-3

    checks.check_matmul_ipj(matmul)
    with pytest.raises(ExerciseIncorrect):
        checks.check_matmul_ipj(matmul_wrong)
    with pytest.raises(ExerciseNotDone):
        checks.check_matmul_ipj(starter)

    def softmax(x, out):
        z = np.exp(x - x.max(-1, keepdims=True))
        out[:] = z / z.sum(-1, keepdims=True)

    def softmax_unstable(x, out):                 # no max subtraction: float32 rows overflow
        with np.errstate(over="ignore", invalid="ignore"):
            z = np.exp(x * 10)
            out[:] = z / z.sum(-1, keepdims=True)

    checks.check_softmax_rows(softmax)
    with pytest.raises(ExerciseIncorrect):
        checks.check_softmax_rows(softmax_unstable)
    with pytest.raises(ExerciseNotDone):
        checks.check_softmax_rows(starter)

    def launch(kernel, scores, lse):             # a "kernel" here is a host function
        kernel(scores, lse)

    def lse_right(scores, lse):
        m = scores.max(1)
        lse[:] = m + np.log(np.exp(scores - m[:, None]).sum(1))

    def lse_naive(scores, lse):
        with np.errstate(over="ignore"):
            lse[:] = np.log(np.exp(scores).sum(1))

    checks.check_row_logsumexp(lse_right, launch)
    with pytest.raises(ExerciseIncorrect):
        checks.check_row_logsumexp(lse_naive, launch)
    with pytest.raises(ExerciseNotDone):
        checks.check_row_logsumexp(starter, launch)


# ---- lesson 17 --------------------------------------------------------------------------------

def test_lesson_17_checks():
    def bag_by_counts(table, tokens):
        counts = np.stack([np.bincount(row[row != 0], minlength=len(table)) for row in tokens])
        return counts @ table / counts.sum(axis=1, keepdims=True)

    def bag_in_order(table, tokens):  # the right mean, but rounding depends on the order
        return np.stack([sum(table[t] for t in row if t) / np.count_nonzero(row)
                         for row in tokens])

    checks.check_bag_of_words(bag_by_counts)
    with pytest.raises(ExerciseIncorrect, match="bit for bit"):
        checks.check_bag_of_words(bag_in_order)
    with pytest.raises(ExerciseIncorrect):  # padding counted in the mean
        checks.check_bag_of_words(lambda table, tokens: table[tokens].mean(axis=1))
    with pytest.raises(ExerciseNotDone):
        checks.check_bag_of_words(starter)

    def loss_right(x, y, s):
        return contrastive_loss_forward(x, y, s)[0]

    def loss_both_ways_over_all(x, y, s):  # text -> image for the negatives too: wrong
        n = len(x)
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        yn = y / np.linalg.norm(y, axis=1, keepdims=True)
        z = np.exp(s) * xn @ yn.T
        i2t = np.mean(np.log(np.exp(z).sum(1)) - np.diag(z[:, :n]))
        t2i = np.mean(np.log(np.exp(z).sum(0)) - np.concatenate([np.diag(z[:, :n]),
                                                                  z[0, n:]]))
        return 0.5 * (i2t + t2i)

    checks.check_hard_negative_loss(loss_right)
    with pytest.raises(ExerciseIncorrect):
        checks.check_hard_negative_loss(loss_both_ways_over_all)
    with pytest.raises(ExerciseNotDone):
        checks.check_hard_negative_loss(starter)

    opposite = {"left": "right", "right": "left", "above": "below", "below": "above",
                "over": "under", "under": "over"}
    checks.check_relation_negative(
        lambda c: " ".join(opposite.get(w, w) for w in c.split(" ")))
    with pytest.raises(ExerciseIncorrect):  # forgets "over" / "under"
        checks.check_relation_negative(lambda c: c.replace("left", "L").replace("right", "left")
                                       .replace("L", "right").replace("above", "A")
                                       .replace("below", "above").replace("A", "below"))
    with pytest.raises(ExerciseNotDone):
        checks.check_relation_negative(ellipsis_body)
