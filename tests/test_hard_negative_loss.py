"""The contrastive loss with extra texts (hard negatives): more texts than images. Image -> text
softmax over all N + K texts, text -> image only for the N true captions; float64 gradient checks
of the loss and of the whole model through gradcache."""

import math

import numpy as np
import pytest

from miniclip.model.clip import CLIP
from miniclip.model.config import CONFIGS, CLIPConfig
from miniclip.model.gradcache import loss_and_grads
from miniclip.model.loss import (
    batch_loss_forward,
    contrastive_loss_backward,
    contrastive_loss_forward,
)
from miniclip.nn.gradcheck import check_gradient

from .gradcheck_helpers import assert_grads_close, record

TINY = CONFIGS["tiny"]


@pytest.mark.parametrize("N, K", [(2, 1), (3, 3), (5, 2), (4, 0)])
def test_loss_with_extra_texts_gradients(rng, N, K):
    x, y = rng.standard_normal((N, 6)), rng.standard_normal((N + K, 6))
    s = np.array(math.log(1 / 0.07))
    _, cache = contrastive_loss_forward(x, y, s)
    dx, dy, ds = contrastive_loss_backward(cache)
    assert dx.shape == x.shape and dy.shape == y.shape and ds.shape == ()
    f = lambda _: contrastive_loss_forward(x, y, s)[0]  # noqa: E731
    assert_grads_close("contrastive_loss (hard negatives)", f, np.array(1.0),
                       {"x": (x, dx), "y": (y, dy), "logit_scale": (s, ds)})


def test_loss_with_extra_texts_matches_definition(rng):
    N, K = 3, 2
    x, y, s = rng.standard_normal((N, 4)), rng.standard_normal((N + K, 4)), np.array(1.2)
    loss, _ = contrastive_loss_forward(x, y, s)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    yn = y / np.linalg.norm(y, axis=1, keepdims=True)
    logits = np.exp(1.2) * xn @ yn.T  # (N, N + K)
    i2t = np.mean([np.log(np.exp(logits[i]).sum()) - logits[i, i] for i in range(N)])
    t2i = np.mean([np.log(np.exp(logits[:, j]).sum()) - logits[j, j] for j in range(N)])
    assert loss == pytest.approx((i2t + t2i) / 2, rel=1e-12)
    # a hard negative that looks like the true caption raises the loss; one far away barely does
    without, _ = contrastive_loss_forward(x, y[:N], s)
    close = np.concatenate([y[:N], y[:1] + 1e-3])
    far = np.concatenate([y[:N], -x[:1]])
    assert contrastive_loss_forward(x, close, s)[0] > without + 0.1
    assert contrastive_loss_forward(x, far, s)[0] < contrastive_loss_forward(x, close, s)[0]


def test_text_to_image_softmax_covers_only_the_true_captions(rng):
    """The image -> text softmax runs over N + K texts; the text -> image one over N images, for
    the N true captions only (an extra text has no image to pick)."""
    N, K = 4, 2
    x, y, s = rng.standard_normal((N, 5)), rng.standard_normal((N + K, 5)), np.array(0.5)
    _, cache = contrastive_loss_forward(x, y, s)
    logits, logp_i2t, logp_t2i = cache[5], cache[6], cache[7]
    assert logits.shape == logp_i2t.shape == (N, N + K) and logp_t2i.shape == (N, N)
    np.testing.assert_allclose(np.exp(logp_i2t).sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.exp(logp_t2i).sum(axis=1), 1.0, rtol=1e-12)
    expected = logits[:, :N].T - np.log(np.exp(logits[:, :N].T).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(logp_t2i, expected, rtol=1e-12)


def test_bad_shapes_and_siglip_with_extras(rng):
    with pytest.raises(ValueError, match=r"\(N \+ K, E\)"):
        contrastive_loss_forward(rng.standard_normal((3, 4)), rng.standard_normal((2, 4)), 1.0)
    with pytest.raises(ValueError, match=r"\(N \+ K, E\)"):
        contrastive_loss_forward(rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), 1.0)
    params = {"logit_scale": np.array(1.0), "logit_bias": np.array(-10.0)}
    with pytest.raises(ValueError, match="clip' loss only"):
        batch_loss_forward("siglip", rng.standard_normal((3, 4)), rng.standard_normal((4, 4)),
                           params)


def _tokens(cfg, n, rng):
    T, V = cfg.context_length, cfg.vocab_size
    tokens = np.zeros((n, T), dtype=np.int64)
    for i in range(n):
        length = rng.integers(1, T - 1)
        tokens[i, 0] = V - 2
        tokens[i, 1:1 + length] = rng.integers(1, V - 2, size=length)
        tokens[i, 1 + length] = V - 1
    return tokens


def test_model_gradients_with_extra_texts(rng):
    """Whole model, float64: sampled entries of a few tensors of each tower against central
    differences, with 2 hard-negative texts after 3 captions; relative error <= 1e-6."""
    cfg = TINY
    model = CLIP(cfg, seed=4, dtype=np.float64)
    R = cfg.image_resolution
    images = rng.standard_normal((3, 3, R, R))
    tokens, extra = _tokens(cfg, 3, rng), _tokens(cfg, 2, rng)
    loss, grads = loss_and_grads(model.params, cfg, images, tokens, extra_tokens=extra)
    without, _ = loss_and_grads(model.params, cfg, images, tokens)
    assert loss != without
    f = lambda _: loss_and_grads(model.params, cfg, images, tokens, extra_tokens=extra)[0]  # noqa
    for name in ("token_embedding.weight", "transformer.resblocks.0.attn.in_proj_weight",
                 "text_projection", "visual.proj", "visual.conv1.weight", "logit_scale"):
        param = model.params[name]
        idx = rng.choice(param.size, size=min(6, param.size), replace=False)
        err = check_gradient(f, param, np.array(1.0), grads[name], indices=idx)
        record("model with hard negatives (sampled)", err)
        assert err <= 1e-6, f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("accum", [2, 3])
def test_accumulation_with_extra_texts_equals_one_batch(rng, accum):
    cfg = CLIPConfig(**TINY.to_dict())
    params = CLIP(cfg, seed=5, dtype=np.float64).params
    R = cfg.image_resolution
    images = rng.standard_normal((5, 3, R, R))
    tokens, extra = _tokens(cfg, 5, rng), _tokens(cfg, 3, rng)
    big, g1 = loss_and_grads(params, cfg, images, tokens, 1, extra_tokens=extra)
    small, g2 = loss_and_grads(params, cfg, images, tokens, accum, extra_tokens=extra)
    assert small == pytest.approx(big, rel=1e-12)
    for k in g1:
        np.testing.assert_allclose(g2[k], g1[k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_extra_tokens_must_match_the_context(rng):
    cfg = TINY
    params = CLIP(cfg, seed=0, dtype=np.float64).params
    R = cfg.image_resolution
    with pytest.raises(ValueError, match="extra_tokens"):
        loss_and_grads(params, cfg, rng.standard_normal((2, 3, R, R)), _tokens(cfg, 2, rng),
                       extra_tokens=np.zeros((2, cfg.context_length + 1), np.int64))
