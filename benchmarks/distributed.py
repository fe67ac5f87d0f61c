"""Throughput of DDP training on the CPU (1 and 2 processes) and of the streaming data path.

    python -m benchmarks.distributed [--methods standard mtlat] [--nprocs 1 2] [--train-limit 2048]
                                     [--batch-size 128] [--epochs 3] [--workers 1 2] [--decode-images 2000]

Run from the repository root. Everything is measured in one run, side by side:

* **Training.** For every method and process count, ``torchrun --standalone --nproc_per_node=P -m
  mtlat_edu train`` (gloo, one thread per process, the same global batch) on the real CIFAR-10
  JPEG copy (the generated data when it is absent); the figure is the training images per second
  of the epochs after the first (``images_per_second`` in the run's history: global batch x steps
  / training seconds, evaluation excluded), as the median over those epochs. The runs alternate
  between process counts so that a load drift hits both alike.
* **Streaming decode.** :class:`mtlat_edu.data.StreamBatches` over a JPEG ImageFolder with
  ``W`` DataLoader worker processes: images per second (after the first batch, which pays the
  workers' start) and per worker, for the CIFAR-10 test JPEGs at 32 px and for the same images
  upscaled to 224 px JPEGs (ImageNet-100's input size; generated into a temporary folder).

The load average before and after is printed: on a shared machine the figures are only as quiet
as it was. GPU figures (NCCL, the fast path, compile) need a GPU and are not measured here.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from mtlat_edu.data import SHARED_CIFAR, StreamBatches, file_dataset

REPO = Path(__file__).resolve().parents[1]


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def train_throughput(method: str, nproc: int, args, runs: Path) -> float:
    """Median training img/s of the epochs after the first, for one torchrun job."""
    data = (["--dataset", "cifar10", "--data-root", str(SHARED_CIFAR)] if (SHARED_CIFAR / "train").is_dir()
            else ["--dataset", "synthetic"])
    out = runs / f"{method}-p{nproc}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m",
           "mtlat_edu", "train", "--method", method, "--model", args.model, *data, "--train-limit",
           str(args.train_limit), "--test-limit", "200", "--batch-size", str(args.batch_size), "--epochs",
           str(args.epochs), "--device", "cpu", "--no-resume", "--runs", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
    history = json.loads(next(out.glob("*/*/history.json")).read_text())
    return statistics.median(h["images_per_second"] for h in history[1:])


def _jpeg_tree(dst: Path, n: int, size: int) -> Path:
    """``n`` CIFAR-10 test JPEGs (every k-th: all classes), resized to ``size`` px, as an ImageFolder tree."""
    files = file_dataset("cifar10", "test", SHARED_CIFAR).samples
    step = max(1, len(files) // n)
    for i, (path, label) in enumerate(files[::step][:n]):
        folder = dst / "test" / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as im:
            im.convert("RGB").resize((size, size), Image.BICUBIC).save(folder / f"{i}.jpg", quality=90)
    (dst / "train").mkdir(exist_ok=True)
    return dst


def decode_throughput(root: Path, workers: int, batch_size: int = 64) -> float:
    """Images per second :class:`StreamBatches` delivers with ``workers`` decoding processes."""
    data = file_dataset("imagefolder", "test", root)
    it = iter(StreamBatches(data, batch_size, "cpu", workers=workers))
    next(it)  # the first batch pays the workers' start
    t0, n = time.perf_counter(), 0
    for x, _ in it:
        n += x.shape[0]
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.distributed", description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=["standard", "mtlat"])
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--nprocs", nargs="+", type=int, default=[1, 2])
    p.add_argument("--train-limit", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2, help="training jobs per (method, process count); median")
    p.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    p.add_argument("--decode-images", type=int, default=2000)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"load average before: {_loadavg()}  ({os.cpu_count()} CPUs, torch {torch.__version__})")

    print(f"\n## Training on the CPU (gloo, 1 thread per process): {args.model}, global batch {args.batch_size}, "
          f"{args.train_limit} images, median img/s of epochs 2..{args.epochs}, median of {args.rounds} jobs\n")
    with tempfile.TemporaryDirectory() as tmp:
        speed = {(m, n): [] for m in args.methods for n in args.nprocs}
        for r in range(args.rounds):
            for m in args.methods:
                for n in (args.nprocs if r % 2 == 0 else args.nprocs[::-1]):
                    speed[m, n].append(train_throughput(m, n, args, Path(tmp)))
        base = args.nprocs[0]
        print("| method | " + " | ".join(f"{n} proc img/s" for n in args.nprocs) +
              " | " + " | ".join(f"{n}/{base} ratio" for n in args.nprocs[1:]) + " |")
        print("|---" * (1 + 2 * len(args.nprocs) - 1) + "|")
        for m in args.methods:
            med = {n: statistics.median(speed[m, n]) for n in args.nprocs}
            print(f"| {m} | " + " | ".join(f"{med[n]:.0f}" for n in args.nprocs) + " | " +
                  " | ".join(f"{med[n] / med[base]:.2f}" for n in args.nprocs[1:]) + " |")
        if len(args.methods) > 1:
            ref = args.methods[0]
            for m in args.methods[1:]:
                print(f"\n{m} / {ref} step-time ratio: " + ", ".join(
                    f"{n} proc {statistics.median(speed[ref, n]) / statistics.median(speed[m, n]):.2f}"
                    for n in args.nprocs))

        if not (SHARED_CIFAR / "test").is_dir():
            print(f"\nstreaming decode: skipped (no CIFAR-10 JPEG copy at {SHARED_CIFAR})")
        else:
            print(f"\n## Streaming decode (StreamBatches, Pillow in DataLoader workers), {args.decode_images} JPEGs\n")
            print("| images | workers | img/s | img/s per worker |")
            print("|---|---|---|---|")
            for size in (32, 224):
                root = _jpeg_tree(Path(tmp) / f"jpeg{size}", args.decode_images, size)
                for w in args.workers:
                    ips = decode_throughput(root, w)
                    print(f"| CIFAR-10 test JPEGs at {size} px | {w} | {ips:.0f} | {ips / w:.0f} |")
    print(f"\nload average after: {_loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
