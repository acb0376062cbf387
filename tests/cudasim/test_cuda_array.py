"""DeviceArray (kernels/cuda_array.py) against NumPy: views, element-wise ops, reductions, the
matrix product, rows by index, the NumPy functions it answers to, its errors and its copies."""

import numpy as np
import pytest

from miniclip.kernels.cuda import ops as cuda_backend
from miniclip.kernels.cuda.device.array import DeviceArray, to_device, zeros

from .helpers import DTYPES, assert_close, randn


def dev(a):
    return to_device(np.asarray(a))


# ----- views: no data moves, and the kernels read them in place -----

@pytest.mark.parametrize("index", [
    (slice(None), 0), (Ellipsis, slice(2, 5)), (1,), (slice(None, None, -1), slice(1, None, 2)),
    (None, 0, Ellipsis), (-1, slice(None), 3), (Ellipsis,),
])
def test_basic_indexing_is_a_view_like_numpy(rng, index):
    a = randn(rng, (3, 4, 6), np.float64)
    d = dev(a)
    view = d[index]
    assert view._buffer is d._buffer  # a view, not a copy
    assert_close(view.get(), a[index], str(index))


@pytest.mark.parametrize("dtype", DTYPES)
def test_reshape_transpose_broadcast(rng, dtype):
    a = randn(rng, (2, 3, 4), dtype)
    d = dev(a)
    assert_close(d.reshape(6, -1).get(), a.reshape(6, -1))
    assert_close(d.transpose(2, 0, 1).get(), a.transpose(2, 0, 1))
    assert_close(d.T.get(), a.T)
    assert_close(d.swapaxes(-1, -2).get(), a.swapaxes(-1, -2))
    assert_close(d.transpose(0, 2, 1).reshape(2, 12).get(), a.transpose(0, 2, 1).reshape(2, 12))
    assert_close(np.broadcast_to(d[:, :1], (5, 2, 3, 4)).get(),
                 np.broadcast_to(a[:, :1], (5, 2, 3, 4)))
    with pytest.raises(ValueError, match="cannot reshape"):
        d.reshape(5, -1)


def test_index_errors_name_the_problem():
    d = dev(np.zeros((2, 3)))
    with pytest.raises(IndexError, match="out of bounds for axis 1 of size 3"):
        d[0, 3]
    with pytest.raises(IndexError, match="too many indices"):
        d[0, 0, 0]
    with pytest.raises(IndexError, match="out of bounds for axis 0"):
        d[np.array([0, 2])]


# ----- element-wise -----

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 5)),
                                    ((2, 1, 3), (4, 1)), ((), (2, 3)), ((1,), (1,))])
def test_binary_ops_broadcast_like_numpy(rng, dtype, shapes):
    a, b = randn(rng, shapes[0], dtype), randn(rng, shapes[1], dtype)
    b_pos = np.abs(b) + 0.5
    da, db, db_pos = dev(a), dev(b), dev(b_pos)
    assert_close((da + db).get(), a + b, "add")
    assert_close((da - db).get(), a - b, "subtract")
    assert_close((da * db).get(), a * b, "multiply")
    assert_close((da / db_pos).get(), a / b_pos, "divide")
    assert_close(np.minimum(da, db).get(), np.minimum(a, b), "minimum")
    assert_close(np.maximum(da, db).get(), np.maximum(a, b), "maximum")
    assert_close((db_pos ** da).get(), b_pos ** a, "power")


@pytest.mark.parametrize("dtype", DTYPES)
def test_numbers_and_host_arrays_as_operands(rng, dtype):
    a = randn(rng, (3, 4), dtype)
    d = dev(a)
    assert_close((2 * d - 1).get(), 2 * a - 1)
    assert_close((1 / (np.abs(d) + 1)).get(), 1 / (np.abs(a) + 1))
    assert_close((d ** 2).get(), a ** 2)
    assert_close((d * np.float64(0.5)).get(), a * 0.5)  # a NumPy scalar is a number, not cast
    eye = np.eye(3, 4, dtype=dtype)
    cuda_backend.reset_transfer_stats()
    assert_close((eye - d).get(), eye - a)  # a host array is uploaded ...
    assert cuda_backend.transfer_stats()["host_to_device"] == 1  # ... and counted


@pytest.mark.parametrize("dtype", DTYPES)
def test_unary_ops(rng, dtype):
    a = randn(rng, (5, 3), dtype)
    d = dev(a)
    for name in ("exp", "negative", "absolute", "square"):
        assert_close(getattr(np, name)(d).get(), getattr(np, name)(a), name)
    pos, dpos = np.abs(a) + 0.1, np.abs(d) + 0.1
    for name in ("log", "log1p", "sqrt"):
        assert_close(getattr(np, name)(dpos).get(), getattr(np, name)(pos), name)


def test_in_place_ops_write_into_the_array_and_its_views(rng):
    a = randn(rng, (4, 3), np.float64)
    d = dev(a)
    buffer = d._buffer
    d *= 0.9
    d += 0.1 * d
    d -= 1
    d /= 2
    a = ((a * 0.9) * 1.1 - 1) / 2
    assert d._buffer is buffer
    assert_close(d.get(), a)
    view = d.T  # a strided out=
    np.exp(view, out=(view,))
    assert_close(d.get(), np.exp(a))
    d[1:3, 0] = 7.0
    d[0] = dev(np.array([1.0, 2.0, 3.0]))
    a = np.exp(a)
    a[1:3, 0] = 7.0
    a[0] = [1.0, 2.0, 3.0]
    assert_close(d.get(), a)


def test_clip_in_place(rng):
    a = randn(rng, (6,), np.float64) * 5
    d = dev(a)
    np.clip(d, -1.0, 2.0, out=d)
    assert_close(d.get(), np.clip(a, -1.0, 2.0))


# ----- reductions -----

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2), (1, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_like_numpy(rng, dtype, axis, keepdims):
    a = randn(rng, (3, 5, 4), dtype)
    d = dev(a)
    for name in ("sum", "max", "mean"):
        assert_close(getattr(d, name)(axis=axis, keepdims=keepdims).get(),
                     getattr(a, name)(axis=axis, keepdims=keepdims), f"{name} {axis}")
    assert_close(np.sum(d.T, axis=axis).get(), np.sum(a.T, axis=axis), "np.sum on a view")


def test_a_long_axis_is_summed_in_two_passes(rng):
    a = randn(rng, (2000,), np.float64)
    assert_close(dev(a).sum().get(), a.sum())
    assert_close(dev(a[:, None]).max(axis=0).get(), a[:, None].max(axis=0))


def test_max_keeps_a_nan_and_refuses_an_empty_axis():
    assert np.isnan(float(dev(np.array([1.0, np.nan, 3.0])).max()))
    with pytest.raises(ValueError, match="empty axis"):
        dev(np.zeros((2, 0))).max(axis=1)
    assert dev(np.zeros((2, 0))).sum(axis=1).get().tolist() == [0.0, 0.0]


# ----- matrix product -----

@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_reads_transposed_operands_in_place(rng, dtype):
    a, b = randn(rng, (5, 3), dtype), randn(rng, (7, 3), dtype)
    da, db = dev(a), dev(b)
    assert_close((da @ db.T).get(), a @ b.T)
    assert_close((da.T @ da).get(), a.T @ a)
    assert_close((a @ db.T).get(), a @ b.T)  # a host operand is uploaded
    assert_close((da[::2] @ db[1:4].T).get(), a[::2] @ b[1:4].T)  # strided: copied first
    with pytest.raises(ValueError, match="inner dimensions"):
        da @ db
    with pytest.raises(ValueError, match="2-D"):
        dev(np.zeros((2, 3, 4), dtype)) @ db.T


# ----- rows by index: the token embedding and the end-of-text pooling -----

@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_and_scatter_rows(rng, dtype):
    w = randn(rng, (6, 4), dtype)
    tokens = np.array([[0, 5, 5], [2, 0, -1]])
    assert_close(dev(w)[tokens].get(), w[tokens])
    x = randn(rng, (3, 5, 4), dtype)
    rows, cols = np.arange(3), np.array([4, 0, 2])
    assert_close(dev(x)[rows, cols].get(), x[rows, cols])
    dx = np.zeros_like(dev(x)[rows, cols], shape=x.shape)
    dx[rows, cols] = dev(x[rows, cols])
    want = np.zeros_like(x)
    want[rows, cols] = x[rows, cols]
    assert_close(dx.get(), want)


def test_add_at_adds_every_repeat(rng):
    """A token used twice gets both gradients: the atomic add must not lose one."""
    g = randn(rng, (8, 3), np.float64)
    ids = np.array([1, 4, 1, 1, 0, 4, 7, 1])
    dw = zeros((9, 3), np.float64)
    np.add.at(dw, ids, dev(g))
    want = np.zeros((9, 3))
    np.add.at(want, ids, g)
    assert_close(dw.get(), want)


# ----- building arrays -----

def test_concatenate_and_zeros_like(rng):
    a, b = randn(rng, (2, 3, 4), np.float32), randn(rng, (2, 3, 1), np.float32)
    for axis, (x, y) in {0: (a, a[:1]), 1: (a, a[:, :2]), -1: (a, b)}.items():
        assert_close(np.concatenate([dev(x), dev(y)], axis=axis).get(),
                     np.concatenate([x, y], axis=axis), f"axis {axis}")
    z = np.zeros_like(dev(a), shape=(3, 2))
    assert isinstance(z, DeviceArray) and z.dtype == np.float32
    assert z.get().tolist() == [[0.0, 0.0]] * 3
    with pytest.raises(ValueError, match="differ outside axis"):
        np.concatenate([dev(a), dev(b)], axis=0)


def test_astype_and_copy(rng):
    a = randn(rng, (3, 2), np.float32)
    d = dev(a)
    d64 = d.astype(np.float64)
    assert d64.dtype == np.float64 and d.astype(np.float32, copy=False) is d
    assert_close(d64.get(), a.astype(np.float64))
    c = d.copy()
    c += 1
    assert_close(d.get(), a)  # the copy is separate


# ----- errors and copies -----

def test_nothing_is_copied_to_the_host_unless_asked(rng):
    a = randn(rng, (4, 3), np.float64)
    d = dev(a)
    cuda_backend.reset_transfer_stats()
    y = (np.exp(d) * 2).sum(axis=0) + d[0]
    stats = cuda_backend.transfer_stats()
    assert stats["device_to_host"] == 0 and stats["host_to_device"] == 0
    with pytest.raises(TypeError, match=r"call x.get\(\)"):
        np.asarray(y)
    assert_close(y.get(), (np.exp(a) * 2).sum(axis=0) + a[0])
    assert float(d[1, 2]) == a[1, 2]
    stats = cuda_backend.transfer_stats()
    assert stats["device_to_host"] == 2
    assert stats["device_to_host_bytes"] == 3 * 8 + 8


def test_unsupported_operations_are_named():
    d = dev(np.ones((2, 2)))
    with pytest.raises(TypeError, match="np.sin is not supported"):
        np.sin(d)
    with pytest.raises(TypeError, match="np.sort is not supported"):
        np.sort(d)
    with pytest.raises(TypeError, match="share one dtype"):
        d + dev(np.ones((2, 2), np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        to_device(np.ones(3, np.int64))
    with pytest.raises(TypeError, match="nothing is cast"):
        d + np.ones((2, 2), np.float32)
    with pytest.raises(TypeError, match="iterating"):
        list(d)
