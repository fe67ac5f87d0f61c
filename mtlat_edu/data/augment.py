"""Batched augmentation on the device: registry ``AUGMENTATIONS`` (name -> ``fn(x, generator) -> x``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mtlat_edu.core.registry import Registry


def flip_crop(x: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample random horizontal flip and random crop after ``pad`` px of reflection padding.

    torchvision's v2 transforms draw one set of parameters per call (the same for a whole
    batch); this draws them per image, batched, on the images' device.
    """
    n, c, h, w = x.shape
    dev = generator.device if generator is not None else x.device
    flip = torch.rand(n, generator=generator, device=dev).to(x.device) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    if pad <= 0:
        return x
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=dev).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=dev).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    return xp[torch.arange(n, device=x.device)[:, None, None, None],
              torch.arange(c, device=x.device)[None, :, None, None], rows, cols]


AUGMENTATIONS = Registry("augment")
AUGMENTATIONS.add("none", lambda x, g=None: x, description="the images as they are (the paper's regime)")
AUGMENTATIONS.add("flipcrop", lambda x, g=None: flip_crop(x, 4, g),
                  description="random horizontal flip and 4 px reflection-padded random crop, per image")
