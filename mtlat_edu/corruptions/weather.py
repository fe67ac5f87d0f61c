"""Weather corruptions of ImageNet-C: snow, frost, fog and brightness.

Paper section 4.1 ("Common Corruptions"); steps and constants from Hendrycks & Dietterich's
reference (github.com/hendrycks/robustness, ``ImageNet-C/create_c/make_imagenet_c.py`` and
``make_cifar_c.py``), ported to batched torch.  The reference's ImageMagick motion blur (snow)
and frost photographs are replaced by documented equivalents (``_ops.motion_blur``,
``frost_texture``).
"""
from __future__ import annotations

import torch

from . import _ops
from ._common import corruption
from .frost_texture import NUM_TEXTURES, frost_stack


@corruption("snow")
def snow(x, params, generator, table):
    """Reference ``snow``: a N(loc, scale) layer, ``clipped_zoom``-ed, thresholded, stored as 8-bit,
    motion-blurred (ImageMagick kernel, angle ~ U(-135, -45)), added twice (as is and rotated by
    180 degrees) to the image whitened toward ``1.5 * gray + 0.5``."""
    loc, scale, zoom, threshold, radius, sigma, weight = params
    n, _, h, w = x.shape
    layer = _ops.randn((n, 1, h, w), generator, x.device, x.dtype) * scale + loc
    layer = _ops.clipped_zoom(layer, float(zoom))
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    layer = _ops.truncate_uint8(layer.clamp(0, 1) * 255.0)
    angles = _ops.uniform(-135.0, -45.0, (n,), generator, x.device)
    layer = _ops.imagemagick_to_uint8(_ops.motion_blur(layer, radius, sigma, angles)) / 255.0
    x = weight * x + (1 - weight) * torch.maximum(x, _ops.rgb_to_gray(x) * 1.5 + 0.5)
    return x + layer + torch.flip(layer, dims=(-2, -1))


@corruption("frost")
def frost(x, params, generator, table):
    """Reference ``frost``: ``c0 * x + c1 * crop`` where ``crop`` is a random crop of one of five
    frost pictures (shrunk to a fifth for the CIFAR table).  The pictures are replaced by the
    procedural ice textures of :mod:`.frost_texture`."""
    c_img, c_frost = params
    n, _, h, w = x.shape
    layers = frost_stack(table, h, w, x.device, x.dtype)
    size_h, size_w = layers.shape[-2:]
    idx = _ops.randint(0, NUM_TEXTURES, (n,), generator, x.device)
    top = _ops.randint(0, size_h - h, (n,), generator, x.device)
    left = _ops.randint(0, size_w - w, (n,), generator, x.device)
    # every (h, w) window of every layer as a strided view; pick one window per image
    k, c = layers.shape[:2]
    windows = layers.as_strided(
        (k, c, size_h - h + 1, size_w - w + 1, h, w),
        (c * size_h * size_w, size_h * size_w, size_w, 1, size_w, 1),
    )
    crop = windows[idx, :, top, left]  # (n, 3, h, w)
    return c_img * x + c_frost * crop


def plasma_fractal(n: int, mapsize: int, wibbledecay: float, generator, device) -> torch.Tensor:
    """Batched diamond-square height maps in [0, 1], (n, mapsize, mapsize), float64.

    Same recursion as the reference ``plasma_fractal`` (itself after FLHerne/mapgen): at each
    step the square centres, then the two sets of diamond centres, get the mean of their four
    neighbours (with wrap-around) plus ``wibble * U(-wibble, wibble)``; ``wibble`` starts at 100
    and is divided by ``wibbledecay`` per halving of the step.  The draws are made in exactly
    that order, one (n, k, k) block per fill.
    """
    if mapsize & (mapsize - 1):
        raise ValueError(f"mapsize: must be a power of two, got {mapsize}")
    m = torch.zeros(n, mapsize, mapsize, dtype=torch.float64, device=device)
    step = mapsize
    wibble = 100.0

    def wibbled_mean(total):
        noise = _ops.uniform(-wibble, wibble, total.shape, generator, device).to(torch.float64)
        return total / 4 + wibble * noise

    while step >= 2:
        half = step // 2
        corners = m[:, 0:mapsize:step, 0:mapsize:step]
        square = corners + torch.roll(corners, -1, dims=1)
        square = square + torch.roll(square, -1, dims=2)
        m[:, half:mapsize:step, half:mapsize:step] = wibbled_mean(square)
        dr = m[:, half:mapsize:step, half:mapsize:step]
        ul = m[:, 0:mapsize:step, 0:mapsize:step]
        lt = dr + torch.roll(dr, 1, dims=1) + ul + torch.roll(ul, -1, dims=2)
        m[:, 0:mapsize:step, half:mapsize:step] = wibbled_mean(lt)
        tt = dr + torch.roll(dr, 1, dims=2) + ul + torch.roll(ul, -1, dims=1)
        m[:, half:mapsize:step, 0:mapsize:step] = wibbled_mean(tt)
        step //= 2
        wibble /= wibbledecay
    m = m - m.amin(dim=(1, 2), keepdim=True)
    return m / m.amax(dim=(1, 2), keepdim=True)


def plasma_size(h: int, w: int) -> int:
    """The reference uses mapsize 256 for 224 px and 32 for 32 px: the next power of two."""
    side = max(h, w)
    return 1 << (side - 1).bit_length()


@corruption("fog")
def fog(x, params, generator, table):
    """Reference ``fog``: ``(x + c0 * plasma) * max / (max + c0)``, ``max`` = the image's maximum."""
    c0, decay = params
    n, _, h, w = x.shape
    plasma = plasma_fractal(n, plasma_size(h, w), decay, generator, x.device)[:, None, :h, :w].to(x.dtype)
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + c0 * plasma) * peak / (peak + c0)


@corruption("brightness")
def brightness(x, params, generator, table):
    """Reference ``brightness``: add ``c`` to the HSV value (clipped to 1) and convert back.

    With hue and saturation unchanged, HSV->RGB is linear in the value, so this equals scaling
    the RGB pixel by ``V'/V`` (and ``V'`` grey for black pixels, whose saturation is 0)."""
    (c,) = params
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp(0, 1)
    return torch.where(v > 0, x * (v_new / v.clamp_min(1e-12)), v_new.expand_as(x))
