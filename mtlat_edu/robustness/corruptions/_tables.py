"""Severity tables of the 15 ImageNet-C corruptions (Hendrycks & Dietterich, ICLR 2019).

Copied constant for constant from the reference scripts in github.com/hendrycks/robustness:
``ImageNet-C/create_c/make_imagenet_c.py`` (``IMAGENET``, images of 224 px) and
``ImageNet-C/create_c/make_cifar_c.py`` (``CIFAR``, images of 32 px).  One tuple per severity
1..5, in the order of the reference's ``c = [...]`` lists.  Where the reference writes a table
in terms of the image size (CIFAR ``elastic_transform``: ``IMSIZE * ...``) the entry is stored as
the multiplier and scaled by the actual image size.
"""
from __future__ import annotations

IMAGENET: dict[str, list[tuple[float, ...]]] = {
    "gaussian_noise": [(0.08,), (0.12,), (0.18,), (0.26,), (0.38,)],  # noise std
    "shot_noise": [(60,), (25,), (12,), (5,), (3,)],  # photons per unit intensity
    "impulse_noise": [(0.03,), (0.06,), (0.09,), (0.17,), (0.27,)],  # salt & pepper amount
    "defocus_blur": [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],  # disk radius, alias blur
    "glass_blur": [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)],  # sigma, max_delta, iterations
    "motion_blur": [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)],  # ImageMagick radius, sigma
    "zoom_blur": [(1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03)],  # np.arange(1, stop, step)
    "snow": [
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    ],  # loc, scale, zoom, threshold, blur radius, blur sigma, image weight
    "frost": [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)],  # image weight, frost weight
    "fog": [(1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)],  # fog weight, wibble decay
    "brightness": [(0.1,), (0.2,), (0.3,), (0.4,), (0.5,)],  # added to HSV value
    "contrast": [(0.4,), (0.3,), (0.2,), (0.1,), (0.05,)],  # contrast factor
    "elastic_transform": [  # displacement scale, smoothing sigma, affine jitter (pixels; 244 sic)
        (244 * 2, 244 * 0.7, 244 * 0.1),
        (244 * 2, 244 * 0.08, 244 * 0.2),
        (244 * 0.05, 244 * 0.01, 244 * 0.02),
        (244 * 0.07, 244 * 0.01, 244 * 0.02),
        (244 * 0.12, 244 * 0.01, 244 * 0.02),
    ],
    "pixelate": [(0.6,), (0.5,), (0.4,), (0.3,), (0.25,)],  # box-downscale factor
    "jpeg_compression": [(25,), (18,), (15,), (10,), (7,)],  # JPEG quality
}

CIFAR: dict[str, list[tuple[float, ...]]] = {
    "gaussian_noise": [(0.04,), (0.06,), (0.08,), (0.09,), (0.10,)],
    "shot_noise": [(500,), (250,), (100,), (75,), (50,)],
    "impulse_noise": [(0.01,), (0.02,), (0.03,), (0.05,), (0.07,)],
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
    "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
    "zoom_blur": [(1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01)],
    "snow": [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ],
    "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],
    "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
    "brightness": [(0.05,), (0.1,), (0.15,), (0.2,), (0.3,)],
    "contrast": [(0.75,), (0.5,), (0.4,), (0.3,), (0.15,)],
    "elastic_transform": [  # multiples of the image size (IMSIZE = 32 in the reference)
        (0, 0, 0.08),
        (0.05, 0.2, 0.07),
        (0.08, 0.06, 0.06),
        (0.1, 0.04, 0.05),
        (0.1, 0.03, 0.03),
    ],
    "pixelate": [(0.95,), (0.9,), (0.85,), (0.75,), (0.65,)],
    "jpeg_compression": [(80,), (65,), (58,), (50,), (40,)],
}

TABLES = {"imagenet": IMAGENET, "cifar": CIFAR}

# CIFAR-10-C crops its frost pictures after shrinking them to a fifth (cv2.resize fx=fy=0.2).
CIFAR_FROST_SCALE = 0.2

# The paper's four extra corruptions (section 4.1): (severity-1 value, severity-5 value), pixel
# values for 224 px images.
EXTRA_RANGES = {
    "occlusion": (60.0, 127.0),  # side of the grey square, px at 224
    "color_distortion": (0.08, 0.30),  # added to one channel, fraction of the max pixel value
    "translation": (15.0, 62.0),  # shift length, px at 224
    "rotation": (8.0, 40.0),  # degrees
}
