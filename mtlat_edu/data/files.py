"""Walking image folders and decoding image files, safely: every reader of the package goes through these.

Files are not trusted (docs/design.md, "Threat model"): every reader walks its folders with
:func:`image_files` (symlinks resolved, refused when they leave the data root, loops and folders
reached twice refused) and decodes with :func:`decode_image` (JPEG and PNG only, recognised by
content; at most :data:`MAX_IMAGE_PIXELS` pixels; an empty, truncated or garbage file is named in
a one-line :class:`ImageFileError`).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2

# JPEG and PNG only, recognised by their content (not their extension); the extensions the walk picks up
IMAGE_FORMATS = ("JPEG", "PNG")
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png")
MAX_IMAGE_PIXELS = 50_000_000  # width x height above which an image is refused before it is decoded


class ImageFileError(ValueError):
    """An image file or folder of a dataset that cannot be used; the one-line message names it."""


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def image_files(folder, root=None, seen: set | None = None, name: str = "data_root") -> list[str]:
    """The JPEG / PNG files (by extension: :data:`IMG_EXTENSIONS`) under ``folder``, recursively, in
    torchvision ImageFolder's order (folders sorted by path, files by name).

    Symlinks are resolved: one whose target is outside ``root`` (default ``folder``) is refused, as
    is a symlink loop, a broken link, and any folder or file reached twice (``seen``, shared by the
    calls of one split, holds the real paths already walked: a link to another class's folder would
    label its images twice). The walk never follows a link it has not checked, so it always ends.
    """
    folder = Path(folder)
    root_real = os.path.realpath(root if root is not None else folder)
    seen = set() if seen is None else seen
    found: list[tuple[str, list[str]]] = []

    def resolve(path: str) -> str:
        try:
            real = os.path.realpath(path, strict=True)
        except OSError as exc:
            what = "a symlink loop" if exc.errno == 40 or "loop" in str(exc).lower() else \
                f"a broken symlink ({exc.strerror or exc})"
            raise ImageFileError(f"{name}: {path} is {what}; remove it") from None
        if not _inside(real, root_real):
            raise ImageFileError(f"{name}: {path} is a symlink to {real}, outside the data root {root_real}; "
                                 "refused (copy the files into the data root, or give a data root that holds them)")
        if real in seen:
            raise ImageFileError(f"{name}: {path} leads to {real}, which was already read (a symlink loop or a "
                                 "second link to the same folder or file); remove the link")
        seen.add(real)
        return real

    resolve(str(folder))
    stack = [str(folder)]
    while stack:
        d = stack.pop()
        files, subdirs = [], []
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            raise ImageFileError(f"{name}: cannot read the folder {d} ({exc.strerror or exc})") from None
        for e in entries:
            if e.is_symlink():
                real = resolve(e.path)
                if os.path.isdir(real):
                    subdirs.append(e.path)
                elif os.path.isfile(real) and e.name.lower().endswith(IMG_EXTENSIONS):
                    files.append(e.path)
            elif e.is_dir(follow_symlinks=False):
                resolve(e.path)
                subdirs.append(e.path)
            elif e.is_file(follow_symlinks=False) and e.name.lower().endswith(IMG_EXTENSIONS):
                resolve(e.path)
                files.append(e.path)
        found.append((d, files))
        stack.extend(reversed(subdirs))
    return [f for _, fs in sorted(found) for f in fs]


def class_folders(split_dir, name: str = "data_root") -> list[str]:
    """The class folders of an ImageFolder split (sorted names of its sub-folders, links included)."""
    split_dir = Path(split_dir)
    try:
        return sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
    except OSError as exc:
        raise ImageFileError(f"{name}: cannot read the folder {split_dir} ({exc.strerror or exc})") from None


def folder_samples(root, split: str, name: str = "data_root") -> tuple[list[str], list[tuple[str, int]]]:
    """``(classes, [(path, label)])`` of ``root/<split>/<class>/...`` as torchvision's ImageFolder
    lists them, walked by :func:`image_files` (nothing outside ``root``, no loop). The class folders
    of ``train/`` and ``test/`` must be the same (the message names both lists)."""
    root = Path(root)
    classes = class_folders(root / split, name)
    other = "test" if split == "train" else "train"
    if (root / other).is_dir():
        theirs = class_folders(root / other, name)
        if theirs != classes:
            tr, te = (classes, theirs) if split == "train" else (theirs, classes)
            raise ImageFileError(f"{name}: the class folders of {root / 'train'} ({_names(tr)}) and of "
                                 f"{root / 'test'} ({_names(te)}) differ; both splits need the same classes")
    if not classes:
        raise ImageFileError(f"{name}: {root / split} has no class folders (expected {root / split}/<class>/<image>)")
    seen: set = set()
    samples = []
    for label, c in enumerate(classes):
        files = image_files(root / split / c, root, seen, name)
        if not files:
            raise ImageFileError(f"{name}: the class folder {root / split / c} holds no JPEG or PNG image")
        samples += [(f, label) for f in files]
    return classes, samples


def _names(classes: list[str]) -> str:
    shown = ", ".join(classes[:6]) + (f", ... ({len(classes)} classes)" if len(classes) > 6 else "")
    return f"{{{shown}}}"


def check_same_classes(train_classes, test_classes, name: str = "test_data") -> None:
    """A test split must have the training split's classes, in the same order (labels are indices)."""
    if list(train_classes) != list(test_classes):
        raise ValueError(f"{name}: its classes {_names(list(test_classes))} differ from the training classes "
                         f"{_names(list(train_classes))}; evaluate on a split with the same classes")


def decode_image(path: str, size: int | None = None) -> torch.Tensor:
    """One image file as a uint8 CHW RGB tensor (resized to ``size`` x ``size``): the one decoder of
    the package. JPEG and PNG only, recognised by their content (a ``.png`` that is something else
    is refused); more than :data:`MAX_IMAGE_PIXELS` pixels is refused before decoding; an empty,
    truncated or garbage file raises :class:`ImageFileError` naming it."""
    # Pillow, not torchvision.io: torchvision 0.29 deprecates its image decoders
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise ImageFileError(f"{path}: image of {w} x {h} pixels, more than the limit of {MAX_IMAGE_PIXELS:,} "
                                     "(mtlat_edu.data.files.MAX_IMAGE_PIXELS); resize it, or raise the limit if you trust it")
            img = v2.functional.pil_to_tensor(im.convert("RGB"))
    except ImageFileError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageFileError(f"{path}: image of more than {MAX_IMAGE_PIXELS:,} pixels (mtlat_edu.data.files.MAX_IMAGE_PIXELS; "
                             f"a decompression bomb for Pillow: {str(exc).split(',')[0]}); resize it") from None
    except UnidentifiedImageError:
        empty = os.path.exists(path) and os.path.getsize(path) == 0
        raise ImageFileError(f"{path}: " + ("an empty file" if empty else "not a JPEG or PNG image (by its content)")
                             + "; remove or replace it (the datasets take JPEG and PNG files only)") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ImageFileError(f"{path}: a truncated or corrupt image ({first}); remove or replace it") from None
    if size is not None and tuple(img.shape[-2:]) != (size, size):
        img = v2.functional.resize(img, [size, size], antialias=True)
    return img


def decode_files(files: list[str], size: int | None = None, workers: int | None = None) -> torch.Tensor:
    """Decode image files (JPEG/PNG) into one uint8 NCHW tensor, resized to ``size`` x ``size``."""
    if not files:
        raise ValueError("files: no image files to decode")
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        imgs = list(pool.map(lambda f: decode_image(f, size), files, chunksize=256))
    shapes = {tuple(i.shape) for i in imgs}
    if len(shapes) != 1:
        raise ValueError(f"images of different sizes {sorted(shapes)[:3]}...: pass image_size to resize them")
    return torch.stack(imgs)

