"""Per-image NumPy/SciPy port of the ImageNet-C / CIFAR-10-C reference corruptions.

The reference that ``tests/test_corruptions.py`` checks ``mtlat_edu.robustness.corruptions`` against (as a
test oracle) and that ``python -m benchmarks.corruptions`` times them against.

A straightforward, loop-per-image transcription of Hendrycks & Dietterich's definitions
(github.com/hendrycks/robustness: ``ImageNet-C/create_c/make_imagenet_c.py`` and
``make_cifar_c.py``), used to check the batched torch versions in ``mtlat_edu.robustness.corruptions``:

* input: one RGB image as an (H, W, 3) uint8 array, like ``np.array(pil_image)``;
* output: float64 (H, W, 3) in [0, 255] (the reference then casts with ``np.uint8``);
* randomness: every draw goes through ``rng``, which offers NumPy's ``normal``, ``uniform``,
  ``randint``, ``poisson`` and ``random``.  The default is the ``np.random`` module (global
  state), exactly like the reference; :class:`TorchRNG` replays the draws of a
  ``torch.Generator`` so that the oracle and the torch code see the same random numbers.

Only NumPy, SciPy, scikit-image and PIL are used.  OpenCV calls of the reference are written
out (``GaussianBlur``/``filter2D`` with BORDER_REFLECT_101 = SciPy ``mode='mirror'``,
``getAffineTransform``, ``warpAffine``, ``resize``, ``cvtColor``).  Two things the reference
needs cannot be shipped: ImageMagick's ``MotionBlurImage`` (``motion_blur``, ``snow``) is
replaced by :func:`imagemagick_motion_blur`, a port of its C kernel, and the frost photographs by
the images passed as ``frost_images`` (the package's procedural textures in the tests).
"""
from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from skimage import color as skcolor
from skimage.filters import gaussian

IMAGENET = "imagenet"
CIFAR = "cifar"

# --------------------------------------------------------------------------- parameter tables
# (written out again here, independently of mtlat_edu.robustness.corruptions._tables, from the reference)
_P = {
    IMAGENET: {
        "gaussian_noise": [0.08, 0.12, 0.18, 0.26, 0.38],
        "shot_noise": [60, 25, 12, 5, 3],
        "impulse_noise": [0.03, 0.06, 0.09, 0.17, 0.27],
        "defocus_blur": [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],
        "glass_blur": [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)],
        "motion_blur": [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)],
        "zoom_blur": [
            np.arange(1, 1.11, 0.01),
            np.arange(1, 1.16, 0.01),
            np.arange(1, 1.21, 0.02),
            np.arange(1, 1.26, 0.02),
            np.arange(1, 1.31, 0.03),
        ],
        "snow": [
            (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
            (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
            (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
            (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
            (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
        ],
        "frost": [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)],
        "fog": [(1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)],
        "brightness": [0.1, 0.2, 0.3, 0.4, 0.5],
        "contrast": [0.4, 0.3, 0.2, 0.1, 0.05],
        "elastic_transform": [
            (244 * 2, 244 * 0.7, 244 * 0.1),
            (244 * 2, 244 * 0.08, 244 * 0.2),
            (244 * 0.05, 244 * 0.01, 244 * 0.02),
            (244 * 0.07, 244 * 0.01, 244 * 0.02),
            (244 * 0.12, 244 * 0.01, 244 * 0.02),
        ],
        "pixelate": [0.6, 0.5, 0.4, 0.3, 0.25],
        "jpeg_compression": [25, 18, 15, 10, 7],
    },
    CIFAR: {
        "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
        "shot_noise": [500, 250, 100, 75, 50],
        "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],
        "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
        "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
        "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
        "zoom_blur": [
            np.arange(1, 1.06, 0.01),
            np.arange(1, 1.11, 0.01),
            np.arange(1, 1.16, 0.01),
            np.arange(1, 1.21, 0.01),
            np.arange(1, 1.26, 0.01),
        ],
        "snow": [
            (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
        ],
        "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],
        "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
        "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
        "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
        "elastic_transform": [  # IMSIZE * (...)
            (0, 0, 0.08),
            (0.05, 0.2, 0.07),
            (0.08, 0.06, 0.06),
            (0.1, 0.04, 0.05),
            (0.1, 0.03, 0.03),
        ],
        "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
        "jpeg_compression": [80, 65, 58, 50, 40],
    },
}


def params(name: str, severity: int, table: str):
    return _P[table][name][severity - 1]


# --------------------------------------------------------------------------- randomness adapter
class TorchRNG:
    """NumPy-like draws taken from a ``torch.Generator`` in the layout the torch code uses
    (channel-first for (H, W, 3) arrays, float32 arithmetic), so the oracle replays them."""

    def __init__(self, generator: torch.Generator):
        self.g = generator

    @staticmethod
    def _shape(size):
        if size is None:
            return ()
        return (size,) if isinstance(size, int) else tuple(size)

    def _draw(self, fn, size):
        shape = self._shape(size)
        if len(shape) == 3 and shape[2] == 3:  # HWC image: torch draws CHW
            t = fn((3, shape[0], shape[1])).permute(1, 2, 0)
        else:
            t = fn(shape)
        out = t.numpy().astype(np.float64) if t.is_floating_point() else t.numpy().astype(np.int64)
        return out if shape else out.item()

    def random(self, size=None):
        return self._draw(lambda s: torch.rand(s, generator=self.g), size)

    def uniform(self, low=0.0, high=1.0, size=None):
        return self._draw(lambda s: low + (high - low) * torch.rand(s, generator=self.g), size)

    def normal(self, loc=0.0, scale=1.0, size=None):
        return self._draw(lambda s: torch.randn(s, generator=self.g) * scale + loc, size)

    def randint(self, low, high=None, size=None):
        if high is None:
            low, high = 0, low
        return self._draw(lambda s: torch.randint(low, high, s, generator=self.g), size)

    def poisson(self, lam):
        """Inverse-CDF Poisson draws as ``mtlat_edu.robustness.corruptions._ops.poisson_8bit`` makes them:
        one float64 uniform per value in CHW order, drawn in chunks of ``POISSON_CHUNK``, turned
        into counts here by SciPy's own inverse CDF (``poisson.ppf``)."""
        from scipy.stats import poisson

        from mtlat_edu.robustness.corruptions._ops import POISSON_CHUNK

        lam = np.asarray(lam, dtype=np.float64)
        chw = np.ascontiguousarray(lam.transpose(2, 0, 1)).reshape(-1)
        u = torch.cat([torch.rand(min(POISSON_CHUNK, chw.size - a), dtype=torch.float64, generator=self.g)
                       for a in range(0, chw.size, POISSON_CHUNK)]).numpy()
        k = np.maximum(poisson.ppf(u, chw), 0)  # ppf(0) is -1 in SciPy; P(X <= 0) > 0 = u
        return k.reshape(lam.shape[2], lam.shape[0], lam.shape[1]).transpose(1, 2, 0)


# --------------------------------------------------------------------------- helpers
def _mirror_correlate(a, kernel):
    """cv2.filter2D / cv2.GaussianBlur border (BORDER_REFLECT_101) = SciPy mode 'mirror'."""
    return ndimage.correlate(a, kernel, mode="mirror")


def disk(radius, alias_blur=0.1):
    if radius <= 8:
        grid = np.arange(-8, 8 + 1)
        ksize = 3
    else:
        grid = np.arange(-radius, radius + 1)
        ksize = 5
    xx, yy = np.meshgrid(grid, grid)
    aliased = np.array((xx**2 + yy**2) <= radius**2, dtype=np.float32)
    aliased /= np.sum(aliased)
    taps = np.arange(ksize) - (ksize - 1) / 2  # cv2.getGaussianKernel(ksize, sigma)
    g = np.exp(-(taps**2) / (2 * alias_blur**2))
    g /= g.sum()
    return _mirror_correlate(aliased.astype(np.float64), np.outer(g, g))


def plasma_fractal(mapsize, wibbledecay, rng):
    """Diamond-square height map in [0, 1] (reference ``plasma_fractal``)."""
    assert mapsize & (mapsize - 1) == 0
    maparray = np.zeros((mapsize, mapsize), dtype=np.float64)
    stepsize = mapsize
    wibble = 100.0

    def wibbledmean(array):
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    while stepsize >= 2:
        half = stepsize // 2
        corners = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        squares = corners + np.roll(corners, shift=-1, axis=0)
        squares = squares + np.roll(squares, shift=-1, axis=1)
        maparray[half:mapsize:stepsize, half:mapsize:stepsize] = wibbledmean(squares)
        dr = maparray[half:mapsize:stepsize, half:mapsize:stepsize]
        ul = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        lt = dr + np.roll(dr, 1, axis=0) + ul + np.roll(ul, -1, axis=1)
        maparray[0:mapsize:stepsize, half:mapsize:stepsize] = wibbledmean(lt)
        tt = dr + np.roll(dr, 1, axis=1) + ul + np.roll(ul, -1, axis=0)
        maparray[half:mapsize:stepsize, 0:mapsize:stepsize] = wibbledmean(tt)
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min()
    return maparray / maparray.max()


def clipped_zoom(img, zoom_factor):
    h = img.shape[0]
    ch = int(np.ceil(h / zoom_factor))
    top = (h - ch) // 2
    img = ndimage.zoom(img[top : top + ch, top : top + ch], (zoom_factor, zoom_factor, 1), order=1)
    trim_top = (img.shape[0] - h) // 2
    return img[trim_top : trim_top + h, trim_top : trim_top + h]


def imagemagick_motion_blur(img_u8, radius, sigma, angle):
    """Port of ImageMagick's ``MotionBlurImage`` (effect.c): ``2*ceil(radius)+1`` one-sided
    Gaussian taps at offsets ``(ceil(i cos a - .5), ceil(i sin a - .5))``, edge pixels, 8-bit
    result rounded down (as ImageMagick 6 Q16 writes it; 1e-3 margin for float error).  ``img_u8``: (H, W) or (H, W, C) uint8."""
    width = int(2 * math.ceil(radius) + 1)
    kernel = np.exp(-(np.arange(width) ** 2) / (2.0 * sigma * sigma))
    kernel /= kernel.sum()
    a = math.radians(angle)
    h, w = img_u8.shape[:2]
    src = img_u8.astype(np.float64)
    out = np.zeros_like(src)
    for i in range(width):
        ox = int(math.ceil(i * math.cos(a) - 0.5))
        oy = int(math.ceil(i * math.sin(a) - 0.5))
        rows = np.clip(np.arange(h) + oy, 0, h - 1)
        cols = np.clip(np.arange(w) + ox, 0, w - 1)
        out += kernel[i] * src[rows][:, cols]
    return np.clip(np.floor(out + 1e-3), 0, 255)


def _gray(x):  # cv2.COLOR_RGB2GRAY
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


def _bilinear_reflect101(img, sy, sx):
    """cv2.warpAffine/remap sampling (bilinear, BORDER_REFLECT_101) at float coordinates."""
    h, w = img.shape[:2]

    def refl(i, n):
        p = 2 * n - 2
        i = np.mod(i, p)
        return np.where(i >= n, p - i, i)

    y0, x0 = np.floor(sy).astype(np.int64), np.floor(sx).astype(np.int64)
    fy, fx = (sy - y0)[..., None], (sx - x0)[..., None]
    ya, yb, xa, xb = refl(y0, h), refl(y0 + 1, h), refl(x0, w), refl(x0 + 1, w)
    return (img[ya, xa] * (1 - fx) + img[ya, xb] * fx) * (1 - fy) + (img[yb, xa] * (1 - fx) + img[yb, xb] * fx) * fy


def cv2_resize_linear(img_u8, fx):
    """cv2.resize(img, (0, 0), fx=fx, fy=fx) with INTER_LINEAR: source step 1/fx, half-pixel
    centres, coordinates clamped at the borders, rounded to uint8."""
    h, w = img_u8.shape[:2]
    oh, ow = int(round(h * fx)), int(round(w * fx))

    def axis(n_out, n_in):
        s = (np.arange(n_out) + 0.5) / fx - 0.5
        i0 = np.floor(s).astype(np.int64)
        f = s - i0
        f = np.where(i0 < 0, 0.0, f)
        i0 = np.clip(i0, 0, n_in - 1)
        i1 = np.clip(i0 + 1, 0, n_in - 1)
        return i0, i1, f

    r0, r1, fr = axis(oh, h)
    c0, c1, fc = axis(ow, w)
    a = img_u8.astype(np.float64)
    top = a[r0][:, c0] * (1 - fc)[None, :, None] + a[r0][:, c1] * fc[None, :, None]
    bot = a[r1][:, c0] * (1 - fc)[None, :, None] + a[r1][:, c1] * fc[None, :, None]
    out = top * (1 - fr)[:, None, None] + bot * fr[:, None, None]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- the 15 corruptions
def gaussian_noise(x, severity, table=IMAGENET, rng=np.random):
    c = params("gaussian_noise", severity, table)
    x = np.array(x) / 255.0
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255


def shot_noise(x, severity, table=IMAGENET, rng=np.random):
    c = params("shot_noise", severity, table)
    x = np.array(x) / 255.0
    return np.clip(rng.poisson(x * c) / c, 0, 1) * 255


def impulse_noise(x, severity, table=IMAGENET, rng=np.random):
    """skimage.util.random_noise(mode='s&p', amount=c), written out so that it takes ``rng``."""
    c = params("impulse_noise", severity, table)
    x = np.array(x) / 255.0
    out = x.copy()
    flipped = rng.random(x.shape) <= c
    salted = rng.random(x.shape) <= 0.5
    out[flipped & salted] = 1.0
    out[flipped & ~salted] = 0.0
    return np.clip(out, 0, 1) * 255


def defocus_blur(x, severity, table=IMAGENET, rng=np.random):
    radius, alias = params("defocus_blur", severity, table)
    x = np.array(x) / 255.0
    kernel = disk(radius, alias)
    channels = np.stack([_mirror_correlate(x[:, :, d], kernel) for d in range(3)], axis=-1)
    return np.clip(channels, 0, 1) * 255


def glass_blur(x, severity, table=IMAGENET, rng=np.random):
    sigma, delta, iterations = params("glass_blur", severity, table)
    h, w = np.array(x).shape[:2]
    x = np.uint8(gaussian(np.array(x) / 255.0, sigma=sigma, channel_axis=-1) * 255)
    for _ in range(iterations):
        for row in range(h - delta, delta, -1):
            for col in range(w - delta, delta, -1):
                dx, dy = rng.randint(-delta, delta, size=(2,))
                # The reference writes ``x[h, w], x[h', w'] = x[h', w'], x[h, w]``: on NumPy
                # pixel views this copies (h', w') into (h, w) and leaves (h', w') unchanged.
                x[row, col] = x[row + dy, col + dx]
    return np.clip(gaussian(x / 255.0, sigma=sigma, channel_axis=-1), 0, 1) * 255


def motion_blur(x, severity, table=IMAGENET, rng=np.random):
    radius, sigma = params("motion_blur", severity, table)
    angle = rng.uniform(-45, 45)
    return imagemagick_motion_blur(np.array(x), radius, sigma, angle)


def zoom_blur(x, severity, table=IMAGENET, rng=np.random):
    zooms = params("zoom_blur", severity, table)
    x = (np.array(x) / 255.0).astype(np.float32)
    out = np.zeros_like(x)
    for z in zooms:
        out += clipped_zoom(x, z)
    x = (x + out) / (len(zooms) + 1)
    return np.clip(x, 0, 1) * 255


def snow(x, severity, table=IMAGENET, rng=np.random):
    c = params("snow", severity, table)
    x = np.array(x, dtype=np.float32) / 255.0
    layer = rng.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    layer = clipped_zoom(layer[..., np.newaxis], c[2])
    layer[layer < c[3]] = 0
    layer = (np.clip(layer.squeeze(), 0, 1) * 255).astype(np.uint8)
    layer = imagemagick_motion_blur(layer, c[4], c[5], rng.uniform(-135, -45)) / 255.0
    layer = layer[..., np.newaxis]
    x = c[6] * x + (1 - c[6]) * np.maximum(x, _gray(x)[..., np.newaxis] * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255


def frost(x, severity, table=IMAGENET, rng=np.random, frost_images=None):
    """``frost_images``: the five RGB uint8 pictures (the reference reads frost1..5 with cv2 and
    converts BGR to RGB; here they are given in RGB)."""
    c = params("frost", severity, table)
    x = np.array(x)
    h, w = x.shape[:2]
    idx = rng.randint(5)
    picture = frost_images[idx]
    if table == CIFAR:
        picture = cv2_resize_linear(picture, 0.2)
    x_start, y_start = rng.randint(0, picture.shape[0] - h), rng.randint(0, picture.shape[1] - w)
    crop = picture[x_start : x_start + h, y_start : y_start + w]
    return np.clip(c[0] * x + c[1] * crop.astype(np.float64), 0, 255)


def fog(x, severity, table=IMAGENET, rng=np.random):
    c = params("fog", severity, table)
    x = np.array(x) / 255.0
    h, w = x.shape[:2]
    mapsize = 256 if table == IMAGENET else 32
    mapsize = max(mapsize, 1 << (max(h, w) - 1).bit_length())
    max_val = x.max()
    x = x + c[0] * plasma_fractal(mapsize, c[1], rng)[:h, :w][..., np.newaxis]
    return np.clip(x * max_val / (max_val + c[0]), 0, 1) * 255


def brightness(x, severity, table=IMAGENET, rng=np.random):
    c = params("brightness", severity, table)
    x = skcolor.rgb2hsv(np.array(x) / 255.0)
    x[:, :, 2] = np.clip(x[:, :, 2] + c, 0, 1)
    return np.clip(skcolor.hsv2rgb(x), 0, 1) * 255


def contrast(x, severity, table=IMAGENET, rng=np.random):
    c = params("contrast", severity, table)
    x = np.array(x) / 255.0
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def elastic_transform(image, severity, table=IMAGENET, rng=np.random):
    c = params("elastic_transform", severity, table)
    image = np.array(image, dtype=np.float32) / 255.0
    if table == CIFAR:
        c = tuple(v * image.shape[0] for v in c)
    shape = image.shape
    shape_size = shape[:2]
    center = np.float32(shape_size) // 2
    square = min(shape_size) // 3
    pts1 = np.float32([center + square, [center[0] + square, center[1] - square], center - square])
    pts2 = pts1 + rng.uniform(-c[2], c[2], size=pts1.shape).astype(np.float32)
    # cv2.getAffineTransform(pts1, pts2): M (2x3) with M @ [x, y, 1] = pts2
    m = np.linalg.solve(np.hstack([pts1, np.ones((3, 1))]).astype(np.float64), pts2.astype(np.float64)).T
    # cv2.warpAffine(image, M, (w, h), borderMode=BORDER_REFLECT_101): dst(p) = src(M^-1 p)
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    sx = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]
    sy = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]
    image = _bilinear_reflect101(image.astype(np.float64), sy, sx).astype(np.float32)
    dx = (gaussian(rng.uniform(-1, 1, size=shape[:2]), c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)
    dy = (gaussian(rng.uniform(-1, 1, size=shape[:2]), c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)
    dx, dy = dx[..., np.newaxis], dy[..., np.newaxis]
    x, y, z = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]), np.arange(shape[2]))
    indices = np.reshape(y + dy, (-1, 1)), np.reshape(x + dx, (-1, 1)), np.reshape(z, (-1, 1))
    return np.clip(ndimage.map_coordinates(image, indices, order=1, mode="reflect").reshape(shape), 0, 1) * 255


def pixelate(x, severity, table=IMAGENET, rng=np.random):
    c = params("pixelate", severity, table)
    img = Image.fromarray(np.array(x))
    size = img.size[0]
    img = img.resize((int(size * c), int(size * c)), Image.BOX)
    img = img.resize((size, size), Image.BOX)
    return np.array(img).astype(np.float64)


def jpeg_compression(x, severity, table=IMAGENET, rng=np.random):
    c = params("jpeg_compression", severity, table)
    output = io.BytesIO()
    Image.fromarray(np.array(x)).save(output, "JPEG", quality=c)
    return np.array(Image.open(output)).astype(np.float64)


ORACLES = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}
