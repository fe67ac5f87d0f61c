"""Noise corruptions of ImageNet-C: Gaussian, shot (Poisson) and impulse (salt & pepper) noise.

Paper section 4.1 ("Common Corruptions") uses the ImageNet-C functions of Hendrycks & Dietterich
(github.com/hendrycks/robustness, ``ImageNet-C/create_c/make_imagenet_c.py`` and
``make_cifar_c.py``); these are batched torch ports with the same steps and constants.
"""
from __future__ import annotations

import torch

from . import _ops
from ._common import corruption


@corruption("gaussian_noise")
def gaussian_noise(x, params, generator, table):
    """``clip(x + N(0, c^2))`` per pixel and channel, ``c`` = noise std (reference ``gaussian_noise``)."""
    (c,) = params
    return x + _ops.randn(x.shape, generator, x.device, x.dtype) * c


@corruption("shot_noise")
def shot_noise(x, params, generator, table):
    """``clip(Poisson(x * c) / c)``: photon noise with ``c`` photons per unit intensity (reference ``shot_noise``)."""
    (c,) = params
    return _ops.poisson(x * c, generator) / c


@corruption("impulse_noise")
def impulse_noise(x, params, generator, table):
    """Salt & pepper noise as ``skimage.util.random_noise(mode='s&p', amount=c)`` (reference
    ``impulse_noise``): every pixel *channel* is flipped with probability ``c``, to 1 or 0 with
    probability 1/2 each (two independent uniform draws, as scikit-image does)."""
    (c,) = params
    flipped = _ops.rand(x.shape, generator, x.device) <= c
    salted = _ops.rand(x.shape, generator, x.device) <= 0.5
    out = torch.where(flipped & salted, torch.ones_like(x), x)
    return torch.where(flipped & ~salted, torch.zeros_like(x), out)
