"""The four corruptions that the M-TLAT paper adds to ImageNet-C (section 4.1, "Common Corruptions").

"The occlusion perturbation is modeled by masking a randomly selected region of images with a
grey square.  For the images corrupted with color distortion, one of the RGB channel is randomly
chosen and a constant is added to all the pixels of this channel.  For the rotation and
translation perturbations, the pixel values of the area outside the transformed images are set
to zero."  Ranges (224 px images): rotation 8-40 degrees, occlusion square side 60-127 px,
translation 15-62 px, color distortion +8% to +30% of the maximum pixel value.

Severity 1 is the lower bound and 5 the upper bound, linear in between (fractional severities
allowed); pixel lengths scale with ``min(H, W) / 224``.  Choices the paper leaves open, made here:
bilinear interpolation for rotation and translation, a uniformly random direction (angle in
[0, 2 pi)) for translation, a random sign for rotation, a square lying fully inside the image at
a uniformly random position (side rounded to whole pixels, grey value 0.5).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from . import _ops
from ._common import corruption, extra_value


def _scale(x: torch.Tensor) -> float:
    return min(x.shape[-2:]) / 224.0


@corruption("occlusion", "Obstru")
def occlusion(x, severity, generator, table):
    """A grey (0.5) square of side 60..127 px (at 224 px) at a random position inside the image."""
    n, _, h, w = x.shape
    side = int(round(extra_value("occlusion", severity) * _scale(x)))
    side = max(1, min(side, h, w))
    top = _ops.randint(0, h - side + 1, (n,), generator, x.device)
    left = _ops.randint(0, w - side + 1, (n,), generator, x.device)
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    inside = (rows >= top[:, None, None]) & (rows < top[:, None, None] + side)
    inside = inside & (cols >= left[:, None, None]) & (cols < left[:, None, None] + side)
    return torch.where(inside[:, None], torch.full_like(x, 0.5), x)


@corruption("color_distortion", "Color")
def color_distortion(x, severity, generator, table):
    """Add 0.08..0.30 (of the maximum value 1) to one random RGB channel per image, then clip."""
    n, c = x.shape[:2]
    channel = _ops.randint(0, c, (n,), generator, x.device)
    shift = F.one_hot(channel, c).to(x.dtype)[:, :, None, None] * extra_value("color_distortion", severity)
    return x + shift


@corruption("translation", "Trans")
def translation(x, severity, generator, table):
    """Shift by 15..62 px (at 224 px) in a random direction, zeros outside (bilinear, sub-pixel)."""
    n, _, h, w = x.shape
    dist = extra_value("translation", severity) * _scale(x)
    angle = _ops.rand((n,), generator, x.device, torch.float64) * (2 * math.pi)
    tx, ty = dist * torch.cos(angle), dist * torch.sin(angle)
    theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    theta[:, 0, 2] = (-2 * tx / w).to(x.dtype)  # output(p) = input(p - t), normalised coordinates
    theta[:, 1, 2] = (-2 * ty / h).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@corruption("rotation", "Rot")
def rotation(x, severity, generator, table):
    """Rotate by 8..40 degrees about the centre, random sign (+1 = counter-clockwise on screen),
    zeros outside (torchvision ``rotate``, bilinear)."""
    angle = extra_value("rotation", severity)
    sign = _ops.randint(0, 2, (x.shape[0],), generator, x.device) * 2 - 1
    out = torch.empty_like(x)
    for s in (-1, 1):
        sel = sign == s
        if bool(sel.any()):
            # fill=None: grid_sample's zero padding; torchvision's explicit fill=0 would multiply the
            # border pixels by the sampled mask a second time.
            out[sel] = TF.rotate(x[sel], s * angle, interpolation=TF.InterpolationMode.BILINEAR, fill=None)
    return out
