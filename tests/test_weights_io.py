"""Reading and writing tensor files: safetensors (bf16 included) and .npz, with metadata."""

import json
import struct

import numpy as np
import pytest

from miniclip.pretrained.weights_io import (
    bfloat16_to_float32,
    read_npz,
    read_safetensors,
    read_safetensors_header,
    upcast_half,
    write_npz,
    write_safetensors,
)


def write_by_hand(path, tensors, metadata=None):
    """A safetensors file written byte by byte from the format description.

    tensors: name -> (dtype string, shape, raw bytes)."""
    header, offset, blobs = {}, 0, []
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def test_bfloat16_bits_widen_exactly():
    values = np.array([1.0, -2.0, 3.140625, 2.0**-126, -np.inf, 0.0], dtype=np.float32)
    bits = (values.view(np.uint32) >> 16).astype(np.uint16)  # each value is exact in bf16
    assert bits[0] == 0x3F80 and bits[2] == 0x4049  # the bit patterns of 1.0 and 3.140625
    np.testing.assert_array_equal(bfloat16_to_float32(bits), values)
    with pytest.raises(TypeError, match="uint16"):
        bfloat16_to_float32(np.zeros(2, np.int32))


def test_bf16_file_reads_as_float32_beside_other_dtypes(tmp_path):
    exact = np.array([[0.5, -1.5, 256.0], [3.0, 0.0078125, -0.25]], dtype=np.float32)  # exact in bf16
    bf16 = (exact.view(np.uint32) >> 16).astype("<u2").tobytes()
    half = np.array([1.5, -2.25], dtype="<f2")
    ints = np.array([7, -1], dtype="<i8")
    path = tmp_path / "m.safetensors"
    write_by_hand(path, {"a": ("BF16", (2, 3), bf16), "b": ("F16", (2,), half.tobytes()),
                         "c": ("I64", (2,), ints.tobytes())}, metadata={"who": "test"})
    tensors, metadata = read_safetensors(path)
    assert metadata == {"who": "test"}
    assert tensors["a"].dtype == np.float32 and tensors["a"].shape == (2, 3)
    np.testing.assert_array_equal(tensors["a"], exact)
    np.testing.assert_array_equal(tensors["b"], half)
    assert tensors["b"].dtype == np.float16
    np.testing.assert_array_equal(tensors["c"], ints)


def test_hand_written_file_matches_the_library_reader(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = tmp_path / "m.safetensors"
    write_by_hand(path, {"a": ("F32", (2, 3), a.tobytes()), "s": ("F64", (), np.float64(2.5).tobytes())})
    tensors, metadata = read_safetensors(path)
    np.testing.assert_array_equal(tensors["a"], a)
    assert tensors["s"].shape == () and tensors["s"] == 2.5
    assert metadata == {}


def test_safetensors_round_trip_keeps_dtype_shape_and_metadata(tmp_path, rng):
    tensors = {"w": rng.standard_normal((3, 4)).astype(np.float16),
               "t": rng.standard_normal((4, 3)).T,  # not C-contiguous
               "logit_scale": np.array(2.5, dtype=np.float32)}  # 0-d stays 0-d
    path = tmp_path / "sub" / "x.safetensors"
    write_safetensors(tensors, path, metadata={"k": "v"})
    back, metadata = read_safetensors(path)
    assert metadata == {"k": "v"}
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        np.testing.assert_array_equal(back[k], v)
    assert [p.name for p in path.parent.iterdir()] == ["x.safetensors"]  # no temp files left
    header, _, start = read_safetensors_header(path)
    assert header["w"]["dtype"] == "F16" and start > 8


def test_npz_round_trip_with_metadata(tmp_path, rng):
    tensors = {"a": rng.standard_normal((2, 2)), "b": np.array(1.0, np.float32)}
    path = tmp_path / "x.npz"
    write_npz(tensors, path, metadata={"config": json.dumps({"n": 1})})
    back, metadata = read_npz(path)
    assert sorted(back) == ["a", "b"] and json.loads(metadata["config"]) == {"n": 1}
    np.testing.assert_array_equal(back["a"], tensors["a"])
    assert back["b"].shape == ()
    with pytest.raises(ValueError, match="reserved"):
        write_npz({"__metadata__": np.zeros(1)}, tmp_path / "y.npz")


def test_upcast_half_only_touches_float16():
    out = upcast_half({"h": np.array([0.1], np.float16), "d": np.array([0.1]), "i": np.array([1])})
    assert out["h"].dtype == np.float32 and out["h"][0] == np.float32(np.float16(0.1))
    assert out["d"].dtype == np.float64 and out["i"].dtype == np.array([1]).dtype


@pytest.mark.parametrize("content, message", [
    (b"abc", "shorter than 8 bytes"),
    (struct.pack("<Q", 10**6) + b"{}", "announce"),
    (struct.pack("<Q", 4) + b"nope", "not JSON"),
    (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
])
def test_broken_safetensors_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_safetensors(path)


def test_unknown_dtype_is_reported(tmp_path):
    path = tmp_path / "m.safetensors"
    write_by_hand(path, {"a": ("BF16", (1,), b"\x80\x3f"), "z": ("F8_E4M3", (1,), b"\x00")})
    with pytest.raises(ValueError, match="'z' has dtype F8_E4M3"):
        read_safetensors(path)
