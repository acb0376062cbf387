"""Layers as forward/backward pairs in plain NumPy: the reference every kernel is checked against.

Each ``*_forward`` returns ``(out, cache)``; the matching ``*_backward(dout, cache)`` returns the
gradients with respect to the inputs, in the order the forward takes them.
"""
