"""The checks behind the lessons' exercises.

Each ``check_*`` function takes the learner's function(s), runs them on inputs it makes itself
(so it does not depend on what the notebook computed before), compares the answer with miniclip's
own implementation or with central differences, and prints the numbers, e.g.

    dx: relative error 3.1e-11 <= 1e-07: right

It raises ``ExerciseNotDone`` when the learner's code still raises ``NotImplementedError`` (or
returns None, the value of a body that is only ``...``), and ``ExerciseIncorrect`` (an
``AssertionError``) when an answer is wrong. tests/test_lesson_checks.py checks that every check
passes a right answer, fails a wrong one and recognises a starter.

Longer than 400 lines because it holds one check per exercise of every lesson, grouped by lesson;
each check is short and reads on its own.
"""

from __future__ import annotations

import math

import numpy as np

from miniclip.nn.gradcheck import numerical_gradient, relative_error


class ExerciseNotDone(Exception):
    """The starter code is still there: the exercise raised NotImplementedError or returned None."""


class ExerciseIncorrect(AssertionError):
    """The exercise runs, but its answer is wrong; the message says which number and by how much."""


def call(fn, *args, **kwargs):
    """fn(*args, **kwargs), turning a starter's NotImplementedError (or None) into ExerciseNotDone."""
    name = getattr(fn, "__name__", repr(fn))
    try:
        out = fn(*args, **kwargs)
    except NotImplementedError as err:
        raise ExerciseNotDone(f"{name} is not written yet ({err})") from None
    except Exception as err:  # the CUDA simulator re-raises a thread's error as another type
        if "NotImplementedError" in f"{type(err).__name__}: {err}":
            raise ExerciseNotDone(f"{name} is not written yet ({err})") from None
        raise
    if out is None:
        raise ExerciseNotDone(f"{name} returned None: its body is still `...`")
    return out


def call_inplace(fn, *args):
    """Like call, for kernels that write into an output array and return nothing."""
    try:
        fn(*args)
    except NotImplementedError as err:
        raise ExerciseNotDone(f"{getattr(fn, '__name__', fn)} is not written yet ({err})") from None
    except Exception as err:
        if "NotImplementedError" in f"{type(err).__name__}: {err}":
            raise ExerciseNotDone(f"{getattr(fn, '__name__', fn)} is not written yet") from None
        raise


def compare(name, got, want, tol=1e-7):
    """Relative error (lesson 1's, per tensor) of got against want; prints it, raises if > tol."""
    got = np.asarray(got, dtype=np.float64) if not isinstance(got, np.ndarray) else got
    want = np.asarray(want)
    if got.shape != want.shape:
        raise ExerciseIncorrect(f"{name}: shape {got.shape}, expected {want.shape}")
    if not np.all(np.isfinite(got)):
        raise ExerciseIncorrect(f"{name}: contains NaN or inf")
    err = relative_error(got, want)
    if err > tol:
        raise ExerciseIncorrect(f"{name}: relative error {err:.1e} > {tol:.0e}: wrong")
    print(f"{name}: relative error {err:.1e} <= {tol:.0e}: right")
    return err


def gradcheck(name, f, x, dout, analytic, tol=1e-7):
    """The learner's gradient against central differences of sum(f(x) * dout)."""
    analytic = np.asarray(analytic)
    if analytic.shape != x.shape:
        raise ExerciseIncorrect(f"d{name}: shape {analytic.shape}, expected {x.shape}")
    return compare(f"d{name} vs central differences", analytic, numerical_gradient(f, x, dout), tol)


def expect(condition, message):
    if not condition:
        raise ExerciseIncorrect(message)
    print(f"{message.split(':')[0]}: right")


def _rng(seed=0):
    return np.random.default_rng(seed)


def _grads_compare(prefix, got, want, tol):
    missing = sorted(set(want) - set(got))
    if missing:
        raise ExerciseIncorrect(f"{prefix}: no gradient for {missing[:4]}"
                                f"{' ...' if len(missing) > 4 else ''}")
    worst, worst_key = 0.0, None
    for k in want:
        g = np.asarray(got[k])
        if g.shape != want[k].shape:
            raise ExerciseIncorrect(f"{prefix} {k}: shape {g.shape}, expected {want[k].shape}")
        err = relative_error(g, want[k])
        if err > tol:
            raise ExerciseIncorrect(f"{prefix} {k}: relative error {err:.1e} > {tol:.0e}: wrong")
        worst, worst_key = max((worst, worst_key), (err, k), key=lambda t: t[0])
    print(f"{prefix}: {len(want)} gradients, worst relative error {worst:.1e} ({worst_key}) "
          f"<= {tol:.0e}: right")


# ---- lesson 01 -------------------------------------------------------------------------------

def check_linear_backward(linear_backward):
    """linear_backward(dout, (x, w)) -> dx, dw, db for y = x w^T + b, x of any leading shape."""
    from miniclip.nn.linear import linear_backward as mc_backward
    from miniclip.nn.linear import linear_forward
    rng = _rng(1)
    x, w, b = rng.standard_normal((2, 3, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    out, cache = linear_forward(x, w, b)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = call(linear_backward, dout, (x, w))
    for name, got, want in zip(("dx", "dw", "db"), (dx, dw, db), mc_backward(dout, cache)):
        compare(name, got, want, 1e-10)


def check_numerical_gradient(numerical_gradient_fn):
    """numerical_gradient_fn(f, x, dout, h=1e-5) -> central-difference gradient of sum(f(x) dout)."""
    rng = _rng(2)
    x = rng.standard_normal((3, 4))
    dout = rng.standard_normal((3, 4))
    saved = x.copy()
    got = call(numerical_gradient_fn, np.tanh, x, dout)
    if not np.array_equal(x, saved):
        raise ExerciseIncorrect("x: changed by the call; restore each entry after nudging it")
    compare("gradient of tanh vs the exact 1 - tanh^2", got, (1 - np.tanh(x) ** 2) * dout, 1e-8)
    w = rng.standard_normal((2, 4))
    got = call(numerical_gradient_fn, lambda m: m @ w.T, x, rng.standard_normal((3, 2)))
    expect(np.asarray(got).shape == x.shape, f"shape: got {np.asarray(got).shape}, expected {x.shape}")


def check_proj(proj_forward, proj_backward):
    """proj_forward(x, proj) -> (x @ proj, cache); proj_backward(dout, cache) -> (dx, dproj)."""
    rng = _rng(3)
    x, proj = rng.standard_normal((3, 6)), rng.standard_normal((6, 4))
    out, cache = call(proj_forward, x, proj)
    compare("forward", out, x @ proj, 1e-12)
    dout = rng.standard_normal(out.shape)
    dx, dproj = call(proj_backward, dout, cache)
    f = lambda _: proj_forward(x, proj)[0]
    gradcheck("x", f, x, dout, dx)
    gradcheck("proj", f, proj, dout, dproj)


# ---- lesson 02 -------------------------------------------------------------------------------

def check_layernorm_backward(layernorm_backward):
    """layernorm_backward(dout, xhat, rstd, w) -> dx, dw, db (the compact form)."""
    from miniclip.nn.layernorm import layernorm_backward as mc_backward
    from miniclip.nn.layernorm import layernorm_forward
    rng = _rng(4)
    x = rng.standard_normal((2, 3, 6)) * 3 + 1
    w, b = 1 + 0.3 * rng.standard_normal(6), 0.3 * rng.standard_normal(6)
    out, cache = layernorm_forward(x, w, b)
    xhat, rstd, _ = cache
    dout = rng.standard_normal(out.shape)
    dx, dw, db = call(layernorm_backward, dout, xhat, rstd, w)
    for name, got, want in zip(("dx", "dw", "db"), (dx, dw, db), mc_backward(dout, cache)):
        compare(name, got, want, 1e-10)


def check_rmsnorm(rmsnorm_forward, rmsnorm_backward):
    """rmsnorm_forward(x, w) -> (x r w, cache), r = 1/sqrt(mean(x^2) + 1e-5); backward -> dx, dw."""
    rng = _rng(5)
    x, w = rng.standard_normal((2, 3, 6)) * 2, 1 + 0.3 * rng.standard_normal(6)
    out, cache = call(rmsnorm_forward, x, w)
    compare("forward", out, x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5) * w, 1e-12)
    dout = rng.standard_normal(out.shape)
    dx, dw = call(rmsnorm_backward, dout, cache)
    f = lambda _: rmsnorm_forward(x, w)[0]
    gradcheck("x", f, x, dout, dx)
    gradcheck("w", f, w, dout, dw)


# ---- lesson 03 -------------------------------------------------------------------------------

def check_quick_gelu_backward(quick_gelu_backward):
    """quick_gelu_backward(dout, (x, s)) with s = sigmoid(1.702 x) -> dx."""
    from miniclip.nn.activations import quick_gelu_forward
    rng = _rng(6)
    x = rng.standard_normal(30) * 3
    out, cache = quick_gelu_forward(x)
    dout = rng.standard_normal(x.shape)
    dx = call(quick_gelu_backward, dout, cache)
    gradcheck("x", lambda _: quick_gelu_forward(x)[0], x, dout, dx)


def check_mlp_backward(mlp_forward, mlp_backward):
    """mlp_backward(dout, cache) -> dx, grads, for the cache of the lesson's mlp_forward(x, p)."""
    from miniclip.model.mlp import mlp_backward as mc_backward
    from miniclip.model.mlp import mlp_forward as mc_forward
    rng = _rng(7)
    C = 4
    p = {"c_fc.weight": 0.5 * rng.standard_normal((4 * C, C)), "c_fc.bias": rng.standard_normal(4 * C),
         "c_proj.weight": 0.5 * rng.standard_normal((C, 4 * C)), "c_proj.bias": rng.standard_normal(C)}
    x = rng.standard_normal((2, 3, C))
    out, cache = call(mlp_forward, x, p)
    dout = rng.standard_normal(out.shape)
    dx, grads = call(mlp_backward, dout, cache)
    dx_mc, grads_mc = mc_backward(dout, mc_forward(x, p, "quick_gelu")[1])
    compare("dx", dx, dx_mc, 1e-10)
    _grads_compare("parameters", grads, grads_mc, 1e-10)


def check_best_slope(best_slope):
    """best_slope() -> (a, worst): the a in [1.6, 1.8] minimising max_x |sigmoid(a x) - Phi(x)|."""
    a, worst = call(best_slope)
    xs = np.linspace(-6, 6, 2401)
    cdf = 0.5 * (1 + np.array([math.erf(v / math.sqrt(2)) for v in xs]))
    true_worst = np.abs(1 / (1 + np.exp(-a * xs)) - cdf).max()
    expect(abs(a - 1.702) < 0.003, f"slope: {a:.4f} is within 0.003 of 1.702")
    expect(abs(worst - true_worst) < 1e-4,
           f"worst error: you report {worst:.4f}, at a = {a:.3f} it is {true_worst:.4f}")


# ---- lesson 04 -------------------------------------------------------------------------------

def check_attention_backward(attention_backward):
    """attention_backward(dout, (q, k, v, probs)) -> dq, dk, dv; probs already include any mask."""
    from miniclip.nn.attention import attention_backward as mc_backward
    from miniclip.nn.attention import attention_forward
    rng = _rng(8)
    q, k, v = (rng.standard_normal((2, 3, 5, 4)) for _ in range(3))
    for causal in (False, True):
        out, cache = attention_forward(q, k, v, causal=causal)
        dout = rng.standard_normal(out.shape)
        got = call(attention_backward, dout, cache)
        for name, g, want in zip(("dq", "dk", "dv"), got, mc_backward(dout, cache)):
            compare(f"{name} ({'causal' if causal else 'no mask'})", g, want, 1e-10)


def check_causal_mask(causal_mask):
    """causal_mask(T) -> (T, T): 0 on and below the diagonal, -inf above."""
    from miniclip.nn.attention import causal_mask as mc_mask
    for T in (1, 2, 5):
        got = np.asarray(call(causal_mask, T))
        if got.shape != (T, T) or not np.array_equal(got, mc_mask(T)):
            raise ExerciseIncorrect(f"causal_mask({T}): got\n{got}\nexpected\n{mc_mask(T)}")
    print("causal_mask(1), (2), (5): equal to miniclip's: right")


def check_causal_by_prefixes(causal_by_prefixes):
    """causal_by_prefixes(x, p, n_heads) -> (B, T, C) from unmasked attention on each prefix."""
    from miniclip.model.attention import self_attention_forward
    rng = _rng(9)
    C, H = 6, 2
    p = {"in_proj_weight": 0.5 * rng.standard_normal((3 * C, C)),
         "in_proj_bias": 0.5 * rng.standard_normal(3 * C),
         "out_proj.weight": 0.5 * rng.standard_normal((C, C)),
         "out_proj.bias": 0.5 * rng.standard_normal(C)}
    x = rng.standard_normal((2, 7, C))
    compare("output vs causal attention", call(causal_by_prefixes, x, p, H),
            self_attention_forward(x, p, H, causal=True)[0], 1e-10)


# ---- lesson 05 -------------------------------------------------------------------------------

def check_patchify(patchify):
    """patchify(images (N, 3, R, R), P) -> (N, (R/P)^2, 3 P P), row-major patches."""
    from miniclip.model.patch_embed import patchify as mc_patchify
    rng = _rng(10)
    for shape, P in [((2, 3, 8, 8), 4), ((1, 3, 12, 12), 3)]:
        images = rng.standard_normal(shape)
        compare(f"patches of {shape} with P={P}", call(patchify, images, P),
                mc_patchify(images, P), 0.0)


def _small_block(rng, C=8):
    p = {"ln_1.weight": 1 + 0.1 * rng.standard_normal(C), "ln_1.bias": 0.1 * rng.standard_normal(C),
         "attn.in_proj_weight": 0.3 * rng.standard_normal((3 * C, C)),
         "attn.in_proj_bias": 0.1 * rng.standard_normal(3 * C),
         "attn.out_proj.weight": 0.3 * rng.standard_normal((C, C)),
         "attn.out_proj.bias": 0.1 * rng.standard_normal(C),
         "ln_2.weight": 1 + 0.1 * rng.standard_normal(C), "ln_2.bias": 0.1 * rng.standard_normal(C),
         "mlp.c_fc.weight": 0.3 * rng.standard_normal((4 * C, C)),
         "mlp.c_fc.bias": 0.1 * rng.standard_normal(4 * C),
         "mlp.c_proj.weight": 0.3 * rng.standard_normal((C, 4 * C)),
         "mlp.c_proj.bias": 0.1 * rng.standard_normal(C)}
    return p


def check_block_backward(block_backward):
    """block_backward(dout, cache) -> dx, grads, for the cache of miniclip's block_forward."""
    from miniclip.model.block import block_backward as mc_backward
    from miniclip.model.block import block_forward
    rng = _rng(11)
    p = _small_block(rng)
    x = rng.standard_normal((2, 5, 8))
    for causal in (False, True):
        out, cache = block_forward(x, p, 2, causal=causal)
        dout = rng.standard_normal(out.shape)
        dx, grads = call(block_backward, dout, cache)
        dx_mc, grads_mc = mc_backward(dout, cache)
        label = "causal" if causal else "no mask"
        compare(f"dx ({label})", dx, dx_mc, 1e-9)
        _grads_compare(f"parameters ({label})", grads, grads_mc, 1e-9)
    out, cache = block_forward(x, p, 2)
    dout = rng.standard_normal(out.shape)
    dx, _ = block_backward(dout, cache)
    gradcheck("x", lambda _: block_forward(x, p, 2)[0], x, dout, dx)


def _tiny_batch():
    from miniclip import CLIP, CONFIGS
    cfg = CONFIGS["tiny"]
    model = CLIP(cfg, seed=3, dtype=np.float64)
    rng = _rng(12)
    n, V = 3, cfg.vocab_size
    images = rng.standard_normal((n, 3, cfg.image_resolution, cfg.image_resolution))
    tokens = np.zeros((n, cfg.context_length), dtype=np.int64)
    for i, length in enumerate([2, 4, 1]):
        tokens[i, 0], tokens[i, 1 + length] = V - 2, V - 1
        tokens[i, 1:1 + length] = rng.integers(1, V - 2, length)
    return model, cfg, images, tokens


def _check_tower(tower_backward, which):
    from miniclip.model.loss import contrastive_loss_backward, contrastive_loss_forward
    from miniclip.model.towers import text_forward, vision_forward
    model, cfg, images, tokens = _tiny_batch()
    _, grads = model.loss_and_grads(images, tokens)
    img, c_img = vision_forward(model.params, cfg, images)
    # the whole context (miniclip skips the padding after the last end-of-text token, which
    # changes no gradient; the lesson's backward undoes the plain tower over all T positions)
    txt, c_txt = text_forward(model.params, cfg, tokens, trim_padding=False)
    dimg, dtxt, _ = contrastive_loss_backward(
        contrastive_loss_forward(img, txt, model.params["logit_scale"])[1])
    if which == "vision":
        got = call(tower_backward, dimg, c_img, cfg)
        want = {k: v for k, v in grads.items() if k.startswith("visual.")}
    else:
        got = call(tower_backward, dtxt, c_txt, cfg)
        want = {k: v for k, v in grads.items()
                if not k.startswith("visual.") and k not in ("logit_scale", "logit_bias")}
    _grads_compare(f"{which} tower vs model.loss_and_grads", got, want, 1e-9)


def check_vision_backward(vision_backward):
    """vision_backward(dfeats, cache, cfg) -> grads for every 'visual.*' key (cache: vision_forward)."""
    _check_tower(vision_backward, "vision")


# ---- lesson 06 -------------------------------------------------------------------------------

def check_token_embedding_backward(token_embedding_backward):
    """token_embedding_backward(dout, (tokens, V)) -> dW (V, C), dpos (T, C); ids repeat."""
    from miniclip.nn.embedding import token_embedding_forward
    rng = _rng(13)
    W, pos = rng.standard_normal((12, 3)), rng.standard_normal((5, 3))
    ids = np.array([[11, 4, 4, 10, 0], [11, 4, 10, 0, 0]])
    out, cache = token_embedding_forward(ids, W, pos)
    dout = rng.standard_normal(out.shape)
    dW, dpos = call(token_embedding_backward, dout, cache)
    f = lambda _: token_embedding_forward(ids, W, pos)[0]
    gradcheck("W (id 4 occurs 3 times)", f, W, dout, dW)
    gradcheck("pos", f, pos, dout, dpos)


def check_text_backward(text_backward):
    """text_backward(dfeats, cache, cfg) -> grads for every text key (cache: text_forward)."""
    _check_tower(text_backward, "text")


def check_pool_at_id(pool_at_id):
    """pool_at_id(x (N, T, C), tokens (N, T), eot_id) -> (N, C), at the first eot_id of each row."""
    rng = _rng(14)
    tokens = np.array([[1, 40, 41, 2, 0, 0], [1, 2, 0, 0, 0, 0], [1, 7, 9, 9, 3, 2]])
    x = rng.standard_normal((3, 6, 4))
    compare("pooled, end token 2", call(pool_at_id, x, tokens, 2), x[[0, 1, 2], [3, 1, 5]], 0.0)
    tokens2 = np.array([[9, 5, 9, 0], [3, 9, 0, 0]])
    compare("pooled, end token 9 twice in a row", call(pool_at_id, x[:2, :4], tokens2, 9),
            x[[0, 1], [0, 1]], 0.0)


# ---- lesson 07 -------------------------------------------------------------------------------

def _feature_batch(seed=15, N=6, E=8, noise=1.2):
    rng = _rng(seed)
    x = rng.standard_normal((N, E))
    return x, x + noise * rng.standard_normal((N, E))


def check_contrastive_backward(contrastive_backward):
    """contrastive_backward(x, y, s) -> dx, dy, ds of CLIP's loss at logit_scale s."""
    from miniclip.model.loss import contrastive_loss_backward, contrastive_loss_forward
    x, y = _feature_batch()
    s = np.array(math.log(1 / 0.07))
    dx, dy, ds = call(contrastive_backward, x, y, s)
    want = contrastive_loss_backward(contrastive_loss_forward(x, y, s)[1])
    for name, got, w in zip(("dx", "dy", "dlogit_scale"), (dx, dy, np.asarray(ds)), want):
        compare(name, got, np.asarray(w), 1e-9)


def check_siglip(siglip_loss, siglip_backward):
    """siglip_loss(x, y, s, b) -> loss; siglip_backward(x, y, s, b) -> dx, dy, ds, db."""
    from miniclip.model.loss import siglip_loss_backward, siglip_loss_forward
    x, y = _feature_batch(16)
    for s, b in [(math.log(10), -10.0), (math.log(30), -2.0)]:
        s, b = np.array(s), np.array(b)
        loss, cache = siglip_loss_forward(x, y, s, b)
        compare(f"loss (scale {math.exp(s):.0f}, bias {float(b):.0f})",
                np.asarray(call(siglip_loss, x, y, s, b), dtype=np.float64), np.asarray(loss), 1e-10)
        got = call(siglip_backward, x, y, s, b)
        for name, g, w in zip(("dx", "dy", "dlogit_scale", "dlogit_bias"), got,
                              siglip_loss_backward(cache)):
            compare(name, np.asarray(g, dtype=np.float64), np.asarray(w), 1e-9)


def check_best_log_scale(best_log_scale):
    """best_log_scale(x, y) -> the logit_scale s in [0, ln 100] where dL/ds = 0."""
    from miniclip.model.loss import contrastive_loss_backward, contrastive_loss_forward
    x, y = _feature_batch(17, N=8, E=16, noise=2.0)  # noisy: dL/ds < 0 at s = 0, > 0 at ln 100
    s = float(call(best_log_scale, x, y))
    grad = float(contrastive_loss_backward(contrastive_loss_forward(x, y, np.array(s))[1])[2])
    expect(0 <= s <= math.log(100), f"range: s = {s:.4f} lies in [0, ln 100]")
    expect(abs(grad) < 1e-7, f"gradient: dL/ds at s = {s:.4f} is {grad:.1e} (want |.| < 1e-7)")


# ---- lesson 08 -------------------------------------------------------------------------------

def _released():
    from miniclip import CONFIGS
    return {k: CONFIGS[k] for k in ("ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px", "tiny")}


def check_text_tower_count(text_tower_count):
    """text_tower_count(cfg) -> the number of parameters of the text tower (no logit_scale)."""
    from miniclip.model.params import count_parameters
    for name, cfg in _released().items():
        want = sum(n for k, n in count_parameters(cfg).items()
                   if not k.startswith("visual.") and k != "logit_scale")
        got = call(text_tower_count, cfg)
        if got != want:
            raise ExerciseIncorrect(f"{name}: you count {got:,}, the state dict has {want:,}")
        print(f"{name}: {got:,} text parameters: right")


def check_activation_count(activation_count):
    """activation_count(cfg, batch) -> numbers stored for the backward pass by the vision blocks'
    attention probabilities: batch * vision_layers * heads * tokens^2."""
    for name, cfg in _released().items():
        want = 32 * cfg.vision_layers * cfg.vision_heads * cfg.vision_tokens ** 2
        got = call(activation_count, cfg, 32)
        if got != want:
            raise ExerciseIncorrect(f"{name}: you count {got:,}, expected {want:,}")
        print(f"{name}: {got:,} attention probabilities for a batch of 32: right")


# ---- lesson 09 -------------------------------------------------------------------------------

def check_merge_pair(merge_pair):
    """merge_pair(symbols, pair) -> symbols with every occurrence of pair joined, left to right."""
    from miniclip.text.bpe import merge
    cases = [(("a", "a", "a", "b"), ("a", "a")), (("a", "b", "a", "b</w>"), ("a", "b")),
             (("c", "a", "t</w>"), ("a", "t")), (("x",), ("x", "y")), (("a", "a", "a", "a"), ("a", "a"))]
    for symbols, pair in cases:
        got = call(merge_pair, symbols, pair)
        if tuple(got) != merge(symbols, pair):
            raise ExerciseIncorrect(f"merge_pair({symbols}, {pair}) = {got}, "
                                    f"expected {merge(symbols, pair)}")
    print(f"{len(cases)} cases, overlaps and word ends included: right")


def check_train(train):
    """train(word_counts, num_merges) -> merges, ties to the smaller pair."""
    from miniclip.text.bpe import train_merges_naive, word_to_symbols
    words = {word_to_symbols("aaabdaaabac"): 1, word_to_symbols("lower"): 5,
             word_to_symbols("newest"): 6, word_to_symbols("widest"): 3, word_to_symbols("low"): 7}
    for n in (3, 12, 40):
        got, want = call(train, dict(words), n), train_merges_naive(words, n)
        if list(map(tuple, got)) != want:
            raise ExerciseIncorrect(f"train(..., {n}): first difference at merge "
                                    f"{next((i for i, (a, b) in enumerate(zip(got, want)) if tuple(a) != b), min(len(got), len(want)))}"
                                    f" ({len(got)} merges, expected {len(want)})")
    print(f"3, 12 and 40 merges ({len(want)} possible): same as miniclip's trainer: right")


def check_encode_word(encode_word, merges):
    """encode_word(symbols) -> symbols after replaying the merges by rank."""
    from miniclip.text.bpe import bpe_word, word_to_symbols
    ranks = {tuple(p): r for r, p in enumerate(merges)}
    for word in ["hexagon", "the", "triangle", "zebra", "a", "purple"]:
        got, want = call(encode_word, word_to_symbols(word)), bpe_word(word_to_symbols(word), ranks)
        if tuple(got) != want:
            raise ExerciseIncorrect(f"{word}: {got}, expected {want}")
    print("6 words: same symbols as miniclip's bpe_word: right")


def check_decode(decode, tok, texts):
    """decode(ids) -> text, compared with tok.decode."""
    for text in texts:
        ids = tok.encode(text)
        got = call(decode, ids)
        if got != tok.decode(ids):
            raise ExerciseIncorrect(f"decode of {text!r}: {got!r}, expected {tok.decode(ids)!r}")
    print(f"{len(texts)} texts decode as tok.decode does: right")


# ---- lesson 10 -------------------------------------------------------------------------------

def check_tokenize(my_tokenize, texts):
    """my_tokenize(texts, context_length=77, truncate=False) against miniclip's tokenize."""
    from miniclip.text.tokenizer import SimpleTokenizer, tokenize
    tok = SimpleTokenizer()
    for length in (8, 77):
        try:
            got = call(my_tokenize, texts, length, truncate=True)
        except ValueError as err:
            raise ExerciseIncorrect(f"truncate=True, context_length {length}: raised {err}") from None
        if not np.array_equal(got, tokenize(texts, length, truncate=True)):
            raise ExerciseIncorrect(f"context_length {length}, truncate=True: rows differ")
    for text in texts:
        fits = len(tok.encode(text)) + 2 <= 77
        try:
            mine = my_tokenize(text)
        except ValueError:
            mine = None
        if (mine is not None) != fits:
            raise ExerciseIncorrect(f"{text[:30]!r}...: {'a ValueError' if fits else 'no ValueError'}"
                                    f" for a text of {len(tok.encode(text)) + 2} tokens")
        if fits and not np.array_equal(mine, tokenize(text)):
            raise ExerciseIncorrect(f"{text!r}: {mine}, expected {tokenize(text)}")
    print(f"{len(texts)} texts, truncated and not, agree with tokenize: right")


def check_eot_pool(eot_pool):
    """eot_pool(features (N, T, d), tokens (N, T)) -> (N, d) at each row's end-of-text token."""
    from miniclip.nn.pooling import eot_pool_forward
    rng = _rng(18)
    tokens = np.array([[49406, 320, 1125, 49407, 0], [49406, 49407, 0, 0, 0]])
    x = rng.standard_normal((2, 5, 3))
    compare("pooled", call(eot_pool, x, tokens), eot_pool_forward(x, tokens)[0], 0.0)


# ---- lesson 11 -------------------------------------------------------------------------------

def check_matmul_ipj(matmul_ipj):
    """matmul_ipj(a (M, K), bt (K, N), c (M, N)): c = a @ bt, written in place."""
    rng = _rng(19)
    a = rng.standard_normal((13, 7)).astype(np.float32)
    bt = rng.standard_normal((7, 11)).astype(np.float32)
    c = np.full((13, 11), np.nan, np.float32)
    call_inplace(matmul_ipj, a, bt, c)
    compare("c", c, (a.astype(np.float64) @ bt), 1e-6)


def check_softmax_rows(softmax_rows):
    """softmax_rows(x (N, T), out): out = softmax of each row, float32 and float64."""
    rng = _rng(20)
    for dtype, tol in [(np.float64, 1e-13), (np.float32, 1e-6)]:
        x = (rng.standard_normal((37, 29)) * 10).astype(dtype)
        out = np.full_like(x, np.nan)
        call_inplace(softmax_rows, x, out)
        z = np.exp(x.astype(np.float64) - x.max(axis=-1, keepdims=True))
        if out.dtype != dtype:
            raise ExerciseIncorrect(f"out: dtype {out.dtype}, expected {dtype}")
        compare(f"{np.dtype(dtype).name} rows", out, z / z.sum(-1, keepdims=True), tol)


# ---- lesson 12 -------------------------------------------------------------------------------

def check_combine_lse(combine):
    """combine(m1, l1, m2, l2) -> (m, l): two partial softmax sums merged without overflow."""
    rng = _rng(21)
    s = rng.standard_normal((5, 9)) * 3
    s[1] += 1000.0
    first, second = s[:, :4], s[:, 4:]
    m1, m2 = first.max(1), second.max(1)
    l1 = np.exp(first - m1[:, None]).sum(1)
    l2 = np.exp(second - m2[:, None]).sum(1)
    with np.errstate(over="ignore"):
        m, l_ = call(combine, m1, l1, m2, l2)
    peak = s.max(1)
    want = peak + np.log(np.exp(s - peak[:, None]).sum(1))
    compare("m + log l vs the log-sum-exp of the whole row", np.asarray(m) + np.log(l_), want, 1e-12)


def check_row_logsumexp(row_logsumexp, launch):
    """row_logsumexp: a kernel, one thread per row; launch(kernel, scores, lse) runs it."""
    rng = _rng(22)
    scores = rng.standard_normal((10, 7)) * 3
    scores[2] += 1000.0
    lse = np.full(10, np.nan)
    call_inplace(launch, row_logsumexp, scores, lse)
    peak = scores.max(1)
    compare("lse", lse, peak + np.log(np.exp(scores - peak[:, None]).sum(1)), 1e-12)


# ---- lesson 13 -------------------------------------------------------------------------------

def check_batch_indices(my_batch):
    """my_batch(step, n_pairs, batch_size, seed) -> the indices of batch `step`, as batch_indices."""
    from miniclip.train.data import batch_indices
    cases = [(3000, 64, 7, [0, 1, 45, 46, 47, 100]), (10, 3, 0, [0, 2, 3, 4, 9]),
             (64, 64, 5, [0, 1, 2])]
    for n, B, seed, steps in cases:
        for step in steps:
            got = np.asarray(call(my_batch, step, n, B, seed))
            want = batch_indices(step, n, B, seed)
            if got.shape != want.shape or not np.array_equal(got, want):
                raise ExerciseIncorrect(f"batch {step} of {n} pairs, batch size {B}, seed {seed}: "
                                        f"got {got[:6]}..., expected {want[:6]}...")
        print(f"{n} pairs, batch size {B} ({n // B} batches an epoch), steps {steps}: right")


def check_normalise(my_normalise):
    """my_normalise(images uint8 (N, R, R, 3), mean (3,), std (3,)) -> float32 (N, 3, R, R)."""
    from miniclip.pretrained.preprocess import ToyPreprocess
    rng = _rng(31)
    images = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    got = np.asarray(call(my_normalise, images, mean, std))
    want = ToyPreprocess(8, mean, std)(images)
    expect(got.dtype == np.float32, f"dtype: got {got.dtype}, expected float32 (what the model trains in)")
    compare("normalised images vs ToyPreprocess", got.astype(np.float64), want.astype(np.float64), 1e-6)


def _toy_batch64(N=6):
    from miniclip import CLIP, CONFIGS
    cfg = CONFIGS["tiny"]
    params = CLIP(cfg, seed=0, dtype=np.float64).params
    rng = _rng(32)
    images = rng.standard_normal((N, 3, cfg.image_resolution, cfg.image_resolution))
    tokens = rng.integers(1, cfg.vocab_size - 1, (N, cfg.context_length))
    tokens[:, 4] = cfg.vocab_size - 1                   # the end-of-text token: the largest id
    return params, cfg, images, tokens


def check_accumulated_loss_and_grads(accumulated_loss_and_grads):
    """accumulated_loss_and_grads(params, cfg, images, tokens, accum_steps) -> (loss, grads),
    the full batch's loss and gradients computed in accum_steps micro-batches."""
    from miniclip.model.gradcache import loss_and_grads
    params, cfg, images, tokens = _toy_batch64()
    want_loss, want = loss_and_grads(params, cfg, images, tokens)
    for accum in (1, 2, 3):
        loss, grads = call(accumulated_loss_and_grads, params, cfg, images, tokens, accum)
        compare(f"{accum} micro-batches: loss", np.float64(loss), np.float64(want_loss), 1e-10)
        _grads_compare(f"{accum} micro-batches", grads, want, 1e-10)


# ---- lesson 14 -------------------------------------------------------------------------------

def check_class_weights(class_weights):
    """class_weights(prompt_embeddings (C, P, E), not normalised) -> (C, E): each prompt scaled to
    unit length, averaged over P, the average scaled to unit length."""
    rng = _rng(41)
    emb = rng.standard_normal((5, 3, 8)) * rng.uniform(0.5, 4, (5, 3, 1))   # lengths differ
    got = np.asarray(call(class_weights, emb))
    unit = emb / np.linalg.norm(emb, axis=-1, keepdims=True)
    mean = unit.mean(axis=1)
    compare("class weights", got, mean / np.linalg.norm(mean, axis=-1, keepdims=True), 1e-10)


def check_topk_accuracy(my_topk):
    """my_topk(scores (N, C), labels (N,), k) -> share of rows whose label is among the k best,
    a tie with the true class counting against it."""
    from miniclip.train.metrics import topk_accuracy
    rng = _rng(42)
    scores = rng.standard_normal((40, 7))
    scores[:5, :] = 0.0                                  # ties: the true class is not first
    labels = rng.integers(0, 7, 40)
    for k in (1, 3, 5):
        got = call(my_topk, scores, labels, k)
        want = topk_accuracy(scores, labels, ks=(k,))[k]
        compare(f"top-{k} accuracy", np.float64(got), np.float64(want), 1e-12)


def check_retrieval(my_retrieval):
    """my_retrieval(sim (N, N)) -> {"r1", "r5", "median"} for image -> text retrieval."""
    from miniclip.train.metrics import retrieval_metrics
    rng = _rng(43)
    sim = rng.standard_normal((30, 30)) + 2 * np.eye(30)
    for i in range(0, 30, 3):                            # ties count against the model
        sim[i, (i + 7) % 30] = sim[i, i]
    got = call(my_retrieval, sim)
    want = retrieval_metrics(sim, "i2t")
    for key, ref in (("r1", "i2t_r1"), ("r5", "i2t_r5"), ("median", "i2t_median_rank")):
        if key not in got:
            raise ExerciseIncorrect(f"{key}: missing from the returned dict {sorted(got)}")
        compare(key, np.float64(got[key]), np.float64(want[ref]), 1e-12)


# ---- lesson 15 -------------------------------------------------------------------------------

def check_infer_config(my_infer_config):
    """my_infer_config(state) -> the CLIPConfig of the four released models, from shapes alone."""
    from miniclip.model.config import CONFIGS
    from miniclip.model.params import parameter_shapes
    for name in ["ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"]:
        fake = {k: np.broadcast_to(np.float16(0), s)
                for k, s in parameter_shapes(CONFIGS[name]).items()}
        got = call(my_infer_config, fake)
        if got != CONFIGS[name]:
            diff = [f"{f}={getattr(got, f, None)!r} (expected {getattr(CONFIGS[name], f)!r})"
                    for f in CONFIGS[name].__dataclass_fields__
                    if getattr(got, f, None) != getattr(CONFIGS[name], f)]
            raise ExerciseIncorrect(f"{name}: {'; '.join(diff[:4])}")
        print(f"{name}: every field recovered from the shapes: right")


def check_openai_block_to_hf(my_openai_block_to_hf):
    """my_openai_block_to_hf(params, prefix_openai, prefix_hf) -> the HF tensors of that block."""
    import dataclasses

    from miniclip import CLIP, CONFIGS
    from miniclip.pretrained import hf
    cfg = dataclasses.replace(CONFIGS["tiny"], vision_layers=2, transformer_layers=2)
    params = CLIP(cfg, seed=0).params
    for openai_prefix, hf_prefix in [("transformer.resblocks.1", "text_model.encoder.layers.1"),
                                     ("visual.transformer.resblocks.0",
                                      "vision_model.encoder.layers.0")]:
        got = call(my_openai_block_to_hf, params, openai_prefix, hf_prefix)
        want = {k: v for k, v in hf.openai_to_hf(params).items() if k.startswith(hf_prefix + ".")}
        if sorted(got) != sorted(want):
            missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
            raise ExerciseIncorrect(f"{hf_prefix}: names differ; missing {missing[:3]}, "
                                    f"unexpected {extra[:3]}")
        for k in want:
            if np.shape(got[k]) != want[k].shape or not np.array_equal(got[k], want[k]):
                raise ExerciseIncorrect(f"{k}: values differ from openai_to_hf's")
        print(f"{openai_prefix} -> {len(want)} HF tensors, every one equal: right")


def check_resize_and_crop(my_resize_and_crop):
    """my_resize_and_crop(width, height, R) -> ((new_width, new_height), (left, top, right,
    bottom)): the shorter side resized to R (long side rounded down), then the centre R x R box."""
    from miniclip.pretrained.preprocess import center_crop_box, resized_size
    for w, h, R in [(640, 480, 224), (100, 300, 224), (300, 200, 64), (227, 225, 224),
                    (224, 224, 224), (5, 1000, 7)]:
        size, box = call(my_resize_and_crop, w, h, R)
        want_size = resized_size(w, h, R)
        want_box = center_crop_box(*want_size, R)
        if tuple(size) != want_size or tuple(box) != want_box:
            raise ExerciseIncorrect(f"{w} x {h} to {R}: got size {tuple(size)} box {tuple(box)}, "
                                    f"expected {want_size} and {want_box}")
    print("6 image sizes: resize and crop box as OpenAI's preprocessing: right")


# ---- lesson 16 -------------------------------------------------------------------------------

def check_reduce_scatter(my_reduce_scatter):
    """my_reduce_scatter(partials: W arrays (N, E), sizes) -> W arrays (n_r, E): the sum over
    workers, cut into the workers' rows."""
    rng = _rng(51)
    for sizes in ([4, 3, 3], [1], [2, 5]):
        N = sum(sizes)
        partials = [rng.standard_normal((N, 3)) for _ in sizes]
        got = call(my_reduce_scatter, partials, sizes)
        if len(got) != len(sizes):
            raise ExerciseIncorrect(f"{len(sizes)} workers: got {len(got)} arrays")
        total, start = np.sum(partials, axis=0), 0
        for r, n in enumerate(sizes):
            compare(f"sizes {sizes}, worker {r}", np.asarray(got[r]), total[start:start + n], 1e-12)
            start += n


def _siglip_setup():
    from miniclip.model.gradcache import micro_batches
    rng = _rng(52)
    N, D, E, W = 10, 6, 4, 3
    U, V = rng.standard_normal((N, D)), rng.standard_normal((N, D))
    A, B = 0.5 * rng.standard_normal((D, E)), 0.5 * rng.standard_normal((D, E))
    params = {"logit_scale": np.array(np.log(10.0)), "logit_bias": np.array(-10.0)}
    return U, V, A, B, micro_batches(N, W), params


def check_siglip_variant_b(siglip_variant_B, siglip_exact):
    """siglip_variant_B(U, V, A, B, shares, params) -> (dA, dB) averaged over the workers, each
    from its local SigLIP loss with no gradient through the gather; siglip_exact(U, V, A, B,
    params) -> the one-process (dA, dB)."""
    from miniclip.model.local_loss import local_loss_and_grads
    from miniclip.model.loss import batch_loss_backward, batch_loss_forward
    U, V, A, B, shares, params = _siglip_setup()
    X, Y = U @ A, V @ B
    _, cache = batch_loss_forward("siglip", X, Y, params)
    dX, dY, _ = batch_loss_backward(cache)
    exact = call(siglip_exact, U, V, A, B, params)
    compare("exact dA", np.asarray(exact[0]), U.T @ dX, 1e-10)
    compare("exact dB", np.asarray(exact[1]), V.T @ dY, 1e-10)
    parts = [local_loss_and_grads("siglip", X, Y, s, params) for s in shares]
    wrong_dA = np.mean([U[s].T @ p[1][s] for s, p in zip(shares, parts, strict=True)], axis=0)
    wrong_dB = np.mean([V[s].T @ p[2][s] for s, p in zip(shares, parts, strict=True)], axis=0)
    got = call(siglip_variant_B, U, V, A, B, shares, params)
    compare("variant B dA", np.asarray(got[0]), wrong_dA, 1e-10)
    compare("variant B dB", np.asarray(got[1]), wrong_dB, 1e-10)


def check_best_factor(best_factor):
    """best_factor(wrong, exact) -> (c, max|c wrong - exact| / max|exact|), c by least squares."""
    rng = _rng(53)
    exact = rng.standard_normal((4, 3))
    c, left = call(best_factor, exact / 3, exact)
    compare("c for wrong = exact / 3", np.float64(c), np.float64(3.0), 1e-12)
    expect(abs(left) < 1e-12, f"left over after the factor: {left:.1e}, expected 0")
    wrong = exact + 0.5 * rng.standard_normal((4, 3))
    c, left = call(best_factor, wrong, exact)
    want_c = (wrong * exact).sum() / (wrong * wrong).sum()
    compare("c for a noisy copy", np.float64(c), np.float64(want_c), 1e-12)
    compare("what is left", np.float64(left),
            np.float64(np.abs(want_c * wrong - exact).max() / np.abs(exact).max()), 1e-12)


# ---- lesson 18 -------------------------------------------------------------------------------

def check_round_to_bfloat16(my_round_to_bfloat16):
    """my_round_to_bfloat16(x float32) -> uint16 bit patterns of bfloat16, nearest, ties to even."""
    from miniclip.kernels.dtypes import bfloat16
    rng = _rng(61)
    x = np.concatenate([rng.standard_normal(10_000).astype(np.float32),
                        np.array([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 3e38, 0.0, -0.0],
                                 np.float32)])                      # ties, large, zeros
    got = np.asarray(call(my_round_to_bfloat16, x))
    want = x.astype(bfloat16).view(np.uint16)
    expect(got.dtype == np.uint16, f"dtype: got {got.dtype}, expected uint16 bit patterns")
    wrong = np.flatnonzero(got != want)
    if wrong.size:
        i = wrong[0]
        raise ExerciseIncorrect(f"{wrong.size} of {x.size} wrong, e.g. {x[i]!r}: got "
                                f"{int(got[i]):#06x}, expected {int(want[i]):#06x}")
    print(f"{x.size} numbers, ties included: equal to ml_dtypes' rounding: right")


def check_scaler_update(my_scaler_update):
    """my_scaler_update(scale, good_steps, finite, growth_interval) -> (take_step, scale, good)."""
    from miniclip.train.precision import LossScaler
    ref = LossScaler(scale=2.0**16, growth_interval=3)
    scale, good = 2.0**16, 0
    for i, finite in enumerate([True, False, True, True, True, True, False, False, True]):
        take, scale, good = call(my_scaler_update, scale, good, finite, growth_interval=3)
        want = ref.update(finite)
        if (bool(take), scale, good) != (want, ref.scale, ref.good_steps):
            raise ExerciseIncorrect(f"step {i} ({'finite' if finite else 'inf'}): got "
                                    f"({take}, {scale}, {good}), expected "
                                    f"({want}, {ref.scale}, {ref.good_steps})")
    print(f"9 steps, growth interval 3: agrees with LossScaler, final scale 2^{math.log2(scale):.0f}: right")


# ---- lesson 19 -------------------------------------------------------------------------------

def check_adamw_update(adamw_update):
    """adamw_update(p, g, m, v, t, lr, decay) -> (p, m, v) after AdamW's step t (1-based), with
    CLIP's betas (0.9, 0.98), eps 1e-6 and weight decay 0.2 where decay is True."""
    from miniclip.train.optim import AdamW
    rng = _rng(23)
    params = {"w": rng.standard_normal((3, 4)), "ln.bias": rng.standard_normal(4)}
    theirs = {k: v.copy() for k, v in params.items()}
    opt = AdamW(theirs, lr=0.01)
    mine = {k: (v.copy(), np.zeros_like(v), np.zeros_like(v)) for k, v in params.items()}
    for t in range(1, 6):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        lr = 0.01 * t
        opt.step(grads, lr=lr)
        for k in params:
            p, m, v = mine[k]
            mine[k] = call(adamw_update, p, grads[k], m, v, t, lr, opt.decay[k])
    for k in params:
        compare(f"{k} after 5 steps ({'decayed' if opt.decay[k] else 'not decayed'})",
                mine[k][0], theirs[k], 1e-12)
        compare(f"{k}: first moment m", mine[k][1], opt.m[k], 1e-12)
        compare(f"{k}: second moment v", mine[k][2], opt.v[k], 1e-12)


def check_decays(decays):
    """decays(name, param) -> bool, for every parameter of CLIP 'tiny' and of a SigLIP model."""
    import dataclasses

    from miniclip import CLIP, CONFIGS
    from miniclip.train.optim import decays as mc_decays
    wrong = []
    names = 0
    for cfg in (CONFIGS["tiny"], dataclasses.replace(CONFIGS["tiny"], loss="siglip")):
        for k, p in CLIP(cfg, seed=0).params.items():
            names += 1
            if bool(call(decays, k, p)) != mc_decays(k, p):
                wrong.append(f"{k} {p.shape}: you say {bool(decays(k, p))}")
    if wrong:
        raise ExerciseIncorrect(f"{len(wrong)} tensors wrong, e.g. " + "; ".join(wrong[:4]))
    print(f"{names} tensors: decay where miniclip decays: right")


def check_cosine_lr(cosine_lr):
    """cosine_lr(step, total_steps, base_lr, warmup_steps, min_lr) -> learning rate."""
    from miniclip.train.optim import cosine_lr as mc_cosine
    for total, warmup, base, low in [(100, 10, 5e-4, 0.0), (50, 0, 1.0, 0.1), (30, 29, 2.0, 0.0)]:
        got = np.array([call(cosine_lr, s, total, base, warmup, low) for s in range(total + 5)],
                       dtype=np.float64)
        want = np.array([mc_cosine(s, total, base, warmup, low) for s in range(total + 5)])
        compare(f"{total} steps, warmup {warmup}, min_lr {low}", got, want, 1e-12)


# ---- lesson 20 (the capstone) ------------------------------------------------------------------

def _two_layer_model(seed=0):
    import dataclasses

    from miniclip import CLIP, CONFIGS
    cfg = dataclasses.replace(CONFIGS["tiny"], vision_layers=2, transformer_layers=2)
    params = CLIP(cfg, seed=seed, dtype=np.float64).params
    rng = _rng(71)
    images = rng.standard_normal((5, 3, cfg.image_resolution, cfg.image_resolution))
    tokens = rng.integers(1, cfg.vocab_size - 1, (5, cfg.context_length))
    for n, L in enumerate([1, 3, 5, 2, 6]):          # ends of text at different places
        tokens[n, L] = cfg.vocab_size - 1             # the largest id
        tokens[n, L + 1:] = 0
    return params, cfg, images, tokens


def check_own_towers(vision_forward, vision_backward, text_forward, text_backward):
    """The capstone's towers, forward (given) and backward (the learner's), against miniclip's
    towers on a two-layer float64 model: features, and every gradient for a random dfeats."""
    from miniclip.model import towers
    params, cfg, images, tokens = _two_layer_model()
    rng = _rng(72)
    for name, fwd, bwd, mc_fwd, mc_bwd, inputs in [
            ("vision", vision_forward, vision_backward, towers.vision_forward, towers.vision_backward,
             images),
            ("text", text_forward, text_backward, towers.text_forward, towers.text_backward, tokens)]:
        feats, cache = call(fwd, params, cfg, inputs)
        want, want_cache = mc_fwd(params, cfg, inputs)
        compare(f"{name} features", feats, want, 1e-12)
        dfeats = rng.standard_normal(want.shape)
        _grads_compare(f"{name} tower", call(bwd, dfeats, cache, cfg),
                       mc_bwd(dfeats, want_cache, cfg), 1e-10)


def check_own_loss_and_grads(my_loss_and_grads):
    """my_loss_and_grads(params, cfg, images, tokens) -> (loss, grads) against miniclip's
    loss_and_grads on a two-layer float64 model, every tensor to 1e-10."""
    from miniclip.model.gradcache import loss_and_grads
    params, cfg, images, tokens = _two_layer_model()
    params["logit_scale"] = np.array(np.log(20.0))    # not the initial value: its gradient counts
    loss, grads = call(my_loss_and_grads, params, cfg, images, tokens)
    want_loss, want = loss_and_grads(params, cfg, images, tokens)
    compare("loss", np.float64(loss), np.float64(want_loss), 1e-10)
    _grads_compare("the whole model", grads, want, 1e-10)


# ---- lesson 17 -------------------------------------------------------------------------------


def check_bag_of_words(bag_of_words_embed):
    """bag_of_words_embed(token_embedding (V, E), tokens (N, T)) -> (N, E): the mean embedding
    of the non-padding tokens (id 0 pads), the same vector bit for bit for any word order."""
    rng = _rng(17)
    V, E, T = 40, 6, 9
    table = rng.standard_normal((V, E))
    rows = []
    for n in (3, 5, 8):  # a caption of n tokens and two shuffles of it, padded with zeros
        words = rng.integers(1, V, size=n)
        for order in (words, rng.permutation(words), words[::-1]):
            rows.append(np.concatenate([order, np.zeros(T - n, dtype=np.int64)]))
    tokens = np.stack(rows)  # (9, T)
    got = np.asarray(call(bag_of_words_embed, table, tokens), dtype=np.float64)
    want = np.stack([table[row[row != 0]].mean(axis=0) for row in tokens])
    compare("mean embedding of the non-padding tokens", got, want, 1e-12)
    same = all(np.array_equal(got[k], got[k + j]) for k in range(0, 9, 3) for j in (1, 2))
    expect(same, "shuffled captions: identical embeddings, bit for bit: "
                 "they differ in the last bits; sum through token counts, not in caption order")


def check_hard_negative_loss(hard_negative_loss):
    """hard_negative_loss(image_features (N, E), text_features (N + K, E), logit_scale) -> the
    loss with K extra texts; compared with miniclip's for K = 0, 1, 3."""
    from miniclip.model.loss import contrastive_loss_forward

    rng = _rng(18)
    N, E = 4, 8
    x, y = rng.standard_normal((N, E)), rng.standard_normal((N + 3, E))
    s = np.array(math.log(1 / 0.07))
    for k in (0, 1, 3):
        got = float(call(hard_negative_loss, x, y[:N + k], s))
        want = contrastive_loss_forward(x, y[:N + k], s)[0]
        compare(f"loss with K = {k} extra texts", np.array(got), np.array(want), 1e-10)


def check_relation_negative(relation_negative):
    """relation_negative(caption) -> the caption with every relation word turned round."""
    cases = {
        "a red circle to the left of a blue square": "a red circle to the right of a blue square",
        "a green star to the right of a white cross": "a green star to the left of a white cross",
        "a pink hexagon above an orange diamond": "a pink hexagon below an orange diamond",
        "the yellow triangle is below the purple disc": "the yellow triangle is above the purple disc",
        "a big blue box over a tiny red star.": "a big blue box under a tiny red star.",
        "a white hex under a green plus sign": "a white hex over a green plus sign",
        "a red circle and a blue square": "a red circle and a blue square",
    }
    for true, false in cases.items():
        got = call(relation_negative, true)
        expect(got == false, f"{true!r}: got {got!r}, expected {false!r}")
