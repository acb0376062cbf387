"""The numba backend as ``miniclip.backend`` loads it: the plain ops of ops.py (the same
signatures as the NumPy reference) and the fused ops of fused_ops.py (backend.FUSED_OPS), with
ops.py's options (``configure``, ``options``) and its lists of 16-bit inputs (READS_16_BIT,
BACKWARD_READS_16_BIT).

Two files, because the fused ops are built on the plain ones (fused_ops imports ops).
"""

from miniclip.kernels.numba.adamw import adamw_update
from miniclip.kernels.numba.conv import col2im, im2col
from miniclip.kernels.numba.fused_ops import (
    attention_qkv_backward,
    attention_qkv_forward,
    layernorm_backward_add,
    linear_act_backward,
    linear_act_forward,
    linear_residual_forward,
)
from miniclip.kernels.numba.ops import (
    BACKWARD_READS_16_BIT,
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
    "adamw_update", "BACKWARD_READS_16_BIT", "READS_16_BIT", "attention_backward", "attention_forward", "attention_qkv_backward",
    "attention_qkv_forward", "col2im", "configure", "gelu_backward", "gelu_forward", "im2col", "layernorm_backward",
    "layernorm_backward_add", "layernorm_forward", "linear_act_backward", "linear_act_forward",
    "linear_backward", "linear_forward", "linear_residual_forward",
    "options", "quick_gelu_backward", "quick_gelu_forward",
]

