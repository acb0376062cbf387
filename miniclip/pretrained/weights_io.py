"""Reading and writing files of named tensors: safetensors and NumPy's .npz.

A safetensors file is three things in a row:

    8 bytes            N, the length of the header (unsigned 64-bit, little-endian)
    N bytes            a JSON header: {name: {"dtype": "F16", "shape": [512, 768],
                                              "data_offsets": [begin, end]}, ...,
                                       "__metadata__": {str: str}}   (optional)
    the data           every tensor's raw bytes, C order, little-endian, offsets counted
                       from the first byte after the header

NumPy has no bfloat16, so ``safetensors.numpy`` cannot hand one back. bfloat16 is the top half of
a float32 (same sign and exponent bits, 7 of float32's 23 fraction bits), so a BF16 tensor is
read here as uint16 and widened exactly: ``(bits.astype(uint32) << 16).view(float32)``.

    >>> bits = np.array([0x3F80, 0xC000], dtype=np.uint16)    # bfloat16 for 1.0 and -2.0
    >>> bfloat16_to_float32(bits)
    array([ 1., -2.], dtype=float32)

Half-precision weights are upcast to float32 by ``upcast_half`` unless a 16-bit model is asked
for (``load(..., dtype="bfloat16")``): then they are read as they are stored, and never exist in
float32 (``read_safetensors(..., keep_16_bit=True)``).
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path

import numpy as np

from miniclip.kernels.dtypes import bfloat16

# safetensors dtype names -> NumPy dtypes (little-endian). BF16 is handled on its own.
SAFETENSORS_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?",
}
NPZ_METADATA_KEY = "__metadata__"  # an .npz entry holding the metadata as a JSON string


def bfloat16_to_float32(bits):
    """uint16 array of bfloat16 bit patterns -> float32 array with exactly the same values."""
    bits = np.asarray(bits)
    if bits.dtype != np.uint16:
        raise TypeError(f"bits must be a uint16 array of bfloat16 bit patterns, got {bits.dtype}")
    return (bits.astype(np.uint32) << 16).view(np.float32)


def read_safetensors_header(path):
    """-> (header: dict name -> {"dtype", "shape", "data_offsets"}, metadata: dict, data_start)."""
    path = Path(path)
    with open(path, "rb") as f:
        first = f.read(8)
        if len(first) != 8:
            raise ValueError(f"{path} is not a safetensors file: shorter than 8 bytes")
        (n,) = struct.unpack("<Q", first)
        size = path.stat().st_size
        if n > size - 8:
            raise ValueError(f"{path} is not a safetensors file: its first 8 bytes announce a "
                             f"{n}-byte header but the file has {size} bytes")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path} is not a safetensors file: the header is not JSON "
                             f"({e})") from e
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a safetensors file: the header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    end = 0
    for name, info in header.items():
        try:
            begin, stop = (int(x) for x in info["data_offsets"])
            shape = [int(d) for d in info["shape"]]
            info["dtype"]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path} is not a valid safetensors file: tensor {name!r} has a bad "
                             f"header entry {info!r}") from e
        if not 0 <= begin <= stop or min(shape, default=0) < 0:
            raise ValueError(f"{path}: tensor {name!r} has bad offsets {[begin, stop]} or shape "
                             f"{shape}")
        end = max(end, stop)
    if 8 + n + end > size:
        raise ValueError(f"{path} is truncated: its header describes {8 + n + end} bytes, the "
                         f"file has {size}; download or convert it again")
    return header, metadata, 8 + n


def _read_raw(path, header, data_start, keep_16_bit=False):
    """Read every tensor by hand from its offsets (used when a BF16 tensor is present). BF16
    comes back as float32, or as ml_dtypes' bfloat16 with ``keep_16_bit``."""
    tensors = {}
    with open(path, "rb") as f:
        for name, info in header.items():
            begin, end = info["data_offsets"]
            f.seek(data_start + begin)
            raw = f.read(end - begin)
            if info["dtype"] == "BF16":
                bits = np.frombuffer(raw, dtype="<u2").astype(np.uint16)  # native order, a copy
                array = bits.view(bfloat16) if keep_16_bit else bfloat16_to_float32(bits)
            elif info["dtype"] in SAFETENSORS_DTYPES:
                array = np.frombuffer(raw, dtype=SAFETENSORS_DTYPES[info["dtype"]])
                array = array.astype(array.dtype.newbyteorder("="))
            else:
                known = ", ".join(["BF16", *SAFETENSORS_DTYPES])
                raise ValueError(f"{path}: tensor {name!r} has dtype {info['dtype']}, which "
                                 f"miniclip cannot read (known: {known})")
            tensors[name] = array.reshape(info["shape"])
    return tensors


def read_safetensors(path, keep_16_bit=False):
    """-> (tensors: dict name -> ndarray, metadata: dict str -> str). BF16 comes back as float32,
    or as bfloat16 (ml_dtypes) with ``keep_16_bit``.

    Other dtypes come back as stored (float16 stays float16: see ``upcast_half``).
    """
    from safetensors.numpy import load_file

    path = Path(path)
    header, metadata, data_start = read_safetensors_header(path)
    try:
        if any(info.get("dtype") == "BF16" for info in header.values()):
            tensors = _read_raw(path, header, data_start, keep_16_bit)
        else:
            tensors = {k: np.array(v) for k, v in load_file(path).items()}  # copies out of mmap
    except ValueError as e:
        raise ValueError(f"{path}: {e}" if str(path) not in str(e) else str(e)) from e
    except Exception as e:  # noqa: BLE001 - safetensors' own SafetensorError, among others
        raise ValueError(f"{path} is not a readable safetensors file ({type(e).__name__}: "
                         f"{e})") from e
    return tensors, metadata


def _atomic_path(path):
    """A temporary file beside `path` (same filesystem, so os.replace is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def write_safetensors(tensors, path, metadata=None):
    """Write a dict of arrays (C-contiguous copies are made as needed), atomically."""
    from safetensors.numpy import save_file

    # (np.ascontiguousarray would turn a 0-d array such as logit_scale into shape (1,))
    tensors = {k: v if v.flags.c_contiguous else np.array(v, order="C") for k, v in tensors.items()}
    tmp = _atomic_path(path)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_npz(path):
    """-> (tensors, metadata) from an .npz written by ``write_npz`` (or any .npz of arrays).
    ValueError naming the file for a corrupt, truncated or non-npz file."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise ValueError("it holds one array, not named arrays (np.save, not np.savez)")
            tensors = {k: data[k] for k in data.files if k != NPZ_METADATA_KEY}
            metadata = (json.loads(str(data[NPZ_METADATA_KEY]))
                        if NPZ_METADATA_KEY in data.files else {})
    except Exception as e:  # noqa: BLE001 - BadZipFile, zlib.error, EOFError, ValueError ...
        raise ValueError(f"{path} is not a readable .npz of weights ({type(e).__name__}: "
                         f"{e})") from e
    return tensors, metadata


def write_npz(tensors, path, metadata=None):
    """Write arrays (and a str -> str metadata dict, stored as JSON) to an .npz, atomically."""
    if NPZ_METADATA_KEY in tensors:
        raise ValueError(f"tensors must not have a key named {NPZ_METADATA_KEY!r} (reserved)")
    arrays = dict(tensors)
    if metadata:
        arrays[NPZ_METADATA_KEY] = np.array(json.dumps(metadata))
    tmp = _atomic_path(path)
    try:
        with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a name
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def upcast_half(tensors):
    """float16 arrays -> float32 (exact: every float16 is a float32). Others unchanged."""
    return {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in tensors.items()}
