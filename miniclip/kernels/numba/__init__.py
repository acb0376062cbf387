"""Numba CPU kernels: a hand-written matmul, fused attention, LayerNorm and the GELUs.
``ops.py`` puts them behind the op names every backend shares."""
