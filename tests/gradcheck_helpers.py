"""Helpers shared by the gradient-check tests."""


from miniclip.nn.gradcheck import check_gradient

TOL = 1e-7
# worst relative error seen per layer in this test run (printed by conftest at the end)
MAX_ERRORS: dict[str, float] = {}


def record(name, err):
    MAX_ERRORS[name] = max(MAX_ERRORS.get(name, 0.0), err)


def assert_grads_close(layer, f, dout, pairs, tol=TOL):
    """pairs: {name: (array perturbed in place, analytic gradient)}. f(_) recomputes the output
    from the (perturbed) arrays it closes over."""
    for name, (x, analytic) in pairs.items():
        err = check_gradient(f, x, dout, analytic)
        record(layer, err)
        assert err <= tol, f"{layer}: d{name} relative error {err:.2e} > {tol:.0e}"


def block_params(rng, C, scale=0.3):
    """Random float64 params of one residual block of width C, keyed as OpenAI's below
    'resblocks.{i}.'. LayerNorm gains sit near 1 so the check runs where training does."""
    return {
        "ln_1.weight": 1 + 0.1 * rng.standard_normal(C), "ln_1.bias": 0.1 * rng.standard_normal(C),
        "attn.in_proj_weight": scale * rng.standard_normal((3 * C, C)),
        "attn.in_proj_bias": scale * rng.standard_normal(3 * C),
        "attn.out_proj.weight": scale * rng.standard_normal((C, C)),
        "attn.out_proj.bias": scale * rng.standard_normal(C),
        "ln_2.weight": 1 + 0.1 * rng.standard_normal(C), "ln_2.bias": 0.1 * rng.standard_normal(C),
        "mlp.c_fc.weight": scale * rng.standard_normal((4 * C, C)),
        "mlp.c_fc.bias": scale * rng.standard_normal(4 * C),
        "mlp.c_proj.weight": scale * rng.standard_normal((C, 4 * C)),
        "mlp.c_proj.bias": scale * rng.standard_normal(C),
    }
