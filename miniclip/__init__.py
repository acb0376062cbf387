"""miniclip: CLIP from scratch in NumPy, every forward and backward pass written by hand.

The public API (docs/architecture.md) is re-exported here. Exports are resolved lazily, on first use,
so ``python -m miniclip.model.params`` or ``python -m miniclip.train`` run their module once, cleanly,
and ``import miniclip`` stays quick.
"""

from importlib import import_module

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "CLIP": "model.clip",
    "SimpleTokenizer": "text.tokenizer",
    "BPETokenizer": "text.bpe",
    "tokenize": "text.tokenizer",
    "load": "pretrained.loading",
    "load_model": "pretrained.loading",
    "available_models": "pretrained.hub",
    "save_weights": "pretrained.loading",
    "infer_config": "pretrained.loading",
    "Preprocess": "pretrained.preprocess",
    "save_hf": "pretrained.hf",
    "generate_dataset": "datasets",
    "load_split": "datasets",
    "use_backend": "backend",
    "get_backend": "backend",
    "CLIPConfig": "model.config",
    "CONFIGS": "model.config",
    "count_parameters": "model.params",
    "parameter_breakdown": "model.params",
    "parameter_shapes": "model.params",
    "distributed_loss_and_grads": "model.distributed",
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
