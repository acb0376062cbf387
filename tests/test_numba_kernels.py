"""The numba backend against the NumPy reference, kernel by kernel and for the whole model.

Shapes are chosen to be awkward for the kernels: sizes that are not multiples of the 4 x 4
register tile, single rows and columns, more rows than one thread's block (64) and than one
dW chunk (256), a single head and several, one token, causal and not. Every array passes
through the same few compiled signatures (C-contiguous float32 / float64), so the whole file
compiles each kernel once per dtype.

Tolerances: float64 results must agree to ~1e-12 of the largest entry (the kernels only sum in
a different order); float32 to ~1e-5 relative.
"""

import json
import os

import numba
import numpy as np
import pytest

from miniclip import backend
from miniclip.kernels.numba import matmul as numba_matmul
from miniclip.kernels.numba import ops as nb
from miniclip.kernels.numba import routing
from miniclip.model.block import block_backward, block_forward
from miniclip.nn import ops as ref
from miniclip.nn.attention import split_heads

from .gradcheck_helpers import assert_grads_close, block_params

DTYPES = [np.float64, np.float32]
TOL = {np.float64: 1e-12, np.float32: 1e-5}


def assert_close(actual, expected, dtype, what="", scale=None):
    """max |a - e| <= tol * scale, scale = max |e| by default: relative to the tensor's size
    (single entries can be ~0). Pass ``scale`` where the exact answer is 0 but the terms that
    cancel to give it are not."""
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs {expected.shape}"
    if scale is None:
        scale = max(float(np.max(np.abs(expected))), 1e-30) if expected.size else 1.0
    err = float(np.max(np.abs(actual.astype(np.float64) - expected))) / scale if actual.size else 0
    assert err <= TOL[dtype], f"{what}: relative error {err:.2e} > {TOL[dtype]:.0e}"


def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# ---- linear: forward, dx, dW, db -----------------------------------------------------------

LINEAR_SHAPES = [  # x shape, C_out
    ((1, 1), 1),  # 1 x 1
    ((5, 3), 7),  # everything smaller than a tile, or an odd number over it
    ((2, 33, 17), 9),  # 3-D input, 66 rows: one full 64-row block plus 2
    ((600, 5), 6),  # 600 rows: three dW chunks of 256, split between threads
    ((70, 1500), 45),  # long rows: the B cache block (32768 // 1500 -> 20 rows) splits C_out
]


@pytest.fixture(params=["blas", "kernel"])
def matmul_mode(request, monkeypatch):
    """Both routes, forced: every product to BLAS, or every product to the hand-written kernel.
    Asserts the right route was taken."""
    calls = []
    for name in ("matmul_nt", "weight_grad"):
        kernel = getattr(numba_matmul, name)
        monkeypatch.setattr(numba_matmul, name,
                            lambda *a, _k=kernel, _n=name: (calls.append(_n), _k(*a))[1])
    with backend.use_backend("numba", matmul=request.param):
        yield request.param
    assert bool(calls) == (request.param == "kernel"), f"hand-written kernel calls: {calls}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,n_out", LINEAR_SHAPES)
def test_linear_matches_reference(rng, matmul_mode, dtype, x_shape, n_out):
    x = randn(rng, x_shape, dtype)
    w, b = randn(rng, (n_out, x_shape[-1]), dtype), randn(rng, n_out, dtype)
    out, cache = nb.linear_forward(x, w, b)
    out_ref, cache_ref = ref.linear_forward(x, w, b)
    assert_close(out, out_ref, dtype, "out")
    dout = randn(rng, out.shape, dtype)
    for got, want, name in zip(nb.linear_backward(dout, cache),
                               ref.linear_backward(dout, cache_ref), ("dx", "dw", "db"), strict=True):
        assert_close(got, want, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_without_bias_and_with_a_transposed_weight(rng, dtype):
    """The model passes proj.T (a strided view) and no bias."""
    x, proj = randn(rng, (6, 10), dtype), randn(rng, (10, 3), dtype)
    out, cache = nb.linear_forward(x, proj.T, None)
    assert_close(out, x @ proj, dtype, "out")
    dx, dw, db = nb.linear_backward(np.ones_like(out), cache)
    assert db is None
    assert_close(dw, (np.ones_like(out).T @ x), dtype, "dw")
    assert_close(dx, np.ones_like(out) @ proj.T, dtype, "dx")


def test_linear_rejects_mixed_dtypes_and_bad_shapes(rng):
    x, w = rng.standard_normal((4, 3)), rng.standard_normal((2, 3))
    with pytest.raises(TypeError, match="w must have the input's dtype float64, got float32"):
        nb.linear_forward(x, w.astype(np.float32))
    with pytest.raises(TypeError, match="x must be float32 or float64, got int64"):
        nb.linear_forward(np.ones((4, 3), np.int64), w)
    with pytest.raises(ValueError, match=r"w must be \(C_out, 3\) for x of shape \(4, 3\), got \(3, 2\)"):
        nb.linear_forward(x, w.T.copy())
    with pytest.raises(ValueError, match=r"b must have shape \(2,\), got \(3,\)"):
        nb.linear_forward(x, w, np.zeros(3))
    _, cache = nb.linear_forward(x, w)
    with pytest.raises(ValueError, match=r"dout must have shape \(4, 2\), got \(2, 4\)"):
        nb.linear_backward(np.zeros((2, 4)), cache)


# ---- LayerNorm and the activations ---------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 7, 13), (600, 5)])
def test_layernorm_matches_reference(rng, dtype, shape):
    x = (randn(rng, shape, dtype) * 3 + 1).astype(dtype)
    w, b = randn(rng, shape[-1], dtype), randn(rng, shape[-1], dtype)
    out, cache = nb.layernorm_forward(x, w, b, 1e-5)
    out_ref, cache_ref = ref.layernorm_forward(x, w, b)
    assert_close(out, out_ref, dtype, "out")
    dout = randn(rng, shape, dtype)
    # with C = 1, dx = rstd * (g - mean(g) - ...) is exactly 0: compare with the terms' size
    rstd = cache_ref[1]
    scales = {"dx": float(np.max(np.abs(rstd * dout * w))), "dw": None, "db": None}
    for got, want, name in zip(nb.layernorm_backward(dout, cache),
                               ref.layernorm_backward(dout, cache_ref), ("dx", "dw", "db"), strict=True):
        assert_close(got, want, dtype, name, scales[name])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["quick_gelu", "gelu"])
def test_activation_matches_reference(rng, dtype, name):
    # the tails too: exp overflows at -1.702 x > 88.7 (float32), 709.8 (float64)
    x = np.concatenate([rng.standard_normal((5, 41)).ravel() * 4,
                        [0.0, -30.0, 30.0, -60.0, 60.0, -500.0, 500.0, -1e4, 1e4]]).astype(dtype)
    x = x.reshape(2, -1)
    out, cache = getattr(nb, f"{name}_forward")(x)
    out_ref, cache_ref = getattr(ref, f"{name}_forward")(x)
    assert np.isfinite(out).all()
    assert_close(out, out_ref, dtype, "out")
    dout = randn(rng, x.shape, dtype)
    dx = getattr(nb, f"{name}_backward")(dout, cache)
    assert np.isfinite(dx).all()
    assert_close(dx, getattr(ref, f"{name}_backward")(dout, cache_ref), dtype, "dx")


# ---- attention -----------------------------------------------------------------------------

ATTENTION_SHAPES = [  # B, H, T, D
    (1, 1, 1, 1),  # one token, one head
    (2, 1, 9, 5),  # one head, T and D not multiples of 4
    (1, 3, 17, 6),  # several heads
    (3, 2, 24, 8),  # the text tower's 24 tokens
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("B,H,T,D", ATTENTION_SHAPES)
def test_attention_matches_reference(rng, dtype, causal, B, H, T, D):
    # strided views, as the layer passes them (split_heads of a packed (B, T, 3C) array)
    qkv = (randn(rng, (B, T, 3 * H * D), dtype) * 2).astype(dtype)
    q, k, v = (split_heads(qkv[..., i * H * D:(i + 1) * H * D], H) for i in range(3))
    out, cache = nb.attention_forward(q, k, v, causal)
    out_ref, cache_ref = ref.attention_forward(q, k, v, causal)
    assert_close(out, out_ref, dtype, "out")
    dout = randn(rng, out.shape, dtype)
    for got, want, name in zip(nb.attention_backward(dout, cache),
                               ref.attention_backward(dout, cache_ref), ("dq", "dk", "dv"), strict=True):
        assert_close(got, want, dtype, name)


def test_attention_keeps_statistics_not_probabilities(rng):
    """The cache holds one log-sum-exp per query, never the (B, H, T, T) probabilities."""
    q, k, v = (rng.standard_normal((2, 3, 7, 4)) for _ in range(3))
    _, cache = nb.attention_forward(q, k, v, True)
    sizes = [a.shape for a in cache if isinstance(a, np.ndarray)]
    assert (2, 3, 7, 7) not in sizes and (2, 3, 7) in sizes
    lse = next(a for a in cache if isinstance(a, np.ndarray) and a.shape == (2, 3, 7))
    scores = q @ k.swapaxes(-1, -2) / 2.0 + np.triu(np.full((7, 7), -np.inf), 1)
    np.testing.assert_allclose(lse, np.log(np.exp(scores).sum(-1)), rtol=1e-13)


def test_residual_block_gradients_on_the_numba_backend(rng):
    """Finite differences through every numba kernel at once (float64, layers: <= 1e-7)."""
    x, p = rng.standard_normal((2, 5, 8)), block_params(rng, 8)
    with backend.use_backend("numba"):
        out, cache = block_forward(x, p, 2, causal=True)
        dout = rng.standard_normal(out.shape)
        dx, grads = block_backward(dout, cache)
        f = lambda _: block_forward(x, p, 2, causal=True)[0]  # noqa: E731
        some = {k: (p[k], grads[k]) for k in ("attn.out_proj.weight", "ln_1.weight", "mlp.c_fc.bias")}
        assert_grads_close("numba block", f, dout, {"x": (x, dx)} | some)


# ---- the switch ----------------------------------------------------------------------------

def test_switch_routes_ops_and_restores_backend_and_options():
    start = backend.get_backend()
    with backend.use_backend("numpy"):
        # (backend.ops wraps each op for 16-bit arrays, kernels/mixed.py: __wrapped__ is the op)
        assert backend.ops.linear_forward.__wrapped__ is ref.linear_forward
        with backend.use_backend("numba", matmul="auto"):
            assert backend.get_backend() == "numba"
            assert backend.ops.attention_forward.__wrapped__ is nb.attention_forward
            assert nb.options() == {"matmul": "auto", "fused": True}
        assert backend.get_backend() == "numpy"
        assert nb.options() == {"matmul": "kernel", "fused": True}
    assert backend.get_backend() == start


def test_configure_returns_the_old_options_and_checks_them():
    old = nb.configure(handwritten_matmul=False)  # False: measured routes
    try:
        assert old == {"matmul": "kernel", "fused": True}
        assert nb.configure(matmul="blas", fused=False) == {"matmul": "auto", "fused": True}
        assert nb.options() == {"matmul": "blas", "fused": False}
    finally:
        nb.configure(**old)
    assert nb.options() == {"matmul": "kernel", "fused": True}
    with pytest.raises(TypeError, match="fused must be a bool, got str"):
        nb.configure(fused="no")
    with pytest.raises(TypeError, match="handwritten_matmul must be a bool, got int"):
        nb.configure(handwritten_matmul=1)
    with pytest.raises(ValueError, match=r"matmul must be one of \('auto', 'kernel', 'blas'\), "
                                         "got 'gpu'"):
        nb.configure(matmul="gpu")
    with pytest.raises(TypeError, match="unexpected keyword"):
        backend.use_backend("numba", blas=True)


def test_bad_backend_name_raises():
    with pytest.raises(ValueError, match=r"backend must be one of .* got 'numbaa'"):
        backend.use_backend("numbaa")


def test_backend_provides_every_op_with_the_reference_signature():
    import inspect

    for op in backend.OPS:
        assert (inspect.signature(getattr(nb, op)).parameters.keys()
                == inspect.signature(getattr(ref, op)).parameters.keys()), op


# ---- the whole model -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_model_loss_and_grads_agree_across_backends(rng, dtype, tol):
    from miniclip import CONFIGS
    from miniclip.model.clip import CLIP

    from .test_model import random_batch

    cfg = CONFIGS["tiny"]
    model = CLIP(cfg, seed=0, dtype=dtype)
    images, tokens = random_batch(cfg, 3, rng, dtype)
    with backend.use_backend("numpy"):
        loss_ref, grads_ref = model.loss_and_grads(images, tokens)
    with backend.use_backend("numba"):
        loss, grads = model.loss_and_grads(images, tokens)
    assert abs(loss - loss_ref) <= tol * abs(loss_ref)
    assert list(grads) == list(grads_ref)
    for name in grads:
        g, g_ref = np.asarray(grads[name]), np.asarray(grads_ref[name])
        assert g.dtype == np.dtype(dtype), name
        err = np.max(np.abs(g - g_ref)) / max(np.max(np.abs(g_ref)), 1e-30)
        assert err <= tol, f"{name}: relative error {err:.1e} > {tol:.0e}"


def test_default_backend_is_numba_and_falls_back_to_numpy(monkeypatch):
    import importlib

    fresh = importlib.reload(backend)  # a new module state: the default, nothing loaded yet
    try:
        assert fresh.get_backend() == "numba"
        monkeypatch.setitem(fresh._MODULES, "numba", "miniclip.kernels.no_such_module")
        with pytest.warns(RuntimeWarning, match="default backend 'numba' could not be loaded"):
            assert fresh.ops.linear_forward.__wrapped__ is ref.linear_forward
        assert fresh.get_backend() == "numpy"
        with pytest.raises(ImportError):  # an explicit choice fails loudly
            fresh.use_backend("numba")
    finally:
        monkeypatch.undo()
        importlib.reload(backend)


# ---- measured routing ------------------------------------------------------------------------

def test_auto_routing_measures_each_product_once_and_remembers_it(tmp_path, monkeypatch, rng):
    monkeypatch.setenv("MINICLIP_CACHE_DIR", str(tmp_path))
    timed = []
    real_time_both = routing._time_both

    def record(kernel, blas):
        timed.extend([kernel.__name__, blas.__name__])
        return real_time_both(kernel, blas)

    monkeypatch.setattr(routing, "_time_both", record)
    x, w, b = randn(rng, (9, 7), np.float64), randn(rng, (5, 7), np.float64), np.zeros(5)
    with backend.use_backend("numba", matmul="auto"):
        out, cache = nb.linear_forward(x, w, b)
        nb.linear_backward(np.ones_like(out), cache)
        assert len(timed) == 6  # forward, dx, dw: each product timed both ways, once
        nb.linear_backward(np.ones_like(out), nb.linear_forward(x, w, b)[1])
        assert len(timed) == 6  # known products: no more timing
    np.testing.assert_allclose(out, x @ w.T, rtol=1e-12)
    saved = json.loads((tmp_path / "matmul_routes.json").read_text())
    assert saved["machine"] == routing.machine()
    assert sorted(saved["routes"]) == ["dw float64 5x7x9 threads=%d" % numba.get_num_threads(),
                                       "dx float64 9x7x5 threads=%d" % numba.get_num_threads(),
                                       "forward float64 9x5x7 threads=%d" % numba.get_num_threads()]
    for entry in saved["routes"].values():
        faster = ("kernel" if entry["kernel_s"] <= (1 - routing.KERNEL_MARGIN) * entry["blas_s"]
                  else "blas")
        assert entry["route"] == faster
        assert entry["load"] is None or entry["load"] >= 0  # the load average when measured
    fresh = routing.Routes(tmp_path / "matmul_routes.json")  # another process reads them back
    assert fresh.table == saved["routes"]


def test_routes_of_another_machine_are_not_used(tmp_path):
    path = tmp_path / "matmul_routes.json"
    path.write_text(json.dumps({"machine": "some other CPU", "routes": {"x": {"route": "blas"}}}))
    assert routing.Routes(path).table == {}
    path.write_text("{ torn")  # a half-written file (a kill mid-write): measured again
    assert routing.Routes(path).table == {}


def test_explain_lists_the_choices(tmp_path, monkeypatch, capsys):
    from miniclip.kernels.__main__ import main

    monkeypatch.setenv("MINICLIP_CACHE_DIR", str(tmp_path))
    assert main(["--explain"]) == 0
    assert "no products measured yet" in capsys.readouterr().out
    routing.routes().choose(("forward", "float32", 2, 3, 4, 1), kernel=lambda: None,
                            blas=lambda: sum(range(10000)))
    assert main(["--explain"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("forward float32 2x3x4"))
    assert row.split()[-2] == "kernel"  # then the load average it was measured at
    assert main(["--forget"]) == 0
    assert not (tmp_path / "matmul_routes.json").exists()


def test_a_choice_already_on_disk_wins(tmp_path):
    """Two processes meeting the same product route it the same way: the first to write wins."""
    path = tmp_path / "matmul_routes.json"
    first, second = routing.Routes(path), routing.Routes(path)  # both started before any write
    key = ("dx", "float32", 1, 2, 3, 1)
    slow = lambda: sum(range(50000))  # noqa: E731
    assert first.choose(key, kernel=lambda: None, blas=slow) == "kernel"
    assert second.choose(key, kernel=slow, blas=lambda: None) == "kernel"  # read, not re-timed


def test_routing_takes_turns_and_keeps_each_ones_best(monkeypatch):
    """_time_both alternates the two runs, so a burst of load hits both; the best round counts."""
    calls = []
    clock = iter(range(1000))
    monkeypatch.setattr(routing.time, "perf_counter", lambda: next(clock))
    routing._time_both(lambda: calls.append("k"), lambda: calls.append("b"))
    assert calls == ["k", "b"] * (1 + routing.REPEATS)


def test_default_route_is_measured_and_set_by_the_environment():
    import subprocess
    import sys

    code = "from miniclip.kernels.numba import ops; print(ops.options()['matmul'])"
    env = {k: v for k, v in os.environ.items() if k != "MINICLIP_MATMUL"}
    run = lambda extra: subprocess.run([sys.executable, "-c", code], env={**env, **extra},  # noqa: E731
                                       capture_output=True, text=True)
    assert run({}).stdout.strip() == "auto"
    assert run({"MINICLIP_MATMUL": "blas"}).stdout.strip() == "blas"
    bad = run({"MINICLIP_MATMUL": "fast"})
    assert bad.returncode != 0 and "MINICLIP_MATMUL must be one of" in bad.stderr


def test_auto_routing_measures_attention_forward_and_backward_once(tmp_path, monkeypatch, rng):
    from miniclip.kernels.numba import fused_ops

    monkeypatch.setenv("MINICLIP_CACHE_DIR", str(tmp_path))
    qkv = randn(rng, (2, 5, 12), np.float64)
    with backend.use_backend("numba", matmul="auto"):
        out, cache = fused_ops.attention_qkv_forward(qkv, 2, causal=True)
        dqkv = fused_ops.attention_qkv_backward(np.ones_like(out), cache)
    saved = json.loads((tmp_path / "matmul_routes.json").read_text())["routes"]
    name = f"attention-causal float64 4x5x2 threads={numba.get_num_threads()}"
    assert list(saved) == [name] and saved[name]["route"] == cache[-1]
    with backend.use_backend("numba", matmul="kernel"):  # the same numbers by the other route
        out_k, cache_k = fused_ops.attention_qkv_forward(qkv, 2, causal=True)
        np.testing.assert_allclose(out, out_k, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dqkv, fused_ops.attention_qkv_backward(np.ones_like(out),
                                                                          cache_k),
                                   rtol=1e-10, atol=1e-13)


def test_auto_routing_shares_a_route_between_batches_of_nearby_sizes(tmp_path, monkeypatch, rng):
    """Rows that change from batch to batch (skipped padding, hard negatives) are rounded up by
    routing.bucket: 41 and 44 rows share the route measured for 48; 49 rows get their own."""
    monkeypatch.setenv("MINICLIP_CACHE_DIR", str(tmp_path))
    measured = []
    real_time_both = routing._time_both
    monkeypatch.setattr(routing, "_time_both", lambda k, b: measured.append(1) or
                        real_time_both(k, b))
    w, b = randn(rng, (3, 5), np.float32), np.zeros(3, np.float32)
    with backend.use_backend("numba", matmul="auto"):
        for rows in (41, 44, 49):
            nb.linear_forward(randn(rng, (rows, 5), np.float32), w, b)
    threads = numba.get_num_threads()
    saved = json.loads((tmp_path / "matmul_routes.json").read_text())["routes"]
    assert sorted(saved) == [f"forward float32 48x3x5 threads={threads}",
                             f"forward float32 56x3x5 threads={threads}"]
    assert len(measured) == 2
