"""Validation (once, at the entry: float images in [0, 1] or 8-bit uint8 images), table choice and
continuous-severity interpolation shared by all corruptions."""
from __future__ import annotations

import functools
import math
import numbers
from typing import Callable

import torch

from mtlat_edu.core.checks import ImageTypeError, check_nchw
from mtlat_edu.core.registry import Registry
from . import _ops
from ._tables import EXTRA_RANGES, TABLES

CIFAR_MAX_SIDE = 64  # images whose larger side is <= this use the CIFAR table by default

# Every corruption, registered by :func:`corruption`; its kind is its family, the module it is
# defined in: ImageNet-C's four families (Hendrycks & Dietterich) and the paper's four extra ones.
IMAGENET_C_FAMILIES = ("noise", "blur", "weather", "digital")
REGISTRY = Registry("name", kinds=IMAGENET_C_FAMILIES + ("extra",))


def check_images(x, values: bool = True) -> bool:
    """``x`` must be an NCHW RGB batch, at least 16 x 16 px, either 8-bit (dtype uint8: the levels
    0..255 of a decoded image, every value valid, so no pass over the data) or floating point with
    every value in [0, 1] (NaN and infinities refused).  Returns True for an 8-bit batch.

    ``values=False`` checks all but the float values (no pass over the data), for corruptions whose
    8-bit conversion checks the range as it goes (:func:`_ops.to_uint8` with ``check=True``)."""
    if not isinstance(x, torch.Tensor):
        raise ImageTypeError(f"x: expected an NCHW torch.Tensor, uint8 (levels 0..255) or floating point "
                             f"(values in [0, 1]), got {type(x).__name__}")
    eight_bit = x.dtype == torch.uint8
    if not (eight_bit or x.is_floating_point()):  # type, shape and dtype errors come before any value is read
        raise ImageTypeError(f"x: expected dtype uint8 (levels 0..255) or a floating-point dtype (values in "
                             f"[0, 1]), got {x.dtype}")
    check_nchw(x, "x")
    if x.shape[1] != 3:
        raise ValueError(f"x: expected 3 (RGB) channels in dim 1 (NCHW), got shape {tuple(x.shape)}")
    if x.shape[2] < 16 or x.shape[3] < 16:
        raise ValueError(f"x: height and width must be at least 16 px, got shape {tuple(x.shape)}")
    if values and not eight_bit:
        _ops.check_range(x)
    return eight_bit


def output_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype of a corruption's output: the input's for float images, float32 for 8-bit ones."""
    return torch.float32 if x.dtype == torch.uint8 else x.dtype


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


def corruption(
    name: str, label: str, in_range: bool = False, checks_values: bool = False, eight_bit: bool = False
) -> Callable:
    """Wrap ``impl(x, params, generator, table)`` as the public ``fn(x, severity, generator=None, table=None)``
    and register it in :data:`REGISTRY` as ``name``, shown as ``label`` (the paper's column title),
    of the family named by ``impl``'s module (noise, blur, weather, digital or extra).

    The wrapper validates the arguments (once, here: :func:`check_images`, :func:`check_severity`,
    :func:`check_generator`, :func:`choose_table`), picks the table, turns the severity into
    parameters (``params`` is the interpolated table row for ImageNet-C corruptions, the severity
    itself for the extra ones), computes in float32/float64, clamps to [0, 1] (unless
    ``in_range``: the implementation's output is in [0, 1] by construction, or clamped while it
    was in cache) and restores the dtype.  With ``checks_values`` the implementation checks the
    [0, 1] range of float images itself, in the same pass as its 8-bit conversion (same error;
    one pass less over the data).

    8-bit input (uint8 NCHW, levels 0..255): with ``eight_bit`` the implementation takes it as it
    is (the corruptions whose reference works on the 8-bit image, pixelate and JPEG: no range
    check and no conversion to 8 bits; ``impl`` must then accept uint8 and float images and
    return float32 for uint8); otherwise it is converted to float32 ``j / 255`` first, the
    conversion of the package's datasets (:func:`_ops.from_uint8`, the same floats as
    ``x.float().div_(255)``), so that an 8-bit batch and its float conversion give the same
    output bit for bit.  The output is always floating point in [0, 1]: the input's dtype for
    float images, float32 for 8-bit ones (:func:`output_dtype`).
    """

    def deco(impl):
        family = impl.__module__.rsplit(".", 1)[-1]
        imagenet_c = family in IMAGENET_C_FAMILIES

        @functools.wraps(impl)
        def fn(x, severity, generator=None, table=None):
            is8 = check_images(x, values=not checks_values)
            s = check_severity(severity)
            check_generator(generator)
            tname = choose_table(x, table)
            params = interpolate_levels(TABLES[tname][name], s) if imagenet_c else s
            dtype = output_dtype(x)
            if x.shape[0] == 0:
                return torch.empty(x.shape, dtype=dtype, device=x.device)
            if is8 and eight_bit:
                return impl(x, params, generator, tname)  # (in [0, 1] by construction, float32)
            if is8:
                xf = _ops.from_uint8(x, torch.float32)
            else:
                xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
            out = impl(xf, params, generator, tname)
            if in_range:
                return out.to(dtype)
            # clamp in place when ``out`` is a new tensor (or ``xf`` our own conversion): one large
            # allocation less per call (a fresh multi-MB CPU tensor costs page faults that dominate
            # elementwise work)
            fresh = is8 or out.untyped_storage().data_ptr() != xf.untyped_storage().data_ptr()
            out = out.clamp_(0, 1) if fresh else out.clamp(0, 1)
            return out.to(dtype)

        return REGISTRY.add(name, fn, label=label, kind=family)

    return deco
