"""A model whose parameters live on the GPU: the whole training step (forward, loss, backward,
gradient clipping, AdamW, the logit_scale clamp) stays on the device, agrees with the NumPy
reference, and copies to the host only the numbers a person asks for."""

import math

import numpy as np
import pytest

from miniclip import CONFIGS, CLIPConfig, backend
from miniclip.datasets import generate_dataset
from miniclip.kernels.cuda import ops as cuda_backend
from miniclip.model.clip import CLIP
from miniclip.model.gradcache import loss_and_grads
from miniclip.pretrained.checkpoint import load_checkpoint
from miniclip.train.loop import TrainArgs, read_jsonl, train
from miniclip.train.optim import AdamW, clip_grad_norm

from .helpers import DTYPES, assert_close, use_model_tiles


@pytest.fixture(autouse=True, scope="module")
def model_tiles():
    old = use_model_tiles()
    yield
    cuda_backend.configure(**old)


def batch(cfg, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    R = cfg.image_resolution
    images = rng.standard_normal((n, 3, R, R)).astype(dtype)
    tokens = rng.integers(1, cfg.vocab_size - 1, size=(n, cfg.context_length))
    tokens[:, 4] = cfg.vocab_size - 1  # the end-of-text token, where the text tower pools
    return images, tokens


def reference_and_device(cfg, dtype, n=3, accum=1):
    """(loss, grads) on the numpy backend with host params, and on the cuda backend with the
    params on the device, plus the copies the device step made."""
    model = CLIP(cfg, seed=0, dtype=dtype)
    images, tokens = batch(cfg, n, dtype)
    with backend.use_backend("numpy"):
        reference = loss_and_grads(model.params, cfg, images, tokens, accum)
    with backend.use_backend("cuda"):
        params = backend.to_device(model.params)
        cuda_backend.reset_transfer_stats()
        loss, grads = loss_and_grads(params, cfg, images, tokens, accum)
        stats = cuda_backend.transfer_stats()
    return reference, (loss, grads), stats


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss_name", ["clip", "siglip"])
def test_training_step_on_the_device_matches_the_reference(dtype, loss_name):
    cfg = CONFIGS["tiny"].__class__(**{**CONFIGS["tiny"].__dict__, "loss": loss_name})
    (loss_ref, grads_ref), (loss, grads), stats = reference_and_device(cfg, dtype)
    assert abs(loss - loss_ref) <= (1e-5 if dtype == np.float32 else 1e-12) * max(1, abs(loss_ref))
    assert list(grads) == list(grads_ref)
    for key, want in grads_ref.items():
        assert backend.on_device(grads[key]), f"{key} came back to the host"
        assert_close(grads[key].get(), want, key)
    # the one copy back: the loss, a single number
    assert stats["device_to_host"] == 1
    assert stats["device_to_host_bytes"] == np.dtype(dtype).itemsize
    # up: the images and the integer ids (tokens, pooling positions, the loss's diagonal) and
    # the loss's small (N, N) constants; no activation and no weight
    assert stats["host_to_device_bytes"] < 10_000


def test_accumulated_micro_batches_on_the_device():
    (loss_ref, grads_ref), (loss, grads), stats = reference_and_device(
        CONFIGS["tiny"], np.float64, n=4, accum=2)
    assert abs(loss - loss_ref) <= 1e-12
    for key, want in grads_ref.items():
        assert_close(grads[key].get(), want, key)
    assert stats["device_to_host"] == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_clipping_and_adamw_on_the_device_match_the_host(dtype):
    """clip_grad_norm as array operations, AdamW as one fused kernel per tensor."""
    cfg = CONFIGS["tiny"]
    host = CLIP(cfg, seed=0, dtype=dtype)
    images, tokens = batch(cfg, 3, dtype)
    with backend.use_backend("numpy"):
        _, grads = host.loss_and_grads(images, tokens)
    opt_host = AdamW(host.params, lr=1e-2)
    with backend.use_backend("cuda"):
        params = backend.to_device(host.params)
        grads_dev = backend.to_device(grads)
        opt_dev = AdamW(params, lr=1e-2)
        cuda_backend.reset_transfer_stats()
        for _ in range(2):
            norm_dev = clip_grad_norm(grads_dev, 0.5)
            opt_dev.step(grads_dev)
        stats = cuda_backend.transfer_stats()
    for _ in range(2):
        norm_host = clip_grad_norm(grads, 0.5)
        opt_host.step(grads)
    assert math.isclose(norm_dev, norm_host, rel_tol=1e-6 if dtype == np.float32 else 1e-12)
    for key, want in host.params.items():
        assert_close(params[key].get(), want, key)
        assert_close(opt_dev.m[key].get(), opt_host.m[key], f"m {key}")
    assert stats["device_to_host"] == 2  # the two gradient norms, one number each
    assert stats["host_to_device"] == 0


def test_the_model_api_hands_back_numpy_arrays():
    """encode_image / encode_text / __call__ / state_dict are what a person asks for: host."""
    cfg = CONFIGS["tiny"]
    model = CLIP(cfg, seed=0, dtype=np.float32)
    images, tokens = batch(cfg, 2, np.float32)
    with backend.use_backend("numpy"):
        want_image, want_logits = model.encode_image(images), model(images, tokens)[0]
    with backend.use_backend("cuda"):
        model.params = backend.to_device(model.params)
        image, logits = model.encode_image(images), model(images, tokens)[0]
        state = model.state_dict()
    assert isinstance(image, np.ndarray) and isinstance(logits, np.ndarray)
    assert_close(image, want_image)
    assert_close(logits, want_logits)
    assert all(isinstance(v, np.ndarray) for v in state.values())
    with backend.use_backend("cuda"):
        model.load_state_dict(backend.to_device(state))  # DeviceArrays are accepted ...
    assert all(backend.on_device(v) for v in model.params.values())  # ... and it stays on the GPU
    assert_close(model.params["visual.proj"].get(), state["visual.proj"])


# The smallest model the toy data fits (16 px images in 8 px patches, captions up to 32 tokens):
# the simulator runs a Python thread per CUDA thread, so every width counts.
MICRO = CLIPConfig(embed_dim=8, image_resolution=16, vision_layers=1, vision_width=8,
                   vision_patch_size=8, vision_heads=1, context_length=32, vocab_size=1024,
                   transformer_width=8, transformer_heads=1, transformer_layers=1)


def test_train_on_the_cuda_backend(tmp_path, monkeypatch):
    """train() moves the weights and Adam's moments to the device, writes host checkpoints,
    resumes from them, and follows the numpy backend's run step for step."""
    monkeypatch.setitem(CONFIGS, "cudasim-micro", MICRO)
    data = tmp_path / "data"
    generate_dataset(data, n_train=24, n_val=8, n_test=8, n_heldout=8, resolution=16, workers=1,
                     progress=False)
    args = dict(data=str(data), model="cudasim-micro", steps=3, batch_size=3, warmup=1, lr=2e-3,
                eval_every=0, checkpoint_every=1, log_every=1, augment=False)
    quiet = dict(progress=False, final_eval=False, log=lambda *a, **k: None)

    def stop_after_two(step):
        if step == 2:
            raise KeyboardInterrupt  # as a second Ctrl-C would

    with backend.use_backend("numpy"):  # train() switches backends; this restores the caller's
        train(TrainArgs(**args, out=str(tmp_path / "numpy"), backend="numpy"), **quiet)
        with pytest.raises(KeyboardInterrupt):
            train(TrainArgs(**args, out=str(tmp_path / "cuda"), backend="cuda"), **quiet,
                  after_step=stop_after_two)
        assert load_checkpoint(tmp_path / "cuda" / "checkpoint.safetensors").step == 2
        train(None, resume=str(tmp_path / "cuda" / "checkpoint.safetensors"), **quiet)  # step 3
    want = load_checkpoint(tmp_path / "numpy" / "checkpoint.safetensors")
    got = load_checkpoint(tmp_path / "cuda" / "checkpoint.safetensors")
    assert got.step == want.step == 3
    losses = [read_jsonl(tmp_path / run / "metrics.jsonl") for run in ("numpy", "cuda")]
    assert [r["step"] for r in losses[1]] == [1, 2, 3]
    for ref, dev in zip(*losses, strict=True):
        assert math.isclose(dev["loss"], ref["loss"], rel_tol=1e-4), (dev, ref)
    # Adam turns rounding-level gradients (the exactly-zero ones, such as the key bias's) into
    # steps of size lr, so weights are compared to within a few steps of lr, not to rounding
    for key, value in want.params.items():
        assert np.abs(got.params[key] - value).max() <= 3 * 2 * args["lr"], key
