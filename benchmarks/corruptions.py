"""Speed of the batched corruptions against the per-image ImageNet-C reference, on one CPU thread.

    python -m benchmarks.corruptions [--size 32|224] [--images N] [--severity S] [--rounds R]
                                     [--threads T] [--device cpu|cuda]

Run from the repository root.  For every corruption of :data:`mtlat_edu.robustness.corruptions.ALL` and each
image size it times, in the same run, the batched torch function (one call on the whole batch)
and the per-image NumPy/PIL/SciPy reference (:mod:`benchmarks.imagenet_c_reference`, one image at
a time, NumPy's global RNG as in Hendrycks & Dietterich's scripts).  Every round times reference
and ours back to back for each corruption (the order alternates between rounds), and the table
reports the median over the rounds, so that a machine whose load drifts slows both sides alike.

Columns: ``reference s`` and ``ours ... s`` are seconds for the ``N`` images (the reference's
glass blur, a Python loop over every pixel, runs on the first ``--glass-images`` images and is
scaled to ``N``: it is per image, so its time is linear in the count), ``ratio`` = reference /
ours.  Ours is timed twice: ``ours 8-bit`` on the very 8-bit images the reference is handed
(uint8, NCHW: the side-by-side comparison; pixelate and JPEG take them as they are, the others
convert them to floats first) and ``ours float`` on their float32 conversion ``j / 255`` (the
float [0, 1] contract, which adds a range-checked 8-bit conversion to pixelate and JPEG); both
give the same images.  Totals are summed over the 15 ImageNet-C corruptions with and without
glass blur (whose reference loop dominates every total it is in).  The four extra corruptions of
the paper have no reference code; they are timed for torch only.

Images: CIFAR-10 test JPEGs from ``shared/data/cifar10-jpeg`` beside the repository at 32 px
(scikit-image photo crops when absent), scikit-image photo crops at 224 px.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import time

import numpy as np
import torch

from mtlat_edu.robustness.corruptions import ALL, IMAGENET_C, corrupt
from mtlat_edu.robustness.corruptions.frost_texture import NUM_TEXTURES, frost_texture, texture_size
from mtlat_edu.data import SHARED_CIFAR as CIFAR_DIR

from . import imagenet_c_reference as reference

DEFAULT_IMAGES = {32: 256, 224: 16}
DEFAULT_GLASS_IMAGES = {32: 64, 224: 2}


def cifar_images(n: int) -> np.ndarray | None:
    """Up to ``n`` CIFAR-10 test images (class-interleaved), (n, 32, 32, 3) uint8, or None."""
    test = CIFAR_DIR / "test"
    if not test.is_dir():
        return None
    from PIL import Image

    classes = sorted(p.name for p in test.iterdir() if p.is_dir())
    files = [sorted((test / c).glob("*.jpg")) for c in classes]
    picked = [f[i] for i in range(max(len(f) for f in files)) for f in files if i < len(f)][:n]
    return np.stack([np.array(Image.open(p).convert("RGB")) for p in picked])


def photo_images(n: int, size: int) -> np.ndarray:
    """``n`` random square crops of scikit-image's sample photos, resized to ``size`` (uint8 NHWC)."""
    from skimage import data, transform

    rng = np.random.default_rng(0)
    sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.immunohistochemistry()]
    out = []
    for i in range(n):
        a = sources[i % len(sources)]
        h, w = a.shape[:2]
        s = int(min(h, w) * rng.uniform(0.6, 1.0))
        y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
        crop = transform.resize(a[y : y + s, x : x + s], (size, size), anti_aliasing=True)
        out.append(np.round(crop * 255).astype(np.uint8))
    return np.stack(out)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_ours(x: torch.Tensor, name: str, severity: float, device: str, batch: int) -> float:
    """Seconds to corrupt all of ``x`` (in batches of ``batch``)."""
    _sync(device)
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        corrupt(x[i : i + batch], name, severity, g)
    _sync(device)
    return time.perf_counter() - start


def time_reference(images: np.ndarray, name: str, severity: int, table: str, frost_pictures) -> float:
    """Seconds for the per-image reference on ``images`` (NumPy's global RNG, seeded)."""
    fn = reference.ORACLES[name]
    kw = {"frost_images": frost_pictures} if name == "frost" else {}
    np.random.seed(0)
    start = time.perf_counter()
    for img in images:
        fn(img, severity, table, **kw)
    return time.perf_counter() - start


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def bench_size(size: int, n: int, n_glass: int, severity: int, rounds: int, device: str, batch: int) -> dict:
    """Median seconds per corruption, reference (scaled to ``n`` images) and ours; prints the table."""
    table = "cifar" if size <= 64 else "imagenet"
    imgs = cifar_images(n) if size == 32 else None
    source = "CIFAR-10 test images"
    if imgs is None or len(imgs) < n:
        imgs, source = photo_images(n, size), "scikit-image photo crops"
    x8 = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous().to(device)  # the reference's 8-bit images, NCHW
    x = x8.float().div(255)
    side = texture_size(table, size)
    pictures = [
        np.round(frost_texture(i, side).permute(1, 2, 0).numpy() * 255).astype(np.uint8) for i in range(NUM_TEXTURES)
    ]
    print(
        f"\n== {size} px ({table} table, severity {severity}), {n} {source}; ours on {device} in batches of "
        f"{batch}, given the 8-bit images (uint8 NCHW) and their float32 conversion; reference one image at a time (glass blur: {n_glass} images, scaled to {n}); "
        f"median of {rounds} interleaved rounds; {load_line()} ==",
        flush=True,
    )
    for name in ALL:  # warm-up: caches (frost textures, filter matrices), lazy imports
        corrupt(x[:2], name, severity, torch.Generator().manual_seed(0))
        corrupt(x8[:2], name, severity, torch.Generator().manual_seed(0))
        if name in IMAGENET_C:
            time_reference(imgs[:1], name, severity, table, pictures)
    kinds = ("ref", "ours 8-bit", "ours float")
    times = {name: {kind: [] for kind in kinds} for name in ALL}
    for r in range(rounds):
        for name in ALL:
            ref_imgs = imgs[:n_glass] if name == "glass_blur" else imgs
            runs = {
                "ref": lambda: time_reference(ref_imgs, name, severity, table, pictures) * n / len(ref_imgs),
                "ours 8-bit": lambda: time_ours(x8, name, severity, device, batch),
                "ours float": lambda: time_ours(x, name, severity, device, batch),
            }
            for kind in kinds[::-1] if r % 2 else kinds:
                if kind == "ref" and name not in IMAGENET_C:
                    continue
                times[name][kind].append(runs[kind]())
    med = {name: {k: statistics.median(v) if v else None for k, v in t.items()} for name, t in times.items()}

    def ratio(ref, ours):
        return f"{'-':>8s}" if ref is None else f"{ref / ours:7.1f}x"

    print(f"{'corruption':18s} {'reference s':>12s} {'ours 8-bit s':>13s} {'ratio':>8s} {'ours float s':>13s} {'ratio':>8s}")
    rows = [(name, med[name]) for name in ALL]
    for label, names in (
        ("total, 15 IN-C", IMAGENET_C),
        ("total, no glass", [k for k in IMAGENET_C if k != "glass_blur"]),
    ):
        rows.append((label, {k: sum(med[name][k] for name in names) for k in kinds}))
    for label, m in rows:
        ref, o8, of = m["ref"], m["ours 8-bit"], m["ours float"]
        ref_s = f"{'-':>12s}" if ref is None else f"{ref:12.4f}"
        print(f"{label:18s} {ref_s} {o8:13.4f} {ratio(ref, o8)} {of:13.4f} {ratio(ref, of)}")
    print(f"({load_line()} after {size} px)", flush=True)
    return med


def _median_time(fn, rounds: int) -> float:
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_bounds(size: int, n: int, rounds: int) -> None:
    """What bounds the corruptions that stay near the reference: each line times one ingredient
    on the same batch as the table (median of ``rounds``), next to the whole corruption."""
    from PIL import Image
    from torchvision.io import decode_jpeg, encode_jpeg

    from mtlat_edu.robustness.corruptions import _ops
    from mtlat_edu.robustness.corruptions.digital import box_upsample_into, pillow_box_down, pillow_pixelate

    table = "cifar" if size <= 64 else "imagenet"
    imgs = (cifar_images(n) if size == 32 else None)
    if imgs is None or len(imgs) < n:
        imgs = photo_images(n, size)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(255).contiguous()
    g = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    buf = torch.empty_like(x)
    x8 = _ops.to_uint8(x)
    small = int(size * (0.85 if table == "cifar" else 0.4))
    quality = 58 if table == "cifar" else 15
    hwc_views = [t.permute(2, 0, 1) for t in _ops.to_uint8_hwc(x).unbind(0)]
    encoded = encode_jpeg(hwc_views, quality=quality)
    decoded = decode_jpeg(encoded)
    small8 = pillow_box_down(x8, small, small)

    def decoded_to_float():
        o = torch.empty_like(x).numpy()
        for i, image in enumerate(decoded):
            np.divide(image.numpy(), np.float32(255.0), out=o[i])

    def whole(name):
        return _median_time(lambda: corrupt(x, name, 3, torch.Generator().manual_seed(0)), rounds)

    def pil_jpeg():
        for img in imgs:
            out = io.BytesIO()
            Image.fromarray(img).save(out, "JPEG", quality=quality)
            np.asarray(Image.open(out))

    rate = 100 if table == "cifar" else 12
    ingredients = {
        "random numbers, torch.rand float32 (one per value)": lambda: torch.rand(x.shape, generator=g),
        "random numbers, NumPy random() float64 (one per value)": lambda: rng.random(x.shape),
        "random numbers, torch.rand float64 (one per value)": lambda: torch.rand(x.shape, generator=g, dtype=torch.float64),
        "torch.poisson(x * c) (c of severity 3)": lambda: torch.poisson(x * rate, generator=g),
        "one elementwise op into a fresh tensor (x * 2)": lambda: x * 2,
        "one elementwise op into an existing tensor": lambda: torch.mul(x, 2, out=buf),
        "8-bit conversion with the range check, NCHW": lambda: _ops.to_uint8(x, check=True),
        "8-bit conversion with the range check, NHWC": lambda: _ops.to_uint8_hwc(x, check=True),
        "8-bit images copied from NCHW to NHWC order": lambda: _ops.uint8_hwc(x8),
        "libjpeg encode + decode of the batch (torchvision)": lambda: decode_jpeg(encode_jpeg(list(x8.unbind(0)), quality=quality)),
        "libjpeg encode of NHWC-backed images (torchvision)": lambda: encode_jpeg(hwc_views, quality=quality),
        "libjpeg decode of the batch (torchvision)": lambda: decode_jpeg(encoded),
        "decoded JPEG images to the float output": decoded_to_float,
        "PIL JPEG save + open, image by image": pil_jpeg,
        "Pillow BOX resizes of the batch (uint8 in and out)": lambda: pillow_pixelate(x8, small, small),
        "Pillow BOX downscale of the batch (RGBX bands)": lambda: pillow_box_down(x8, small, small),
        "upscale of the small images into the float output": lambda: box_upsample_into(torch.empty_like(x), small8),
    }
    rows = [(label, _median_time(fn, rounds)) for label, fn in ingredients.items()]
    rows += [(f"whole corruption: {name}", whole(name)) for name in ("impulse_noise", "shot_noise", "jpeg_compression", "pixelate")]
    rows += [
        (f"whole corruption, 8-bit input: {name}", _median_time(lambda: corrupt(x8, name, 3, torch.Generator().manual_seed(0)), rounds))
        for name in ("jpeg_compression", "pixelate")
    ]
    print(f"\n== what bounds the slowest corruptions, {size} px, {n} images, one thread, median of {rounds} ==")
    for label, sec in rows:
        print(f"{label:58s} {sec:9.4f} s")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.corruptions", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, choices=(32, 224), default=None, help="image size (default: both)")
    p.add_argument("--images", type=int, default=None, help="images per size (default 256 at 32 px, 16 at 224 px)")
    p.add_argument(
        "--glass-images",
        type=int,
        default=None,
        help="images for the reference's glass blur, scaled to --images (default 64 at 32 px, 2 at 224 px)",
    )
    p.add_argument("--severity", type=int, choices=(1, 2, 3, 4, 5), default=3, help="severity level (default 3)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds; the median is reported (default 5)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device of ours (the reference is NumPy)")
    p.add_argument("--batch", type=int, default=None, help="batch size of ours (default: all images in one call)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1, like the reference)")
    p.add_argument("--bounds", action="store_true", help="also time the ingredients that bound the slowest corruptions")
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device available")
    for opt, v in (("--images", a.images), ("--glass-images", a.glass_images), ("--batch", a.batch),
                   ("--rounds", a.rounds), ("--threads", a.threads)):  # fmt: skip
        if v is not None and v < 1:
            p.error(f"{opt}: must be >= 1, got {v}")
    torch.set_num_threads(a.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s), "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} CPUs, {load_line()}"
    )
    for size in (32, 224) if a.size is None else (a.size,):
        n = a.images or DEFAULT_IMAGES[size]
        n_glass = min(n, a.glass_images or DEFAULT_GLASS_IMAGES[size])
        bench_size(size, n, n_glass, a.severity, a.rounds, a.device, a.batch or n)
    if a.bounds:
        for size in (32, 224) if a.size is None else (a.size,):
            bench_bounds(size, a.images or DEFAULT_IMAGES[size], a.rounds)
    print(f"({load_line()} at the end)")


if __name__ == "__main__":
    main()
