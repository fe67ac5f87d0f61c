"""Input validation shared by every module: clear errors naming the argument and the allowed range."""
from __future__ import annotations

import torch


class ImageTypeError(ValueError, TypeError):
    """Images of the wrong type or dtype: both a ValueError (bad argument) and a TypeError."""


def check_images(x: torch.Tensor, name: str = "images") -> torch.Tensor:
    """Images must be a floating NCHW tensor with values in [0, 1] (NaN is out of range)."""
    if not isinstance(x, torch.Tensor):
        raise ImageTypeError(f"{name}: expected a float NCHW torch.Tensor with values in [0, 1], "
                             f"got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name}: expected a 4-d NCHW batch, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ImageTypeError(f"{name}: expected a floating-point tensor with values in [0, 1], got dtype {x.dtype}")
    if x.numel():
        lo, hi = torch.aminmax(x)
        if not (bool(lo >= 0) and bool(hi <= 1)):
            raise ValueError(f"{name}: values must lie in [0, 1], got min {lo.item():.4g} and max {hi.item():.4g}")
    return x


def check_labels(y: torch.Tensor, num_classes: int, batch: int | None = None, name: str = "labels") -> torch.Tensor:
    """Hard labels: an int64 vector of class indices in [0, num_classes)."""
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name}: expected a 1-d integer tensor of class indices, got {getattr(y, 'shape', y)!r}")
    if batch is not None and y.shape[0] != batch:
        raise ValueError(f"{name}: expected {batch} labels (one per image), got {y.shape[0]}")
    if y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name}: class indices must lie in [0, {num_classes - 1}]")
    return y


def check_range(value, name: str, low: float, high: float, low_open: bool = False) -> None:
    """A float (or a tensor of floats) in [low, high] (or (low, high] with ``low_open``)."""
    t = torch.as_tensor(value, dtype=torch.float64)
    bad_low = (t <= low) if low_open else (t < low)
    if t.numel() == 0 or bool(bad_low.any()) or bool((t > high).any()):
        bracket = "(" if low_open else "["
        raise ValueError(f"{name}: must lie in {bracket}{low}, {high}], got {value!r}")


def resolve_device(device=None) -> torch.device:
    """``None`` or ``"auto"``: the GPU when one is visible, else the CPU; otherwise the named device,
    with a clear error when CUDA is asked for but absent."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} asked but no CUDA GPU is visible; use device='auto' or 'cpu'")
    return dev


def check_positive(value: float, name: str) -> None:
    if not value > 0:
        raise ValueError(f"{name}: must be > 0, got {value!r}")
