"""Validation, table choice and continuous-severity interpolation shared by all corruptions."""
from __future__ import annotations

import functools
import math
import numbers
from typing import Callable

import torch

from mtlat_edu.core.checks import check_images as _check_images
from mtlat_edu.core.checks import check_nchw
from mtlat_edu.core.registry import Registry
from ._tables import EXTRA_RANGES, TABLES

CIFAR_MAX_SIDE = 64  # images whose larger side is <= this use the CIFAR table by default

# Every corruption, registered by :func:`corruption`; its kind is its family, the module it is
# defined in: ImageNet-C's four families (Hendrycks & Dietterich) and the paper's four extra ones.
IMAGENET_C_FAMILIES = ("noise", "blur", "weather", "digital")
REGISTRY = Registry("name", kinds=IMAGENET_C_FAMILIES + ("extra",))


def check_images(x, values: bool = True) -> None:
    """``x`` must be a float NCHW RGB batch with values in [0, 1], at least 16 x 16 px.

    ``values=False`` checks all but the values (no pass over the data), for corruptions whose
    8-bit conversion checks the range as it goes (:func:`_ops.to_uint8` with ``check=True``)."""
    if values or not isinstance(x, torch.Tensor) or not x.is_floating_point():
        _check_images(x, "x")  # type, shape and dtype errors come before any value is read
    else:
        check_nchw(x, "x")
    if x.shape[1] != 3:
        raise ValueError(f"x: expected 3 (RGB) channels in dim 1 (NCHW), got shape {tuple(x.shape)}")
    if x.shape[2] < 16 or x.shape[3] < 16:
        raise ValueError(f"x: height and width must be at least 16 px, got shape {tuple(x.shape)}")


def check_severity(severity) -> float:
    """A real number in [1, 5]; integers 1..5 are the reference levels."""
    if isinstance(severity, torch.Tensor) and severity.numel() == 1:
        severity = severity.item()
    if isinstance(severity, bool) or not isinstance(severity, numbers.Real) or not math.isfinite(float(severity)):
        raise ValueError(f"severity: expected a number in [1, 5], got {severity!r}")
    s = float(severity)
    if not 1.0 <= s <= 5.0:
        raise ValueError(f"severity: must lie in [1, 5], got {severity!r}")
    return s


def check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")


def choose_table(x: torch.Tensor, table: str | None) -> str:
    """``table`` if given, else 'cifar' for images up to 64 px and 'imagenet' above."""
    if table is None:
        return "cifar" if max(x.shape[-2:]) <= CIFAR_MAX_SIDE else "imagenet"
    if table not in TABLES:
        raise ValueError(f"table: expected 'imagenet', 'cifar' or None, got {table!r}")
    return table


def interpolate_levels(levels: list[tuple[float, ...]], severity: float) -> tuple[float, ...]:
    """Parameters at a (possibly fractional) severity.

    An integer severity returns the reference tuple unchanged; in between, each number is
    interpolated linearly between the two neighbouring integer levels.
    """
    lo = int(math.floor(severity))
    if severity == lo:
        return tuple(levels[lo - 1])
    t = severity - lo
    a, b = levels[lo - 1], levels[lo]
    return tuple(u + t * (v - u) for u, v in zip(a, b))


def extra_value(name: str, severity: float) -> float:
    """Severity 1 = lower bound, 5 = upper bound of the paper's range, linear in between."""
    lo, hi = EXTRA_RANGES[name]
    return lo + (severity - 1.0) / 4.0 * (hi - lo)


def corruption(name: str, label: str, in_range: bool = False, checks_values: bool = False) -> Callable:
    """Wrap ``impl(x, params, generator, table)`` as the public ``fn(x, severity, generator=None, table=None)``
    and register it in :data:`REGISTRY` as ``name``, shown as ``label`` (the paper's column title),
    of the family named by ``impl``'s module (noise, blur, weather, digital or extra).

    The wrapper validates the arguments, picks the table, turns the severity into parameters
    (``params`` is the interpolated table row for ImageNet-C corruptions, the severity itself for
    the extra ones), computes in float32/float64, clamps to [0, 1] (unless ``in_range``: the
    implementation's output is in [0, 1] by construction, or clamped while it was in cache)
    and restores the dtype.  With ``checks_values`` the implementation checks the [0, 1] range
    itself, in the same pass as its 8-bit conversion (same error; one pass less over the data).
    """

    def deco(impl):
        family = impl.__module__.rsplit(".", 1)[-1]
        imagenet_c = family in IMAGENET_C_FAMILIES

        @functools.wraps(impl)
        def fn(x, severity, generator=None, table=None):
            check_images(x, values=not checks_values)
            s = check_severity(severity)
            check_generator(generator)
            tname = choose_table(x, table)
            params = interpolate_levels(TABLES[tname][name], s) if imagenet_c else s
            xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
            if x.shape[0] == 0:
                return x.clone()
            out = impl(xf, params, generator, tname)
            if in_range:
                return out.to(x.dtype)
            # clamp in place when ``out`` is a new tensor: one large allocation less per call
            # (a fresh multi-MB CPU tensor costs page faults that dominate elementwise work)
            fresh = out.untyped_storage().data_ptr() != xf.untyped_storage().data_ptr()
            out = out.clamp_(0, 1) if fresh else out.clamp(0, 1)
            return out.to(x.dtype)

        return REGISTRY.add(name, fn, label=label, kind=family)

    return deco
