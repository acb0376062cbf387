"""Convert OpenAI's released CLIP ``.pt`` files to a safetensors (or .npz) file miniclip loads.

    python -m miniclip.convert ViT-B-32.pt ViT-B-32.safetensors
    python -m miniclip.convert ViT-B-32.pt ViT-B-32.npz --dtype float32
    python -m miniclip.convert hf-folder/pytorch_model.bin clip.safetensors   # HF's old format
    python -m miniclip.convert runs/toy runs/toy-hf --hf      # a trained run -> an HF folder

OpenAI's files are TorchScript archives (what ``clip.load(..., jit=True)`` runs), and some
checkpoints are plain pickled state dicts; both are read the way ``clip.load`` reads them:
``torch.jit.load`` first, ``torch.load`` if that fails. This is the only place miniclip imports
torch, inside ``read_torch_state_dict``, so the rest of miniclip never needs it.

The output has OpenAI's key names and, in its metadata, the config inferred from the shapes.
Weights keep their dtype (OpenAI's are float16) unless ``--dtype`` says otherwise; ``load``
upcasts float16 to float32. bfloat16 tensors, which NumPy cannot hold, are widened to float32
(exactly). The three integers OpenAI's archives carry (input_resolution, context_length,
vocab_size) are checked against the shapes and dropped.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from miniclip.pretrained.hf import is_hf_layout
from miniclip.pretrained.loading import (
    OPENAI_EXTRA_KEYS,
    model_from_state_dict,
    save_weights,
    to_openai_state,
)


def read_torch_state_dict(path):
    """A PyTorch checkpoint (TorchScript archive or pickled state dict) -> dict of numpy arrays."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"src: no such file: {path}"
                                + (" (it is a folder)" if path.is_dir() else ""))
    with open(path, "rb") as f:
        head = f.read(2)
    if not (head == b"PK" or head[:1] == b"\x80"):  # a zip archive (torch >= 1.6), or a pickle
        raise ValueError(f"src {path} is not a PyTorch checkpoint: it is neither a zip archive "
                         "nor a pickle" + (" (the file is empty)" if not head else ""))
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"converting {path} needs PyTorch: pip install torch (the CPU wheel "
                          "is enough). Loading the converted file does not.") from e
    try:
        with warnings.catch_warnings():  # recent torch deprecates TorchScript; it still reads it
            warnings.simplefilter("ignore", DeprecationWarning)
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
    except Exception:  # noqa: BLE001 - not a TorchScript archive: a pickled state dict?
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
            # (KeyError for a text file, UnpicklingError, RuntimeError, EOFError, ...)
            raise ValueError(f"src {path} is not a PyTorch checkpoint that can be read "
                             f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint wrapping the weights
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    out = {}
    for name, tensor in state.items():
        if name in OPENAI_EXTRA_KEYS and isinstance(tensor, int):
            out[name] = np.array(tensor)
            continue
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{path}: entry {name!r} is a {type(tensor).__name__}, not a tensor")
        tensor = tensor.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()  # numpy has no bfloat16; every bfloat16 is a float32
        out[name.removeprefix("module.")] = tensor.numpy().copy()  # DataParallel's prefix
    return out


def convert(src, dst, dtype=None, overwrite=False):
    """Read a PyTorch CLIP checkpoint, check it builds a model, write OpenAI-layout dst.

    OpenAI's .pt files, and HF's pytorch_model.bin (with its config.json beside it) too.
    dtype: None keeps the stored dtype; "float32" / "float64" / "float16" converts. Returns the
    CLIPConfig. An existing dst is replaced only with ``overwrite=True``.
    """
    if dtype is not None and str(np.dtype(dtype)) not in ("float16", "float32", "float64"):
        raise ValueError(f"dtype must be float16, float32, float64 or None, got {dtype!r}")
    dst = Path(dst)
    if dst.suffix not in (".safetensors", ".npz"):
        raise ValueError(f"dst must end in .safetensors or .npz, got {str(dst)!r}")
    if dst.exists() and not overwrite:
        raise FileExistsError(f"dst {dst} exists; it is never written over: pass --overwrite "
                              "(overwrite=True) or choose another name")
    if dst.exists() and Path(src).exists() and dst.resolve() == Path(src).resolve():
        raise ValueError(f"dst is the same file as src ({src})")
    state = read_torch_state_dict(src)
    extras = {k: state.pop(k) for k in OPENAI_EXTRA_KEYS if k in state}
    stored = {v.dtype for k, v in state.items() if not k.endswith("position_ids")}
    if dtype is None and len(stored) != 1:
        raise ValueError(f"{src} mixes dtypes {sorted(map(str, stored))}; pass --dtype")
    out_dtype = np.dtype(dtype) if dtype is not None else stored.pop()
    config_json = Path(src).parent / "config.json"
    hf_config = None
    if is_hf_layout(state) and config_json.is_file():
        hf_config = json.loads(config_json.read_text())
    state, cfg = to_openai_state(state, hf_config=hf_config, where=str(src))
    inferred = {"input_resolution": cfg.image_resolution, "context_length": cfg.context_length,
                "vocab_size": cfg.vocab_size}
    for key, value in extras.items():
        if int(value) != inferred[key]:
            raise ValueError(f"{src}: {key} = {int(value)}, but the weights' shapes give "
                             f"{inferred[key]}")
    # float16 and bfloat16 weights are exact in float32, so the model in between loses nothing
    work_dtype = np.float64 if out_dtype == np.float64 else np.float32
    model = model_from_state_dict(state, cfg, work_dtype)  # strict: names and shapes checked
    save_weights(model, dst, dtype=out_dtype)
    return cfg


def export_hf(src, folder):
    """Anything ``miniclip.load`` takes (a run folder above all) -> an HF folder that
    ``transformers.CLIPModel.from_pretrained`` and ``miniclip.load`` read: model.safetensors,
    config.json, the tokenizer as HF's CLIPTokenizer files (vocab.json, merges.txt), and the
    images' mean and std in preprocessor_config.json."""
    from miniclip.pretrained.hf import save_hf
    from miniclip.pretrained.loading import load

    model, preprocess, tokenizer = load(src)
    save_hf(model, folder, tokenizer=tokenizer, preprocess=preprocess)
    return model.cfg


def main(argv=None):
    """The command line; expected failures are one line and exit code 2 (``miniclip.cli``)."""
    from miniclip.cli import run_main

    return run_main(_main, argv)


def _main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m miniclip.convert", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="OpenAI checkpoint, e.g. ViT-B-32.pt; with --hf anything "
                                "miniclip.load takes (a run folder)")
    ap.add_argument("dst", help="output file, .safetensors or .npz; with --hf a folder")
    ap.add_argument("--dtype", choices=["float16", "float32", "float64"], default=None,
                    help="dtype of the output (default: as stored)")
    ap.add_argument("--hf", action="store_true", help="export an HF folder (transformers' "
                    "CLIPModel.from_pretrained reads it), tokenizer included")
    ap.add_argument("--overwrite", action="store_true", help="replace dst if it exists")
    args = ap.parse_args(argv)
    if args.hf:
        if args.dtype is not None:
            ap.error("--dtype is not used with --hf (the model's dtype is kept)")
        try:
            cfg = export_hf(args.src, args.dst)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"wrote {args.dst}/ (model.safetensors, config.json, vocab.json, merges.txt, "
              f"preprocessor_config.json): {cfg}")
        return 0
    if Path(args.dst).suffix not in (".safetensors", ".npz"):
        ap.error(f"dst must end in .safetensors or .npz, got {args.dst!r}")
    cfg = convert(args.src, args.dst, args.dtype, overwrite=args.overwrite)
    print(f"wrote {args.dst}: {cfg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
