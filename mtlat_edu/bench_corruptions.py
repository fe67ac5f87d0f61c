"""Throughput of the batched torch corruptions against the per-image NumPy reference port.

    python -m mtlat_edu.bench_corruptions [--images N] [--size 32|224] [--device cpu|cuda]
                                          [--oracle-images M] [--suite N] [--threads T]

For every corruption of :data:`mtlat_edu.corruptions.ALL` and the chosen image size(s), it
times, in the same run, the batched torch function on ``N`` images and the NumPy/SciPy port of
the ImageNet-C reference (``tests/imagenet_c_oracle.py``, one image at a time, NumPy's global
RNG as in the reference) on ``M`` images, each over severities 1..5, and prints images/second
and the speed-up per corruption and overall (total images / total time over the 15 ImageNet-C
corruptions; the 4 extra corruptions have no reference code and are timed for torch only).
``--suite N`` also times the whole 19 x 5 suite on N CIFAR-10 test images (default 1000).

Images: CIFAR-10 test JPEGs from ``shared/data/cifar10-jpeg`` beside the repository when
present (32 px), scikit-image sample photos otherwise and for 224 px.  The timings are
wall-clock on whatever else the machine is doing; report them with the command and machine.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .corruptions import ALL, DISPLAY, EXTRA, IMAGENET_C, corrupt
from .corruptions.frost_texture import NUM_TEXTURES, frost_texture, texture_size

REPO = Path(__file__).resolve().parents[1]
CIFAR_DIR = REPO.parent / "shared" / "data" / "cifar10-jpeg"


def _load_oracle():
    tests = REPO / "tests"
    if not (tests / "imagenet_c_oracle.py").is_file():
        print(f"note: the NumPy reference port {tests / 'imagenet_c_oracle.py'} is absent; timing torch only")
        return None
    sys.path.insert(0, str(tests))
    try:
        import imagenet_c_oracle
    except ImportError as err:  # e.g. scipy / scikit-image missing
        print(f"note: cannot import the NumPy reference port ({err}); timing torch only")
        return None
    return imagenet_c_oracle


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
    """``n`` images cut from scikit-image's sample photos (random square crops), resized."""
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


def time_torch(x: torch.Tensor, name: str, device: str, batch: int) -> float:
    """Seconds to corrupt all of ``x`` at severities 1..5 (after one warm-up call)."""
    corrupt(x[: min(2, len(x))], name, 1, torch.Generator().manual_seed(0))
    _sync(device)
    start = time.perf_counter()
    for s in range(1, 6):
        g = torch.Generator().manual_seed(s)
        for i in range(0, len(x), batch):
            corrupt(x[i : i + batch], name, s, g)
    _sync(device)
    return time.perf_counter() - start


def time_oracle(oracle, images: np.ndarray, name: str, table: str, frost_pictures) -> float:
    fn = oracle.ORACLES[name]
    kw = {"frost_images": frost_pictures} if name == "frost" else {}
    np.random.seed(0)
    start = time.perf_counter()
    for s in range(1, 6):
        for img in images:
            fn(img, s, table, **kw)
    return time.perf_counter() - start


def bench_size(size: int, n: int, m: int, device: str, batch: int, oracle) -> None:
    table = "cifar" if size <= 64 else "imagenet"
    imgs = cifar_images(n) if size == 32 else None
    source = "CIFAR-10 test images" if imgs is not None and len(imgs) == n else "scikit-image photo crops"
    if imgs is None or len(imgs) < n:
        imgs = photo_images(n, size)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(255).to(device)
    pictures = None
    if oracle is not None:
        side = texture_size(table, size)
        pictures = [np.round(frost_texture(i, side).permute(1, 2, 0).numpy() * 255).astype(np.uint8) for i in range(NUM_TEXTURES)]
    print(f"\n== {size} px ({table} table), {source}: torch {n} images on {device} (batches of {batch}), "
          f"NumPy reference {m if oracle else 0} images, severities 1-5 each ==")
    print(f"{'corruption':18s} {'torch img/s':>12s} {'numpy img/s':>12s} {'speed-up':>9s}")
    tot_t = tot_o = 0.0
    for name in ALL:
        t = time_torch(x, name, device, batch)
        rate_t = 5 * n / t
        if oracle is not None and name in IMAGENET_C:
            o = time_oracle(oracle, imgs[:m], name, table, pictures)
            rate_o = 5 * m / o
            tot_t += t / n
            tot_o += o / m
            print(f"{name:18s} {rate_t:12.1f} {rate_o:12.1f} {rate_t / rate_o:8.1f}x", flush=True)
        else:
            print(f"{name:18s} {rate_t:12.1f} {'-':>12s} {'-':>9s}", flush=True)
    if oracle is not None:
        rt, ro = 5 * len(IMAGENET_C) / tot_t, 5 * len(IMAGENET_C) / tot_o
        print(f"{'overall (15 IN-C)':18s} {rt:12.1f} {ro:12.1f} {rt / ro:8.1f}x")


def bench_suite(n: int, device: str, batch: int) -> None:
    imgs = cifar_images(n)
    source = "CIFAR-10 test images"
    if imgs is None or len(imgs) < n:
        imgs, source = photo_images(n, 32), "scikit-image photo crops (CIFAR-10 not found)"
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(255).to(device)
    corrupt(x[:2], "frost", 1)  # build the frost textures outside the timing
    _sync(device)
    start = time.perf_counter()
    per = {}
    for name in ALL:
        t0 = time.perf_counter()
        time_torch_nowarm(x, name, device, batch)
        per[name] = time.perf_counter() - t0
    total = time.perf_counter() - start
    print(f"\n== full suite: {len(ALL)} corruptions x 5 severities on {n} {source} (32 px) on {device} ==")
    print("  ".join(f"{DISPLAY[k]} {v:.1f}s" for k, v in per.items()))
    print(f"total {total:.1f} s for {len(ALL) * 5 * n} corrupted images ({len(ALL) * 5 * n / total:.0f} img/s)")


def time_torch_nowarm(x, name, device, batch):
    for s in range(1, 6):
        g = torch.Generator().manual_seed(s)
        for i in range(0, len(x), batch):
            corrupt(x[i : i + batch], name, s, g)
    _sync(device)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m mtlat_edu.bench_corruptions", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=None, help="images for torch (default 500 at 32 px, 64 at 224 px)")
    p.add_argument("--oracle-images", type=int, default=None, help="images for the NumPy port (default 50 at 32 px, 4 at 224 px)")
    p.add_argument("--size", type=int, choices=(32, 224), default=None, help="image size (default: both)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--batch", type=int, default=250, help="torch batch size")
    p.add_argument("--suite", type=int, default=1000, help="images for the full 19x5 suite timing (0: skip)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: the NumPy port runs on one core, and OpenMP threads "
        "slow down badly on a machine whose cores are busy with other work)",
    )
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device available")
    for name, v in (("--images", a.images), ("--oracle-images", a.oracle_images), ("--batch", a.batch)):
        if v is not None and v < 1:
            p.error(f"{name}: must be >= 1, got {v}")
    if a.threads < 1:
        p.error(f"--threads: must be >= 1, got {a.threads}")
    torch.set_num_threads(a.threads)
    oracle = _load_oracle()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average {load:.1f}")
    for size in (32, 224) if a.size is None else (a.size,):
        n = a.images or (500 if size == 32 else 64)
        m = min(n, a.oracle_images or (50 if size == 32 else 4))
        bench_size(size, n, m, a.device, a.batch if size == 32 else min(a.batch, 32), oracle)
    if a.suite:
        bench_suite(a.suite, a.device, a.batch)


if __name__ == "__main__":
    main()
