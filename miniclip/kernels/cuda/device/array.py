"""DeviceArray: an array that lives in GPU memory and answers to NumPy's functions.

The layers in ``miniclip.nn`` and the model in ``miniclip.model`` are NumPy code: between the
expensive ops (matmul, attention, LayerNorm) they add residuals, split heads, slice, concatenate,
sum. For a training step to stay on the GPU, those lines must run on the GPU too, without
rewriting the reference code. NumPy makes that possible with two hooks a class can define:

* ``__array_ufunc__``: ``np.exp(x)``, ``x + y``, ``np.add.at(w, ids, g)`` ... call it when an
  operand is a DeviceArray;
* ``__array_function__``: ``np.concatenate``, ``np.zeros_like``, ``np.clip`` ... likewise.

So ``x + a`` in ``block_forward`` launches an element-wise add kernel when x and a are
DeviceArrays, and the same line adds NumPy arrays on the CPU. This is how CuPy and Dask arrays
plug into NumPy code; this file is a small version of that idea, with only the operations
miniclip's layers, loss and optimizer use:

    views (no data moves)     reshape of a contiguous array, transpose / .T / swapaxes, basic
                              slicing x[:, 0], x[..., a:b], np.broadcast_to
    element-wise              + - * / ** unary minus, abs, exp, log, log1p, sqrt, square,
                              minimum, maximum, clip; in place with out= (m *= b1)
    reductions                sum, max, mean over any axes, keepdims
    matrix product            @ of two 2-D arrays (the tiled matmul; a transposed operand is
                              passed as a flag, not copied)
    rows by index             W[tokens], x[rows, cols], x[rows, cols] = y, np.add.at(W, ids, g)
    building                  np.concatenate, np.zeros_like, np.empty_like, copy, astype
                              (np.asarray and np.ascontiguousarray are NumPy's own array
                              makers, which NumPy does not hand over: use .copy() instead)

Anything else raises a TypeError that names it. Nothing moves between host and device unless
asked: ``x.get()`` (or ``miniclip.kernels.to_host``) copies to the host, ``float(x)`` reads one
number, and ``np.asarray(x)`` refuses, so a forgotten download is an error, not a slow silent
copy. NumPy arrays met as operands (a host constant such as ``np.eye(N)``) are uploaded, and
every copy either way is counted in ``cuda_backend.transfer_stats()``.

    >>> import numpy as np
    >>> x = to_device(np.arange(6.0).reshape(2, 3))
    >>> y = np.exp(x.T) * 2 + 1          # a transpose view, then two kernels
    >>> y.shape, type(y).__name__
    ((3, 2), 'DeviceArray')
    >>> y.sum(axis=0).get().round(2)     # the host copy, asked for
    array([ 25.21, 449.19])

Dtypes are float32 and float64, and an operation never mixes them (nothing is cast silently);
Python numbers adopt the array's dtype, as in NumPy.

Longer than 400 lines because it is one class, DeviceArray, whose parts (views,
indexing, NumPy's ufunc and function protocols, reductions) only make sense read together.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from miniclip.kernels.cuda.common import KERNEL_DTYPES, count_transfer, launch_size, tiles
from miniclip.kernels.cuda.device import array_kernels as K
from miniclip.kernels.cuda.matmul import matmul

__all__ = ["DeviceArray", "to_device", "empty", "zeros"]


def _c_strides(shape):
    """Strides, in elements, of a C-contiguous array: (3, 4) -> (4, 1)."""
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _check_dtype(dtype, name="dtype"):
    dtype = np.dtype(dtype)
    if dtype not in KERNEL_DTYPES:
        raise TypeError(f"{name} must be float32 or float64 for a DeviceArray, got {dtype}")
    return dtype


class DeviceArray(np.lib.mixins.NDArrayOperatorsMixin):
    """A float32 or float64 array in GPU memory: a flat device buffer seen through a shape,
    strides (in elements) and an offset, like a NumPy array over its memory.

    The operators (+, -, *, /, **, @, unary minus, abs, and += ... in place) come from NumPy's
    NDArrayOperatorsMixin, which turns each into its ufunc (x + y -> np.add(x, y), x *= y ->
    np.multiply(x, y, out=(x,))), so they all reach __array_ufunc__ below: one code path."""

    __slots__ = ("_buffer", "shape", "strides", "offset", "dtype", "__weakref__")

    def __init__(self, buffer, shape, strides=None, offset=0):
        """Internal: use to_device, zeros, empty, or the operations. ``buffer`` is a 1-D numba
        device array."""
        self._buffer = buffer
        self.shape = tuple(int(n) for n in shape)
        self.strides = _c_strides(self.shape) if strides is None else tuple(strides)
        self.offset = int(offset)
        self.dtype = np.dtype(buffer.dtype)

    @classmethod
    def wrap(cls, device_array):
        """A DeviceArray over a C-contiguous numba device array (a kernel's output), no copy."""
        flat = device_array.reshape(device_array.size) if device_array.ndim != 1 else device_array
        return cls(flat, device_array.shape)

    # ----- what it is ---------------------------------------------------------------------

    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: math.prod(self.shape))
    itemsize = property(lambda self: self.dtype.itemsize)
    nbytes = property(lambda self: self.size * self.dtype.itemsize)
    T = property(lambda self: self.transpose())

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d DeviceArray")
        return self.shape[0]

    def __repr__(self):
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype})"

    def is_contiguous(self) -> bool:
        """True if the elements lie in C order, back to back (axes of length 1 don't count)."""
        return all(s == c for n, s, c in zip(self.shape, self.strides, _c_strides(self.shape), strict=True)
                   if n > 1)

    def _layout(self):
        """(shape, strides, offset) for a kernel, with at least one axis."""
        if not self.shape:
            return (1,), (0,), self.offset
        return self.shape, self.strides, self.offset

    def device_view(self):
        """The numba device array of a C-contiguous DeviceArray (for the kernels that take
        plain device arrays: matmul, attention, LayerNorm)."""
        if not self.is_contiguous():
            raise ValueError("device_view needs a C-contiguous array; call contiguous() first")
        flat = self._buffer[self.offset:self.offset + self.size]
        return flat.reshape(self.shape) if self.shape else flat

    # ----- host <-> device: only when asked --------------------------------------------------

    def get(self) -> np.ndarray:
        """Copy to the host: a new NumPy array."""
        src = self.contiguous()
        count_transfer("device_to_host", src.nbytes)
        flat = src._buffer[src.offset:src.offset + src.size].copy_to_host()
        return flat.reshape(self.shape)

    def item(self) -> float:
        if self.size != 1:
            raise ValueError(f"only an array of one element converts to a number, got shape "
                             f"{self.shape}")
        return self.get().reshape(()).item()

    def __float__(self):
        return float(self.item())

    def __bool__(self):
        return bool(self.item())

    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "a DeviceArray lives on the GPU and is not converted to a NumPy array implicitly; "
            "call x.get() (or miniclip.kernels.to_host(x)) to copy it to the host")

    def __iter__(self):
        raise TypeError("iterating over a DeviceArray would copy one element at a time; "
                        "call x.get() first")

    # ----- views ------------------------------------------------------------------------------

    def _view(self, shape, strides, offset=None):
        return DeviceArray(self._buffer, shape, strides, self.offset if offset is None else offset)

    def reshape(self, *shape):
        """A view if the array is contiguous, else a contiguous copy reshaped. -1 is inferred."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        shape = tuple(int(n) for n in shape)
        if shape.count(-1) > 1:
            raise ValueError(f"can only infer one axis of a reshape, got {shape}")
        if -1 in shape:
            known = math.prod(n for n in shape if n != -1)
            if known == 0 or self.size % known:
                raise ValueError(f"cannot reshape an array of size {self.size} into {shape}")
            shape = tuple(self.size // known if n == -1 else n for n in shape)
        if math.prod(shape) != self.size:
            raise ValueError(f"cannot reshape an array of size {self.size} into {shape}")
        src = self.contiguous()
        return src._view(shape, _c_strides(shape))

    def ravel(self):
        return self.reshape(-1)

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        axes = tuple(range(self.ndim))[::-1] if not axes else tuple(a % self.ndim for a in axes)
        if sorted(axes) != list(range(self.ndim)):
            raise ValueError(f"axes {axes} are not a permutation of {self.ndim} axes")
        return self._view(tuple(self.shape[a] for a in axes), tuple(self.strides[a] for a in axes))

    def swapaxes(self, axis1, axis2):
        axes = list(range(self.ndim))
        axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
        return self.transpose(axes)

    def broadcast_to(self, shape):
        """A read-only-in-spirit view repeating axes of length 1 (stride 0), as np.broadcast_to."""
        shape = tuple(shape)
        if np.broadcast_shapes(self.shape, shape) != shape:
            raise ValueError(f"cannot broadcast shape {self.shape} to {shape}")
        lead = len(shape) - self.ndim
        strides = [0] * lead + [0 if n == 1 and m != 1 else s
                                for n, m, s in zip(self.shape, shape[lead:], self.strides, strict=True)]
        return self._view(shape, strides)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, (np.ndarray, list, DeviceArray)) for k in key):
            return self._take(key)
        return self._basic_view(key)

    def _basic_view(self, key):
        """Integers, slices, ``...`` and None: a view."""
        if sum(k is Ellipsis for k in key) > 1:
            raise IndexError("an index can only have a single ellipsis ('...')")
        n_real = sum(k is not None and k is not Ellipsis for k in key)
        if n_real > self.ndim:
            raise IndexError(f"too many indices for an array of {self.ndim} axes: {key}")
        missing = (slice(None),) * (self.ndim - n_real)  # axes the key does not mention
        if Ellipsis in key:
            i = key.index(Ellipsis)
            key = key[:i] + missing + key[i + 1:]
        else:
            key = key + missing
        shape, strides, offset, axis = [], [], self.offset, 0
        for k in key:
            if k is None:
                shape.append(1)
                strides.append(0)
                continue
            n, s = self.shape[axis], self.strides[axis]
            if isinstance(k, slice):
                start, stop, step = k.indices(n)
                shape.append(len(range(start, stop, step)))
                strides.append(s * step)
                offset += start * s
            elif isinstance(k, (int, np.integer)):
                i = int(k) + n if k < 0 else int(k)
                if not 0 <= i < n:
                    raise IndexError(f"index {int(k)} is out of bounds for axis {axis} of size {n}")
                offset += i * s
            else:
                raise TypeError(f"DeviceArray indices are ints, slices, ..., None or integer "
                                f"arrays, got {type(k).__name__}")
            axis += 1
        return self._view(tuple(shape), tuple(strides), offset)

    # ----- copies -----------------------------------------------------------------------------

    def contiguous(self):
        """self if C-contiguous, else a C-contiguous copy (one kernel)."""
        return self if self.is_contiguous() else self.copy()

    def copy(self):
        return self.astype(self.dtype, copy=True)

    def astype(self, dtype, copy=True):
        dtype = _check_dtype(dtype)
        if dtype == self.dtype and not copy:
            return self
        out = empty(self.shape, dtype)
        _map("copy", out, self)
        return out

    def __setitem__(self, key, value):
        key_t = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, (np.ndarray, list, DeviceArray)) for k in key_t):
            self._put(key_t, value, accumulate=False)
            return
        target = self._basic_view(key_t)
        value = _operand(value, self.dtype)
        if isinstance(value, DeviceArray):
            _map("copy", target, value.broadcast_to(target.shape))
        else:  # a number: fill
            _map_scalar("right", target, target, value, scalar_first=False)

    # ----- rows picked by integer arrays --------------------------------------------------------

    def _rows(self, key):
        """Integer index arrays for the leading axes -> (flat row ids on the device, shape of
        the index, number of axes indexed)."""
        if not all(isinstance(k, (np.ndarray, list)) for k in key):
            raise TypeError("a DeviceArray takes integer index arrays only on its leading axes, "
                            "and only host (NumPy) index arrays, with no slices mixed in")
        index = np.broadcast_arrays(*[np.asarray(k) for k in key])
        if any(not np.issubdtype(i.dtype, np.integer) for i in index):
            raise TypeError(f"index arrays must be integers, got {[i.dtype for i in index]}")
        if len(index) > self.ndim:
            raise IndexError(f"too many index arrays ({len(index)}) for {self.ndim} axes")
        lead = self.shape[:len(index)]
        for axis, (i, n) in enumerate(zip(index, lead, strict=True)):
            if i.size and (i.min() < -n or i.max() >= n):
                raise IndexError(f"index out of bounds for axis {axis} of size {n}: values in "
                                 f"[{i.min()}, {i.max()}]")
        index = [np.where(i < 0, i + n, i) for i, n in zip(index, lead, strict=True)]
        flat = np.ravel_multi_index(index, lead).astype(np.int64).reshape(-1)
        return to_device_raw(flat), index[0].shape, len(index)

    def _take(self, key):
        rows, index_shape, k = self._rows(key)
        src = self.contiguous()
        row_length = math.prod(self.shape[k:])
        out = empty(index_shape + self.shape[k:], self.dtype)
        if out.size:
            _launch(K.gather_rows_kernel, out.size, out._buffer, src._buffer, src.offset,
                    row_length, rows)
        return out

    def _put(self, key, value, accumulate):
        if not self.is_contiguous():
            raise ValueError("assigning through index arrays needs a C-contiguous array")
        rows, index_shape, k = self._rows(key)
        values = _operand(value, self.dtype)
        shape = index_shape + self.shape[k:]
        if not isinstance(values, DeviceArray):
            values = full(shape, values, self.dtype)
        values = values.broadcast_to(shape).contiguous()
        if values.size:
            _launch(K.scatter_rows_kernel, values.size, self._buffer, self.offset,
                    math.prod(self.shape[k:]), rows, values.device_view().reshape(values.size),
                    accumulate)

    # ----- reductions ---------------------------------------------------------------------------

    def sum(self, axis=None, keepdims=False, **kwargs):
        _no_options("sum", kwargs)
        return _reduce("sum", self, axis, keepdims)

    def max(self, axis=None, keepdims=False, **kwargs):
        _no_options("max", kwargs)
        return _reduce("max", self, axis, keepdims)

    def mean(self, axis=None, keepdims=False, **kwargs):
        _no_options("mean", kwargs)
        axes = _axes(axis, self.ndim)
        count = math.prod(self.shape[a] for a in axes)
        return _reduce("sum", self, axis, keepdims) / count

    # ----- NumPy's hooks ------------------------------------------------------------------------

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        name = ufunc.__name__
        if kwargs:
            raise TypeError(f"np.{name} on a DeviceArray takes no options {sorted(kwargs)}")
        if method == "at":
            if name != "add":
                raise TypeError(f"np.{name}.at is not supported on a DeviceArray (np.add.at is)")
            target, index, values = inputs
            if not isinstance(target, DeviceArray):
                raise TypeError("np.add.at(a, ...) on the device needs a to be a DeviceArray")
            key = index if isinstance(index, tuple) else (index,)
            target._put(key, values, accumulate=True)
            return None
        if method != "__call__":
            raise TypeError(f"np.{name}.{method} is not supported on a DeviceArray")
        if out is not None:
            if len(out) != 1 or not isinstance(out[0], DeviceArray):
                raise TypeError(f"out= of np.{name} must be one DeviceArray")
            out = out[0]
        if name == "matmul" and out is None:
            return _matmul(*inputs)
        if name in K.UNARY and len(inputs) == 1:
            return _unary(name, inputs[0], out)
        if name in K.BINARY and len(inputs) == 2:
            return _binary(name, inputs[0], inputs[1], out)
        raise TypeError(f"np.{name} is not supported on a DeviceArray; supported ufuncs: "
                        f"{sorted(set(K.UNARY) | set(K.BINARY) - {'copy', 'right'})}, matmul")

    def __array_function__(self, func, types, args, kwargs):
        implementation = _FUNCTIONS.get(func)
        if implementation is None:
            raise TypeError(f"np.{func.__name__} is not supported on a DeviceArray; supported "
                            f"functions: {sorted(f.__name__ for f in _FUNCTIONS)}")
        return implementation(*args, **kwargs)


# ----- making arrays -----------------------------------------------------------------------

def to_device_raw(array: np.ndarray):
    """Upload any NumPy array as a plain numba device array (used for index arrays), counted."""
    array = array if array.flags.c_contiguous else array.copy()  # (not ascontiguousarray:
    count_transfer("host_to_device", array.nbytes)                 # it makes a 0-d array 1-d)
    return cuda.to_device(array)


def to_device(array) -> DeviceArray:
    """Copy a float32 / float64 NumPy array (or a 0-d one) to the GPU."""
    if isinstance(array, DeviceArray):
        return array
    if not isinstance(array, np.ndarray):
        raise TypeError(f"array must be a numpy.ndarray, got {type(array).__name__}")
    _check_dtype(array.dtype, "array's dtype")
    return DeviceArray(to_device_raw(array.reshape(-1)), array.shape)  # reshape: contiguous


def empty(shape, dtype) -> DeviceArray:
    """An uninitialised C-contiguous array."""
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    buffer = cuda.device_array(max(1, math.prod(shape)), dtype=_check_dtype(dtype))
    return DeviceArray(buffer, shape)


def full(shape, value, dtype) -> DeviceArray:
    out = empty(shape, dtype)
    _map_scalar("right", out, out, value, scalar_first=False)
    return out


def zeros(shape, dtype) -> DeviceArray:
    return full(shape, 0, dtype)


# ----- launching the kernels ---------------------------------------------------------------

def _launch(kernel, n, *args):
    blocks, threads = launch_size(n, tiles().threads)
    kernel[blocks, threads](*args)


def _strided_args(array, shape):
    """Buffer, strides and offset of ``array`` broadcast to ``shape`` (at least one axis)."""
    view = array.broadcast_to(shape)
    _, strides, offset = view._layout()
    return view._buffer, strides, offset


def _map(name, out, a):
    """out[...] = f(a[...]), both DeviceArrays of out's shape (a may broadcast)."""
    if out.size:
        shape, out_strides, out_offset = out._layout()
        a_buffer, a_strides, a_offset = _strided_args(a, out.shape)
        _launch(K.unary_kernel(name), out.size, out._buffer, out_strides, out_offset, shape,
                a_buffer, a_strides, a_offset)
    return out


def _map_scalar(name, out, a, scalar, scalar_first):
    if out.size:
        shape, out_strides, out_offset = out._layout()
        a_buffer, a_strides, a_offset = _strided_args(a, out.shape)
        _launch(K.scalar_kernel(name), out.size, out._buffer, out_strides, out_offset, shape,
                a_buffer, a_strides, a_offset, out.dtype.type(scalar), bool(scalar_first))
    return out


def _operand(x, dtype):
    """A DeviceArray of ``dtype``, or a Python number. NumPy arrays are uploaded (counted);
    0-d ones and NumPy scalars become numbers."""
    if isinstance(x, DeviceArray):
        if x.dtype != dtype:
            raise TypeError(f"operands must share one dtype, got {x.dtype} and {dtype} "
                            "(nothing is cast silently; use astype)")
        return x
    if isinstance(x, (bool, int, float, np.integer, np.floating)):
        return x
    if isinstance(x, np.ndarray):
        if x.ndim == 0 and (np.issubdtype(x.dtype, np.number)):
            return x.item()
        if x.dtype != dtype:
            raise TypeError(f"a NumPy operand of dtype {x.dtype} met a {dtype} DeviceArray "
                            "(nothing is cast silently)")
        return to_device(x)
    raise TypeError(f"cannot combine a DeviceArray with {type(x).__name__}")


def _result_dtype(*operands):
    dtypes = {x.dtype for x in operands if isinstance(x, DeviceArray)}
    if len(dtypes) != 1:
        raise TypeError(f"operands must share one dtype, got {sorted(map(str, dtypes))}")
    return dtypes.pop()


def _output(out, shape, dtype, name):
    if out is None:
        return empty(shape, dtype)
    if out.shape != tuple(shape) or out.dtype != dtype:
        raise ValueError(f"out= of np.{name} must be {tuple(shape)} {dtype}, got {out.shape} "
                         f"{out.dtype}")
    return out


def _unary(name, x, out=None):
    out = _output(out, x.shape, x.dtype, name)
    return _map(name, out, x)


def _binary(name, a, b, out=None):
    dtype = _result_dtype(a, b, *(() if out is None else (out,)))
    a, b = _operand(a, dtype), _operand(b, dtype)
    if not isinstance(a, DeviceArray):  # a number and an array
        return _map_scalar(name, _output(out, b.shape, dtype, name), b, a, scalar_first=True)
    if not isinstance(b, DeviceArray):
        return _map_scalar(name, _output(out, a.shape, dtype, name), a, b, scalar_first=False)
    shape = np.broadcast_shapes(a.shape, b.shape)
    out = _output(out, shape, dtype, name)
    if out.size:
        layout_shape, out_strides, out_offset = out._layout()
        a_args, b_args = _strided_args(a, shape), _strided_args(b, shape)
        _launch(K.binary_kernel(name), out.size, out._buffer, out_strides, out_offset,
                layout_shape, *a_args, *b_args)
    return out


def _matrix(x):
    """(numba device array, transposed?) for a 2-D DeviceArray: a transposed view of a
    contiguous matrix is passed as that matrix and a flag, so the matmul reads it in place."""
    if x.is_contiguous():
        return x.device_view(), False
    if x.T.is_contiguous():
        return x.T.device_view(), True
    return x.contiguous().device_view(), False


def _matmul(a, b):

    dtype = _result_dtype(a, b)
    a, b = _operand(a, dtype), _operand(b, dtype)
    if not (isinstance(a, DeviceArray) and isinstance(b, DeviceArray)) or a.ndim != 2 or b.ndim != 2:
        raise ValueError("@ on the device multiplies two 2-D arrays, got shapes "
                         f"{getattr(a, 'shape', a)} and {getattr(b, 'shape', b)}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"@: inner dimensions differ: {a.shape} @ {b.shape}")
    (a_dev, ta), (b_dev, tb) = _matrix(a), _matrix(b)
    if a.size == 0 or b.size == 0:
        return zeros((a.shape[0], b.shape[1]), dtype)
    return DeviceArray.wrap(matmul(a_dev, b_dev, transpose_a=ta, transpose_b=tb, tiles=tiles()))


# ----- reductions ---------------------------------------------------------------------------

def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of bounds for an array of {ndim} axes")
    return tuple(sorted({a % ndim for a in axes}))


def _no_options(name, kwargs):
    if kwargs:
        raise TypeError(f"{name}() of a DeviceArray takes axis and keepdims only, got "
                        f"{sorted(kwargs)}")


def _reduce_axis(name, x, axis):
    """Reduce one axis away: view x as (outer, length, inner), one thread per output value
    (and a first pass over chunks of the axis when there are few outputs and a long axis)."""
    x = x.contiguous()
    outer, length = math.prod(x.shape[:axis]), x.shape[axis]
    inner = math.prod(x.shape[axis + 1:])
    out_shape = x.shape[:axis] + x.shape[axis + 1:]
    if length == 0:
        if name == "max":
            raise ValueError("max of an empty axis: the maximum of nothing is not defined")
        return zeros(out_shape, x.dtype)
    kernel = K.reduce_kernel(name, x.dtype)
    src, offset = x._buffer, x.offset
    chunk = length if outer * inner >= 256 else max(32, math.isqrt(length))
    while True:
        n_chunks = -(-length // chunk)
        out = empty((outer, n_chunks, inner), x.dtype)
        _launch(kernel, out.size, src, offset, length, inner, chunk, out._buffer)
        if n_chunks == 1:
            return out.reshape(out_shape)
        src, offset, length, chunk = out._buffer, 0, n_chunks, n_chunks  # then the chunks


def _reduce(name, x, axis, keepdims):
    axes = _axes(axis, x.ndim)
    result = x
    for a in reversed(axes):  # the highest axis first, so the lower numbers stay valid
        result = _reduce_axis(name, result, a)
    if not axes:  # a 0-d array: its sum is a new array all the same
        result = result.copy()
    if keepdims:
        result = result.reshape(tuple(1 if i in axes else n for i, n in enumerate(x.shape)))
    return result


# ----- the NumPy functions a DeviceArray answers to ----------------------------------------

def _concatenate(arrays, axis=0, out=None, dtype=None, **kwargs):
    if out is not None or dtype is not None or kwargs:
        raise TypeError("np.concatenate of DeviceArrays takes the arrays and axis only")
    arrays = list(arrays)
    dtype = _result_dtype(*arrays)
    arrays = [_operand(a, dtype) for a in arrays]
    first = arrays[0]
    axis = _axes(axis, first.ndim)[0]
    for a in arrays:
        if a.ndim != first.ndim or a.shape[:axis] + a.shape[axis + 1:] != (
                first.shape[:axis] + first.shape[axis + 1:]):
            raise ValueError(f"np.concatenate: shapes {[x.shape for x in arrays]} differ "
                             f"outside axis {axis}")
    total = sum(a.shape[axis] for a in arrays)
    result = empty(first.shape[:axis] + (total,) + first.shape[axis + 1:], dtype)
    start = 0
    for a in arrays:  # each piece copied into its slice of the result
        index = (slice(None),) * axis + (slice(start, start + a.shape[axis]),)
        _map("copy", result[index], a)
        start += a.shape[axis]
    return result


def _zeros_like(prototype, dtype=None, order="K", subok=True, shape=None, **kwargs):
    shape = prototype.shape if shape is None else shape
    return zeros(shape, prototype.dtype if dtype is None else dtype)


def _empty_like(prototype, dtype=None, order="K", subok=True, shape=None, **kwargs):
    shape = prototype.shape if shape is None else shape
    return empty(shape, prototype.dtype if dtype is None else dtype)


def _clip(a, a_min, a_max, out=None, **kwargs):
    if kwargs:
        raise TypeError(f"np.clip of a DeviceArray takes no options {sorted(kwargs)}")
    low = a if a_min is None else _binary("maximum", a, a_min)
    if a_max is None:
        return low if out is None else _map("copy", out, low)
    return _binary("minimum", low, a_max, out)


def _reduction(name):
    def function(a, axis=None, dtype=None, out=None, keepdims=False, **kwargs):
        if dtype is not None or out is not None or kwargs:
            raise TypeError(f"np.{name} of a DeviceArray takes axis and keepdims only")
        return getattr(a, name)(axis=axis, keepdims=keepdims)

    return function


_FUNCTIONS = {
    np.concatenate: _concatenate,
    np.broadcast_to: lambda a, shape, subok=False: a.broadcast_to(shape),
    np.zeros_like: _zeros_like,
    np.empty_like: _empty_like,
    np.copy: lambda a, **kwargs: a.copy(),
    np.clip: _clip,
    np.sum: _reduction("sum"),
    np.max: _reduction("max"),
    np.amax: _reduction("max"),
    np.mean: _reduction("mean"),
    np.transpose: lambda a, axes=None: a.transpose(*(() if axes is None else (axes,))),
    np.swapaxes: lambda a, axis1, axis2: a.swapaxes(axis1, axis2),
    np.reshape: lambda a, shape=None, **kwargs: a.reshape(shape),
    np.shape: lambda a: a.shape,
    np.ndim: lambda a: a.ndim,
    np.size: lambda a, axis=None: a.size if axis is None else a.shape[axis],
}
