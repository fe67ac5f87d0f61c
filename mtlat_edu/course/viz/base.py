"""The figures' shared parts: colours, image conversion, the perturbation map, panels."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

CLEAN_COLOR = "#4C72B0"
MIX_COLOR = "#DD8452"
ADV_COLOR = "#C44E52"
GOOD_COLOR = "#55A868"


# ---------------------------------------------------------------------------------------------
# basic helpers

def to_hwc(x) -> np.ndarray:
    """One image (CHW tensor, HWC array, or a 1-image batch) as an HWC float array in [0, 1]."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu()
        if x.dim() == 4:
            if x.shape[0] != 1:
                raise ValueError(f"x: expected one image, got a batch of {x.shape[0]}")
            x = x[0]
        if x.dim() != 3:
            raise ValueError(f"x: expected a CHW image, got shape {tuple(x.shape)}")
        x = x.permute(1, 2, 0).numpy()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    return np.clip(x, 0.0, 1.0)


def amplify(delta: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """A perturbation made visible: ``0.5 + delta / (2 * max|delta|)`` (grey = no change)."""
    delta = delta.detach().float()
    scale = float(eps) if eps else float(delta.abs().max())
    if scale <= 0:
        return torch.full_like(delta, 0.5)
    return (0.5 + delta / (2 * scale)).clamp(0, 1)


def delta_map(ax, delta, scale: float | None = None, title: str | None = None, colorbar: bool = True,
              fontsize: int = 8) -> float:
    """A perturbation as one diverging map: the mean over the colour channels, red = brighter, blue =
    darker, white = unchanged, on the symmetric scale ``+-scale`` (default: its largest change),
    with a colour bar in pixel units so the map has a scale. Returns the scale used."""
    d = torch.as_tensor(delta).detach().float().cpu()
    d = d.mean(0) if d.dim() == 3 else d
    scale = float(scale) if scale else max(float(d.abs().max()), 1e-12)
    im = ax.imshow(d.numpy(), cmap="RdBu_r", vmin=-scale, vmax=scale)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        cb.ax.tick_params(labelsize=6)
    return scale


def _as_list(images) -> list:
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return list(images)
    if isinstance(images, torch.Tensor) and images.dim() == 3:
        return [images]
    return list(images)


def _figure(w: float, h: float) -> Figure:
    return Figure(figsize=(w, h), layout="constrained")


def _imshow(ax, img, title: str | None = None, fontsize: int = 8) -> None:
    ax.imshow(to_hwc(img), interpolation="nearest" if to_hwc(img).shape[0] <= 64 else "antialiased")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def class_name(classes: Sequence[str] | None, k: int) -> str:
    return classes[k] if classes is not None and 0 <= k < len(classes) else str(k)
