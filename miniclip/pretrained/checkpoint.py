"""Training checkpoints: one ``.safetensors`` file, written atomically, read back with every check.

A checkpoint is everything a run needs to go on exactly where it stopped, in one file that the
rest of the ecosystem reads (``safetensors.numpy.load_file``, ``safetensors.torch``, and
``miniclip.load``): the weights under OpenAI's state-dict names, so a final ``model.safetensors``
is an OpenAI-layout weights file for any reader; AdamW's moments beside them; everything else as
JSON in the file's metadata:

    <name>                  every weight, under OpenAI's state-dict name (float32)
    adam_m/<name>           AdamW's first moments      (training checkpoints only)
    adam_v/<name>           AdamW's second moments     (training checkpoints only)
    metadata "meta.json"    format, version, model config, step, training arguments, the
                            augmentation RNG's state, the tokenizer's merges, the dataset's
                            identity and preprocessing, seconds trained so far
    metadata "miniclip_config"  the model config alone (what ``miniclip.load`` reads)
    metadata "sha256"       a digest of every tensor's name, dtype, shape and bytes

Writing goes to a temporary file in the same folder, which is flushed to disk (fsync) and then
renamed over the old checkpoint (``os.replace``, atomic on POSIX and Windows): a crash at any
moment leaves either the old checkpoint or the new one, never half of one.

Reading checks, in order, and says what is wrong: the file exists; it is readable (a truncated
file fails here) and its digest matches (flipped bytes fail here); the metadata has this format
and version; the config is valid; every weight the config implies is present with the right
shape, and no other; the optimizer's moments match the weights; nothing is NaN or inf.

Checkpoints of earlier miniclip versions are ``.npz`` files (``params/<name>``, ``adam_m/...``,
a ``meta.json`` entry); they still load, and ``save_checkpoint`` still writes one when the path
ends in ``.npz``.

    >>> import numpy as np, miniclip, tempfile, os
    >>> model = miniclip.CLIP(miniclip.CONFIGS["tiny"], seed=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.safetensors")
    >>> save_checkpoint(path, model.cfg, model.params, step=7)
    >>> ckpt = load_checkpoint(path)
    >>> ckpt.step, np.array_equal(ckpt.params["visual.proj"], model.params["visual.proj"])
    (7, True)
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from miniclip import backend
from miniclip.digest import array_digest
from miniclip.model.config import CLIPConfig
from miniclip.model.params import parameter_shapes
from miniclip.pretrained.preprocess import ToyPreprocess, preprocess_from_dict
from miniclip.text.bpe import BPETokenizer
from miniclip.text.tokenizer import ModelTokenizer

__all__ = ["Checkpoint", "CheckpointError", "ModelTokenizer", "ToyPreprocess", "load_checkpoint",
           "load_trained", "save_checkpoint"]  # ModelTokenizer, ToyPreprocess: re-exported

FORMAT = "miniclip-checkpoint"
VERSION = 1
META_KEY = "meta.json"
PREFIXES = {"params": "params/", "m": "adam_m/", "v": "adam_v/"}  # in .npz files
ST_PREFIXES = {"params": "", "m": "adam_m/", "v": "adam_v/"}  # in .safetensors files
CONFIG_KEY = "miniclip_config"  # = pretrained.loading.CONFIG_METADATA_KEY
DIGEST_KEY = "sha256"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: corrupt, truncated, of another version, or not
    matching its own config. The message says which."""


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns. ``optimizer`` is None for a weights-only file."""

    path: Path
    config: CLIPConfig
    params: dict
    step: int = 0
    optimizer: dict | None = None  # {"t": int, "m": {name: array}, "v": {name: array}}
    rng_state: dict | None = None  # np.random.Generator().bit_generator.state
    tokenizer: dict | None = None  # BPETokenizer.to_dict()
    data: dict = field(default_factory=dict)  # the dataset's identity, mean and std
    train_args: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # anything else (seconds trained, ...)


# ---- writing ---------------------------------------------------------------------------------

def atomic_write(path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, rename it to ``path``.

    If ``write`` raises (or the process is interrupted) the temporary file is removed and
    ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them visible
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable (POSIX); not possible on every system
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def save_checkpoint(path, config: CLIPConfig, params: dict, *, step: int = 0,
                    optimizer: dict | None = None, rng_state: dict | None = None,
                    tokenizer: dict | None = None, data: dict | None = None,
                    train_args: dict | None = None, extra: dict | None = None) -> None:
    """Write a checkpoint atomically. ``optimizer`` is ``AdamW.state_dict()`` or None. Arrays
    on the GPU (a run on the cuda backend) are copied to the host here."""
    if not isinstance(config, CLIPConfig):
        raise TypeError(f"config must be a CLIPConfig, got {type(config).__name__}")
    meta = {
        "format": FORMAT, "version": VERSION, "config": config.to_dict(), "step": int(step),
        "optimizer_t": None if optimizer is None else int(optimizer["t"]),
        "rng_state": rng_state, "tokenizer": tokenizer, "data": data or {},
        "train_args": train_args or {}, "extra": extra or {},
    }
    legacy = Path(path).suffix == ".npz"
    prefixes = PREFIXES if legacy else ST_PREFIXES
    arrays = {}
    for name, value in params.items():
        arrays[prefixes["params"] + name] = np.asarray(backend.to_host(value))
    if optimizer is not None:
        for moment in ("m", "v"):
            for name, value in optimizer[moment].items():
                arrays[prefixes[moment] + name] = np.asarray(backend.to_host(value))
    if legacy:
        arrays[META_KEY] = np.array(json.dumps(meta))  # a 0-d unicode array: no pickle needed
        atomic_write(path, lambda f: np.savez(f, **arrays))
        return
    from safetensors.numpy import save

    arrays = {k: v if v.flags.c_contiguous else np.array(v, order="C") for k, v in arrays.items()}
    metadata = {"format": FORMAT, META_KEY: json.dumps(meta),
                CONFIG_KEY: json.dumps(config.to_dict()), DIGEST_KEY: tensor_digest(arrays)}
    data = save(arrays, metadata=metadata)
    atomic_write(path, lambda f: f.write(data))


def tensor_digest(arrays: dict) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes (safetensors has no checksum of
    its own; this catches flipped bytes)."""
    return array_digest(arrays)


# ---- reading ---------------------------------------------------------------------------------

def _read_arrays(path: Path) -> dict:
    """Every entry of the npz, read now (so that a bad CRC or a truncated entry shows here)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint: the file is corrupt or "
                              f"truncated ({type(e).__name__}: {e})") from e


def _check_tensors(path, what, found: dict, shapes: dict) -> None:
    missing = [k for k in shapes if k not in found]
    unexpected = [k for k in found if k not in shapes]
    if missing or unexpected:
        raise CheckpointError(f"{path}: {what} do not match the checkpoint's own config: missing "
                              f"{missing[:5]}{' ...' if len(missing) > 5 else ''}, unexpected "
                              f"{unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    for k, shape in shapes.items():
        if found[k].shape != tuple(shape):
            raise CheckpointError(f"{path}: {what} {k!r} has shape {found[k].shape}, the config "
                                  f"implies {tuple(shape)}")
        if not np.issubdtype(found[k].dtype, np.floating):
            raise CheckpointError(f"{path}: {what} {k!r} has dtype {found[k].dtype}, expected "
                                  "floating point")
        if not np.isfinite(found[k]).all():
            raise CheckpointError(f"{path}: {what} {k!r} contains NaN or inf")


def _read_safetensors_checkpoint(path: Path):
    """-> (meta dict, {group: {name: array}}) of a .safetensors checkpoint."""
    from miniclip.pretrained.weights_io import read_safetensors

    try:
        arrays, metadata = read_safetensors(path)
    except Exception as e:  # safetensors' own error type, ValueError, OSError, ...
        raise CheckpointError(f"{path} is not a readable checkpoint: the file is corrupt or "
                              f"truncated ({type(e).__name__}: {e})") from e
    if metadata.get("format") != FORMAT or META_KEY not in metadata:
        raise CheckpointError(f"{path} is not a miniclip checkpoint: its metadata has format "
                              f"{metadata.get('format')!r}, expected {FORMAT!r} (for weights "
                              "files, use miniclip.load)")
    if metadata.get(DIGEST_KEY) != tensor_digest(arrays):
        raise CheckpointError(f"{path} is corrupt or truncated: its tensors do not match the "
                              "sha256 digest stored in it")
    groups = {name: {} for name in ST_PREFIXES}
    for key, value in arrays.items():
        group = next((g for g in ("m", "v") if key.startswith(ST_PREFIXES[g])), "params")
        groups[group][key[len(ST_PREFIXES[group]):]] = value
    return _parse_meta(path, metadata[META_KEY]), groups


def _read_npz_checkpoint(path: Path):
    """-> (meta dict, {group: {name: array}}) of a legacy .npz checkpoint."""
    arrays = _read_arrays(path)
    if META_KEY not in arrays:
        raise CheckpointError(f"{path} is not a miniclip checkpoint: it has no {META_KEY!r} entry "
                              f"(entries: {sorted(arrays)[:5]})")
    meta = _parse_meta(path, str(arrays.pop(META_KEY)))
    groups = {name: {} for name in PREFIXES}
    for key, value in arrays.items():
        for name, prefix in PREFIXES.items():
            if key.startswith(prefix):
                groups[name][key[len(prefix):]] = value
                break
        else:
            raise CheckpointError(f"{path}: unexpected entry {key!r}")
    return meta, groups


def _parse_meta(path, text):
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: its {META_KEY!r} entry is not valid JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path} is not a miniclip checkpoint: format {found!r}, "
                              f"expected {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} is a version {meta.get('version')!r} checkpoint; this "
                              f"miniclip reads version {VERSION}")
    return meta


def load_checkpoint(path) -> Checkpoint:
    """Read and check a checkpoint (.safetensors, or a legacy .npz); raise CheckpointError
    saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.suffix == ".npz":
        meta, groups = _read_npz_checkpoint(path)
    else:
        meta, groups = _read_safetensors_checkpoint(path)
    try:
        config = CLIPConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its model config is not valid ({e})") from e

    shapes = parameter_shapes(config)
    _check_tensors(path, "weight", groups["params"], shapes)
    optimizer = None
    if meta.get("optimizer_t") is not None:
        _check_tensors(path, "optimizer first moment", groups["m"], shapes)
        _check_tensors(path, "optimizer second moment", groups["v"], shapes)
        optimizer = {"t": int(meta["optimizer_t"]), "m": groups["m"], "v": groups["v"]}
    elif groups["m"] or groups["v"]:
        raise CheckpointError(f"{path}: optimizer moments are stored but no optimizer step count")
    params = {k: groups["params"][k] for k in shapes}  # OpenAI's order
    return Checkpoint(path=path, config=config, params=params, step=int(meta.get("step", 0)),
                      optimizer=optimizer, rng_state=meta.get("rng_state"),
                      tokenizer=meta.get("tokenizer"), data=meta.get("data") or {},
                      train_args=meta.get("train_args") or {}, extra=meta.get("extra") or {})


# ---- using a trained model -------------------------------------------------------------------

MODEL_FILE = "model.safetensors"  # the final weights of a run (no optimizer state)
CHECKPOINT_FILE = "checkpoint.safetensors"  # the latest training checkpoint of a run
LEGACY_FILES = ("model.npz", "checkpoint.npz")  # what earlier miniclip versions wrote


def resolve_checkpoint_path(path) -> Path:
    """A run folder -> its model.safetensors (or checkpoint.safetensors, or an older run's
    model.npz / checkpoint.npz); a file -> itself."""
    path = Path(path)
    if path.is_dir():
        for name in (MODEL_FILE, CHECKPOINT_FILE, *LEGACY_FILES):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"{path} is a folder without {MODEL_FILE} or {CHECKPOINT_FILE}; "
                                "is it a run folder written by `python -m miniclip.train`?")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint or run folder at {path}")
    return path


def is_trained_checkpoint(path) -> bool:
    """True for a run folder of ``python -m miniclip.train`` or a miniclip checkpoint file (for
    ``miniclip.load`` to choose between this and Hugging Face / OpenAI weights). Reads only the
    safetensors header, or the zip's table of contents of a legacy .npz."""
    from miniclip.pretrained.weights_io import read_safetensors_header

    path = Path(path)
    if path.is_dir():  # an HF folder has a model.safetensors too: look inside
        return any(is_trained_checkpoint(path / name) for name in (MODEL_FILE, CHECKPOINT_FILE,
                                                                   *LEGACY_FILES))
    if path.is_file() and path.suffix == ".safetensors":
        try:
            return read_safetensors_header(path)[1].get("format") == FORMAT
        except ValueError:
            return False
    if not (path.is_file() and zipfile.is_zipfile(path)):
        return False
    with zipfile.ZipFile(path) as z:
        return META_KEY + ".npy" in z.namelist()


def tokenizer_from_checkpoint(ckpt: Checkpoint) -> ModelTokenizer:
    """The tokenizer stored in a checkpoint (trained on its dataset's captions)."""
    if ckpt.tokenizer is None:
        raise CheckpointError(f"{ckpt.path} holds no tokenizer")
    try:
        merges = BPETokenizer.from_dict(ckpt.tokenizer).merges
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt.path}: its tokenizer is not valid ({e})") from e
    tokenizer = ModelTokenizer(merges, ckpt.config.context_length)
    if tokenizer.vocab_size != ckpt.config.vocab_size:
        raise CheckpointError(f"{ckpt.path}: the tokenizer has {tokenizer.vocab_size} tokens but "
                              f"the model's vocab_size is {ckpt.config.vocab_size}")
    return tokenizer


def preprocess_from_checkpoint(ckpt: Checkpoint, dtype=np.float32):
    """The preprocessing a run used: the kind it recorded (``Preprocess.to_dict``), or, for runs
    that recorded only their dataset's mean and std (the toy world), ``ToyPreprocess``."""
    if "preprocess" in ckpt.data:
        try:
            return preprocess_from_dict(ckpt.data["preprocess"], dtype)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{ckpt.path}: its preprocessing is not valid ({e})") from e
    if not {"resolution", "mean", "std"} <= set(ckpt.data):
        raise CheckpointError(f"{ckpt.path} does not record its dataset's mean and std, so its "
                              "images cannot be preprocessed")
    return ToyPreprocess(ckpt.config.image_resolution, ckpt.data["mean"], ckpt.data["std"], dtype)


def load_trained(path, dtype=None):
    """A model trained by ``python -m miniclip.train``: -> (model, preprocess, tokenizer).

    ``path``: a run folder (its model.safetensors, else its checkpoint.safetensors; an older
    run's .npz files too) or a checkpoint file.
    ``dtype``: the model's (None: float32, the dtype it was trained in); preprocess returns it.

        model, preprocess, tokenizer = load_trained("runs/toy")
        image_features = model.encode_image(preprocess(images))            # (N, E)
        text_features = model.encode_text(tokenizer(["a red circle."]))    # (1, E)
    """
    from miniclip.model.clip import CLIP

    ckpt = load_checkpoint(resolve_checkpoint_path(path))
    model = CLIP(ckpt.config, seed=0, dtype=np.float32 if dtype is None else dtype)
    model.load_state_dict(ckpt.params)
    preprocess = preprocess_from_checkpoint(ckpt, model.dtype)
    return model, preprocess, tokenizer_from_checkpoint(ckpt)
