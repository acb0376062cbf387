"""The whole model: gradients, loss, shapes, initialisation, state dicts, bad input."""

import math
import warnings

import numpy as np
import pytest

from miniclip import CONFIGS, CLIPConfig, count_parameters
from miniclip.model.clip import CLIP
from miniclip.model.loss import contrastive_loss_backward, contrastive_loss_forward
from miniclip.model.patch_embed import patch_embed_backward, patch_embed_forward, patchify
from miniclip.nn.embedding import token_embedding_backward, token_embedding_forward
from miniclip.nn.gradcheck import check_gradient, numerical_gradient
from miniclip.nn.normalize import l2_normalize_backward, l2_normalize_forward
from miniclip.nn.pooling import eot_pool_backward, eot_pool_forward

from .gradcheck_helpers import assert_grads_close, record

TINY = CONFIGS["tiny"]


def random_batch(cfg, n, rng, dtype=np.float64):
    R, T, V = cfg.image_resolution, cfg.context_length, cfg.vocab_size
    images = rng.standard_normal((n, 3, R, R)).astype(dtype)
    tokens = np.zeros((n, T), dtype=np.int64)
    for i in range(n):  # start token, a few words, end token (the largest id), padding
        length = rng.integers(1, T - 1)
        tokens[i, 0] = V - 2
        tokens[i, 1:1 + length] = rng.integers(1, V - 2, size=length)
        tokens[i, 1 + length] = V - 1
    return images, tokens


# ---- layers that only the model uses ------------------------------------------------------

def test_patch_embedding_is_the_convolution(rng):
    N, C, P, R = 2, 5, 3, 6
    images = rng.standard_normal((N, 3, R, R))
    w, cls = rng.standard_normal((C, 3, P, P)), rng.standard_normal(C)
    pos = rng.standard_normal(((R // P) ** 2 + 1, C))
    out, cache = patch_embed_forward(images, w, cls, pos)
    # direct convolution with stride P, for comparison
    G = R // P
    conv = np.zeros((N, C, G, G))
    for gy in range(G):
        for gx in range(G):
            patch = images[:, :, gy * P:(gy + 1) * P, gx * P:(gx + 1) * P]
            conv[:, :, gy, gx] = np.einsum("nchw,ochw->no", patch, w)
    np.testing.assert_allclose(out[:, 1:], conv.reshape(N, C, G * G).transpose(0, 2, 1) + pos[1:])
    np.testing.assert_allclose(out[:, 0], np.broadcast_to(cls + pos[0], (N, C)))
    dout = rng.standard_normal(out.shape)
    dimages, dw, dcls, dpos = patch_embed_backward(dout, cache, need_dimages=True)
    f = lambda _: patch_embed_forward(images, w, cls, pos)[0]  # noqa: E731
    assert_grads_close("patch_embed", f, dout, {"images": (images, dimages), "w": (w, dw),
                                                "cls": (cls, dcls), "pos": (pos, dpos)})


def test_patchify_order():
    x = np.arange(2 * 3 * 4 * 4, dtype=float).reshape(2, 3, 4, 4)
    p = patchify(x, 2)
    assert p.shape == (2, 4, 12)
    np.testing.assert_array_equal(p[1, 3], x[1, :, 2:, 2:].reshape(-1))  # bottom-right patch


def test_token_embedding_scatter_adds_repeats(rng):
    W, pos = rng.standard_normal((6, 3)), rng.standard_normal((4, 3))
    tokens = np.array([[1, 1, 1, 5], [5, 0, 1, 1]])
    out, cache = token_embedding_forward(tokens, W, pos)
    dout = rng.standard_normal(out.shape)
    dW, dpos = token_embedding_backward(dout, cache)
    np.testing.assert_allclose(dW[1], dout[0, :3].sum(0) + dout[1, 2:].sum(0))
    assert np.all(dW[[2, 3, 4]] == 0)
    f = lambda _: token_embedding_forward(tokens, W, pos)[0]  # noqa: E731
    assert_grads_close("token_embedding", f, dout, {"W": (W, dW), "pos": (pos, dpos)})


def test_eot_pooling(rng):
    x = rng.standard_normal((3, 5, 2))
    tokens = np.array([[9, 1, 10, 0, 0], [9, 10, 0, 0, 0], [9, 1, 2, 3, 10]])
    out, cache = eot_pool_forward(x, tokens)
    np.testing.assert_array_equal(out, x[[0, 1, 2], [2, 1, 4]])
    dout = rng.standard_normal(out.shape)
    dx = eot_pool_backward(dout, cache)
    assert_grads_close("eot_pool", lambda _: eot_pool_forward(x, tokens)[0], dout, {"x": (x, dx)})


def test_l2_normalize(rng):
    x = rng.standard_normal((4, 3)) * 5
    out, cache = l2_normalize_forward(x)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0)
    dout = rng.standard_normal(out.shape)
    dx = l2_normalize_backward(dout, cache)
    assert_grads_close("l2_normalize", lambda _: l2_normalize_forward(x)[0], dout, {"x": (x, dx)})


# ---- the loss --------------------------------------------------------------------------

@pytest.mark.parametrize("N", [2, 5])
def test_contrastive_loss_gradients(rng, N):
    x, y = rng.standard_normal((N, 4)), rng.standard_normal((N, 4))
    s = np.array(math.log(1 / 0.07))
    loss, cache = contrastive_loss_forward(x, y, s)
    dx, dy, ds = contrastive_loss_backward(cache)
    f = lambda _: contrastive_loss_forward(x, y, s)[0]  # noqa: E731
    assert_grads_close("contrastive_loss", f, np.array(1.0),
                       {"x": (x, dx), "y": (y, dy), "logit_scale": (s, ds)})


def test_contrastive_loss_value_matches_definition(rng):
    x, y, s = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), np.array(1.5)
    loss, _ = contrastive_loss_forward(x, y, s)
    xn, yn = x / np.linalg.norm(x, axis=1, keepdims=True), y / np.linalg.norm(y, axis=1,
                                                                               keepdims=True)
    logits = np.exp(1.5) * xn @ yn.T
    ce = lambda z: np.mean([np.log(np.exp(z[i]).sum()) - z[i, i] for i in range(3)])  # noqa: E731
    assert loss == pytest.approx((ce(logits) + ce(logits.T)) / 2, rel=1e-12)


def test_contrastive_loss_stable_at_scale_100(rng):
    """At the clamp limit exp(logit_scale) = 100, logits reach +-100: exp(100) would overflow
    float32 without the max subtraction. Loss and gradients must stay finite and correct."""
    N = 4
    x = rng.standard_normal((N, 8)).astype(np.float32)
    y = x + 1e-3 * rng.standard_normal((N, 8)).astype(np.float32)  # near-perfect matches
    y[0] = -x[0]  # and one anti-match: logit -100
    s = np.array(np.log(100.0), dtype=np.float32)
    loss, cache = contrastive_loss_forward(x, y, s)
    dx, dy, ds = contrastive_loss_backward(cache)
    assert np.isfinite(loss) and loss > 10  # the anti-matched pair costs about 100+
    assert all(np.isfinite(g).all() for g in (dx, dy, ds))
    loss64, _ = contrastive_loss_forward(x.astype(float), y.astype(float), s.astype(float))
    assert loss == pytest.approx(loss64, rel=1e-4)


def test_batch_of_one_warns_and_is_zero(rng):
    with pytest.warns(UserWarning, match="batch of 1"):
        loss, cache = contrastive_loss_forward(rng.standard_normal((1, 4)),
                                               rng.standard_normal((1, 4)), np.array(2.0))
    assert loss == 0.0
    assert all(np.all(g == 0) for g in contrastive_loss_backward(cache))


# ---- the whole model ---------------------------------------------------------------------

@pytest.mark.parametrize("N", [1, 3])
def test_model_gradients_at_sampled_entries(rng, N):
    """Every parameter tensor, at up to 6 sampled entries, against central differences."""
    cfg = TINY
    model = CLIP(cfg, seed=1, dtype=np.float64)
    images, tokens = random_batch(cfg, N, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # batch of 1 warns by design
        loss, grads = model.loss_and_grads(images, tokens)
        assert set(grads) == set(model.params)
        for name, param in model.params.items():
            assert grads[name].shape == param.shape and grads[name].dtype == np.float64
            idx = rng.choice(param.size, size=min(6, param.size), replace=False)
            num = numerical_gradient(lambda _: model.loss_and_grads(images, tokens)[0], param,
                                     np.array(1.0), indices=idx)
            if N == 1:  # nothing to contrast: the loss is flat
                assert loss == 0.0 and np.all(grads[name] == 0)
                assert np.nanmax(np.abs(num)) < 1e-9
                continue
            err = check_gradient(lambda _: model.loss_and_grads(images, tokens)[0], param,
                                 np.array(1.0), grads[name], indices=idx)
            record("model (sampled)", err)
            assert err <= 1e-6, f"{name}: relative error {err:.2e}"


def test_model_gradient_text_tower_with_gelu(rng):
    cfg = CLIPConfig(**(TINY.to_dict() | {"activation": "gelu"}))
    model = CLIP(cfg, seed=2, dtype=np.float64)
    images, tokens = random_batch(cfg, 3, rng)
    _, grads = model.loss_and_grads(images, tokens)
    for name in ("transformer.resblocks.0.mlp.c_fc.weight", "visual.conv1.weight"):
        idx = rng.choice(model.params[name].size, size=5, replace=False)
        err = check_gradient(lambda _: model.loss_and_grads(images, tokens)[0],
                             model.params[name], np.array(1.0), grads[name], indices=idx)
        assert err <= 1e-6, f"{name}: {err:.2e}"


@pytest.mark.parametrize("name", ["tiny", "small", "toy", "toy-64"])
def test_count_parameters_equals_allocated(name):
    cfg = CONFIGS[name]
    model = CLIP(cfg)
    counts = count_parameters(cfg)
    assert list(counts) == list(model.params)
    assert {k: v.size for k, v in model.params.items()} == counts


def test_forward_shapes_and_logits(rng):
    model = CLIP(TINY, dtype=np.float32)
    images, tokens = random_batch(TINY, 3, rng, np.float32)
    img, txt = model.encode_image(images), model.encode_text(tokens[:2])
    assert img.shape == (3, TINY.embed_dim) and txt.shape == (2, TINY.embed_dim)
    assert img.dtype == txt.dtype == np.float32
    lpi, lpt = model(images, tokens[:2])
    assert lpi.shape == (3, 2) and lpt.shape == (2, 3)
    np.testing.assert_array_equal(lpi, lpt.T)
    cos = (img / np.linalg.norm(img, axis=1, keepdims=True)) @ (
        txt / np.linalg.norm(txt, axis=1, keepdims=True)).T
    np.testing.assert_allclose(lpi, cos / 0.07, rtol=1e-4)


def test_text_features_ignore_tokens_after_end_of_text(rng):
    model = CLIP(TINY, dtype=np.float64)
    _, tokens = random_batch(TINY, 2, rng)
    tokens[:, -1] = 0
    before = model.encode_text(tokens)
    tokens[:, -1] = 3  # after the end token: the causal mask hides it from the pooled position
    np.testing.assert_array_equal(before, model.encode_text(tokens))


@pytest.mark.parametrize("backend_name", ["numpy", "numba"])
def test_text_tower_cut_to_the_longest_caption_changes_nothing(rng, backend_name):
    """text_forward runs on the positions up to the batch's last end-of-text token only: the
    same features and gradients as on the whole context (float64), and zero gradient for the
    positions it skipped."""
    from miniclip import backend
    from miniclip.model.towers import text_backward, text_forward, used_context

    cfg = CONFIGS["toy-tiny"]
    params = CLIP(cfg, seed=3, dtype=np.float64).params
    _, tokens = random_batch(cfg, 5, rng)
    tokens[:, 12:] = 0  # every caption ends before position 12: 20 positions of padding
    tokens[:, 11] = np.where(tokens[:, 1:12].max(axis=1) < cfg.vocab_size - 1, cfg.vocab_size - 1,
                             tokens[:, 11])
    assert used_context(tokens) <= 12 < cfg.context_length
    dfeats = rng.standard_normal((5, cfg.embed_dim))
    with backend.use_backend(backend_name):
        cut, cache_cut = text_forward(params, cfg, tokens)
        whole, cache_whole = text_forward(params, cfg, tokens, trim_padding=False)
        g_cut, g_whole = text_backward(dfeats, cache_cut, cfg), text_backward(dfeats, cache_whole,
                                                                             cfg)
    np.testing.assert_allclose(cut, whole, rtol=0, atol=1e-13)
    assert set(g_cut) == set(g_whole)
    for name in g_whole:
        assert g_cut[name].shape == g_whole[name].shape, name
        np.testing.assert_allclose(g_cut[name], g_whole[name], rtol=0, atol=1e-12, err_msg=name)
    assert np.all(g_cut["positional_embedding"][used_context(tokens):] == 0)


def test_temperature_sets_only_the_starting_logit_scale():
    """CLIP(..., temperature=T) starts logit_scale at ln(1/T) and draws every other weight as
    without it; a temperature that is not a positive number is refused by name."""
    cfg = CONFIGS["tiny"]
    plain, cooled = CLIP(cfg, seed=0), CLIP(cfg, seed=0, temperature=0.03)
    assert float(cooled.params["logit_scale"]) == pytest.approx(math.log(1 / 0.03), rel=1e-7)
    assert float(plain.params["logit_scale"]) == pytest.approx(math.log(1 / 0.07), rel=1e-7)
    assert all(np.array_equal(plain.params[k], cooled.params[k])
               for k in plain.params if k != "logit_scale")
    assert float(CLIP(cfg, seed=0, temperature=np.float32(0.5)).params["logit_scale"]) == \
        pytest.approx(math.log(2), rel=1e-7)
    for bad in (0, -0.1, math.inf, "0.03", True):
        with pytest.raises(ValueError, match="temperature must be a positive number"):
            CLIP(cfg, seed=0, temperature=bad)


def test_seeded_initialisation_matches_openai_recipe():
    cfg = CONFIGS["toy"]
    a, b, c = CLIP(cfg, seed=0), CLIP(cfg, seed=0), CLIP(cfg, seed=1)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["visual.proj"], c.params["visual.proj"])
    p, w, L = a.params, cfg.transformer_width, cfg.transformer_layers
    assert float(p["logit_scale"]) == pytest.approx(math.log(1 / 0.07))
    stds = {
        "token_embedding.weight": 0.02, "positional_embedding": 0.01,
        "transformer.resblocks.0.attn.in_proj_weight": w**-0.5,
        "transformer.resblocks.0.attn.out_proj.weight": w**-0.5 * (2 * L) ** -0.5,
        "transformer.resblocks.0.mlp.c_fc.weight": (2 * w) ** -0.5,
        "transformer.resblocks.0.mlp.c_proj.weight": w**-0.5 * (2 * L) ** -0.5,
        "text_projection": w**-0.5, "visual.proj": cfg.vision_width**-0.5,
        "visual.positional_embedding": cfg.vision_width**-0.5,
    }
    for name, std in stds.items():
        assert p[name].std() == pytest.approx(std, rel=0.1), name
    assert np.all(p["visual.ln_pre.weight"] == 1) and np.all(p["ln_final.bias"] == 0)
    assert np.all(p["visual.transformer.resblocks.0.attn.in_proj_bias"] == 0)
    fan_in = 3 * cfg.vision_patch_size**2
    assert np.abs(p["visual.conv1.weight"]).max() <= fan_in**-0.5


def test_state_dict_round_trip_and_strictness(rng):
    a, b = CLIP(TINY, seed=0), CLIP(TINY, seed=5)
    b.load_state_dict(a.state_dict())
    images, tokens = random_batch(TINY, 2, rng, np.float32)
    np.testing.assert_array_equal(a.encode_image(images), b.encode_image(images))
    sd = a.state_dict()
    sd["visual.proj"][...] = 0  # a copy: the model is untouched
    assert np.any(a.params["visual.proj"] != 0)
    with pytest.raises(KeyError, match="missing keys.*ln_final.bias"):
        b.load_state_dict({k: v for k, v in a.state_dict().items() if k != "ln_final.bias"})
    with pytest.raises(KeyError, match="unexpected keys.*visual.conv1.bias"):
        b.load_state_dict(a.state_dict() | {"visual.conv1.bias": np.zeros(16)})
    with pytest.raises(ValueError, match=r"text_projection.*\(16, 3\).*\(16, 16\)"):
        b.load_state_dict(a.state_dict() | {"text_projection": np.zeros((16, 3))})
    with pytest.raises(TypeError, match="logit_scale.*floating"):
        b.load_state_dict(a.state_dict() | {"logit_scale": np.array(3)})


@pytest.mark.parametrize("images,error,match", [
    (np.zeros((2, 8, 8, 3), np.float32), ValueError, r"images.*\(N, 3, 8, 8\).*\(2, 8, 8, 3\)"),
    (np.zeros((3, 8, 8), np.float32), ValueError, r"images.*\(3, 8, 8\)"),
    (np.zeros((2, 1, 8, 8), np.float32), ValueError, r"images.*\(2, 1, 8, 8\)"),
    (np.zeros((2, 3, 16, 16), np.float32), ValueError, r"images.*\(2, 3, 16, 16\)"),
    (np.zeros((2, 3, 8, 8), np.uint8), TypeError, "images.*float.*uint8"),
    (np.full((2, 3, 8, 8), np.nan, np.float32), ValueError, "images.*NaN"),
    (np.zeros((2, 3, 8, 8), np.float64), TypeError, "images.*float64.*float32"),
    ([[0.0]], TypeError, "images must be a numpy array"),
])
def test_bad_images(images, error, match):
    with pytest.raises(error, match=match):
        CLIP(TINY).encode_image(images)


@pytest.mark.parametrize("tokens,error,match", [
    (np.zeros((2, 5), np.int64), ValueError, r"tokens.*\(N, 7\).*\(2, 5\)"),
    (np.zeros((7,), np.int64), ValueError, r"tokens.*\(7,\)"),
    (np.zeros((2, 7), np.float32), TypeError, "tokens.*integer.*float32"),
    (np.full((2, 7), 50), ValueError, r"tokens.*\[0, 50\).*\[50, 50\]"),
    (np.full((2, 7), -1), ValueError, r"tokens.*\[-1, -1\]"),
])
def test_bad_tokens(tokens, error, match):
    with pytest.raises(error, match=match):
        CLIP(TINY).encode_text(tokens)


def test_loss_needs_pairs(rng):
    images, tokens = random_batch(TINY, 3, rng, np.float32)
    with pytest.raises(ValueError, match="3 images and 2 texts"):
        CLIP(TINY).loss_and_grads(images, tokens[:2])


def test_bad_constructor_arguments():
    with pytest.raises(TypeError, match="dtype"):
        CLIP(TINY, dtype=np.int16)  # float16 and bfloat16 are formats now (test_precision.py)
    with pytest.raises(TypeError, match="cfg"):
        CLIP({"embed_dim": 3})


def test_from_state_dict_builds_the_same_model(rng):
    a = CLIP(TINY, seed=3)
    b = CLIP.from_state_dict(TINY, a.state_dict())
    images, tokens = random_batch(TINY, 2, rng, np.float32)
    np.testing.assert_array_equal(a.encode_text(tokens), b.encode_text(tokens))
    with pytest.raises(KeyError, match="missing keys"):
        CLIP.from_state_dict(TINY, {})
