"""Patch embedding: the ViT's first layer.

CLIP's ``conv1`` is a convolution with kernel = stride = P and no bias. Because the patches do
not overlap, it is the same as cutting the image into P x P patches, flattening each, and
multiplying by the kernel flattened to (width, 3 P P). Then a learned class token is put in front
and a learned position is added to every token:

    images (N, 3, R, R) -> patches (N, G*G, 3*P*P) -> tokens (N, G*G, C)
                        -> [class; tokens] (N, 1 + G*G, C) + positions (1 + G*G, C)

with G = R / P. (``ln_pre`` follows in the model.)
"""

import numpy as np

from miniclip import backend
from miniclip.kernels.dtypes import compute_dtype, is_half


def _sum_images(a):
    """a (N, ...) -> (...): the sum over the images, accumulated in float32 for 16-bit a."""
    return a.sum(axis=0, dtype=compute_dtype(a.dtype)) if is_half(a.dtype) else a.sum(axis=0)


def patchify(images, patch_size):
    """(N, 3, R, R) -> (N, G*G, 3*P*P), patches in row-major grid order, each flattened in the
    (channel, row, col) order of conv1.weight[c_out].

    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> patchify(x, 2)[0, 0]            # the top-left 2 x 2 patch
    array([0., 1., 4., 5.])
    """
    N, ch, R, _ = images.shape
    P, G = patch_size, R // patch_size
    x = images.reshape(N, ch, G, P, G, P)  # (N, ch, gy, py, gx, px)
    x = x.transpose(0, 2, 4, 1, 3, 5)  # (N, gy, gx, ch, py, px)
    return x.reshape(N, G * G, ch * P * P)


def unpatchify(patches, patch_size, channels=3):
    """(N, G*G, ch*P*P) -> (N, ch, R, R): the inverse of patchify."""
    N, L, _ = patches.shape
    P, G = patch_size, int(round(L**0.5))
    x = patches.reshape(N, G, G, channels, P, P).transpose(0, 3, 1, 4, 2, 5)
    return x.reshape(N, channels, G * P, G * P)


def patch_embed_forward(images, conv_weight, class_embedding, positional_embedding):
    """images (N, 3, R, R), conv_weight (C, 3, P, P), class_embedding (C,),
    positional_embedding (1 + G*G, C) -> tokens (N, 1 + G*G, C).

    cache: the linear layer's (patches, weight); the image itself is not kept.
    """
    C, _, P, _ = conv_weight.shape
    N = images.shape[0]
    patches = patchify(images, P)  # (N, G*G, 3PP)
    x, c_lin = backend.ops.linear_forward(patches, conv_weight.reshape(C, -1), None)  # (N, G*G, C)
    cls = np.broadcast_to(class_embedding, (N, 1, C))
    x = np.concatenate([cls, x], axis=1) + positional_embedding  # (N, 1 + G*G, C)
    return x, (c_lin, conv_weight.shape)


def patch_embed_backward(dout, cache, need_dimages=False):
    """dout (N, 1 + G*G, C) -> dimages (or None), dconv_weight, dclass_embedding,
    dpositional_embedding. Training needs dimages only behind a stem (model/stem.py): ask for it
    with need_dimages."""
    c_lin, w_shape = cache
    dpos = _sum_images(dout)  # positions were added to every image
    dcls = _sum_images(dout[:, 0])  # the class token was copied to every image
    dpatches, dw, _ = backend.ops.linear_backward(dout[:, 1:].copy(), c_lin)  # contiguous
    dimages = unpatchify(dpatches, w_shape[-1], channels=w_shape[1]) if need_dimages else None
    return dimages, dw.reshape(w_shape), dcls, dpos
