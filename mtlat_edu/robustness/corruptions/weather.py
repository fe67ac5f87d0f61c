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


@corruption("snow", "Snow")
def snow(x, params, generator, table):
    """Reference ``snow``: a N(loc, scale) layer, ``clipped_zoom``-ed, thresholded, stored as 8-bit,
    motion-blurred (ImageMagick kernel, angle ~ U(-135, -45)), added twice (as is and rotated by
    180 degrees) to the image whitened toward ``1.5 * gray + 0.5``."""
    loc, scale, zoom, threshold, radius, sigma, weight = params
    n, _, h, w = x.shape
    # (each step in place where the tensor is ours: the same operations in the same order)
    layer = _ops.randn((n, 1, h, w), generator, x.device, x.dtype).mul_(scale).add_(loc)
    layer = _ops.clipped_zoom(layer, float(zoom))
    layer = layer.masked_fill_(layer < threshold, 0.0)
    layer = _ops.truncate_uint8(layer.clamp_(0, 1).mul_(255.0))
    angles = _ops.uniform(-135.0, -45.0, (n,), generator, x.device)
    layer = _ops.imagemagick_to_uint8(_ops.motion_blur(layer, radius, sigma, angles)).div_(255.0)

    def blend(chunk, flakes):  # per cache-sized chunk of images, after all the draws
        brighter = torch.maximum(chunk, _ops.rgb_to_gray(chunk).mul_(1.5).add_(0.5)).mul_(1 - weight)
        return torch.mul(chunk, weight).add_(brighter).add_(flakes).add_(torch.flip(flakes, dims=(-2, -1)))

    return _ops.map_chunks(blend, x, layer)


@corruption("frost", "Frost", in_range=True)
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
    # pick one window per image, per cache-sized chunk of images (after all the draws)
    if h * w < 128 * 128:  # small images: one gather of many windows

        def blend(out, chunk, i, t, l):
            torch.mul(chunk, c_img, out=out).add_(windows[i, :, t, l].mul_(c_frost)).clamp_(0, 1)

        return _ops.fill_chunks(blend, x, idx, top, left)
    out = torch.empty_like(x)  # large images: image by image, the window as a plain slice
    scratch = torch.empty_like(x[0])
    for k, (i, t, l) in enumerate(zip(idx.tolist(), top.tolist(), left.tolist())):
        frost_k = torch.mul(layers[i, :, t : t + h, l : l + w], c_frost, out=scratch)
        torch.mul(x[k], c_img, out=out[k]).add_(frost_k).clamp_(0, 1)
    return out


PLASMA_CHUNK_BYTES = 1 << 21  # float64 height maps per chunk of the recursion


def plasma_fractal(n: int, mapsize: int, wibbledecay: float, generator, device) -> torch.Tensor:
    """Batched diamond-square height maps in [0, 1], (n, mapsize, mapsize), float64.

    Same recursion as the reference ``plasma_fractal`` (itself after FLHerne/mapgen): at each
    step the square centres, then the two sets of diamond centres, get the mean of their four
    neighbours (with wrap-around) plus ``wibble * U(-wibble, wibble)``; ``wibble`` starts at 100
    and is divided by ``wibbledecay`` per halving of the step.  The draws are made in exactly
    that order, one (n, k, k) block per fill, all before the recursion, which then runs on
    chunks of :data:`PLASMA_CHUNK_BYTES` of maps (cache-sized).
    """
    if mapsize & (mapsize - 1):
        raise ValueError(f"mapsize: must be a power of two, got {mapsize}")
    levels = []  # (step, wibble, three (n, k, k) noise blocks)
    step, wibble = mapsize, 100.0
    while step >= 2:
        k = mapsize // step
        levels.append((step, wibble, [_ops.uniform(-wibble, wibble, (n, k, k), generator, device) for _ in range(3)]))
        step //= 2
        wibble /= wibbledecay
    out = torch.empty(n, mapsize, mapsize, dtype=torch.float64, device=device)
    per_chunk = max(1, PLASMA_CHUNK_BYTES // (8 * mapsize * mapsize))
    for a in range(0, n, per_chunk):
        m = out[a : a + per_chunk].zero_()
        for step, wibble, noise in levels:
            half = step // 2
            sq, lt_noise, tt_noise = (v[a : a + per_chunk].to(torch.float64).mul_(wibble) for v in noise)
            ul = m[:, 0:mapsize:step, 0:mapsize:step].clone()  # the corners, untouched at this step
            dr = ul + torch.roll(ul, -1, dims=1)  # square centres: mean of 4 corners + wibble * U
            dr += torch.roll(dr, -1, dims=2)
            dr.div_(4).add_(sq)
            m[:, half:mapsize:step, half:mapsize:step] = dr
            lt = dr + torch.roll(dr, 1, dims=1)  # diamond centres, same sums in the reference's order
            lt.add_(ul).add_(torch.roll(ul, -1, dims=2))
            m[:, 0:mapsize:step, half:mapsize:step] = lt.div_(4).add_(lt_noise)
            tt = dr + torch.roll(dr, 1, dims=2)
            tt.add_(ul).add_(torch.roll(ul, -1, dims=1))
            m[:, half:mapsize:step, 0:mapsize:step] = tt.div_(4).add_(tt_noise)
        m -= m.amin(dim=(1, 2), keepdim=True)
        m /= m.amax(dim=(1, 2), keepdim=True)
    return out


def plasma_size(h: int, w: int) -> int:
    """The reference uses mapsize 256 for 224 px and 32 for 32 px: the next power of two."""
    side = max(h, w)
    return 1 << (side - 1).bit_length()


@corruption("fog", "Fog", in_range=True)
def fog(x, params, generator, table):
    """Reference ``fog``: ``(x + c0 * plasma) * max / (max + c0)``, ``max`` = the image's maximum."""
    c0, decay = params
    n, _, h, w = x.shape
    plasma = plasma_fractal(n, plasma_size(h, w), decay, generator, x.device)[:, None, :h, :w].to(x.dtype)
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return _ops.fill_chunks(
        lambda out, chunk, p, m: torch.add(chunk, p * c0, out=out).mul_(m).div_(m + c0).clamp_(0, 1), x, plasma, peak
    )


@corruption("brightness", "Bright")
def brightness(x, params, generator, table):
    """Reference ``brightness``: add ``c`` to the HSV value (clipped to 1) and convert back.

    With hue and saturation unchanged, HSV->RGB is linear in the value, so this equals scaling
    the RGB pixel by ``V'/V`` (and ``V'`` grey for black pixels, whose saturation is 0)."""
    (c,) = params
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp_(0, 1)
    out = torch.mul(x, v_new / v.clamp_min(1e-12))
    return torch.where(v > 0, out, v_new, out=out)  # (in place: one new full-size tensor, 1.2x faster)
