"""Mixed precision: the formats, every 16-bit op against its float64 result (bounds derived from
the unit roundoff and the length of each sum, written beside each test), 16-bit models against
float32/float64, loss scaling, stochastic rounding, and --precision training with exact resume.

Notation for the bounds: u16 is the 16-bit format's unit roundoff (bfloat16 2^-8, float16
2^-11), u32 = 2^-24 float32's. A float32 sum of K products has error at most
gamma_K |x|.|w| with gamma_K = K u32 / (1 - K u32) <= 1.01 K u32 for the sizes here (Higham,
Accuracy and Stability of Numerical Algorithms, 3.1), whatever the order of summation (so the
kernels' reordered sums obey it too). Rounding the float32 result to 16 bits adds u16 |y|.
The inputs are drawn in 16 bits, so the float64 reference sees exactly the same numbers.
"""

import numpy as np
import pytest

import miniclip
from miniclip import backend
from miniclip.kernels.dtypes import (
    FLOAT_DTYPES,
    bfloat16,
    compute_dtype,
    dtype_name,
    dtype_of,
    float16,
    unit_roundoff,
)
from miniclip.model.clip import CLIP
from miniclip.model.config import CONFIGS
from miniclip.train.precision import LossScaler, MixedPrecision, round_stochastic

HALF = [bfloat16, float16]
U32 = 2.0**-24
BACKENDS = ["numpy", "numba"]


def half_randn(rng, shape, dtype, scale=1.0):
    """Normal numbers rounded to dtype, and the same numbers in float64."""
    x = (scale * rng.standard_normal(shape)).astype(dtype)
    return x, x.astype(np.float64)


def gamma(k):
    return 1.01 * k * U32


# ---- the formats -----------------------------------------------------------------------------

def test_one_definition_of_the_formats():
    assert list(FLOAT_DTYPES) == ["float64", "float32", "bfloat16", "float16"]
    for name, dtype in FLOAT_DTYPES.items():
        assert dtype_of(name) == dtype and dtype_name(dtype) == name
    assert dtype_of(np.float16) == float16 and bfloat16.itemsize == 2
    assert compute_dtype(bfloat16) == np.float32 and compute_dtype(np.float64) == np.float64
    assert unit_roundoff("bfloat16") == 2.0**-8 and unit_roundoff("float32") == 2.0**-24
    with pytest.raises(TypeError, match="dtype must be one of"):
        dtype_of("int8")
    with pytest.raises(TypeError, match="dtype must be one of"):
        CLIP(CONFIGS["tiny"], dtype=np.int32)


@pytest.mark.parametrize("dtype", HALF)
def test_bfloat16_has_float32_range_and_float16_does_not(dtype):
    with np.errstate(over="ignore"):
        big = np.array([1e5, 3e38], np.float32).astype(dtype).astype(np.float32)
    if dtype == bfloat16:
        assert np.isfinite(big).all()  # same 8 exponent bits as float32
    else:
        assert np.isinf(big).all()  # float16's largest is 65504


def test_numba_conversions_are_exact():
    """kernels/numba/halfconv.py against NumPy / ml_dtypes: widening every one of the 65,536
    16-bit patterns, and rounding every 16-bit value, every midpoint between two neighbours
    (ties), the float32 numbers just above and below each midpoint, overflow, underflow, NaN."""
    from miniclip.kernels.numba.halfconv import narrow, widen

    for dtype in HALF:
        patterns = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(dtype)
        wide, ref = widen(patterns, dtype), patterns.astype(np.float32)
        nan = np.isnan(ref)
        assert np.array_equal(np.isnan(wide), nan)
        assert np.array_equal(wide[~nan].view(np.uint32), ref[~nan].view(np.uint32))
        values = np.unique(ref[np.isfinite(ref)].astype(np.float64))
        mids = ((values[1:] + values[:-1]) / 2).astype(np.float32)  # exact in float32
        x = np.concatenate([values.astype(np.float32), mids,
                            np.nextafter(mids, np.float32(np.inf)),
                            np.nextafter(mids, np.float32(-np.inf)),
                            np.array([np.inf, -np.inf, 3e38, -3e38, 65520, 1e-45, -0.0],
                                     np.float32)])
        with np.errstate(over="ignore"):
            want = x.astype(dtype)
        assert np.array_equal(narrow(x, dtype).view(np.uint16), want.view(np.uint16))
        assert np.isnan(narrow(np.array([np.nan], np.float32), dtype).astype(np.float32)).all()


# ---- each op against float64 -----------------------------------------------------------------

@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", HALF)
def test_linear_forward_and_backward_against_float64(rng, name, dtype):
    M, K, N = 37, 53, 19  # awkward sizes: no tile divides them
    x16, x = half_randn(rng, (M, K), dtype)
    w16, w = half_randn(rng, (N, K), dtype, 0.2)
    b16, b = half_randn(rng, (N,), dtype)
    u = unit_roundoff(dtype)
    with backend.use_backend(name):
        out16, cache = backend.ops.linear_forward(x16, w16, b16)
        dout16, dout = half_randn(rng, (M, N), dtype)
        dx16, dw32, db32 = backend.ops.linear_backward(dout16, cache)
    assert out16.dtype == dtype and dx16.dtype == dtype  # activations: 16 bits
    assert dw32.dtype == np.float32 and db32.dtype == np.float32  # weight gradients: float32
    # forward: K products and the bias summed in float32, then one rounding to 16 bits:
    #   |out16 - out| <= u16 |out| + (1 + u16) gamma_{K+1} (|x| |w|^T + |b|)
    out = x @ w.T + b
    bound = u * np.abs(out) + (1 + u) * gamma(K + 1) * (np.abs(x) @ np.abs(w).T + np.abs(b))
    assert (np.abs(out16.astype(np.float64) - out) <= bound).all()
    # dx = dout W: N products, one rounding
    dx = dout @ w
    bound = u * np.abs(dx) + (1 + u) * gamma(N) * (np.abs(dout) @ np.abs(w))
    assert (np.abs(dx16.astype(np.float64) - dx) <= bound).all()
    # dW = dout^T x, db = column sums: M products each, float32, not rounded to 16 bits
    assert (np.abs(dw32 - dout.T @ x) <= gamma(M) * (np.abs(dout).T @ np.abs(x))).all()
    assert (np.abs(db32 - dout.sum(0)) <= gamma(M) * np.abs(dout).sum(0)).all()


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", HALF)
def test_layernorm_statistics_are_float32(rng, name, dtype):
    from miniclip.nn.layernorm import layernorm_forward

    C = 96
    # rows with a large mean: the variance of x - mean is the hard part; in 16 bits the mean
    # alone would be off by u16 * 50 ~ 0.2 (bfloat16), far more than the spread
    x16, x = half_randn(rng, (5, 7, C), dtype)
    x16 = (x16.astype(np.float32) + 50).astype(dtype)
    x = x16.astype(np.float64)
    w16, w = half_randn(rng, (C,), dtype)
    b16, b = half_randn(rng, (C,), dtype)
    with backend.use_backend(name):
        out16, _ = backend.ops.layernorm_forward(x16, w16, b16, 1e-5)
    out, _ = layernorm_forward(x, w, b)
    # float32 mean and variance over C: relative error of xhat <= ~ (2C + 10) u32 |x| / std
    # (the mean's error, C u32 |x|, is divided by the std); then one rounding to 16 bits
    std = x.std(-1, keepdims=True)
    xhat_err = (2 * C + 10) * U32 * np.abs(x).max(-1, keepdims=True) / std
    bound = unit_roundoff(dtype) * np.abs(out) + 1.01 * (xhat_err * np.abs(w) + 4 * U32 * np.abs(b))
    assert (np.abs(out16.astype(np.float64) - out) <= bound).all()


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("causal", [False, True])
def test_attention_against_float64(rng, name, dtype, causal):
    from miniclip.nn.attention import attention_forward

    B, H, T, D = 2, 3, 9, 8
    q16, q = half_randn(rng, (B, H, T, D), dtype)
    k16, k = half_randn(rng, (B, H, T, D), dtype)
    v16, v = half_randn(rng, (B, H, T, D), dtype)
    with backend.use_backend(name):
        out16, cache = backend.ops.attention_forward(q16, k16, v16, causal)
        dout16, dout = half_randn(rng, (B, H, T, D), dtype)
        dq16, dk16, dv16 = backend.ops.attention_backward(dout16, cache)
    assert {out16.dtype, dq16.dtype, dk16.dtype, dv16.dtype} == {np.dtype(dtype)}
    out, _ = attention_forward(q, k, v, causal)
    # scores: D products (gamma_D |q||k| <= gamma_D D max|q||k|, times 1/sqrt(D)); the softmax
    # in float32 (exp and the sum over T: ~ (T + 4) u32 relative per probability); out sums T
    # products of probs and v: gamma_T max|v|. A score error e changes probs by ~ e relative.
    score_err = gamma(D) * D * np.abs(q).max() * np.abs(k).max() / np.sqrt(D)
    prob_rel = 2 * score_err + (T + 4) * U32
    bound = unit_roundoff(dtype) * np.abs(out) + (prob_rel + gamma(T)) * np.abs(v).max()
    assert (np.abs(out16.astype(np.float64) - out) <= bound).all()
    # backward: its float64 reference is the float64 backward on the same 16-bit numbers; the
    # float32 arithmetic inside adds a few gammas of T and D times the sizes of the operands,
    # the final rounding u16 |d|
    with backend.use_backend("numpy"):
        _, c64 = backend.ops.attention_forward(q, k, v, causal)
        dq, dk, dv = backend.ops.attention_backward(dout, c64)
    size = np.abs(dout).max() * max(np.abs(v).max(), 1) * max(np.abs(q).max(), np.abs(k).max(), 1)
    for got, want in ((dq16, dq), (dk16, dk), (dv16, dv)):
        bound = unit_roundoff(dtype) * np.abs(want) + 4 * (prob_rel + gamma(T + D)) * size
        assert (np.abs(got.astype(np.float64) - want) <= bound).all()


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_activations_against_float64(rng, name, dtype, act):
    from miniclip.nn import activations

    x16, x = half_randn(rng, (4, 33), dtype, 3.0)
    with backend.use_backend(name):
        out16, cache = getattr(backend.ops, f"{act}_forward")(x16)
        dout16, dout = half_randn(rng, x.shape, dtype)
        dx16 = getattr(backend.ops, f"{act}_backward")(dout16, cache)
    out, c64 = getattr(activations, f"{act}_forward")(x)
    dx = getattr(activations, f"{act}_backward")(dout, c64)
    # elementwise, float32 inside: exp, a division and a few products, each within a few u32 of
    # its result; |d out/dx| <= 1.2 so an error of e in x-space moves out by <= 1.2 e
    u = unit_roundoff(dtype)
    assert (np.abs(out16.astype(np.float64) - out) <= u * np.abs(out) + 16 * U32 * np.abs(x)).all()
    assert (np.abs(dx16.astype(np.float64) - dx)
            <= u * np.abs(dx) + 32 * U32 * np.abs(dout) * (1 + np.abs(x))).all()


@pytest.mark.parametrize("name", BACKENDS)
def test_float32_and_float64_calls_are_untouched(rng, name):
    """The mixed-precision layer passes wide calls straight to the backend's own op."""
    x = rng.standard_normal((3, 5))
    w = rng.standard_normal((4, 5))
    with backend.use_backend(name):
        out, cache = backend.ops.linear_forward(x, w, None)
        direct, _ = backend._load(name).linear_forward(x, w, None)
    assert out.dtype == np.float64 and np.array_equal(out, direct)
    assert type(cache).__name__ != "HalfCache"


def test_two_16_bit_formats_in_one_op_is_an_error(rng):
    x = rng.standard_normal((2, 4)).astype(bfloat16)
    w = rng.standard_normal((3, 4)).astype(np.float16)
    with pytest.raises(TypeError, match="two 16-bit formats"):
        backend.ops.linear_forward(x, w, None)


# ---- whole models ----------------------------------------------------------------------------

def _batch(rng, cfg, n=6):
    R = cfg.image_resolution
    images = rng.standard_normal((n, 3, R, R)).astype(np.float32)
    tokens = rng.integers(1, cfg.vocab_size - 1, (n, cfg.context_length))
    tokens[:, cfg.context_length // 2] = cfg.vocab_size - 1  # end of text
    return images, tokens


# Embedding tolerances against the float32 model holding the very same (16-bit) weights: the
# activations are rounded to 16 bits at each op (~u16 relative), and the rounding errors of
# the ~6 ops per block add up like a random walk over the L blocks of a tower. We state:
# relative error (max over entries / max entry) <= 2 u16 sqrt(6 L + 4), as for the PyTorch
# parity cases (tests/test_hf_parity.py).
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("config", ["tiny", "toy-tiny", "toy"])
def test_16_bit_embeddings_are_close_to_float32(rng, dtype, config):
    cfg = CONFIGS[config]
    m16 = CLIP(cfg, seed=0, dtype=dtype)
    m32 = CLIP.from_state_dict(cfg, m16.state_dict(), dtype=np.float32)  # same numbers, widened
    images, tokens = _batch(rng, cfg)
    layers = max(cfg.vision_layers, cfg.transformer_layers)
    tol = 2 * unit_roundoff(dtype) * np.sqrt(6 * layers + 4)
    for a16, a32 in ((m16.encode_image(images), m32.encode_image(images)),
                     (m16.encode_text(tokens), m32.encode_text(tokens))):
        assert a16.dtype == dtype_of(dtype) and a32.dtype == np.float32
        err = np.abs(a16.astype(np.float32) - a32).max() / np.abs(a32).max()
        print(f"{config} {dtype}: relative error {err:.1e}, tolerance {tol:.1e}")
        assert err <= tol, (err, tol)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_16_bit_model_holds_16_bits_and_float32_temperature(dtype):
    model = CLIP(CONFIGS["tiny"], dtype=dtype)
    assert model.dtype == dtype_of(dtype)
    kinds = {k: v.dtype for k, v in model.params.items()}
    assert kinds.pop("logit_scale") == np.float32
    assert set(kinds.values()) == {dtype_of(dtype)}
    loss, grads = model.loss_and_grads(*_batch(np.random.default_rng(0), model.cfg))
    assert np.isfinite(loss) and {g.dtype for g in grads.values()} == {np.dtype(np.float32)}


def test_16_bit_gradients_are_close_to_float64(rng):
    """The float32 weight gradients of a bfloat16 model, against the float64 gradients of the
    same weights: each is a float32 sum over the batch of products of 16-bit activations, so it
    is off by about what the activations are: a few u16 relative (stated: 0.1 = 25 u16, since
    the error compounds through 2 x 2 blocks, the loss and back)."""
    cfg = CONFIGS["tiny"]
    m16 = CLIP(cfg, seed=1, dtype="bfloat16")
    m64 = CLIP.from_state_dict(cfg, m16.state_dict(), dtype=np.float64)
    images, tokens = _batch(rng, cfg)
    loss16, g16 = m16.loss_and_grads(images, tokens)
    loss64, g64 = m64.loss_and_grads(images.astype(np.float64), tokens)
    assert abs(loss16 - loss64) <= 25 * unit_roundoff("bfloat16") * abs(loss64)
    for k in g64:
        err = np.abs(g16[k] - g64[k]).max() / max(np.abs(g64[k]).max(), 1e-6)
        assert err <= 25 * unit_roundoff("bfloat16"), (k, err)


# ---- loading 16-bit checkpoints --------------------------------------------------------------

@pytest.mark.parametrize("stored, asked", [("float16", "bfloat16"), ("float16", "float16"),
                                            ("bfloat16", "bfloat16"), ("float16", None)])
def test_load_keeps_a_16_bit_checkpoint_16_bit(tmp_path, stored, asked):
    from miniclip.pretrained.loading import save_weights

    model = CLIP(CONFIGS["tiny"], dtype=stored)
    path = save_weights(model, tmp_path / "w.safetensors")
    loaded, _, _ = miniclip.load(path, dtype=asked)
    want = dtype_of(asked) if asked else np.dtype(np.float32)  # None: upcast, never lowered
    assert loaded.params["visual.proj"].dtype == want
    assert loaded.params["logit_scale"].dtype == np.float32
    n_bytes = sum(v.nbytes for v in loaded.params.values())
    n_params = sum(v.size for v in loaded.params.values())
    assert n_bytes == 2 * n_params + 2 if asked else n_bytes == 4 * n_params
    for k, v in model.params.items():  # 16 -> 16 bits of the same format: the same numbers
        if asked == stored:
            assert np.array_equal(v.astype(np.float32), loaded.params[k].astype(np.float32))


@pytest.mark.parametrize("stored", ["bfloat16", "float16"])
def test_loading_16_bit_as_16_bit_never_makes_a_float32_copy(tmp_path, stored):
    """Peak memory of load(path, dtype=<the file's format>), traced: the 16-bit tensors read
    (2 bytes a parameter), the model (2) and the copies between them stay under 8 bytes a
    parameter, which a float32 copy of the weights (4) beside those two (2 + 2) would reach.
    Measured: 6.1 bytes a parameter for both formats (8.1 and 10.1 when the file was first read
    into float32)."""
    import tracemalloc

    from miniclip.pretrained.loading import save_weights

    model = CLIP(CONFIGS["toy"], dtype=stored)
    n_params = sum(v.size for v in model.params.values())
    path = save_weights(model, tmp_path / "w.safetensors")
    del model
    tracemalloc.start()
    try:
        loaded, _, _ = miniclip.load(path, dtype=stored)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert loaded.params["visual.proj"].dtype == dtype_of(stored)
    assert peak < 8 * n_params, f"{peak / n_params:.2f} bytes a parameter"


def test_npz_refuses_bfloat16(tmp_path):
    from miniclip.pretrained.loading import save_weights

    with pytest.raises(TypeError, match="bfloat16"):
        save_weights(CLIP(CONFIGS["tiny"], dtype="bfloat16"), tmp_path / "w.npz")


# ---- loss scaling and stochastic rounding ----------------------------------------------------

def test_loss_scaler_skips_halves_and_grows():
    s = LossScaler(scale=2.0**16, growth_interval=3)
    assert s.update(False) is False and s.scale == 2.0**15 and s.skipped == 1
    assert [s.update(True) for _ in range(3)] == [True] * 3
    assert s.scale == 2.0**16 and s.good_steps == 0
    assert s.update(True) and s.scale == 2.0**16


def test_float16_gradients_underflow_without_scaling_and_not_with_it(rng):
    """A small gradient flows back through a linear layer in float16: unscaled, most of its
    entries flush to 0; scaled by 2^16 (and unscaled in float32) they are kept."""
    x16, _ = half_randn(rng, (64, 32), float16)
    w16, _ = half_randn(rng, (16, 32), float16, 0.05)
    dout = 1e-8 * rng.standard_normal((64, 16))
    _, cache = backend.ops.linear_forward(x16, w16, None)
    dx_plain, _, _ = backend.ops.linear_backward(dout.astype(float16), cache)
    dx_scaled, _, _ = backend.ops.linear_backward((dout * 2.0**16).astype(float16), cache)
    exact = dout @ w16.astype(np.float64)
    assert (dx_plain == 0).mean() > 0.9
    rel = np.abs(dx_scaled.astype(np.float64) / 2.0**16 - exact).max() / np.abs(exact).max()
    assert rel < 0.01


@pytest.mark.parametrize("dtype", HALF)
def test_stochastic_rounding_is_unbiased(dtype):
    """The mean of R stochastic roundings of x is x, within 5 standard deviations: each rounding
    is lo + gap * Bernoulli(p), so the mean's standard deviation is gap sqrt(p (1-p) / R)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, 40).astype(np.float32)
    R = 20_000
    rounded = round_stochastic(np.repeat(x[None], R, axis=0), dtype, rng).astype(np.float64)
    assert rounded.dtype == np.float64
    lo = np.minimum(rounded.min(0), rounded.max(0))
    gap = rounded.max(0) - lo
    assert (gap <= 2 * unit_roundoff(dtype) * np.abs(x) * 1.01).all()  # only the 2 neighbours
    p = np.where(gap > 0, (x - lo) / np.where(gap > 0, gap, 1), 0)
    sigma = gap * np.sqrt(p * (1 - p) / R)
    assert (np.abs(rounded.mean(0) - x) <= 5 * sigma + 1e-12).all()
    # and round-to-nearest is biased on the same numbers (the test can tell the difference)
    nearest = x.astype(dtype).astype(np.float64)
    assert (np.abs(nearest - x) > 5 * sigma + 1e-12).any()


def test_masters_are_float32_and_copies_16_bit():
    model = CLIP(CONFIGS["tiny"], dtype=np.float32)
    mp = MixedPrecision(model.params, model.cfg, "bf16")
    work = mp.working_model(0)
    assert work.params["visual.proj"].dtype == bfloat16
    assert work.params["logit_scale"].dtype == np.float32
    with pytest.raises(ValueError, match="precision must be"):
        MixedPrecision(model.params, model.cfg, "fp8")
    with pytest.raises(TypeError, match="float32"):
        MixedPrecision(CLIP(CONFIGS["tiny"], dtype="float16").params, model.cfg, "fp16")


# ---- training with --precision ---------------------------------------------------------------

def tiny_args(data, out, **overrides):
    from miniclip.train.loop import TrainArgs

    base = dict(data=str(data), out=str(out), model="toy-tiny", steps=6, batch_size=16,
                warmup=2, lr=2e-3, eval_every=0, checkpoint_every=2, log_every=1)
    return TrainArgs(**{**base, **overrides})


def _records(run_dir):
    from miniclip.train.runfolder import read_jsonl

    return [r for r in read_jsonl(run_dir / "metrics.jsonl") if "loss" in r]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_keeps_float32_masters(tiny_data, tmp_path, precision):
    from miniclip.pretrained.checkpoint import load_checkpoint
    from miniclip.train.loop import train

    summary = train(tiny_args(tiny_data, tmp_path / "r", precision=precision), progress=False,
                    final_eval=False, log=lambda *a: None)
    assert summary["precision"] == precision
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoint.safetensors")
    assert {v.dtype for v in ckpt.params.values()} == {np.dtype(np.float32)}
    assert {v.dtype for v in ckpt.optimizer["m"].values()} == {np.dtype(np.float32)}
    assert ckpt.extra["precision"]["precision"] == precision
    records = _records(tmp_path / "r")
    losses = [r["loss"] for r in records]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    if precision == "fp16":  # the scale starts at 2^16; the toy overflows it and halves it
        assert records[-1]["loss_scale"] < 2.0**16
        assert records[-1]["skipped_steps"] == ckpt.extra["precision"]["scaler"]["skipped"] >= 1
        assert sum(1 for r in records if r["grad_norm"] == float("inf")) == records[-1]["skipped_steps"]


def test_fp16_resume_is_exact_with_scaler_and_stochastic_rounding(tiny_data, tmp_path):
    """Interrupted at step 3 and resumed: the same masters, moments, scale and losses as the
    uninterrupted run, bit for bit."""
    import threading

    from miniclip.pretrained.checkpoint import load_checkpoint
    from miniclip.train.loop import train

    from .test_train import press_ctrl_c_at

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("Ctrl-C (SIGINT) is handled in the main thread only")
    kw = dict(precision="fp16", stochastic_rounding=True)
    train(tiny_args(tiny_data, tmp_path / "full", **kw), progress=False, final_eval=False,
          log=lambda *a: None)
    part = train(tiny_args(tiny_data, tmp_path / "part", **kw), progress=False,
                 final_eval=False, log=lambda *a: None, after_step=press_ctrl_c_at(3))
    assert part["stopped"]
    train(None, resume=tmp_path / "part" / "checkpoint.safetensors", progress=False, final_eval=False,
          log=lambda *a: None)
    a = load_checkpoint(tmp_path / "full" / "checkpoint.safetensors")
    b = load_checkpoint(tmp_path / "part" / "checkpoint.safetensors")
    assert a.step == b.step == 6 and a.extra["precision"] == b.extra["precision"]
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k]), k
        assert np.array_equal(a.optimizer["v"][k], b.optimizer["v"][k]), k
    assert [r["loss"] for r in _records(tmp_path / "full")] == \
        [r["loss"] for r in _records(tmp_path / "part")]


def test_stochastic_copies_differ_from_nearest_and_depend_on_the_step():
    model = CLIP(CONFIGS["tiny"], dtype=np.float32)
    near = MixedPrecision(model.params, model.cfg, "bf16").copies(5)
    sr = MixedPrecision(model.params, model.cfg, "bf16", stochastic_rounding=True)
    a, b, c = sr.copies(5), sr.copies(5), sr.copies(6)
    k = "visual.proj"
    assert np.array_equal(a[k].astype(np.float32), b[k].astype(np.float32))
    assert not np.array_equal(a[k].astype(np.float32), c[k].astype(np.float32))
    assert not np.array_equal(a[k].astype(np.float32), near[k].astype(np.float32))


@pytest.mark.parametrize("argv, message", [
    (["--precision", "fp8"], "precision must be one of"),
    (["--stochastic-rounding"], "needs --precision bf16 or fp16"),
    (["--precision", "bf16", "--backend", "cuda"], "float32/float64 only"),
])
def test_cli_precision_errors_are_one_line(tiny_data, tmp_path, capsys, argv, message):
    from miniclip.train.cli import main

    code = main(["--data", str(tiny_data), "--out", str(tmp_path / "r"), "--model", "toy-tiny",
                 "--steps", "1", "--no-progress", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.parametrize("dtype", HALF)
def test_numba_matmul_reads_16_bit_inputs(rng, dtype):
    """The numba backend's linear_forward reads x in 16 bits (widening it row block by row
    block inside the kernel): bit for bit the float32 kernel on the widened x, and its cache
    holds x in 16 bits."""
    from miniclip.kernels.numba import ops as numba_ops

    x16, _ = half_randn(rng, (3, 70, 24), dtype)  # M = 210: four row blocks, the last ragged
    w16, _ = half_randn(rng, (9, 24), dtype)
    b16, _ = half_randn(rng, (9,), dtype)
    # the float32 products on the hand-written kernel too (the measured route could pick BLAS,
    # whose sums run in another order): the 16-bit path always runs the kernel
    with backend.use_backend("numba", matmul="kernel"):
        out16, cache = backend.ops.linear_forward(x16, w16, b16)
        wide = [a.astype(np.float32) for a in (x16, w16, b16)]
        out32, _ = numba_ops.linear_forward(*wide)
        direct, direct_cache = numba_ops.linear_forward(x16, *wide[1:])
    assert np.array_equal(out16, out32.astype(dtype))
    assert direct.dtype == np.float32 and np.array_equal(direct, out32)
    assert direct_cache[0].dtype == dtype
    assert cache.inner[0].dtype == dtype  # the activation kept for backward: 16 bits
    with pytest.raises(TypeError, match="float32"):
        numba_ops.linear_forward(x16, w16, None)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("causal", [False, True])
def test_numba_attention_reads_16_bit_inputs(rng, dtype, causal):
    """The numba attention kernel reads 16-bit q, k, v (widening each head in its thread): bit
    for bit the float32 kernel on the widened inputs; the cache keeps q, k, v in 16 bits."""
    from miniclip.kernels.numba import ops as numba_ops

    q16, k16, v16 = (half_randn(rng, (2, 3, 7, 8), dtype)[0] for _ in range(3))
    out32, _ = numba_ops.attention_forward(*(a.astype(np.float32) for a in (q16, k16, v16)),
                                           causal)
    direct, cache = numba_ops.attention_forward(q16, k16, v16, causal)
    assert direct.dtype == np.float32 and np.array_equal(direct, out32)
    assert {a.dtype for a in cache[:3]} == {np.dtype(dtype)}
    with backend.use_backend("numba"):
        out16, mixed_cache = backend.ops.attention_forward(q16, k16, v16, causal)
    assert np.array_equal(out16, out32.astype(dtype))
    assert mixed_cache.inner[0].dtype == dtype
    with pytest.raises(TypeError, match="like q"):
        numba_ops.attention_forward(q16, k16.astype(np.float32), v16, causal)


@pytest.mark.parametrize("dtype", HALF)
def test_numba_linear_backward_reads_16_bit_dout_and_x(rng, dtype):
    """linear_backward on a 16-bit dout with the 16-bit x its forward kept: dx, dw, db bit for
    bit the float32 kernels' on the widened arrays (same sums, same order), float32 out; and
    through the mixed wrapper, dout reaches the kernel unwidened."""
    from miniclip.kernels import mixed
    from miniclip.kernels.numba import ops as numba_ops

    x16, _ = half_randn(rng, (3, 100, 24), dtype)  # M = 300: two dW chunks, the last ragged
    w32 = rng.standard_normal((9, 24)).astype(np.float32)
    b32 = rng.standard_normal(9).astype(np.float32)
    dout16, _ = half_randn(rng, (3, 100, 9), dtype)
    with backend.use_backend("numba", matmul="kernel"):
        _, cache16 = numba_ops.linear_forward(x16, w32, b32)
        grads16 = numba_ops.linear_backward(dout16, cache16)
        _, cache32 = numba_ops.linear_forward(x16.astype(np.float32), w32, b32)
        grads32 = numba_ops.linear_backward(dout16.astype(np.float32), cache32)
        for g16, g32 in zip(grads16, grads32, strict=True):
            assert g16.dtype == np.float32 and np.array_equal(g16, g32)
        seen = []
        spy = mixed.mixed_backward(lambda dout, cache: seen.append(dout.dtype) or (dout, None,
                                                                                   None),
                                   "linear_backward", reads_16_bit=True)
        _, mixed_cache = backend.ops.linear_forward(x16, w32, b32)
        spy(dout16, mixed_cache)
        assert seen == [np.dtype(dtype)]
        with pytest.raises(ValueError, match="dout must have shape"):
            numba_ops.linear_backward(dout16[:, :5], cache16)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("causal", [False, True])
def test_numba_attention_backward_reads_16_bit_inputs(rng, dtype, causal):
    """attention_backward on 16-bit dout, q, k, v (each head widened in its thread): bit for bit
    the float32 kernel on the widened inputs; a float32 dout with 16-bit q, k, v is widened."""
    from miniclip.kernels.numba import ops as numba_ops

    q16, k16, v16, dout16 = (half_randn(rng, (2, 3, 7, 8), dtype)[0] for _ in range(4))
    _, cache16 = numba_ops.attention_forward(q16, k16, v16, causal)
    _, cache32 = numba_ops.attention_forward(*(a.astype(np.float32) for a in (q16, k16, v16)),
                                             causal)
    grads32 = numba_ops.attention_backward(dout16.astype(np.float32), cache32)
    for dout in (dout16, dout16.astype(np.float32)):
        grads16 = numba_ops.attention_backward(dout, cache16)
        for g16, g32 in zip(grads16, grads32, strict=True):
            assert g16.dtype == np.float32 and np.array_equal(g16, g32)
