"""The reference backend: the plain NumPy layers of miniclip.nn, unchanged."""

from miniclip.nn.activations import (
    gelu_backward,
    gelu_forward,
    quick_gelu_backward,
    quick_gelu_forward,
)
from miniclip.nn.attention import attention_backward, attention_forward
from miniclip.nn.layernorm import layernorm_backward, layernorm_forward
from miniclip.nn.linear import linear_backward, linear_forward

__all__ = [
    "attention_backward", "attention_forward", "gelu_backward", "gelu_forward",
    "layernorm_backward", "layernorm_forward", "linear_backward", "linear_forward",
    "quick_gelu_backward", "quick_gelu_forward",
]
