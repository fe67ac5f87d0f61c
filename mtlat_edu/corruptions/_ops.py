"""Batched tensor building blocks shared by the corruption modules.

Everything here works on float NCHW tensors on any device.  The helpers reproduce the exact
boundary rules of the libraries that the reference ImageNet-C code calls (SciPy / scikit-image
``mode='nearest'`` and ``'reflect'``, OpenCV ``BORDER_REFLECT_101``, ImageMagick's edge pixels), so
that the batched corruptions agree with the per-image reference definitions.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------
# Random draws: always from the given generator (on the generator's device), then moved to the
# device of the images, so that a seeded CPU generator gives the same result on CPU and CUDA.
# ----------------------------------------------------------------------------------------------


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def rand(shape, generator, device, dtype=torch.float32) -> torch.Tensor:
    """U[0, 1) draws of ``shape``."""
    d = _draw_device(generator, device)
    return torch.rand(shape, generator=generator, device=d, dtype=dtype).to(device)


def uniform(low, high, shape, generator, device) -> torch.Tensor:
    """U[low, high) draws in float32 (the same formula the test oracle's adapter uses)."""
    return low + (high - low) * rand(shape, generator, device)


def randn(shape, generator, device, dtype=torch.float32) -> torch.Tensor:
    d = _draw_device(generator, device)
    return torch.randn(shape, generator=generator, device=d, dtype=dtype).to(device)


def randint(low: int, high: int, shape, generator, device, dtype=torch.int64) -> torch.Tensor:
    """Integers in [low, high) (NumPy's ``randint`` convention)."""
    d = _draw_device(generator, device)
    return torch.randint(low, high, shape, generator=generator, device=d, dtype=dtype).to(device)


def poisson(rates: torch.Tensor, generator) -> torch.Tensor:
    d = _draw_device(generator, rates.device)
    return torch.poisson(rates.to(d), generator=generator).to(rates.device)


# ----------------------------------------------------------------------------------------------
# Boundary handling
# ----------------------------------------------------------------------------------------------


def map_index(idx: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """Map (possibly out-of-range) integer indices into ``[0, n)``.

    ``nearest``: clamp (SciPy 'nearest', ImageMagick edge pixels, OpenCV BORDER_REPLICATE);
    ``reflect``: half-sample symmetric ``d c b a | a b c d | d c b a`` (SciPy 'reflect');
    ``mirror``: whole-sample symmetric ``d c b | a b c d | c b a`` (SciPy 'mirror',
    OpenCV BORDER_REFLECT_101).  All repeat periodically, so any extension length works.
    """
    if mode == "nearest":
        return idx.clamp(0, n - 1)
    if mode == "reflect":
        p = 2 * n
        m = idx.remainder(p)
        return torch.where(m >= n, p - 1 - m, m)
    if mode == "mirror":
        if n == 1:
            return torch.zeros_like(idx)
        p = 2 * n - 2
        m = idx.remainder(p)
        return torch.where(m >= n, p - m, m)
    raise ValueError(f"mode: expected 'nearest', 'reflect' or 'mirror', got {mode!r}")


def pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int, mode: str) -> torch.Tensor:
    """Pad the last two dims by index mapping (works for pads larger than the image)."""
    h, w = x.shape[-2:]
    rows = map_index(torch.arange(-top, h + bottom, device=x.device), h, mode)
    cols = map_index(torch.arange(-left, w + right, device=x.device), w, mode)
    return x.index_select(-2, rows).index_select(-1, cols)


# ----------------------------------------------------------------------------------------------
# Gaussian filtering (SciPy ``gaussian_filter`` semantics) as exact banded matrices
# ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _gaussian_matrix_cpu(n: int, sigma: float, truncate: float, mode: str) -> torch.Tensor:
    if sigma <= 1e-15:  # SciPy skips axes with a zero sigma
        return torch.eye(n, dtype=torch.float64)
    radius = int(truncate * sigma + 0.5)
    weights = gaussian_taps(sigma, truncate)
    idx = torch.arange(n).unsqueeze(1) + torch.arange(-radius, radius + 1).unsqueeze(0)
    idx = map_index(idx, n, mode)
    mat = torch.zeros(n, n, dtype=torch.float64)
    mat.scatter_add_(1, idx, weights.expand(n, -1).contiguous())
    return mat


def gaussian_matrix(n, sigma, truncate, mode, device, dtype) -> torch.Tensor:
    """``M`` with ``M @ v`` = 1-D Gaussian filter of ``v`` (length ``n``) as SciPy computes it."""
    return _gaussian_matrix_cpu(int(n), float(sigma), float(truncate), mode).to(device=device, dtype=dtype)


def gaussian_taps(sigma: float, truncate: float) -> torch.Tensor:
    """SciPy's 1-D Gaussian weights (float64): ``exp(-k^2 / (2 sigma^2))``, ``|k| <= int(truncate*sigma + 0.5)``."""
    radius = int(truncate * sigma + 0.5)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * taps**2 / sigma**2)
    return weights / weights.sum()


def gaussian_blur(x: torch.Tensor, sigma: float, truncate: float = 4.0, mode: str = "nearest") -> torch.Tensor:
    """Separable Gaussian over the last two dims, equal to ``scipy.ndimage.gaussian_filter`` /
    ``skimage.filters.gaussian`` (per channel) with the same ``mode`` and ``truncate``.

    Computed as ``M_h @ x @ M_w^T`` with banded filter matrices: exact for any radius (e.g.
    elastic_transform's sigma of 170 px on 224 px images) and, with BLAS, faster on the CPU than
    shifted sums or ``conv2d`` for the image sizes used here (measured 2x at 224 px).
    """
    if sigma <= 1e-15:
        return x
    h, w = x.shape[-2:]
    mh = gaussian_matrix(h, sigma, truncate, mode, x.device, x.dtype)
    mw = gaussian_matrix(w, sigma, truncate, mode, x.device, x.dtype)
    return torch.matmul(torch.matmul(mh, x), mw.T)


# ----------------------------------------------------------------------------------------------
# FFT correlation with per-batch or per-image kernels given as sparse taps
# ----------------------------------------------------------------------------------------------


def correlate_taps(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, weights: torch.Tensor, mode: str) -> torch.Tensor:
    """``out[n, c, y, x] = sum_i w[n, i] * x[n, c, map(y + dy[n, i]), map(x + dx[n, i])]``.

    ``dy``, ``dx`` (integer) and ``weights`` have shape ``(N or 1, T)``; ``map`` is the boundary
    rule ``mode``.  Computed exactly (up to float rounding) by padding and one FFT product, so
    its cost does not grow with the number of taps.
    """
    n, c, h, w = x.shape
    r = int(max(dy.abs().max().item(), dx.abs().max().item()))
    p = pad(x, r, r, r, r, mode)
    hp, wp = p.shape[-2:]
    k = dy.shape[0]
    kimg = torch.zeros(k, hp * wp, dtype=x.dtype, device=x.device)
    flat = ((-(dy + r)) % hp) * wp + ((-(dx + r)) % wp)
    kimg.scatter_add_(1, flat, weights.to(x.dtype))
    kimg = kimg.view(k, 1, hp, wp)
    out = torch.fft.irfft2(torch.fft.rfft2(p) * torch.fft.rfft2(kimg), s=(hp, wp))
    return out[..., :h, :w]


def correlate2d(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Same-size 2-D correlation with one odd-sized kernel (OpenCV ``filter2D`` semantics)."""
    kh, kw = kernel.shape
    yy, xx = torch.meshgrid(torch.arange(kh) - kh // 2, torch.arange(kw) - kw // 2, indexing="ij")
    dev = x.device
    return correlate_taps(
        x, yy.reshape(1, -1).to(dev), xx.reshape(1, -1).to(dev), kernel.reshape(1, -1).to(dev), mode
    )


# ----------------------------------------------------------------------------------------------
# Motion blur: ImageMagick's MotionBlurImage kernel
# ----------------------------------------------------------------------------------------------


def motion_blur(x: torch.Tensor, radius: float, sigma: float, angle_deg: torch.Tensor) -> torch.Tensor:
    """ImageMagick ``MotionBlurImage(radius, sigma, angle)`` for a batch, one angle per image.

    ImageMagick (6.x/7.x, ``effect.c``) uses ``width = 2*ceil(radius)+1`` taps ``i = 0..width-1``
    with one-sided Gaussian weights ``exp(-i^2 / (2 sigma^2))`` (normalised) at integer offsets
    ``(ceil(i cos(a) - 0.5), ceil(i sin(a) - 0.5))`` (x = column, y = row) and edge pixels
    outside the image.  Offsets are computed in float64 like the C code.
    """
    width = int(2 * math.ceil(radius) + 1)
    i = torch.arange(width, dtype=torch.float64, device=x.device)
    k = torch.exp(-(i * i) / (2.0 * sigma * sigma))
    k = k / k.sum()
    theta = torch.deg2rad(angle_deg.to(torch.float64)).unsqueeze(1)
    ox = torch.ceil(i * torch.cos(theta) - 0.5).long()
    oy = torch.ceil(i * torch.sin(theta) - 0.5).long()
    return correlate_taps(x, oy, ox, k.expand(x.shape[0], -1), "nearest")


def imagemagick_to_uint8(x255: torch.Tensor) -> torch.Tensor:
    """The 8-bit PNG that ImageMagick 6 (Q16) writes after a motion blur holds the blurred value
    rounded *down* (measured: ``floor`` matches 99.8% of the values, ``round`` only 54%, see
    docs/corruptions.md); a 1e-3 margin absorbs float error on exact levels."""
    return torch.floor(x255.clamp(0, 255) + 1e-3)


# ----------------------------------------------------------------------------------------------
# clipped_zoom (reference helper): centre crop then scipy.ndimage.zoom(order=1) then trim
# ----------------------------------------------------------------------------------------------


def _zoom_axis(n: int, z: float):
    ch = int(math.ceil(n / z))
    top = (n - ch) // 2
    out = int(round(ch * z))
    trim = (out - n) // 2
    return top, ch, out, trim


def clipped_zoom(x: torch.Tensor, z: float) -> torch.Tensor:
    """Zoom into the centre of every image by ``z`` >= 1 keeping the size (reference
    ``clipped_zoom``): ``scipy.ndimage.zoom(order=1)`` maps output pixel ``o`` to input
    ``o * (in-1)/(out-1)``, i.e. bilinear interpolation with ``align_corners=True``."""
    h, w = x.shape[-2:]
    th, chh, oh, trh = _zoom_axis(h, z)
    tw, chw, ow, trw = _zoom_axis(w, z)
    crop = x[..., th : th + chh, tw : tw + chw]
    if (oh, ow) != (chh, chw):
        crop = F.interpolate(crop, size=(oh, ow), mode="bilinear", align_corners=True)
    return crop[..., trh : trh + h, trw : trw + w]


# ----------------------------------------------------------------------------------------------
# Bilinear sampling with explicit boundary rule (for elastic_transform)
# ----------------------------------------------------------------------------------------------


def bilinear_sample(x: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, mode: str) -> torch.Tensor:
    """Sample ``x`` (N,C,H,W) bilinearly at pixel coordinates ``ys``, ``xs`` (N,Ho,Wo).

    Out-of-range *taps* follow ``mode`` as in SciPy ``map_coordinates(order=1, mode=...)`` and
    OpenCV ``remap``/``warpAffine``.  The piecewise-linear interpolant of a sequence extended
    half-sample symmetrically ('reflect') is symmetric about -0.5 and n-0.5, and whole-sample
    symmetrically ('mirror', BORDER_REFLECT_101) about 0 and n-1, so both equal
    ``grid_sample(padding_mode='reflection')`` with ``align_corners`` False resp. True;
    'nearest' (edge taps) equals ``padding_mode='border'``.
    """
    n, c, h, w = x.shape
    if mode == "reflect":
        gx, gy, align, pm = (2 * xs + 1) / w - 1, (2 * ys + 1) / h - 1, False, "reflection"
    elif mode in ("mirror", "nearest"):
        gx, gy = 2 * xs / max(w - 1, 1) - 1, 2 * ys / max(h - 1, 1) - 1
        align, pm = True, ("reflection" if mode == "mirror" else "border")
    else:
        raise ValueError(f"mode: expected 'reflect', 'mirror' or 'nearest', got {mode!r}")
    grid = torch.stack([gx, gy], dim=-1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=pm, align_corners=align)


# ----------------------------------------------------------------------------------------------
# Quantisation (the reference works on uint8 images)
# ----------------------------------------------------------------------------------------------


def to_uint8_levels(x: torch.Tensor) -> torch.Tensor:
    """Round [0, 1] floats to the 256 levels of an 8-bit image (values stay in [0, 255])."""
    return torch.round(x.clamp(0, 1) * 255.0)


def truncate_uint8(x255: torch.Tensor) -> torch.Tensor:
    """``np.uint8(v)`` of values in [0, 255]: truncation toward zero."""
    return torch.floor(x255.clamp(0, 255))


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """OpenCV ``COLOR_RGB2GRAY`` weights (ITU-R BT.601): (N,3,H,W) -> (N,1,H,W)."""
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
