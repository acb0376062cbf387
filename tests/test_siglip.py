"""SigLIP's sigmoid loss: value, gradients (float64 central differences), the model option."""

import math

import numpy as np
import pytest

from miniclip.model.clip import CLIP
from miniclip.model.config import CONFIGS, CLIPConfig
from miniclip.model.loss import (
    batch_loss_backward,
    batch_loss_forward,
    siglip_loss_backward,
    siglip_loss_forward,
)
from miniclip.model.params import count_parameters
from miniclip.nn.gradcheck import numerical_gradient, relative_error

from .gradcheck_helpers import assert_grads_close

SIGLIP_TINY = CLIPConfig(**{**CONFIGS["tiny"].to_dict(), "loss": "siglip"})


def test_siglip_loss_value_matches_definition(rng):
    x, y = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    t, b = np.array(1.3), np.array(-2.0)
    loss, _ = siglip_loss_forward(x, y, t, b)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    yn = y / np.linalg.norm(y, axis=1, keepdims=True)
    expected = 0.0
    for i in range(5):
        for j in range(5):
            z = 1.0 if i == j else -1.0
            logit = math.exp(1.3) * xn[i] @ yn[j] - 2.0
            expected += math.log(1 + math.exp(-z * logit))  # -log sigmoid(z * logit)
    assert loss == pytest.approx(expected / 5, rel=1e-12)


@pytest.mark.parametrize("N", [1, 2, 5])
def test_siglip_loss_gradients(rng, N):
    x, y = rng.standard_normal((N, 6)), rng.standard_normal((N, 6))
    t, b = np.array(0.7), np.array(-1.5)
    _, cache = siglip_loss_forward(x, y, t, b)
    dx, dy, dt, db = siglip_loss_backward(cache)
    f = lambda _: siglip_loss_forward(x, y, t, b)[0]  # noqa: E731
    assert_grads_close("siglip_loss", f, np.array(1.0),
                       {"x": (x, dx), "y": (y, dy), "logit_scale": (t, dt), "logit_bias": (b, db)})


def test_siglip_loss_stable_for_large_logits(rng):
    """At scale 100 and a large bias, logits reach +-150: exp would overflow without care."""
    x = rng.standard_normal((4, 3)).astype(np.float32)
    y = -x  # every matching pair is anti-aligned: a huge loss, but finite
    loss, cache = siglip_loss_forward(x, y, np.float32(math.log(100)), np.float32(-50))
    grads = siglip_loss_backward(cache)
    assert np.isfinite(loss) and loss > 100
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_siglip_init_and_parameter():
    model = CLIP(SIGLIP_TINY, seed=0, dtype=np.float64)
    assert float(model.params["logit_scale"]) == pytest.approx(math.log(10))
    assert float(model.params["logit_bias"]) == -10.0
    assert list(count_parameters(SIGLIP_TINY)) == list(model.params)
    assert sum(count_parameters(SIGLIP_TINY).values()) == sum(
        count_parameters(CONFIGS["tiny"]).values()) + 1
    assert "logit_bias" not in CLIP(CONFIGS["tiny"]).params  # OpenAI's configs are unchanged


def test_bad_loss_name_is_rejected():
    with pytest.raises(ValueError, match="loss must be one of"):
        CLIPConfig(**{**CONFIGS["tiny"].to_dict(), "loss": "hinge"})
    with pytest.raises(ValueError, match="loss must be one of"):
        batch_loss_forward("hinge", np.ones((2, 2)), np.ones((2, 2)), {"logit_scale": 0.0})


def test_batch_loss_dispatch_returns_bias_gradient(rng):
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    params = {"logit_scale": np.array(1.0), "logit_bias": np.array(-3.0)}
    loss, cache = batch_loss_forward("siglip", x, y, params)
    assert loss == siglip_loss_forward(x, y, params["logit_scale"], params["logit_bias"])[0]
    _, _, grads = batch_loss_backward(cache)
    assert set(grads) == {"logit_scale", "logit_bias"}
    _, cache = batch_loss_forward("clip", x, y, params)
    assert set(batch_loss_backward(cache)[2]) == {"logit_scale"}


def test_siglip_model_gradients_whole_model(rng):
    """Every parameter of a SigLIP model, logit_bias included, against central differences."""
    cfg = SIGLIP_TINY
    model = CLIP(cfg, seed=1, dtype=np.float64)
    images = rng.standard_normal((3, 3, cfg.image_resolution, cfg.image_resolution))
    tokens = rng.integers(1, cfg.vocab_size - 1, size=(3, cfg.context_length))
    tokens[:, 4] = cfg.vocab_size - 1
    model.params["logit_bias"][...] = -1.0  # where the gradient is not tiny
    loss, grads = model.loss_and_grads(images, tokens)
    assert set(grads) == set(model.params)
    for name in ("logit_bias", "logit_scale", "visual.proj", "text_projection",
                 "transformer.resblocks.0.attn.in_proj_weight", "visual.conv1.weight"):
        param = model.params[name]
        idx = None if param.size <= 40 else list(rng.choice(param.size, 40, replace=False))
        num = numerical_gradient(lambda _: model.loss_and_grads(images, tokens)[0], param,
                                 np.array(1.0), indices=idx)
        err = relative_error(grads[name], num)
        assert err <= 1e-6, f"{name}: {err:.2e}"


def test_siglip_logits_include_bias(rng):
    model = CLIP(SIGLIP_TINY, seed=0, dtype=np.float64)
    images = rng.standard_normal((2, 3, 8, 8))
    tokens = np.array([[1, 5, 49, 0, 0, 0, 0], [1, 7, 8, 49, 0, 0, 0]])
    logits, _ = model(images, tokens)
    img, txt = model.encode_image(images), model.encode_text(tokens)
    cos = (img / np.linalg.norm(img, axis=1, keepdims=True)) @ (
        txt / np.linalg.norm(txt, axis=1, keepdims=True)).T
    np.testing.assert_allclose(logits, 10 * cos - 10, rtol=1e-12)
