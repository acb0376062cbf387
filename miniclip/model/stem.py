"""The convolutional stem: a few 3 x 3 stride-2 convolutions before the patch embedding.

OpenAI's ViTs cut the raw pixels into patches and embed each with one linear map. For the toy
world that is a weak start: a small shape drawn at any angle falls across patch borders
wherever it lands, and a linear map of raw pixels must learn every placement of every edge
separately. A stem of small convolutions first turns pixels into local edge and corner features,
the same filters at every position; the patch embedding then reads those. (Xiao et al. 2021,
"Early Convolutions Help Transformers See Better", replace the patch embedding by such a stem;
OpenAI's CLIP ResNets also start with 3 x 3 convolutions.)

With ``cfg.vision_stem = (16, 32)`` and a 64 x 64 image:

    images (N, 3, 64, 64) -> channels-last (N, 64, 64, 3)
      -> conv 3x3 s2 (3 -> 16) + activation  (N, 32, 32, 16)
      -> conv 3x3 s2 (16 -> 32) + activation (N, 16, 16, 32)
      -> channels-first (N, 32, 16, 16): the patch embedding cuts it into P x P patches

Each conv is im2col (miniclip/nn/conv2d.py; the numba backend has a kernel for it) followed by the
product and activation of the MLP's first layer (model/mlp.py linear_act_forward), so it runs on
the same matrix products as the rest of the model. The weights are stored as PyTorch stores a conv: ``visual.stem.{i}.weight``
(C_out, C_in, 3, 3) and ``visual.stem.{i}.bias`` (C_out,).
"""

import numpy as np

from miniclip import backend
from miniclip.model.mlp import linear_act_backward, linear_act_forward
from miniclip.nn import conv2d

KERNEL, STRIDE, PADDING = 3, 2, 1  # each conv halves the image: (R + 2 - 3) // 2 + 1 = R / 2


def _windows(x):
    """x (N, H, W, C) -> (N, H/2, W/2, 9 C): the backend's im2col, or the reference's."""
    im2col = backend.fused("im2col", x) or conv2d.im2col
    return im2col(x, KERNEL, STRIDE, PADDING)


def _pixels(dcols, image_shape):
    """The adjoint of _windows: (N, H/2, W/2, 9 C) -> (N, H, W, C)."""
    col2im = backend.fused("col2im", dcols) or conv2d.col2im
    return col2im(dcols, image_shape, KERNEL, STRIDE, PADDING)


def stem_forward(images, params, cfg):
    """images (N, 3, R, R) -> features (N, C, R / 2^S, R / 2^S) (C = cfg.vision_stem[-1], S its
    length), cache."""
    if not isinstance(images, np.ndarray):
        raise NotImplementedError(
            f"the convolutional stem (vision_stem={cfg.vision_stem}) runs on host (NumPy) arrays "
            f"only; got a {type(images).__name__} (a model kept on the GPU): use the numpy or "
            "numba backend, or a model whose parameters stay on the host")
    x = images.transpose(0, 2, 3, 1)  # (N, R, R, 3): channels-last for the convs
    caches = []
    for i in range(len(cfg.vision_stem)):
        w, b = params[f"visual.stem.{i}.weight"], params[f"visual.stem.{i}.bias"]
        x_shape = x.shape
        cols = _windows(x)  # (N, H/2, W/2, 9 C_in)
        x, c = linear_act_forward(cols, conv2d.weight_matrix(w), b,  # w: (C_out, 9 C_in)
                                  cfg.activation)  # (N, H/2, W/2, C_out)
        caches.append((c, x_shape, w.shape))
    return x.transpose(0, 3, 1, 2), caches  # channels-first, as the patch embedding reads images


def stem_backward(dfeatures, caches, cfg):
    """dfeatures (N, C, R / 2^S, R / 2^S) -> grads of every 'visual.stem.*' key. (The images
    need no gradient.)"""
    g = {}
    d = dfeatures.transpose(0, 2, 3, 1)  # (N, r, r, C) channels-last
    for i in reversed(range(len(caches))):
        c, x_shape, w_shape = caches[i]
        dcols, dw_mat, db = linear_act_backward(d, c, cfg.activation)  # dcols (N, h, w, 9 C_in)
        g[f"visual.stem.{i}.weight"] = conv2d.weight_from_matrix(dw_mat, w_shape)
        g[f"visual.stem.{i}.bias"] = db
        if i > 0:  # the first conv reads the images, which need no gradient
            d = _pixels(dcols, x_shape)
    return g
