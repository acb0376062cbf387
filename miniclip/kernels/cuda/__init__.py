"""numba-cuda kernels. The teaching kernels (matmul, attention, elementwise, AdamW) sit here, one
per file; ``device/`` is the runtime that keeps arrays in GPU memory (DeviceArray); ``ops.py``
puts both behind the op names every backend shares."""
