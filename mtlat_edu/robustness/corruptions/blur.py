"""Blur corruptions of ImageNet-C: defocus, glass, motion and zoom blur.

Paper section 4.1 ("Common Corruptions"); steps and constants from Hendrycks & Dietterich's
reference (github.com/hendrycks/robustness, ``ImageNet-C/create_c/make_imagenet_c.py`` and
``make_cifar_c.py``), ported to batched torch.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from . import _ops
from ._common import corruption


DIRECT_MAX_SIDE = 7  # kernels up to 7x7 (the whole CIFAR table) by direct conv2d, larger by FFT


@functools.lru_cache(maxsize=64)
def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The reference ``disk``: a normalised aliased disk on a 17x17 grid (radius <= 8) or a
    (2r+1)^2 grid, anti-aliased by OpenCV ``GaussianBlur`` (3x3 or 5x5 kernel, sigma
    ``alias_blur``, BORDER_REFLECT_101), computed directly in float64 (exact zeros outside the
    blurred disk), on the CPU."""
    if radius <= 8:
        half, ksize = 8, 3
    else:  # the reference uses np.arange(-radius, radius + 1); floor keeps the grid integral
        half, ksize = int(math.floor(radius)), 5
    grid = torch.arange(-half, half + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    disk = ((xx**2 + yy**2) <= radius**2).to(torch.float32)
    disk = (disk / disk.sum()).to(torch.float64)  # normalised in float32, as the reference does
    taps = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    g = torch.exp(-(taps**2) / (2 * alias_blur**2))
    g = g / g.sum()
    p = ksize // 2
    padded = F.pad(disk[None, None], (p, p, p, p), mode="reflect")  # BORDER_REFLECT_101
    return F.conv2d(padded, torch.outer(g, g)[None, None])[0, 0]


def crop_support(kernel: torch.Tensor) -> torch.Tensor:
    """The centred odd-sized square of a symmetric kernel that holds all its non-zero taps."""
    half = kernel.shape[0] // 2
    nonzero = kernel.abs().amax(dim=0).nonzero()
    r = int(half - nonzero.min()) if len(nonzero) else 0
    return kernel[half - r : half + r + 1, half - r : half + r + 1].contiguous()


@functools.lru_cache(maxsize=64)
def disk_terms(radius: float, alias_blur: float) -> tuple:
    """The cropped disk kernel as a sum of rank-1 terms ``(column taps, row taps)`` (SVD, singular
    values above 1e-12 of the largest: exact to float64 rounding).  The CIFAR kernels have rank
    1 or 2 (a point or a square blurred by a separable Gaussian, or a 5-point cross)."""
    u, s, vh = torch.linalg.svd(crop_support(disk_kernel(radius, alias_blur)))
    rank = int((s > 1e-12 * s[0]).sum())
    return tuple((tuple((u[:, i] * s[i]).tolist()), tuple(vh[i].tolist())) for i in range(rank))


SEPARABLE_MAX_COST = 256  # rank * (h + w) multiply-adds per pixel for the matrix products


@corruption("defocus_blur", "Defocus")
def defocus_blur(x, params, generator, table):
    """Convolution with the anti-aliased ``disk`` kernel (OpenCV ``filter2D``, BORDER_REFLECT_101):
    as a sum of separable passes with banded matrices when the kernel has low rank and the
    images are small (the CIFAR table), else direct for kernels up to :data:`DIRECT_MAX_SIDE`
    px wide, else by FFT.  One thread, 32 px: the separable passes are ~9x faster than the direct
    ``conv2d``, itself ~2x faster than the FFT."""
    radius, alias_blur = params
    terms = disk_terms(float(radius), float(alias_blur))
    if len(terms) * sum(x.shape[-2:]) <= SEPARABLE_MAX_COST:
        return _ops.separable_correlate(x, terms, "mirror")
    kernel = disk_kernel(float(radius), float(alias_blur)).to(x.dtype)
    support = crop_support(kernel)
    if support.shape[0] <= DIRECT_MAX_SIDE:
        return _ops.conv_same(x, support)
    # the full grid keeps an FFT-friendly padded size; per cache-sized chunk of images
    return _ops.map_chunks(lambda chunk: _ops.correlate2d(chunk, kernel, "mirror"), x)


@functools.lru_cache(maxsize=32)
def _glass_schedule(h: int, w: int, d: int):
    """Wavefront order of the reference's swap loop.

    The reference visits ``(row, col)`` for ``row in range(h-d, d, -1)`` and, inside,
    ``col in range(w-d, d, -1)``; step ``(k, j)`` (k-th row, j-th column) only touches pixels
    in columns ``[col-d, col+d)``.  Running step ``(k, j)`` at time ``t = j + 2 d k`` puts
    simultaneous steps ``2d`` columns apart (disjoint pixels) and keeps every pair of steps
    that touch a common pixel in the reference order, so the result is identical to the
    sequential loop.  Returns (flat position index in schedule order, step boundaries).
    """
    rows, cols = h - 2 * d, w - 2 * d
    k = torch.arange(rows).unsqueeze(1).expand(rows, cols)
    j = torch.arange(cols).unsqueeze(0).expand(rows, cols)
    t = (j + 2 * d * k).reshape(-1)
    order = torch.argsort(t, stable=True)
    counts = torch.bincount(t, minlength=int(t.max()) + 1)
    bounds = [0] + torch.cumsum(counts, 0).tolist()
    return order, bounds


def glass_offsets(n, h, w, d, iterations, generator, device) -> torch.Tensor:
    """The random ``(dx, dy)`` of every step, in reference order:
    shape ``(n, iterations, h-2d, w-2d, 2)``, integers in ``[-d, d)`` (NumPy ``randint(-d, d)``)."""
    return _ops.randint(-d, d, (n, iterations, h - 2 * d, w - 2 * d, 2), generator, device, dtype=torch.int8)


def glass_shuffle(x: torch.Tensor, d: int, offsets: torch.Tensor) -> torch.Tensor:
    """Apply the reference's local pixel shuffle with given ``offsets`` (see ``glass_offsets``).

    The reference statement ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` works on NumPy *views*
    of the RGB pixels, so it is not a swap: it copies pixel ``(h', w')`` into ``(h, w)`` and
    leaves ``(h', w')`` unchanged.  This function reproduces exactly that, tracking a source
    index per pixel and gathering once at the end.
    """
    n, c, h, w = x.shape
    if h - 2 * d <= 0 or w - 2 * d <= 0 or offsets.shape[1] == 0:
        return x
    order, bounds = _glass_schedule(h, w, d)
    order = order.to(x.device)
    rows, cols = h - 2 * d, w - 2 * d
    kk = torch.arange(rows, device=x.device).unsqueeze(1)
    jj = torch.arange(cols, device=x.device).unsqueeze(0)
    p1 = ((h - d - kk) * w + (w - d - jj)).reshape(-1)[order]  # target pixel of each step
    # one flat source-index table for the whole batch; rows of (steps, n) index tables are
    # contiguous per time step, so each step is one index_select and one index_copy_
    base = torch.arange(n, device=x.device) * (h * w)
    target = (p1.unsqueeze(1) + base.unsqueeze(0)).contiguous()
    perm = torch.arange(n * h * w, device=x.device)
    for it in range(offsets.shape[1]):
        off = offsets[:, it].reshape(n, rows * cols, 2).long()
        delta = (off[..., 1] * w + off[..., 0])[:, order].T  # dy * w + dx, schedule order
        source = (target + delta).contiguous()
        for a, b in zip(bounds[:-1], bounds[1:]):
            perm.index_copy_(0, target[a:b].view(-1), perm.index_select(0, source[a:b].view(-1)))
    flat = x.reshape(n, c, h * w)
    idx = (perm.view(n, h * w) - base.unsqueeze(1)).unsqueeze(1).expand(n, c, h * w)
    return flat.gather(2, idx).reshape(n, c, h, w)


@corruption("glass_blur", "Glass")
def glass_blur(x, params, generator, table):
    """Gaussian blur (skimage, mode 'nearest'), truncation to uint8, ``iterations`` passes of the
    local pixel shuffle with ``max_delta``, Gaussian blur again (reference ``glass_blur``)."""
    sigma, max_delta, iterations = params
    d, iters = int(round(max_delta)), int(round(iterations))
    n, _, h, w = x.shape
    x8 = _ops.truncate_uint8(_ops.gaussian_blur(x, sigma, 4.0, "nearest") * 255.0)
    offsets = glass_offsets(n, h, w, d, iters, generator, x.device)
    x8 = glass_shuffle(x8, d, offsets)
    return _ops.gaussian_blur(x8 / 255.0, sigma, 4.0, "nearest")


@corruption("motion_blur", "Motion")
def motion_blur(x, params, generator, table):
    """ImageMagick ``MotionBlurImage(radius, sigma, angle ~ U(-45, 45))`` on the 8-bit image,
    8-bit result (reference ``motion_blur`` through Wand; ImageMagick rounds down).  ImageMagick is replaced by an exact
    port of its kernel (``_ops.motion_blur``); see docs/corruptions.md for the measured gap."""
    radius, sigma = params
    angles = _ops.uniform(-45.0, 45.0, (x.shape[0],), generator, x.device)
    out = _ops.motion_blur(x, radius, sigma, angles, levels=True)  # (the 8-bit levels, taken per chunk)
    return _ops.imagemagick_to_uint8(out) / 255.0


SMALL_ZOOM_SIDE = 64  # up to this size, zoom blur multiplies dense (h, h) and (w, w) matrices
SMALL_ZOOM_CHUNK_BYTES = 1 << 18  # images per chunk there (measured best of 32 KiB .. 512 KiB at 32 px)


def zoom_factors(stop: float, step: float) -> np.ndarray:
    """``np.arange(1, stop, step)`` exactly as the reference builds its zoom list."""
    return np.arange(1, stop, step)


@corruption("zoom_blur", "Zoom")
def zoom_blur(x, params, generator, table):
    """Average of the image and its ``clipped_zoom`` by every factor in ``np.arange(1, stop, step)``
    (reference ``zoom_blur``)."""
    stop, step = params
    zooms = zoom_factors(stop, step)
    h, w = x.shape[-2:]

    def one(chunk):  # on cache-sized chunks of images (see _ops.map_chunks); the reference's order of sums
        out = _ops.clipped_zoom(chunk, float(zooms[0]))
        for z in zooms[1:]:
            out += _ops.clipped_zoom(chunk, float(z))
        return out.add_(chunk).div_(len(zooms) + 1)

    def one_small(chunk):  # small images: each zoom as two matrix products, accumulated in place
        n, c = chunk.shape[:2]
        planes = n * c
        # rows of every plane side by side, (h, planes * w): the row map is then one plain matrix
        # product (not a batch of small ones), whose result, seen as (h * planes, w), takes the
        # column map as another; 1.23-1.36x faster at 32 px than per-plane batched products, same
        # sums; the row map as products with its banded blocks: another 1.06-1.08x, same sums
        by_row = chunk.reshape(planes, h, w).transpose(0, 1).reshape(h, planes * w)
        zoomed_rows = torch.empty_like(by_row)
        out = None
        for z in zooms:
            for r0, r1, s0, s1, block in _ops.zoom_row_blocks(h, float(z), chunk.dtype, chunk.device):
                torch.mm(block, by_row[s0:s1], out=zoomed_rows[r0:r1])
            cols_t = _ops.zoom_matrices(h, w, float(z), chunk.dtype, chunk.device)[1]
            if out is None:
                out = torch.mm(zoomed_rows.view(-1, w), cols_t)
            else:
                out.addmm_(zoomed_rows.view(-1, w), cols_t)
        out = out.view(h, planes, w).transpose(0, 1).reshape(chunk.shape)
        return out.add_(chunk).div_(len(zooms) + 1)

    if max(h, w) <= SMALL_ZOOM_SIDE:
        return _ops.map_chunks(one_small, x, budget=SMALL_ZOOM_CHUNK_BYTES)
    return _ops.map_chunks(one, x)
