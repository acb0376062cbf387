"""miniclip: CLIP from scratch in NumPy, every forward and backward pass written by hand.

The public API (see DESIGN.md) is re-exported here. Exports are resolved lazily, on first use,
so ``python -m miniclip.params`` or ``python -m miniclip.train`` run their module once, cleanly,
and ``import miniclip`` stays quick.
"""

from importlib import import_module

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "CLIP": "model",
    "SimpleTokenizer": "tokenizer",
    "BPETokenizer": "tokenizer",
    "tokenize": "tokenizer",
    "load": "loading",
    "load_model": "loading",
    "save_weights": "loading",
    "infer_config": "loading",
    "Preprocess": "preprocess",
    "save_hf": "hf",
    "generate_dataset": "datasets",
    "load_split": "datasets",
    "CLIPConfig": "config",
    "CONFIGS": "config",
    "count_parameters": "params",
    "parameter_breakdown": "params",
    "parameter_shapes": "params",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # cache: later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'miniclip' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
