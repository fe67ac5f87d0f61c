"""Digital corruptions of ImageNet-C: contrast, elastic transform, pixelate and JPEG compression.

Paper section 4.1 ("Common Corruptions"); steps and constants from Hendrycks & Dietterich's
reference (github.com/hendrycks/robustness, ``ImageNet-C/create_c/make_imagenet_c.py`` and
``make_cifar_c.py``), ported to batched torch.  Pixelate and JPEG work on the 8-bit image as the
reference (PIL) does: they take uint8 images as they are (no range check, no conversion to 8
bits; the same output as for the same images as floats ``j / 255``, tested) and float ones
through a range-checked 8-bit conversion.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from torchvision.io import decode_jpeg, encode_jpeg

from . import _ops
from ._common import corruption, output_dtype


@corruption("contrast", "Contr")
def contrast(x, params, generator, table):
    """Reference ``contrast``: ``(x - mean) * c + mean`` with the per-channel mean of each image."""
    (c,) = params
    mean = x.mean(dim=(2, 3), keepdim=True)
    return torch.sub(x, mean).mul_(c).add_(mean)  # (one new tensor, not three: 1.6x faster, same values)


def elastic_affine(n: int, h: int, w: int, jitter: float, generator, device) -> torch.Tensor:
    """The reference's random affine map: three points around the centre (``center +- size//3``)
    moved by U(-jitter, jitter) each (``cv2.getAffineTransform``).  Returns ``M`` (n, 2, 3)
    mapping source (x, y, 1) to destination (x, y), float64."""
    cx, cy = float(h // 2), float(w // 2)  # the reference's float32(shape_size) // 2, used as (x, y)
    sq = min(h, w) // 3
    pts1 = torch.tensor([[cx + sq, cy + sq], [cx + sq, cy - sq], [cx - sq, cy - sq]], dtype=torch.float64, device=device)
    pts2 = pts1 + _ops.uniform(-jitter, jitter, (n, 3, 2), generator, device).to(torch.float64)
    src = torch.cat([pts1, torch.ones(3, 1, dtype=torch.float64, device=device)], dim=1)  # (3, 3)
    return torch.linalg.solve(src, pts2).transpose(1, 2)  # (n, 2, 3): M @ [x, y, 1] = pts2


ELASTIC_CHUNK_BYTES = 1 << 18  # images per chunk of elastic's resampling (measured best of 128 KiB .. 2 MiB at 32 px)


@corruption("elastic_transform", "Elastic")
def elastic_transform(x, params, generator, table):
    """Reference ``elastic_transform``: a random affine warp (``cv2.warpAffine``, bilinear,
    BORDER_REFLECT_101), then per-pixel displacements ``dx, dy`` = Gaussian-smoothed U(-1, 1)
    noise (sigma ``c1``, ``mode='reflect'``, ``truncate=3``) times ``c0``, applied with
    ``scipy.ndimage.map_coordinates(order=1, mode='reflect')``.  The CIFAR table is in units of
    the image size."""
    c0, c1, c2 = params
    n, _, h, w = x.shape
    if table == "cifar":
        size = min(h, w)
        c0, c1, c2 = c0 * size, c1 * size, c2 * size
    m = elastic_affine(n, h, w, c2, generator, x.device)
    full = torch.cat([m, torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64, device=x.device).expand(n, 1, 3)], 1)
    inv = torch.linalg.inv(full)[:, :2]  # cv2.warpAffine samples src at M^-1 (x, y)
    noise_x = _ops.uniform(-1.0, 1.0, (n, h, w), generator, x.device)  # float32 draws, in the reference's order
    noise_y = _ops.uniform(-1.0, 1.0, (n, h, w), generator, x.device)
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float64, device=x.device),
        torch.arange(w, dtype=torch.float64, device=x.device),
        indexing="ij",
    )

    def one(chunk, inv, noise_x, noise_y):  # per cache-sized chunk of images, after all the draws
        # (a x + b y) + c and y + d, each step in place on one new tensor: the same values
        sx = (inv[:, 0, 0, None, None] * xx).add_(inv[:, 0, 1, None, None] * yy).add_(inv[:, 0, 2, None, None])
        sy = (inv[:, 1, 0, None, None] * xx).add_(inv[:, 1, 1, None, None] * yy).add_(inv[:, 1, 2, None, None])
        warped = _ops.bilinear_sample(chunk, sy, sx, "mirror", overwrite=True)
        dx = _ops.gaussian_blur(noise_x, c1, 3.0, "reflect").mul_(c0).to(torch.float64).add_(xx)
        dy = _ops.gaussian_blur(noise_y, c1, 3.0, "reflect").mul_(c0).to(torch.float64).add_(yy)
        return _ops.bilinear_sample(warped, dy, dx, "reflect", overwrite=True)

    return _ops.map_chunks(one, x, inv, noise_x, noise_y, budget=ELASTIC_CHUNK_BYTES)


_PRECISION_BITS = 22  # Pillow's fixed-point resampling (32 - 8 - 2 bits)


@functools.lru_cache(maxsize=64)
def pillow_box_weights(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pillow's ``Image.resize(..., BOX)`` coefficients (``precompute_coeffs`` with
    ``box_filter(x) = 1 if -0.5 < x <= 0.5``, then ``normalize_coeffs_8bpc``): every output pixel
    averages a set of input pixels with one equal fixed-point weight.  Returns the 0/1 membership
    matrix (out, in) and that integer weight per output pixel (float64, exact)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    member = torch.zeros(out_size, in_size, dtype=torch.float64)
    weight = torch.zeros(out_size, dtype=torch.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        inside = [k for k in range(xmax - xmin) if -0.5 < (k + xmin - center + 0.5) / filterscale <= 0.5]
        for k in inside:
            member[xx, xmin + k] = 1.0
        if inside:
            weight[xx] = float(int(0.5 + (1.0 / len(inside)) * (1 << _PRECISION_BITS)))
    return member, weight


def pillow_box_resize(x255: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """``PIL.Image.resize((out_w, out_h), BOX)`` of 8-bit images given as float levels 0..255:
    horizontal pass then vertical pass, each rounded to 8 bits with Pillow's integer arithmetic
    ``(sum * weight + 2^21) >> 22``.  The sums of <= a few hundred 8-bit values are exact in
    float32; the fixed-point product is done in float64 (exact below 2^53)."""
    one = float(1 << (_PRECISION_BITS - 1))
    scale = float(1 << _PRECISION_BITS)
    h, w = x255.shape[-2:]
    y = x255.to(torch.float32)

    def finish(total, weight):
        if bool((weight == scale).all()):  # one source pixel per output: a plain copy
            return total
        return torch.floor((total.double() * weight + one) / scale).clamp(0, 255).float()

    if out_w != w:
        member, weight = pillow_box_weights(w, out_w)
        y = finish(torch.matmul(y, member.T.to(y.device, torch.float32)), weight.to(y.device))
    if out_h != h:
        member, weight = pillow_box_weights(h, out_h)
        y = finish(torch.matmul(member.to(y.device, torch.float32), y), weight.to(y.device)[:, None])
    return y


CODEC_CHUNK_BYTES = 1 << 24  # images per batched Pillow / libjpeg call: 16 MiB of float32 input (fewer fixed costs per call)


def codec_budget(x: torch.Tensor) -> int:
    """The chunk budget in bytes of ``x`` for :data:`CODEC_CHUNK_BYTES`'s number of images, whatever
    the dtype (a uint8 batch has 4x more images per byte than float32)."""
    return CODEC_CHUNK_BYTES * x.element_size() // 4


@functools.lru_cache(maxsize=64)
def _box_upsample_counts(small: int, big: int) -> np.ndarray:
    """Pillow's BOX resize from ``small`` up to ``big`` pixels copies exactly one source pixel per
    output pixel (weight 2^22), in order: how many output pixels each source pixel gives."""
    member, weight = pillow_box_weights(small, big)
    assert bool((member.sum(1) == 1).all()) and bool((weight == 1 << _PRECISION_BITS).all())
    counts = np.bincount(member.argmax(1).numpy(), minlength=small)
    counts.flags.writeable = False
    return counts


@functools.lru_cache(maxsize=64)
def _box_upsample_source(small: int, big: int) -> np.ndarray:
    """The source pixel of every output pixel of that upscale (``big`` indices into ``small``)."""
    source = np.repeat(np.arange(small), _box_upsample_counts(small, big))
    source.flags.writeable = False
    return source


def _box_down_rgbx(planes: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Pillow's ``resize((out_w, out_h), BOX)`` of every 8-bit plane of ``planes`` (4 G, H, W),
    a C-contiguous uint8 array, by Pillow itself in two calls; returns the small planes in the
    layout Pillow leaves them, ``(out_h, G, out_w, 4)`` (plane ``k G + i`` at ``[:, i, :, k]``).

    Pillow resizes separably, horizontal pass then vertical pass, each rounded to 8 bits, with
    coefficients that depend only on the input and output length of the axis, and computes
    every band alike.  So the four quarters of the planes, each seen as one tall 8-bit image
    (planes stacked as rows), merged as the four bands of one "RGBX" image and resized only in
    width, are the horizontal pass of every plane (Pillow's 4-band loops do 4 values per step:
    2.2 ms instead of 2.7 ms with one 8-bit image for 16 images of 224 px on one thread); the
    planes then set side by side (a transpose of rows) and resized only in height are the
    vertical pass.  ("RGBX": no alpha, so Pillow does not premultiply.)"""
    from PIL import Image

    g4, h, w = planes.shape
    g = g4 // 4
    bands = [Image.frombuffer("L", (w, g * h), planes[k * g : (k + 1) * g], "raw", "L", 0, 1) for k in range(4)]
    im = Image.merge("RGBX", bands)
    if out_w != w:
        im = im.resize((out_w, g * h), Image.BOX)
    a = np.ascontiguousarray(np.asarray(im).reshape(g, h, out_w * 4).transpose(1, 0, 2))  # (h, G, out_w * 4)
    if out_h != h:
        side_by_side = Image.frombuffer("RGBX", (g * out_w, h), a, "raw", "RGBX", 0, 1)
        a = np.asarray(side_by_side.resize((g * out_w, out_h), Image.BOX))
    return a.reshape(out_h, g, out_w, 4)


def _padded_planes(n_planes: int, h: int, w: int) -> np.ndarray:
    """A uint8 buffer for ``n_planes`` planes rounded up to a multiple of 4, the extra ones zero."""
    g = -(-n_planes // 4)
    buf = np.empty((4 * g, h, w), np.uint8)
    buf[n_planes:] = 0
    return buf


def _small_planes(small: np.ndarray, n_planes: int) -> np.ndarray:
    """The ``(N*C, out_h, out_w)`` view (strided) of :func:`_box_down_rgbx`'s result."""
    out_h, g, out_w, _ = small.shape
    return small.transpose(3, 1, 0, 2).reshape(4 * g, out_h, out_w)[:n_planes]


def pillow_box_down(x8: torch.Tensor, out_h: int, out_w: int) -> np.ndarray:
    """The reference's first ``PIL.Image.resize((out_w, out_h), BOX)`` of every image of a uint8
    NCHW batch on the CPU, by Pillow on the whole batch (:func:`_box_down_rgbx`): the small
    images as ``(N*C, out_h, out_w)`` uint8 planes (a strided view)."""
    n, c, h, w = x8.shape
    planes = _padded_planes(n * c, h, w)
    planes[: n * c] = x8.numpy().reshape(n * c, h, w)
    return _small_planes(_box_down_rgbx(planes, out_h, out_w), n * c)


def pillow_pixelate(x8: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """The reference's two ``PIL.Image.resize(..., BOX)`` calls (down to ``out_h x out_w`` and back)
    on a uint8 NCHW batch on the CPU, as 8-bit images (:func:`pillow_box_down`, then the way back
    up, which copies one source pixel per output pixel, :func:`_box_upsample_counts`, by
    ``np.repeat``).  Identical to the per-image reference (tested)."""
    n, c, h, w = x8.shape
    a = np.ascontiguousarray(pillow_box_down(x8, out_h, out_w))  # (N*C, out_h, out_w)
    a = np.repeat(np.repeat(a, _box_upsample_counts(out_w, w), axis=2), _box_upsample_counts(out_h, h), axis=1)
    return torch.from_numpy(a).view(n, c, h, w)


def box_upsample_into(out: torch.Tensor, small: np.ndarray) -> torch.Tensor:
    """The way back up of :func:`pillow_pixelate`, written as floats: ``out`` (N, C, H, W), a
    contiguous CPU float tensor, receives ``j / 255`` (in its dtype, as :func:`_ops.from_uint8`)
    of the 8-bit small images ``small`` (N*C, h, w) (any strides), every small pixel copied to
    the output pixels Pillow's BOX upscale gives it.

    The upscale copies 8-bit values, so converting the small images to floats first and
    gathering the floats is the same result; it converts 6-8x fewer values and skips the
    full-size 8-bit image (1.5 instead of 2.5 ms for 16 images of 224 px on one thread)."""
    n, c, big_h, big_w = out.shape
    m, small_h, small_w = small.shape
    o = out.view(m, big_h, big_w).numpy()  # (a view: raises rather than copy)
    levels = np.divide(small, o.dtype.type(255.0), dtype=o.dtype)  # (N*C, h, w), contiguous
    rows, cols = _box_upsample_source(small_h, big_h), _box_upsample_source(small_w, big_w)
    step = max(1, _ops.CACHE_BYTES // max(1, small_h * big_w * o.itemsize))
    for a in range(0, m, step):
        wide = np.take(levels[a : a + step], cols, axis=2)
        np.take(wide, rows, axis=1, out=o[a : a + step], mode="clip")  # ("clip": no buffered copy)
    return out


def _pixelate_cpu(out: torch.Tensor, x: torch.Tensor, small_h: int, small_w: int) -> None:
    """Pixelate the contiguous CPU chunk ``x`` into the float ``out``: 8-bit images as they are
    (handed to Pillow without a copy when their plane count is a multiple of 4), float ones by
    the 8-bit conversion, which checks the [0, 1] range in the same pass, straight into Pillow's
    band layout; Pillow's downscale (:func:`_box_down_rgbx`); the upscale straight into ``out``."""
    n, c, h, w = x.shape
    if x.dtype == torch.uint8 and (n * c) % 4 == 0:
        planes = x.numpy().reshape(n * c, h, w)
    else:
        planes = _padded_planes(n * c, h, w)
        if x.dtype == torch.uint8:
            planes[: n * c] = x.numpy().reshape(n * c, h, w)
        else:
            _ops.to_uint8(x, check=True, out=torch.from_numpy(planes[: n * c]).view(n, c, h, w))
    box_upsample_into(out, _small_planes(_box_down_rgbx(planes, small_h, small_w), n * c))


@corruption("pixelate", "Pixelate", in_range=True, checks_values=True, eight_bit=True)
def pixelate(x, params, generator, table):
    """Reference ``pixelate``: PIL BOX resize of the 8-bit image to ``int(size * c)`` and back.
    On the CPU per chunk of images (:func:`_pixelate_cpu`): the 8-bit images as they are, or the
    float ones' 8-bit conversion (which checks the [0, 1] range in the same pass), Pillow's
    downscale of the whole chunk (:func:`_box_down_rgbx`) and the upscale straight into the
    float output (:func:`box_upsample_into`).  Elsewhere with Pillow's exact coefficients and
    fixed-point rounding in torch (:func:`pillow_box_resize`).  ``x``: uint8 or float images;
    the output is float (:func:`output_dtype`)."""
    (c,) = params
    h, w = x.shape[-2:]
    small_h, small_w = int(h * c), int(w * c)
    dtype = output_dtype(x)
    if x.device.type == "cpu":
        return _ops.fill_chunks(
            lambda out, chunk: _pixelate_cpu(out, chunk, small_h, small_w),
            x.contiguous(),
            budget=codec_budget(x),
            dtype=dtype,
        )
    if x.dtype == torch.uint8:
        levels = x.float()
    else:
        _ops.check_range(x)
        levels = _ops.to_uint8_levels(x)
    small = pillow_box_resize(levels, small_h, small_w)
    return (pillow_box_resize(small, h, w) / 255.0).to(dtype)


@corruption("jpeg_compression", "Jpeg", in_range=True, checks_values=True, eight_bit=True)
def jpeg_compression(x, params, generator, table):
    """Reference ``jpeg_compression``: save the 8-bit image as JPEG with quality ``c`` (libjpeg,
    4:2:0 chroma subsampling, as PIL does by default) and decode it, through torchvision's
    ``encode_jpeg`` / ``decode_jpeg`` on the CPU (libjpeg there too, whatever ``x.device``).

    Per chunk of images: the 8-bit images copied in the HWC layout libjpeg reads
    (:func:`_ops.uint8_hwc`), or the float ones' 8-bit conversion (which checks the [0, 1] range
    in the same pass) written straight in that layout (:func:`_ops.to_uint8_hwc`); handed to
    ``encode_jpeg`` as CHW views, which it then need not transpose; one batched encode and
    decode, and each decoded image (HWC storage under a CHW view) divided by 255 straight into
    the float output (:func:`output_dtype`).  Measured on one CPU thread, the batched libjpeg
    call is about 3.5x faster than PIL image by image at 32 px and about even at 224 px
    (docs/corruptions.md).  torchvision 0.29 deprecates its codecs in favour of TorchCodec (it
    warns once); PIL image by image (identical output, slower at 32 px) is the replacement to use
    once they are gone."""
    (q,) = params
    quality = int(round(q))

    def one(out, chunk):  # per cache-sized chunk of images
        hwc = _ops.uint8_hwc(chunk) if chunk.dtype == torch.uint8 else _ops.to_uint8_hwc(chunk, check=True)
        decoded = decode_jpeg(encode_jpeg([t.permute(2, 0, 1) for t in hwc.unbind(0)], quality=quality), device="cpu")
        o = out.numpy()
        for i, image in enumerate(decoded):
            np.divide(image.numpy(), o.dtype.type(255.0), out=o[i])

    cpu = x.to("cpu").contiguous()
    return _ops.fill_chunks(one, cpu, budget=codec_budget(cpu), dtype=output_dtype(x)).to(x.device)
