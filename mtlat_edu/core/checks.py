"""Input validation shared by every module: clear errors naming the argument and the allowed values.

The one validation layer of the package (see docs/design.md, "Validation"). Every check is written
so that NaN fails it (``ok = low <= x <= high`` and ``if not ok``, never ``if x < low or x > high``),
and infinities are refused unless a bound is itself infinite. Public entry points (API and CLI)
call these once; the training hot path does not re-validate. Every message starts with the
argument's name (``eps_max: ...``), which the CLI turns into the option (``--eps-max: ...``).
"""
from __future__ import annotations

import math
import numbers

import torch

from .registry import Registry, UnknownNameError

# What the models take (float64 reaches torch's conv error, integer images are not in [0, 1]).
MODEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_DTYPE_NAMES = "float32, float16 or bfloat16"


class ImageTypeError(ValueError, TypeError):
    """Images of the wrong type or dtype: both a ValueError (bad argument) and a TypeError."""


def check_nchw(x: torch.Tensor, name: str = "images", channels: int | None = None) -> torch.Tensor:
    """Shape only (no value read, so no GPU synchronisation): a 4-d NCHW batch with ``channels`` channels."""
    if not isinstance(x, torch.Tensor):
        raise ImageTypeError(f"{name}: expected a float NCHW torch.Tensor with values in [0, 1], "
                             f"got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name}: expected a 4-d NCHW batch, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        hint = " (NHWC? use x.permute(0, 3, 1, 2))" if x.shape[3] == channels else ""
        raise ValueError(f"{name}: expected NCHW with {channels} channels in dim 1, got shape {tuple(x.shape)}{hint}")
    return x


def check_images(x: torch.Tensor, name: str = "images", channels: int | None = None,
                 dtypes: tuple | None = None) -> torch.Tensor:
    """Images must be a floating NCHW tensor with values in [0, 1] (NaN is out of range);
    ``channels`` and ``dtypes`` (e.g. :data:`MODEL_DTYPES`) restrict them further."""
    check_nchw(x, name, channels)
    if not x.is_floating_point():
        raise ImageTypeError(f"{name}: expected a floating-point tensor with values in [0, 1], got dtype {x.dtype}"
                             + (" (uint8 images: use x.float() / 255)" if x.dtype == torch.uint8 else ""))
    if dtypes is not None and x.dtype not in dtypes:
        raise ImageTypeError(f"{name}: expected dtype {_DTYPE_NAMES}, got {x.dtype} (convert with x.float())")
    if x.numel():
        lo, hi = torch.aminmax(x)
        if not (bool(lo >= 0) and bool(hi <= 1)):
            raise ValueError(f"{name}: values must lie in [0, 1], got min {lo.item():.4g} and max {hi.item():.4g}")
    return x


def model_channels(model) -> int | None:
    """The number of input channels of ``model`` (its first convolution), None when it has none."""
    return next((m.in_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)


def check_model_input(x: torch.Tensor, model, name: str = "x") -> torch.Tensor:
    """Images a model can take: float32/16/bf16 NCHW in [0, 1] with the model's channel count."""
    return check_images(x, name, model_channels(model), MODEL_DTYPES)


def check_labels(y: torch.Tensor, num_classes: int | None, batch: int | None = None,
                 name: str = "labels") -> torch.Tensor:
    """Hard labels: a 1-d integer tensor of class indices in [0, num_classes) (float labels are
    refused, never truncated; ``num_classes=None`` checks only the type and the shape)."""
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.dtype not in (torch.int64, torch.int32):
        what = f"dtype {y.dtype}, shape {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{name}: expected a 1-d int64 tensor of class indices, got {what}")
    if batch is not None and y.shape[0] != batch:
        raise ValueError(f"{name}: expected {batch} integer class indices (one per image), got {y.shape[0]}")
    if num_classes is not None and y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name}: class indices must lie in [0, {num_classes - 1}], "
                         f"got min {y.min().item()} and max {y.max().item()}")
    return y


def check_soft_labels(y_soft, name: str = "y_soft", batch: int | None = None) -> torch.Tensor:
    """Label vectors: a finite float (B, N) tensor (hard (B,) labels go through ``one_hot`` first)."""
    if not isinstance(y_soft, torch.Tensor) or y_soft.dim() != 2 or not y_soft.is_floating_point():
        what = f"dtype {y_soft.dtype}, shape {tuple(y_soft.shape)}" if isinstance(y_soft, torch.Tensor) \
            else type(y_soft).__name__
        raise ValueError(f"{name}: expected float (B, N) label vectors (one_hot(y, N) turns class indices "
                         f"into them), got {what}")
    if batch is not None and y_soft.shape[0] != batch:
        raise ValueError(f"{name}: expected {batch} rows (one per image), got shape {tuple(y_soft.shape)}")
    if y_soft.numel() and not bool(torch.isfinite(y_soft).all()):
        raise ValueError(f"{name}: label vectors must be finite (no NaN or inf)")
    return y_soft


def _as_float_tensor(value, name: str) -> torch.Tensor:
    if isinstance(value, (bool, str, bytes)) or value is None:
        raise ValueError(f"{name}: expected a number, got {value!r}")
    try:
        return torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name}: expected a number, got {value!r}") from None


def check_range(value, name: str, low: float, high: float, low_open: bool = False) -> None:
    """A finite float (or a tensor of them) in [low, high] (or (low, high] with ``low_open``).

    NaN and +-inf fail (an infinite ``high`` means "no upper bound", not "inf allowed").
    """
    t = _as_float_tensor(value, name)
    ok = t.numel() > 0 and bool(torch.isfinite(t).all()) and bool(((t > low) if low_open else (t >= low)).all()) \
        and bool((t <= high).all())
    if not ok:
        bracket = "(" if low_open else "["
        allowed = f"be > {low:g}" if high == math.inf and low_open else f"be >= {low:g}" if high == math.inf \
            else f"lie in {bracket}{low}, {high}]"
        shown = value if not isinstance(value, torch.Tensor) or value.numel() <= 8 else f"a tensor of {value.numel()}"
        raise ValueError(f"{name}: must {allowed} (a finite number), got {shown!r}")


def check_positive(value, name: str) -> None:
    """A finite number > 0 (NaN and inf refused)."""
    check_range(value, name, 0.0, math.inf, low_open=True)


def check_int(value, name: str, low: int = 1, optional: bool = False, what: str = "") -> None:
    """An integer (not a bool, not a float) >= ``low``; None too with ``optional``."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        alt = f" (or left out: {what or 'None'})" if optional else ""
        raise ValueError(f"{name}: must be an integer >= {low}{alt}, got {value!r}")


def check_int_set(values, name: str, low: int = 0, high: int | None = None) -> tuple[int, ...]:
    """A non-empty sequence of distinct integers in [low, high] (e.g. the mixing layers of
    ``--manifold-layers``); returned as a tuple."""
    vals = tuple(values) if isinstance(values, (list, tuple)) else None
    top = "" if high is None else f" and <= {high}"
    if not vals or len(set(vals)) != len(vals) or any(
            isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low or (high is not None and v > high)
            for v in vals):
        raise ValueError(f"{name}: must be one or more distinct integers >= {low}{top}, got {values!r}")
    return tuple(int(v) for v in vals)


def check_eps(eps, name: str = "eps", batch: int | None = None) -> None:
    """A perturbation amount: a float in [0, 1], or one per sample (a (B,) tensor) in [0, 1]."""
    if isinstance(eps, torch.Tensor) and eps.dim() > 0 and (eps.dim() != 1 or (batch is not None
                                                                              and eps.shape[0] != batch)):
        raise ValueError(f"{name}: expected a float or a ({batch if batch is not None else 'B'},) tensor "
                         f"(one per sample), got shape {tuple(eps.shape)}")
    if not (isinstance(eps, torch.Tensor) and eps.dim() == 1 and eps.numel() == 0):  # an empty batch has no eps
        check_range(eps, name, 0.0, 1.0)


def check_choice(value, name: str, choices) -> None:
    """One of the registered names (a :class:`~mtlat_edu.core.registry.Registry` or a sequence);
    else :class:`~mtlat_edu.core.registry.UnknownNameError` naming ``name`` and the valid names."""
    if isinstance(choices, Registry):
        choices.check(value, name)
    elif value not in choices:
        raise UnknownNameError(name, value, choices)


def resolve_device(device=None) -> torch.device:
    """``None`` or ``"auto"``: the GPU when one is visible, else the CPU; otherwise the named device
    (cpu, cuda, cuda:N, mps), with a clear error naming the devices available here."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    here = ["auto", "cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(n_gpu)] if n_gpu else []) + (["mps"] if mps else [])
    allowed = f"valid: auto, cpu, cuda, cuda:N, mps (available here: {', '.join(here)})"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device: unknown device {device!r}; {allowed}") from None
    if dev.type == "cuda" and (not n_gpu or (dev.index or 0) >= n_gpu):
        raise ValueError(f"device: {device!r} asked but no such CUDA GPU is visible; {allowed}")
    if dev.type == "mps" and not mps:
        raise ValueError(f"device: {device!r} asked but Apple's MPS backend is not available on this machine; {allowed}")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device: {device!r} is not supported; {allowed}")
    return dev
