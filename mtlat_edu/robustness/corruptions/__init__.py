"""The 19 common corruptions of the M-TLAT benchmark (Laugros et al., ECCV 2020, section 4.1).

Fifteen ImageNet-C corruptions (Hendrycks & Dietterich, ICLR 2019; reference code
github.com/hendrycks/robustness, ``ImageNet-C/create_c/make_imagenet_c.py`` for 224 px images and
``make_cifar_c.py`` for 32 px images) plus the paper's four: occlusion, color distortion,
translation and rotation.  Every corruption takes an NCHW RGB batch on any device, float in
[0, 1] or 8-bit (uint8, levels 0..255, as the package's datasets hold decoded images), and
returns floats in [0, 1] of the same shape and device: the input's dtype for float images,
float32 for 8-bit ones (the same values as for the float32 images ``j / 255``).  Pixelate and
JPEG, which the reference computes on the 8-bit image, take 8-bit input as it is (no range check
and no conversion to 8 bits: the faster input for them); the others convert it first:

>>> from mtlat_edu.robustness.corruptions import corrupt, ALL
>>> y = corrupt(x, "fog", severity=3, generator=torch.Generator().manual_seed(0))

Severity 1..5 selects the reference parameters; a fractional severity interpolates them.
``table`` picks the ImageNet ("imagenet") or CIFAR ("cifar") parameter table; by default images
up to 64 px use CIFAR's.  All randomness comes from ``generator`` (None: torch's global RNG).
"""
from __future__ import annotations

import torch

from ._common import IMAGENET_C_FAMILIES, REGISTRY, check_generator, check_images, check_severity, choose_table
# Imported in the order of the paper's columns (Table 2a: noise, blur, weather, digital, then the four
# extra corruptions): each function registers itself, and the registry keeps the registration order.
from .noise import gaussian_noise, impulse_noise, shot_noise  # noqa: I001
from .blur import defocus_blur, glass_blur, motion_blur, zoom_blur
from .weather import brightness, fog, frost, snow
from .digital import contrast, elastic_transform, jpeg_compression, pixelate
from .extra import color_distortion, occlusion, rotation, translation

# name -> corruption fn(x, severity, generator=None, table=None); each entry's label is the paper's
# column title (Gauss, Shot, ...) and its kind the family (noise, blur, weather, digital, extra).
CORRUPTIONS = REGISTRY
IMAGENET_C: tuple[str, ...] = CORRUPTIONS.names(kind=IMAGENET_C_FAMILIES)
EXTRA: tuple[str, ...] = CORRUPTIONS.names(kind="extra")
ALL: tuple[str, ...] = IMAGENET_C + EXTRA
DISPLAY: dict[str, str] = CORRUPTIONS.labels(ALL)


def corrupt(
    x: torch.Tensor,
    name: str,
    severity: float,
    generator: torch.Generator | None = None,
    table: str | None = None,
) -> torch.Tensor:
    """Apply corruption ``name`` (one of :data:`ALL`) at ``severity`` in [1, 5] to the NCHW RGB batch
    ``x``: float in [0, 1] or uint8 (levels 0..255).  Returns floats in [0, 1], of ``x``'s dtype
    for float input and float32 for uint8 input (a uint8 batch and its float32 conversion
    ``x.float() / 255`` give the same output).  Raises ``ValueError`` naming the argument for any
    other dtype, values outside [0, 1] (NaN, infinities) in float images, a bad shape, severity,
    table or generator.  See the module docstring and docs/corruptions.md."""
    return CORRUPTIONS.lookup(name)(x, severity, generator=generator, table=table)


__all__ = [
    "ALL",
    "CORRUPTIONS",
    "DISPLAY",
    "EXTRA",
    "IMAGENET_C",
    "corrupt",
    "check_images",
    "check_severity",
    "check_generator",
    "choose_table",
    *ALL,
]
