"""Procedural stand-in for the six frost photographs of ImageNet-C.

The reference ``frost`` (github.com/hendrycks/robustness, ``make_imagenet_c.py`` /
``make_cifar_c.py``) blends the image with a random crop of one of the pictures
``frost1.png .. frost3.png, frost4.jpg .. frost6.jpg`` (``np.random.randint(5)`` picks among the
first five only).  We do not ship those pictures; instead, five deterministic textures of ice
crystals are drawn here: six-armed dendrites (60 degree side branches) of random size and
orientation, short frost needles, a low-frequency haze and fine grain, tinted blue-white and
calibrated to the mean, contrast and tint of the reference pictures, and quantised to 8 bits
like an image read from disk.  The textures are tileable (drawn on a torus),
depend only on their index and size, and are cached per process.  docs/corruptions.md documents
their statistics and how the corruption differs from the photographs.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from . import _ops
from ._tables import CIFAR_FROST_SCALE

NUM_TEXTURES = 5  # the reference draws np.random.randint(5): only five of its six pictures are used
BASE_SIZE = 640  # side of the full-resolution textures (the CIFAR table shrinks them by 5)
_SEED = 20200823
# Mean over frost1..frost5 (the pictures np.random.randint(5) can pick) of each picture's mean
# intensity, standard deviation and per-channel means, read as RGB in [0, 1] (measured once from
# the pictures as distributed in the PyPI package imagecorruptions 1.1.2; not shipped here).
FROST_MEAN = 0.643
FROST_STD = 0.129
FROST_RGB_MEANS = (0.572, 0.656, 0.702)


def _segments_points(x0, y0, x1, y1, inten, spacing=0.5):
    """Points every ``spacing`` px along segments, with the segment's intensity."""
    length = torch.hypot(x1 - x0, y1 - y0)
    m = (length / spacing).ceil().long().clamp_min(1) + 1
    seg = torch.repeat_interleave(torch.arange(len(m)), m)
    start = torch.cumsum(m, 0) - m
    t = (torch.arange(int(m.sum())) - start[seg]).double() / (m[seg] - 1).clamp_min(1).double()
    px = x0[seg] + t * (x1[seg] - x0[seg])
    py = y0[seg] + t * (y1[seg] - y0[seg])
    return px, py, inten[seg] * spacing


def _splat(canvas: torch.Tensor, px, py, val) -> None:
    size = canvas.shape[0]
    xf, yf = torch.floor(px), torch.floor(py)
    fx, fy = px - xf, py - yf
    xi, yi = xf.long(), yf.long()
    flat = canvas.view(-1)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            idx = ((yi + dy) % size) * size + (xi + dx) % size
            flat.index_add_(0, idx, val * wy * wx)


@functools.lru_cache(maxsize=16)
def frost_texture(index: int, size: int = BASE_SIZE) -> torch.Tensor:
    """Texture ``index`` (0..4) as a float32 CPU tensor (3, size, size) on the 256 levels of an
    8-bit picture (values k/255)."""
    if not 0 <= index < NUM_TEXTURES:
        raise ValueError(f"index: must lie in [0, {NUM_TEXTURES - 1}], got {index!r}")
    g = torch.Generator().manual_seed(_SEED + 7919 * index)
    area = (size / BASE_SIZE) ** 2

    def u(*shape):
        return torch.rand(shape, generator=g, dtype=torch.float64)

    # dendrites: 6 arms, each with pairs of side branches at +-60 degrees
    n = max(1, int(round((45 + 10 * index) * area)))
    cx, cy = u(n) * size, u(n) * size
    orient = u(n) * math.pi / 3
    arm = size * (0.025 + 0.11 * u(n) ** 1.7)
    m = torch.arange(6, dtype=torch.float64)
    ang = (orient[:, None] + m[None, :] * math.pi / 3 + 0.08 * (u(n, 6) - 0.5)).reshape(-1)
    length = (arm[:, None] * (0.75 + 0.5 * u(n, 6))).reshape(-1)
    ax, ay = cx.repeat_interleave(6), cy.repeat_interleave(6)
    ex, ey = ax + length * torch.cos(ang), ay + length * torch.sin(ang)
    segs = [(ax, ay, ex, ey, torch.full_like(ax, 1.0))]
    nb = 7
    tpos = torch.linspace(0.12, 0.9, nb, dtype=torch.float64)
    for side in (-1.0, 1.0):
        bx = ax[:, None] + tpos[None, :] * (ex - ax)[:, None]
        by = ay[:, None] + tpos[None, :] * (ey - ay)[:, None]
        blen = length[:, None] * 0.42 * (1 - tpos[None, :]) * (0.5 + 0.5 * u(len(ax), nb))
        bang = ang[:, None] + side * math.pi / 3
        segs.append(
            (
                bx.reshape(-1),
                by.reshape(-1),
                (bx + blen * torch.cos(bang)).reshape(-1),
                (by + blen * torch.sin(bang)).reshape(-1),
                torch.full((bx.numel(),), 0.75, dtype=torch.float64),
            )
        )
    # frost needles scattered everywhere
    k = int(round(5000 * area))
    nx, ny = u(k) * size, u(k) * size
    nang = u(k) * 2 * math.pi
    nlen = 2 + 9 * u(k) ** 2
    segs.append((nx, ny, nx + nlen * torch.cos(nang), ny + nlen * torch.sin(nang), 0.25 + 0.3 * u(k)))
    canvas = torch.zeros(size, size, dtype=torch.float64)
    for seg in segs:
        _splat(canvas, *_segments_points(*seg))
    crystals = _ops.gaussian_blur(canvas[None, None], 0.7, 4.0, "reflect")[0, 0]
    crystals = 1 - torch.exp(-1.8 * crystals)

    def smooth_noise(sigma, step):
        """Unit-variance Gaussian-smoothed noise, drawn on a grid ``step`` times coarser."""
        m = size // step
        z = _ops.gaussian_blur(torch.randn(1, 1, m, m, generator=g, dtype=torch.float64), sigma / step, 3.0, "reflect")
        if step > 1:
            z = F.interpolate(z, size=(size, size), mode="bilinear", align_corners=False)
        z = z[0, 0]
        return (z - z.mean()) / z.std()

    haze = torch.sigmoid(1.3 * smooth_noise(size / 24, 8))
    grain = smooth_noise(1.0, 1)
    base = 0.30 * haze + 0.62 * crystals + 0.035 * grain
    # calibrate brightness, contrast and tint to the statistics measured on the five reference
    # pictures frost1-5 (see docs/corruptions.md): mean 0.643, std 0.129, RGB means .572/.656/.702
    gray = FROST_MEAN + FROST_STD * (base - base.mean()) / base.std()
    tint = torch.tensor(FROST_RGB_MEANS, dtype=torch.float64)[:, None, None] / FROST_MEAN
    rgb = (gray[None] * tint).clamp(0, 1)
    return (torch.round(rgb * 255) / 255).float()


def resize_like_cv2(img: torch.Tensor, scale: float) -> torch.Tensor:
    """``cv2.resize(img, (0, 0), fx=scale, fy=scale)`` (bilinear, half-pixel centres, source step
    ``1/scale``, no antialiasing), rounded to 8-bit levels.  ``img``: (C, H, W)."""
    out = F.interpolate(img[None], scale_factor=scale, mode="bilinear", align_corners=False, recompute_scale_factor=False)
    return torch.round(out[0].clamp(0, 1) * 255) / 255


def texture_size(table: str, side: int) -> int:
    """Side of the full-resolution textures used for images whose larger side is ``side``: 640 px,
    or more so that a crop always fits (after the CIFAR table's shrinking to a fifth; kept a
    multiple of 5 so that cv2's rounded output size equals torch's floored one)."""
    if table == "cifar":
        size = max(BASE_SIZE, 5 * (side + 1))
        return size + (-size) % 5
    return max(BASE_SIZE, side + 1)


@functools.lru_cache(maxsize=16)
def _stack_cpu(table: str, side: int) -> torch.Tensor:
    size = texture_size(table, side)
    if table == "cifar":
        return torch.stack([resize_like_cv2(frost_texture(i, size), CIFAR_FROST_SCALE) for i in range(NUM_TEXTURES)])
    return torch.stack([frost_texture(i, size) for i in range(NUM_TEXTURES)])


def frost_stack(table: str, h: int, w: int, device, dtype) -> torch.Tensor:
    """The five frost layers, (5, 3, T, T), ready to crop for an ``h`` x ``w`` image: full size for
    the ImageNet table, shrunk to a fifth (as ``make_cifar_c.py`` does) for the CIFAR table."""
    return _stack_cpu(table, max(h, w)).to(device=device, dtype=dtype)
