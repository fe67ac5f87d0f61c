"""Datasets as uint8 tensors, and the decoded-tensor cache.

Registry ``DATASETS`` (name -> loader ``fn(split, root, **kw) -> ImageData``):

* ``cifar10``      CIFAR-10 through ``torchvision.datasets.CIFAR10`` (downloads when online), or an
                   ImageFolder tree with ``train/`` and ``test/`` (e.g. ``../shared/data/cifar10-jpeg``)
* ``imagefolder``  any ImageFolder tree with ``train/`` and ``test/`` (Imagenette-style sets, ...)
* ``imagenet100``  the paper's ImageNet-100 protocol (section 4.2) over a user's ImageNet ``train/``
* ``synthetic``    a small *generated* dataset for offline smoke runs and tests (not real data)

Every loader returns an :class:`ImageData` whose images are uint8 NCHW (compact: CIFAR-10's
training set is 150 MB) and converts to float [0, 1] only per batch. The first load of a
folder-based dataset decodes every image (:func:`~mtlat_edu.data.files.decode_files`) and caches
the result in :func:`cache_dir`, keyed by the files' content (sizes and SHA-1s); the second load
reads one tensor file. ``load_dataset(..., mode="stream")`` (or ``"auto"`` above
:data:`STREAM_BYTES`) leaves a folder-based split on disk as a :class:`FileImageData`, which
:class:`~mtlat_edu.data.batching.StreamBatches` decodes batch by batch.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import random
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torchvision import datasets as tvd
from torchvision.transforms import v2

from mtlat_edu.core import io as mio
from mtlat_edu.core.checks import check_choice, check_int, check_positive
from mtlat_edu.core.registry import Registry
from mtlat_edu.data.files import class_folders, decode_files, decode_image, folder_samples, image_files

# The folder that holds the package: the repository root in a source checkout (site-packages once
# installed; source_checkout() tells them apart). The package's one repository-root constant: the
# data and the shared CIFAR-10 copy here, the notebooks' folder in course/session.py.
REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_DATA = REPO_ROOT / "data"
SHARED_CIFAR = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SPLITS = ("train", "test")
DOWNLOAD_TIMEOUT = 60.0  # seconds a download may wait for the server (per connection step, not in total)
CACHE_REMEDY = "delete this cache file (it is rebuilt from the dataset on the next load)"
STREAM_BYTES = 4 * 2**30  # "auto" streams a split whose decoded uint8 tensor would exceed this (4 GiB)
DATA_MODES = ("auto", "memory", "stream")


@dataclass
class ImageData:
    """A labelled image set held as tensors: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str = ""

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images: expected uint8 NCHW, got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels: expected shape ({self.images.shape[0]},), got {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    def float_images(self, idx=slice(None), device=None) -> torch.Tensor:
        """Images ``idx`` as float [0, 1] on ``device``."""
        x = self.images[idx]
        if device is not None:
            x = x.to(device, non_blocking=True)
        return x.float().div_(255)

    def subset(self, n: int | None, seed: int = 0) -> "ImageData":
        """A class-balanced random subset of ``n`` images (all images when ``n`` is None or too big)."""
        if n is None or n >= len(self):
            return self
        check_int(n, "limit", 1, optional=True, what="all images")
        idx = balanced_indices(self.labels, self.num_classes, n, seed)
        return ImageData(self.images[idx], self.labels[idx], self.classes, self.name)

    def to(self, device) -> "ImageData":
        return ImageData(self.images.to(device), self.labels.to(device), self.classes, self.name)


def balanced_indices(labels: torch.Tensor, num_classes: int, n: int, seed: int = 0) -> torch.Tensor:
    """Sorted indices of a class-balanced random subset of ``n`` of ``labels`` (the same choice for
    the in-memory :class:`ImageData` and the streamed :class:`FileImageData`)."""
    g = torch.Generator().manual_seed(seed)
    per = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
    per = [p[torch.randperm(len(p), generator=g)] for p in per]
    # round-robin over classes keeps the subset balanced
    order = torch.stack([p[: min(map(len, per))] for p in per], 1).flatten()
    rest = torch.cat([p[min(map(len, per)):] for p in per])
    return torch.cat([order, rest])[:n].sort().values


# ---------------------------------------------------------------------------------------------
# cache

def source_checkout() -> bool:
    """True when the package runs from a source checkout (``pyproject.toml`` beside it, not an
    installed copy in site-packages): then ``data/`` of the checkout holds the datasets and the cache."""
    parent = REPO_DATA.parent
    return (parent / "pyproject.toml").is_file() and not any(
        part in ("site-packages", "dist-packages") for part in parent.parts)


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/mtlat-edu``, else ``~/.cache/mtlat-edu`` (the user's cache, outside the package)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "mtlat-edu"


def data_home() -> Path:
    """Where torchvision's CIFAR-10 archive is looked for (and downloaded to): ``data/`` in a source
    checkout, else the user's cache folder (:func:`user_cache_dir`); never inside site-packages."""
    return REPO_DATA if source_checkout() else user_cache_dir()


def cache_dir() -> Path:
    """The decoded-dataset cache: ``$MTLAT_CACHE``, else ``data/cache`` in a source checkout (the
    README and the tests rely on it), else ``<user cache>/cache`` (:func:`user_cache_dir`)."""
    if os.environ.get("MTLAT_CACHE"):
        return Path(os.environ["MTLAT_CACHE"]).expanduser()
    return data_home() / "cache"


def _cached(key: str, build: Callable[[], ImageData]) -> ImageData:
    path = cache_dir() / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt"
    mio.clean_tmp(path.parent)
    if path.exists():
        blob = mio.load_torch(path, "decoded-dataset cache file", CACHE_REMEDY, keys=("images", "labels", "classes", "name"))
        try:
            return ImageData(blob["images"], blob["labels"], list(blob["classes"]), blob["name"])
        except (ValueError, TypeError, AttributeError) as exc:
            raise mio.CorruptFileError(f"{path}: not a valid decoded-dataset cache file ({exc}); {CACHE_REMEDY}") from exc
    data = build()
    mio.save_torch(path, {"images": data.images, "labels": data.labels, "classes": data.classes,
                          "name": data.name, "key": key})
    return data


def _file_digest(path: str) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"{os.path.getsize(path)}:{h.hexdigest()}"


def content_key(files: list[str], base=None, workers: int | None = None) -> str:
    """A fingerprint of the files' content: their paths (relative to ``base``), sizes and SHA-1s.

    The decoded cache is keyed by it, so a file replaced by another (whatever its modification
    time) rebuilds the cache. Reading the files costs a fraction of decoding them."""
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        digests = list(pool.map(_file_digest, files, chunksize=256))
    h = hashlib.sha1()
    for f, d in zip(files, digests):
        h.update(f"{os.path.relpath(f, base) if base is not None else f}|{d}\n".encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# loading a split

def _folder_split(classes: list[str], samples: list[tuple[str, int]], size: int | None, name: str) -> ImageData:
    files = [p for p, _ in samples]
    labels = torch.tensor([c for _, c in samples], dtype=torch.int64)
    return ImageData(decode_files(files, size), labels, list(classes), name)


def _check_split(split: str) -> None:
    check_choice(split, "split", SPLITS)


def _is_folder_tree(root: Path) -> bool:
    return (root / "train").is_dir() and (root / "test").is_dir()


def load_imagefolder(split: str, root, image_size: int | None = None, cache: bool = True) -> ImageData:
    """An ImageFolder tree ``root/{train,test}/<class>/*.jpg`` as uint8 tensors (cached)."""
    _check_split(split)
    root = Path(root).expanduser()
    if not _is_folder_tree(root):
        raise FileNotFoundError(
            f"data_root: {root} is not an ImageFolder tree with train/ and test/ sub-folders "
            f"(expected {root}/train/<class>/<image> and {root}/test/<class>/<image>)")
    classes, samples = folder_samples(root, split)
    build = lambda: _folder_split(classes, samples, image_size, root.name)  # noqa: E731
    if not cache:
        return build()
    key = content_key([p for p, _ in samples], root)
    return _cached(f"folder|{root.resolve()}|{split}|{image_size}|{'|'.join(classes)}|{key}", build)


def load_cifar10(split: str, root=None, download: bool = True, cache: bool = True,
                 image_size: int | None = None, timeout: float = DOWNLOAD_TIMEOUT) -> ImageData:
    """CIFAR-10: an ImageFolder copy when ``root`` holds ``train/`` and ``test/``, else torchvision's.

    With ``root=None`` the shared JPEG copy next to the repository is used when present, then
    ``data/``. torchvision's loader downloads the archive when it is missing, waiting at most
    ``timeout`` seconds for the server at each step; offline (or behind a silent proxy) that fails
    with an error saying how to point the package at a local copy. A ``root`` that does not exist
    is refused (no folder is created that the user did not ask for).
    """
    _check_split(split)
    check_positive(timeout, "timeout")
    if root is not None and not Path(root).expanduser().is_dir():
        raise FileNotFoundError(
            f"data_root: {root} does not exist or is not a folder (nothing was created); pass a folder with "
            "train/ and test/ ImageFolder trees (e.g. --data-root ../shared/data/cifar10-jpeg) or one holding "
            "torchvision's cifar-10-batches-py")
    if root is None:
        root = SHARED_CIFAR if _is_folder_tree(SHARED_CIFAR) else data_home()
    root = Path(root).expanduser()
    if _is_folder_tree(root):
        data = load_imagefolder(split, root, image_size=image_size, cache=cache)
        data.name = "cifar10"
        return data
    made = [p for p in (root, *root.parents) if not p.exists()]  # what torchvision would create
    try:
        with _socket_timeout(timeout):
            ds = tvd.CIFAR10(str(root), train=(split == "train"), download=download)
    except Exception as exc:  # URLError, socket errors and timeouts, checksum errors...
        for folder in made:  # leave no empty folder behind (torchvision creates them before downloading)
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise RuntimeError(
            f"cifar10: could not load or download CIFAR-10 into {root} ({type(exc).__name__}: {exc}). "
            "Without internet access, point the package at a local copy: either put torchvision's "
            f"'cifar-10-batches-py' folder (or cifar-10-python.tar.gz) in {root}, or pass "
            "data_root=<folder with train/ and test/ ImageFolder trees>, e.g. "
            "--data-root ../shared/data/cifar10-jpeg") from exc
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    if image_size is not None and images.shape[-1] != image_size:
        images = v2.functional.resize(images, [image_size, image_size], antialias=True)
    return ImageData(images, torch.tensor(ds.targets, dtype=torch.int64), list(ds.classes), "cifar10")


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    """torchvision's downloads (urllib) open sockets without a timeout: bound them for a block."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


# ---------------------------------------------------------------------------------------------
# ImageNet-100 (section 4.2)

def imagenet100_split(train_root, num_classes: int = 100, test_fraction: float = 0.1,
                      seed: int = 0) -> dict[str, list[tuple[str, int]]]:
    """The paper's ImageNet-100 protocol as file lists (section 4.2).

    ``num_classes`` classes of ``train_root`` (an ImageNet ``train/`` folder of class folders) are
    chosen at random with ``seed``; in each, ``test_fraction`` of the images (rounded, at least 1)
    are held out as the test split. Returns ``{"train": [(path, label)], "test": [...], "classes": [...]}``.
    """
    root = Path(train_root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data_root: ImageNet train folder {root} does not exist")
    all_classes = class_folders(root)
    if len(all_classes) < num_classes:
        raise ValueError(f"num_classes: {root} has {len(all_classes)} class folders, fewer than {num_classes}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: must lie in (0, 1), got {test_fraction}")
    rng = random.Random(seed)
    classes = sorted(rng.sample(all_classes, num_classes))
    out: dict = {"train": [], "test": [], "classes": classes}
    seen: set = set()
    for label, cname in enumerate(classes):
        files = sorted(image_files(root / cname, root, seen))
        rng.shuffle(files)
        k = max(1, round(len(files) * test_fraction))
        out["test"] += [(f, label) for f in files[:k]]
        out["train"] += [(f, label) for f in files[k:]]
    return out


def load_imagenet100(split: str, root, image_size: int = 224, seed: int = 0, num_classes: int = 100,
                     cache: bool = True) -> ImageData:
    """ImageNet-100 (section 4.2) held in memory as uint8, images resized to ``image_size``.

    Memory: 100k images at 224 px are about 15 GB of uint8; for that size prefer
    :class:`FileListDataset` with a DataLoader.
    """
    _check_split(split)
    lists = imagenet100_split(root, num_classes=num_classes, seed=seed)
    files, labels = zip(*lists[split]) if lists[split] else ((), ())

    def build():
        return ImageData(decode_files(list(files), image_size), torch.tensor(labels, dtype=torch.int64),
                         lists["classes"], "imagenet100")
    if not cache:
        return build()
    key = f"in100|{Path(root).resolve()}|{split}|{image_size}|{seed}|{num_classes}|{content_key(list(files), root)}"
    return _cached(key, build)


# ---------------------------------------------------------------------------------------------
# streaming: the split stays on disk (decoded batch by batch by batching.StreamBatches)

@dataclass
class FileImageData:
    """A labelled image set left on disk: ``samples`` are ``(path, label)``; the streaming
    counterpart of :class:`ImageData` (same ``labels``, ``classes``, ``subset``), decoded batch
    by batch by :class:`~mtlat_edu.data.batching.StreamBatches` with the same decoder
    (:func:`~mtlat_edu.data.files.decode_image`) as the in-memory path."""

    samples: list[tuple[str, int]]
    classes: list[str]
    name: str = ""
    size: int | None = None  # resize to size x size (None: the files' own size, which must agree)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor([c for _, c in self.samples], dtype=torch.int64)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return self.size if self.size is not None else decode_image(self.samples[0][0], None).shape[-1]

    def decoded_bytes(self) -> int:
        """The size of the split as one uint8 tensor (what the in-memory path would hold)."""
        return len(self) * 3 * self.image_size ** 2

    def subset(self, n: int | None, seed: int = 0) -> "FileImageData":
        """The class-balanced subset :meth:`ImageData.subset` picks (the same images)."""
        if n is None or n >= len(self):
            return self
        check_int(n, "limit", 1, optional=True, what="all images")
        idx = balanced_indices(self.labels, self.num_classes, n, seed)
        return FileImageData([self.samples[i] for i in idx.tolist()], self.classes, self.name, self.size)

    def load(self) -> ImageData:
        """Decode every file into an in-memory :class:`ImageData` (for small subsets)."""
        return ImageData(decode_files([p for p, _ in self.samples], self.size), self.labels, self.classes, self.name)


def file_dataset(name: str, split: str, root=None, image_size: int | None = None) -> FileImageData | None:
    """The split of a folder-based dataset as a :class:`FileImageData` (None for the datasets that
    only exist as tensors: ``synthetic`` and torchvision's CIFAR-10 arrays)."""
    _check_split(split)
    if name == "imagenet100":
        lists = imagenet100_split(_need_root(root))
        return FileImageData(lists[split], lists["classes"], "imagenet100", image_size or 224)
    if name == "cifar10":
        root = Path(root).expanduser() if root is not None else SHARED_CIFAR
        if not _is_folder_tree(root):
            return None
    elif name == "imagefolder":
        root = Path(_need_root(root)).expanduser()
        if not _is_folder_tree(root):
            load_imagefolder(split, root)  # raises the folder-tree error
    else:
        return None
    classes, samples = folder_samples(root, split)
    return FileImageData(samples, classes, "cifar10" if name == "cifar10" else root.name, image_size)


# ---------------------------------------------------------------------------------------------
# the generated dataset (offline smoke runs and tests only)

def make_synthetic(n: int = 2000, seed: int = 0, image_size: int = 32, num_classes: int = 10) -> ImageData:
    """A *generated* 10-class dataset: oriented colour gratings under noise. Not real data.

    Class ``k`` is a sinusoidal grating at angle ``k * pi / num_classes`` tinted with the
    ``k``-th hue; each image gets a random frequency, phase, contrast, brightness and Gaussian
    noise. It is deterministic in ``seed`` and learnable: a small CNN reaches well above chance
    in a few seconds of CPU training.
    """
    if n < num_classes:
        raise ValueError(f"n: must be >= num_classes ({num_classes}), got {n}")
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]
    s = image_size
    yy, xx = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32),
                            indexing="ij")
    theta = labels.float() * math.pi / num_classes
    freq = (2.0 + 2.0 * torch.rand(n, generator=g)) / s * 2 * math.pi
    phase = 2 * math.pi * torch.rand(n, generator=g)
    proj = xx[None] * torch.cos(theta)[:, None, None] + yy[None] * torch.sin(theta)[:, None, None]
    wave = torch.sin(freq[:, None, None] * proj + phase[:, None, None])           # (n, s, s)
    # the hue only loosely follows the class (a jitter of +-0.6 rad), the orientation defines it
    hue = labels.float() / num_classes * 2 * math.pi + 1.2 * (torch.rand(n, generator=g) - 0.5)
    tint = torch.stack([torch.cos(hue + o) for o in (0.0, 2.094, 4.189)], 1) * 0.25 + 0.5  # (n, 3)
    contrast = 0.08 + 0.12 * torch.rand(n, 1, 1, 1, generator=g)
    bright = 0.35 + 0.3 * torch.rand(n, 1, 1, 1, generator=g)
    img = bright * tint[:, :, None, None] * 1.3 + contrast * wave[:, None] * tint[:, :, None, None]
    img = img + 0.22 * torch.randn(n, 3, s, s, generator=g)
    images = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    return ImageData(images, labels.long(), [f"grating_{k}" for k in range(num_classes)], "synthetic")


def load_synthetic(split: str, root=None, n: int | None = None, seed: int = 0, image_size: int = 32) -> ImageData:
    """The generated dataset: 2,000 train / 500 test images by default, disjoint seeds."""
    _check_split(split)
    n = n or (2000 if split == "train" else 500)
    return make_synthetic(n, seed=seed * 2 + (0 if split == "train" else 1), image_size=image_size)


# kind: "real" images, or "generated" ones (not real data: smoke runs and tests only)
DATASETS = Registry("dataset", kinds=("real", "generated"))
DATASETS.add("cifar10", lambda split, root=None, image_size=None: load_cifar10(split, root, image_size=image_size),
             label="CIFAR-10", kind="real", description="CIFAR-10 (torchvision's arrays, or an ImageFolder tree)")
DATASETS.add("imagefolder", lambda split, root=None, image_size=None: load_imagefolder(split, _need_root(root), image_size),
             label="ImageFolder", kind="real", description="any ImageFolder tree with train/ and test/")
DATASETS.add("imagenet100", lambda split, root=None, image_size=None: load_imagenet100(split, _need_root(root), image_size or 224),
             label="ImageNet-100", kind="real", description="the paper's ImageNet-100 protocol (section 4.2)")
DATASETS.add("synthetic", lambda split, root=None, image_size=None: load_synthetic(split, image_size=image_size or 32),
             label="synthetic", kind="generated", description="a small generated dataset (not real data)")


def _need_root(root):
    if root is None:
        raise ValueError("data_root: this dataset needs a folder; pass data_root=... (--data-root)")
    return root


def load_dataset(name: str, split: str, root=None, image_size: int | None = None,
                 limit: int | None = None, seed: int = 0, mode: str = "memory") -> "ImageData | FileImageData":
    """Load a registered dataset split, optionally a class-balanced subset of ``limit`` images.

    ``mode``: ``"memory"`` decodes the split into an :class:`ImageData` (cached); ``"stream"``
    leaves a folder-based split on disk as a :class:`FileImageData` for :class:`StreamBatches`;
    ``"auto"`` streams when the decoded split would exceed :data:`STREAM_BYTES`. Datasets that only
    exist as tensors (``synthetic``, torchvision's CIFAR-10 arrays) are always in memory.
    """
    load = DATASETS.lookup(name)
    _check_split(split)
    check_choice(mode, "data_mode", DATA_MODES)
    check_int(image_size, "image_size", 1, optional=True, what="the dataset's own size")
    check_int(limit, "limit", 1, optional=True, what="all images")
    if mode != "memory":
        files = file_dataset(name, split, root, image_size)
        if files is not None:
            files = files.subset(limit, seed)
            if mode == "stream" or files.decoded_bytes() > STREAM_BYTES:
                return files
    return load(split, root, image_size).subset(limit, seed)
