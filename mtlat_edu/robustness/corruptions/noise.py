"""Noise corruptions of ImageNet-C: Gaussian, shot (Poisson) and impulse (salt & pepper) noise.

Paper section 4.1 ("Common Corruptions") uses the ImageNet-C functions of Hendrycks & Dietterich
(github.com/hendrycks/robustness, ``ImageNet-C/create_c/make_imagenet_c.py`` and
``make_cifar_c.py``); these are batched torch ports with the same steps and constants.
"""
from __future__ import annotations

import torch

from . import _ops
from ._common import corruption


@corruption("gaussian_noise", "Gauss")
def gaussian_noise(x, params, generator, table):
    """``clip(x + N(0, c^2))`` per pixel and channel, ``c`` = noise std (reference ``gaussian_noise``)."""
    (c,) = params
    return _ops.randn(x.shape, generator, x.device, x.dtype).mul_(c).add_(x)


@corruption("shot_noise", "Shot", checks_values=True)
def shot_noise(x, params, generator, table):
    """``clip(Poisson(x * c) / c)``: photon noise with ``c`` photons per unit intensity (reference
    ``shot_noise``).  For 8-bit images (every ``255 x`` an integer up to float rounding) the rates
    are the reference's own ``(j / 255) * c`` and the counts come from the exact table sampler
    :func:`_ops.poisson_8bit`; other inputs use ``torch.poisson(x * c)``.  The [0, 1] range is
    checked in the same pass as the 8-bit grid test."""
    (c,) = params
    levels = _ops.levels_8bit(x, check=True)
    if levels is None:
        return _ops.poisson(x * c, generator) / c
    return _ops.poisson_8bit(levels, c, generator).to(x.dtype).div_(c)


@corruption("impulse_noise", "Impul", in_range=True)
def impulse_noise(x, params, generator, table):
    """Salt & pepper noise as ``skimage.util.random_noise(mode='s&p', amount=c)`` (reference
    ``impulse_noise``): every pixel *channel* is flipped with probability ``c``, to 1 or 0 with
    probability 1/2 each (two independent uniform draws, as scikit-image does).  Per cache-sized
    chunk of images (one or more), the flip draws then the salt draws of that chunk."""
    (c,) = params

    def one(out, chunk):
        u = _ops.rand(chunk.shape, generator, chunk.device)
        flipped = u <= c
        salted = _ops.rand(chunk.shape, generator, chunk.device, out=u) <= 0.5
        torch.where(flipped, salted.to(chunk.dtype), chunk, out=out)

    return _ops.fill_chunks(one, x)
