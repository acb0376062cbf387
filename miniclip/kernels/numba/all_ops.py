"""The numba backend as ``miniclip.backend`` loads it: the plain ops of ops.py (the same
signatures as the NumPy reference) and the fused ops of fused_ops.py (backend.FUSED_OPS), with
ops.py's options (``configure``, ``options``) and its list of 16-bit inputs (READS_16_BIT).

Two files, because the fused ops are built on the plain ones (fused_ops imports ops).
"""

from miniclip.kernels.numba import ops as _plain_ops
from miniclip.kernels.numba.fused_ops import (
    attention_qkv_backward,
    attention_qkv_forward,
    layernorm_backward_add,
    linear_act_backward,
    linear_act_forward,
    linear_residual_backward,
    linear_residual_forward,
)
from miniclip.kernels.numba.ops import (
    READS_16_BIT,
    attention_backward,
    attention_forward,
    configure,
    gelu_backward,
    gelu_forward,
    layernorm_backward,
    layernorm_forward,
    linear_backward,
    linear_forward,
    options,
    quick_gelu_backward,
    quick_gelu_forward,
)

__all__ = [
    "READS_16_BIT", "attention_backward", "attention_forward", "attention_qkv_backward",
    "attention_qkv_forward", "configure", "gelu_backward", "gelu_forward", "layernorm_backward",
    "layernorm_backward_add", "layernorm_forward", "linear_act_backward", "linear_act_forward",
    "linear_backward", "linear_forward", "linear_residual_backward", "linear_residual_forward",
    "options", "quick_gelu_backward", "quick_gelu_forward",
]


def __getattr__(name):
    """Any other attribute of ops.py (a setting the backend or kernels/mixed.py reads from the
    backend module, added there later) is read from ops.py itself."""
    return getattr(_plain_ops, name)
