"""AdamW, the schedule and gradient clipping against the formulas they implement."""

import math

import numpy as np
import pytest

from miniclip.train.optim import AdamW, clip_grad_norm, cosine_lr, decays


def test_adamw_matches_the_formulas_step_by_step(rng):
    w0 = rng.standard_normal((3, 2))
    params = {"w": w0.copy(), "b": np.zeros(2)}
    opt = AdamW(params, lr=0.01, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
    w, m, v = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    for t in range(1, 6):
        g = rng.standard_normal((3, 2))
        opt.step({"w": g.copy(), "b": np.ones(2)})
        m = 0.9 * m + 0.1 * g
        v = 0.98 * v + 0.02 * g * g
        w = w - 0.01 * ((m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.98**t)) + 1e-6) + 0.2 * w)
        np.testing.assert_allclose(params["w"], w, rtol=1e-12)
    # the bias has no decay: a constant gradient of 1 moves it by exactly lr per step
    np.testing.assert_allclose(params["b"], -0.05 * np.ones(2) / (1 + 1e-6), rtol=1e-6)


def test_decay_only_on_matrices():
    assert decays("visual.conv1.weight", np.zeros((4, 3, 2, 2)))
    assert decays("token_embedding.weight", np.zeros((5, 2)))
    for name, shape in [("visual.class_embedding", (4,)), ("positional_embedding", (7, 4)),
                        ("visual.positional_embedding", (5, 4)), ("logit_scale", ()),
                        ("ln_final.weight", (4,)), ("transformer.resblocks.0.mlp.c_fc.bias", (8,))]:
        assert not decays(name, np.zeros(shape)), name


def test_optimizer_state_round_trip(rng):
    params = {"w": rng.standard_normal((2, 2))}
    a = AdamW(params)
    a.step({"w": np.ones((2, 2))})
    b_params = {"w": params["w"].copy()}
    b = AdamW(b_params)
    b.load_state_dict(a.state_dict())
    g = rng.standard_normal((2, 2))
    a.step({"w": g})
    b.step({"w": g.copy()})
    np.testing.assert_array_equal(params["w"], b_params["w"])


def test_step_rejects_mismatched_grads():
    opt = AdamW({"w": np.zeros(2)})
    with pytest.raises(KeyError, match="missing.*'w'"):
        opt.step({"x": np.zeros(2)})


def test_cosine_schedule():
    lrs = [cosine_lr(s, 100, 1.0, warmup_steps=10) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.5) and lrs[100] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))  # decreasing after warmup


def test_clip_grad_norm():
    grads = {"a": np.array([3.0]), "b": np.array([4.0])}
    assert clip_grad_norm(grads, 1.0) == pytest.approx(5.0)
    assert math.hypot(grads["a"][0], grads["b"][0]) == pytest.approx(1.0)
    assert clip_grad_norm(grads, 10.0) == pytest.approx(1.0)  # under the limit: unchanged


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_one_pass_update_is_bit_for_bit_the_numpy_lines(rng, dtype):
    """The numba backend's AdamW kernel (kernels/numba/adamw.py) against the NumPy lines of
    AdamW.step: the same bits after several steps, with and without decay, for a 0-d tensor too."""
    from miniclip import backend
    from miniclip.kernels.numba.adamw import SERIAL_BELOW

    # small tensors take the serial kernel, the large one the parallel kernel
    shapes = {"visual.conv1.weight": (7, 3, 2, 2), "ln_1.bias": (5,), "logit_scale": (),
              "c_fc.weight": (SERIAL_BELOW // 64 + 1, 64)}
    start = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    grads = [{k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
             for _ in range(4)]
    results = {}
    for name in ("numpy", "numba"):
        params = {k: v.copy() for k, v in start.items()}
        opt = AdamW(params, lr=3e-3)
        with backend.use_backend(name):
            assert (backend.fused("adamw_update") is not None) == (name == "numba")
            for t, g in enumerate(grads):
                opt.step({k: v.copy() for k, v in g.items()}, lr=3e-3 * (t + 1))
        results[name] = (params, opt.m, opt.v)
    for (p_np, m_np, v_np), (p_nb, m_nb, v_nb) in [(results["numpy"], results["numba"])]:
        for k in shapes:
            np.testing.assert_array_equal(p_nb[k], p_np[k], err_msg=k)
            np.testing.assert_array_equal(m_nb[k], m_np[k], err_msg=k)
            np.testing.assert_array_equal(v_nb[k], v_np[k], err_msg=k)
            assert not np.array_equal(p_nb[k], start[k])  # it did move


def test_numba_one_pass_update_checks_its_arrays():
    from miniclip.kernels.numba.adamw import adamw_update

    p = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="g must have p's shape"):
        adamw_update(p, np.zeros((3, 2), np.float32), p.copy(), p.copy(), lr=1e-3,
                     betas=(0.9, 0.98), t=1, eps=1e-6, weight_decay=0.0)
    with pytest.raises(ValueError, match="m must be C-contiguous"):
        adamw_update(p, p.copy(), np.zeros((3, 2), np.float32).T, p.copy(), lr=1e-3,
                     betas=(0.9, 0.98), t=1, eps=1e-6, weight_decay=0.0)
