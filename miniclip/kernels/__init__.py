"""The fast primitives: the same ops as miniclip.nn, as Numba CPU kernels (numba/) and numba-cuda
GPU kernels (cuda/). Kernels are leaves: they import nothing of miniclip outside kernels/, and take
every constant (LayerNorm's eps, tile sizes) as an argument. miniclip.backend chooses among them.
"""
