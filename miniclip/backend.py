"""Backends: one switch decides which implementation of each primitive op the model calls.

The primitives are the layers whose cost dominates: ``linear``, ``layernorm``, the activations
and scaled dot-product ``attention``, each a ``*_forward`` / ``*_backward`` pair with the
signatures of the NumPy reference in ``miniclip.nn``. The model and training reach them only
through ``backend.ops``, so changing the backend changes every call at once:

    >>> from miniclip import backend
    >>> _ = backend.use_backend("numpy")        # switch for good ...
    >>> with backend.use_backend("numpy"):      # ... or for a block, then switch back
    ...     pass
    >>> backend.get_backend()
    'numpy'

Backends: "numpy" (the reference in miniclip.nn), "numba" (Numba CPU kernels), "cuda"
(numba-cuda kernels). A backend is imported only when first selected.

The default is "numba", the fastest CPU path (benchmarks/README.md: a toy training step runs
about 3x faster than on the NumPy reference, with the same gradients to float64 rounding),
or "numpy" where Numba cannot be imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings

import numpy as np

# op names every backend provides
OPS = (
    "linear_forward", "linear_backward",
    "layernorm_forward", "layernorm_backward",
    "quick_gelu_forward", "quick_gelu_backward",
    "gelu_forward", "gelu_backward",
    "attention_forward", "attention_backward",
)

# fused ops a backend MAY provide (kernels/numba/fused_ops.py says what each one equals); where
# the backend has none, the model composes the plain ops above (the numpy reference always does)
FUSED_OPS = (
    "linear_act_forward", "linear_act_backward",
    "linear_residual_forward",  # its backward is linear_backward: the residual passes dout on
    "layernorm_backward_add",
    "attention_qkv_forward", "attention_qkv_backward",
    "adamw_update",  # the optimizer's update of one tensor in one pass (train/optim.py)
    "im2col", "col2im",  # a convolution's windows (nn/conv2d.py), for the stem (model/stem.py)
)

_MODULES = {
    "numpy": "miniclip.nn.ops",
    "numba": "miniclip.kernels.numba.all_ops",  # ops.py's plain ops and fused_ops.py's
    "cuda": "miniclip.kernels.cuda.ops",
}
_loaded: dict = {}
_mixed: dict = {}  # backend name -> {op name: the op, also taking 16-bit arrays (kernels/mixed.py)}
_current = "numba" if importlib.util.find_spec("numba") is not None else "numpy"
_default_unconfirmed = _current == "numba"  # the default; falls back to numpy if it fails to load


def available_backends() -> tuple[str, ...]:
    """The names use_backend accepts."""
    return tuple(_MODULES)


def _load(name):
    global _current, _default_unconfirmed
    if name not in _MODULES:
        raise ValueError(f"backend must be one of {tuple(_MODULES)}, got {name!r}")
    if name not in _loaded:
        try:
            module = importlib.import_module(_MODULES[name])
        except ImportError as err:
            if not (_default_unconfirmed and name == "numba"):
                raise
            warnings.warn(f"the default backend 'numba' could not be loaded ({err}); "
                          "using 'numpy'", RuntimeWarning, stacklevel=3)
            _current, _default_unconfirmed = "numpy", False
            return _load("numpy")
        missing = [op for op in OPS if not hasattr(module, op)]
        if missing:
            raise NotImplementedError(f"backend {name!r} lacks ops {missing}")
        _loaded[name] = module
    return _loaded[name]


class use_backend:
    """Select the backend for all later op calls; as a context manager, restore the previous
    one on exit. Extra keyword options are passed to the backend's ``configure``, if any."""

    def __init__(self, name: str, **options):
        global _current, _default_unconfirmed
        module = _load(name)
        _default_unconfirmed = False  # an explicit choice: never fall back silently
        if options:
            if not hasattr(module, "configure"):
                raise ValueError(f"backend {name!r} takes no options, got {sorted(options)}")
            self._old_options = module.configure(**options)
        self._module, self._options = module, options
        self._previous, _current = _current, name

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _current
        _current = self._previous
        if self._options:
            self._module.configure(**self._old_options)
        return False


def get_backend() -> str:
    """Name of the backend in use."""
    return _current


class _Ops:
    """Attribute access forwards to the current backend: ``ops.linear_forward(...)``.

    Every op also takes bfloat16 / float16 arrays: kernels/mixed.py widens them to float32 for
    the backend's op and rounds the activations it returns back to 16 bits (float32 and float64
    calls reach the backend's op unchanged)."""

    def __getattr__(self, name):
        if name not in OPS:
            raise AttributeError(f"no op named {name!r}; ops are {OPS}")
        module = _load(_current)
        if _current not in _mixed:
            from miniclip.kernels.mixed import mixed_ops

            _mixed[_current] = mixed_ops(module, OPS)
            # fused ops are float32/float64 only: not wrapped (fused() refuses 16-bit arrays)
            _mixed[_current].update({n: getattr(module, n) for n in FUSED_OPS
                                     if hasattr(module, n)})
        return _mixed[_current][name]

    def __dir__(self):
        return list(OPS)


ops = _Ops()


def fused(name: str, *arrays, required: bool = False):
    """The current backend's fused op ``name`` (one of FUSED_OPS), or None when the backend has
    none or any of ``arrays`` is 16-bit (mixed precision wraps only the plain ops). The caller
    then composes the plain ops, which compute the same numbers. ``required=True`` (a backward
    whose forward ran the fused op) makes None a RuntimeError. ``use_backend("numba",
    fused=False)`` turns them off (to compare):

        >>> with use_backend("numpy"):
        ...     fused("linear_act_forward") is None
        True
    """
    if name not in FUSED_OPS:
        raise ValueError(f"name must be one of {FUSED_OPS}, got {name!r}")
    getattr(ops, OPS[0])  # builds the current backend's table
    op = _mixed[_current].get(name)
    options = getattr(_loaded[_current], "options", dict)()
    from miniclip.kernels.dtypes import is_half

    if (op is None or not options.get("fused", True)
            or any(isinstance(a, np.ndarray) and is_half(a.dtype) for a in arrays)):
        if required:
            raise RuntimeError(f"the forward ran the fused op before {name}; its backward needs "
                               f"the same backend and settings, and {_current!r} offers none now")
        return None
    return op


class timed_ops:
    """Time every op call of the current backend, for a per-op profile (benchmarks use it):

        >>> with timed_ops() as timer:
        ...     pass                                # run a training step here
        >>> timer.seconds, timer.calls               # op name -> total seconds, number of calls
        ({}, {})

    Each op of the backend's table is wrapped by a timer on entry and restored on exit; the
    numbers are wall time, so they include the op's argument checks and allocations.
    """

    def __init__(self):
        self.seconds: dict = {}
        self.calls: dict = {}

    def __enter__(self):
        import time

        getattr(ops, OPS[0])  # builds the current backend's table
        self._name = _current
        table = _mixed[_current]
        self._saved = dict(table)

        def timed(name, fn):
            def op(*args, **kwargs):
                t0 = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
                    self.calls[name] = self.calls.get(name, 0) + 1
            return op

        for name, fn in self._saved.items():
            table[name] = timed(name, fn)
        return self

    def __exit__(self, *exc):
        _mixed[self._name].clear()
        _mixed[self._name].update(self._saved)
        return False


# ----- moving arrays between host and GPU ---------------------------------------------------

def to_device(tree):
    """NumPy arrays -> DeviceArrays on the GPU (the cuda backend's arrays), in a dict (such as
    ``model.params``), list or tuple, or alone. A model whose params are on the device keeps its
    training step there: ``model.params = backend.to_device(model.params)``."""
    device = _load("cuda")
    if isinstance(tree, dict):
        return {k: to_device(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_device(v) for v in tree)
    return device.to_device(tree)


def to_host(tree):
    """DeviceArrays -> NumPy arrays (copies), through dicts, lists and tuples; anything else is
    returned as it is. Safe to call without a GPU: with nothing on the device it changes nothing.

    >>> to_host({"w": [1.0, 2.0]})
    {'w': [1.0, 2.0]}
    """
    if isinstance(tree, dict):
        return {k: to_host(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_host(v) for v in tree)
    return tree.get() if on_device(tree) else tree


def cuda_adamw_step(p, g, m, v, **hyper):
    """AdamW's update of one tensor on the GPU, in one kernel (see cuda_adamw.py)."""
    from miniclip.kernels.cuda.adamw import adamw_step

    return adamw_step(p, g, m, v, threads=_load("cuda").tiles().threads, **hyper)


def on_device(array) -> bool:
    """True for a DeviceArray (an array in GPU memory), False for anything else."""
    return "cuda" in _loaded and isinstance(array, _loaded["cuda"].DeviceArray)
