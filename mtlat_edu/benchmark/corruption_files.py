"""Hendrycks' released corruption files: the accuracy public leaderboards list, beside our R scores.

Our benchmark generates the corruptions afresh (:mod:`mtlat_edu.robustness.corruptions`, section 4.1); public
leaderboards are computed on the files Hendrycks and Dietterich (ICLR 2019) released instead. This
module reads both released layouts and measures, for every model, the accuracy on each corruption
and severity and the mean over the 15 corruptions x 5 severities (the leaderboard figure).

========== =============================================================================================
layout     files (where users get them; nothing is downloaded here)
========== =============================================================================================
CIFAR-10-C ``<root>/<corruption>.npy``: uint8 (5 N, 32, 32, 3), the N test images at severity 1, then
           2, ..., 5; ``<root>/labels.npy``: the integer labels, (5 N,) (or (N,)).
           Zenodo record 2535967 (https://zenodo.org/records/2535967)
ImageNet-C ``<root>/<corruption>/<severity>/<class wnid>/*.JPEG`` (224 x 224 crops of ImageNet's
           validation set). Zenodo record 2235448 (https://zenodo.org/records/2235448)
========== =============================================================================================

The ``.npy`` files are read memory-mapped with ``allow_pickle=False``; JPEGs are decoded as the rest
of the package decodes them (:func:`mtlat_edu.data.decode_files`). ImageNet-C's class folders are
matched to the model's classes by name (an ImageNet-100 model is scored on its 100 classes), CIFAR-10-C's
labels are CIFAR-10's class indices. ``limit`` takes the same class-balanced subset of each set.

Typical use::

    from mtlat_edu.benchmark.corruption_files import corruption_file_accuracy
    res = corruption_file_accuracy({"mtlat": model}, "CIFAR-10-C", classes=CIFAR10_CLASSES)
    res.mean["mtlat"]   # the mean accuracy over 15 corruptions x 5 severities
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mtlat_edu.core import io as mio
from mtlat_edu.core.checks import check_int, resolve_device
from mtlat_edu.robustness.corruptions import IMAGENET_C
from mtlat_edu.robustness.measure import CLEAN, measure_cell
from mtlat_edu.data import CIFAR10_CLASSES, ImageData, balanced_indices, class_folders, decode_files, image_files
from .parts import SEVERITIES
from .report import markdown_grid

CORRUPTIONS: tuple[str, ...] = tuple(IMAGENET_C)  # the 15 of the leaderboards (Hendrycks' file names)
SOURCES = {
    "cifar10c": "CIFAR-10-C: Zenodo record 2535967 (https://zenodo.org/records/2535967), "
                "<corruption>.npy files and labels.npy in one folder",
    "imagenetc": "ImageNet-C: Zenodo record 2235448 (https://zenodo.org/records/2235448), "
                 "<corruption>/<severity>/<class>/*.JPEG",
}
WHERE = f"get them from {SOURCES['cifar10c']}; or {SOURCES['imagenetc']} (nothing is downloaded here)"
FILES_CSV, FILES_JSON, FILES_MD = "corruption_files.csv", "corruption_files.json", "corruption_files.md"


def detect_layout(root) -> str:
    """``"cifar10c"`` (``labels.npy`` and ``<corruption>.npy``) or ``"imagenetc"`` (``<corruption>/1..5/``);
    a clear error naming where the files come from when ``root`` holds neither."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"corruption_files: {root} is not a folder; {WHERE}")
    if any((root / f"{c}.npy").exists() for c in CORRUPTIONS):
        if not (root / "labels.npy").exists():
            raise FileNotFoundError(f"corruption_files: {root} has CIFAR-10-C corruption files but no labels.npy; "
                                    f"{SOURCES['cifar10c']}")
        return "cifar10c"
    if any((root / c).is_dir() for c in CORRUPTIONS):
        return "imagenetc"
    raise FileNotFoundError(f"corruption_files: {root} holds neither CIFAR-10-C (<corruption>.npy + labels.npy) nor "
                            f"ImageNet-C (<corruption>/<severity>/<class>/*.JPEG) files of the 15 corruptions "
                            f"({', '.join(CORRUPTIONS[:3])}, ...); {WHERE}")


def present_corruptions(root, layout: str) -> tuple[str, ...]:
    """The corruptions of the 15 that ``root`` holds, in the leaderboard order."""
    root = Path(root)
    return tuple(c for c in CORRUPTIONS if ((root / f"{c}.npy").exists() if layout == "cifar10c"
                                            else (root / c).is_dir()))


def _malformed(path, what: str, source: str) -> ValueError:
    return ValueError(f"corruption_files: {path} is not a released file ({what}); re-download it: {SOURCES[source]}")


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise _malformed(path, f"unreadable as .npy: {exc}", "cifar10c") from None


def _cifar10c_labels(root: Path) -> np.ndarray:
    labels = _load_npy(root / "labels.npy")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or labels.size == 0:
        raise _malformed(root / "labels.npy", f"expected a 1-d integer array, got {labels.dtype} {labels.shape}",
                         "cifar10c")
    return np.array(labels, dtype=np.int64)  # a copy: torch wants writable memory


def cifar10c_sets(root, corruption: str, severities=SEVERITIES, classes=None, limit: int | None = None,
                  seed: int = 0, image_size: int | None = None):
    """Yield ``(severity, ImageData)`` of one CIFAR-10-C file: severity ``s`` is rows ``(s-1) N`` to ``s N``."""
    root = Path(root)
    path = root / f"{corruption}.npy"
    arr = _load_npy(path)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or arr.shape[0] % 5:
        raise _malformed(path, f"expected uint8 (5 N, H, W, 3), the five severities in order, got {arr.dtype} "
                               f"{arr.shape}", "cifar10c")
    n = arr.shape[0] // 5
    labels = _cifar10c_labels(root)
    if labels.shape[0] not in (n, 5 * n):
        raise _malformed(root / "labels.npy", f"{labels.shape[0]} labels for {corruption}.npy's {arr.shape[0]} images "
                                              f"(expected {5 * n} or {n})", "cifar10c")
    names = list(classes) if classes is not None else list(CIFAR10_CLASSES)
    if labels.min() < 0 or labels.max() >= len(names):
        raise _malformed(root / "labels.npy", f"labels in [{labels.min()}, {labels.max()}] but the model has "
                                              f"{len(names)} classes", "cifar10c")
    for s in severities:
        rows = slice((s - 1) * n, s * n)
        lab = torch.from_numpy(labels[rows] if labels.shape[0] == 5 * n else labels.copy())
        data = ImageData(torch.from_numpy(np.array(arr[rows])).permute(0, 3, 1, 2).contiguous(), lab,
                         names, f"{corruption}-{s}")
        yield s, _resized(data.subset(limit, seed), image_size)


def _resized(data: ImageData, size: int | None) -> ImageData:
    if size is None or data.image_size == size:
        return data
    from torchvision.transforms import v2
    images = v2.functional.resize(data.images, [size, size], antialias=True)
    return ImageData(images, data.labels, data.classes, data.name)


def imagenetc_sets(root, corruption: str, severities=SEVERITIES, classes=None, limit: int | None = None,
                   seed: int = 0, image_size: int | None = None):
    """Yield ``(severity, ImageData)`` of one ImageNet-C corruption folder, its class folders matched
    to ``classes`` by name (folders of other classes left out); without ``classes``, the sorted
    class folders are the classes."""
    top = Path(root)
    root = top / corruption
    for s in severities:
        sdir = root / str(s)
        if not sdir.is_dir():
            raise FileNotFoundError(f"corruption_files: {sdir} is missing (each corruption has the severity folders "
                                    f"1 to 5); {SOURCES['imagenetc']}")
        folders = class_folders(sdir, "corruption_files")
        names = list(classes) if classes is not None else folders
        index = {c: i for i, c in enumerate(names)}
        files, labels, seen = [], [], set()
        for f in folders:
            if f in index:  # walked safely: no link out of the folder, no loop (data.image_files)
                imgs = image_files(sdir / f, top, seen, "corruption_files")
                files += imgs
                labels += [index[f]] * len(imgs)
        if not files:
            raise _malformed(sdir, "no JPEG images in class folders named like the model's classes "
                                   f"({', '.join(names[:3])}, ...)", "imagenetc")
        labels = torch.tensor(labels)
        if limit is not None and limit < len(files):  # choose the subset first, then decode only its files
            rows = balanced_indices(labels, len(names), limit, seed)
            files, labels = [files[i] for i in rows.tolist()], labels[rows]
        yield s, ImageData(decode_files(files, image_size), labels, names, f"{corruption}-{s}")


@dataclass
class CorruptionFilesResult:
    """``long``: one row per model, corruption and severity (``accuracy`` a fraction, ``n_images``);
    ``wide``: accuracy in % per model (rows) and corruption (mean over the severities) plus ``mean``;
    ``mean``: each model's mean accuracy (fraction) over every corruption and severity measured;
    ``complete``: all 15 corruptions x 5 severities were there (the leaderboard figure)."""

    long: pd.DataFrame
    layout: str
    root: str
    severities: tuple[int, ...]
    corruptions: tuple[str, ...]
    mean: dict = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return set(self.corruptions) == set(CORRUPTIONS) and set(self.severities) == set(SEVERITIES)

    @property
    def wide(self) -> pd.DataFrame:
        t = self.long.groupby(["model", "corruption"], sort=False)["accuracy"].mean().unstack("corruption")
        t = 100.0 * t.reindex(index=list(dict.fromkeys(self.long["model"])), columns=list(self.corruptions))
        t["mean"] = [100.0 * self.mean[m] for m in t.index]
        return t


def corruption_file_accuracy(models: Mapping[str, torch.nn.Module], root, *, severities=SEVERITIES, classes=None,
                             limit: int | None = None, seed: int = 0, image_size: int | None = None,
                             batch_size: int = 256, device="cpu", progress: bool = True) -> CorruptionFilesResult:
    """Accuracy of every model on each released corruption set (layout detected from ``root``).

    Args:
        models: ``{row name: model}``; each is evaluated in eval mode (its mode restored after).
        root: the CIFAR-10-C folder or the ImageNet-C folder.
        severities: the severities to measure (the leaderboard figure needs all five).
        classes: the models' class names (CIFAR-10's by default for CIFAR-10-C; ImageNet-C's folders
            are matched to them by name).
        limit: a class-balanced subset of each set (the same images for every corruption of a
            CIFAR-10-C folder); None for every image.
        image_size: resize the images to this size (None: as released).
    """
    if not models:
        raise ValueError("models: give at least one model to evaluate on the corruption files")
    check_int(limit, "limit", 1, optional=True, what="every image")
    check_int(batch_size, "batch_size")
    severities = tuple(sorted(set(severities)))
    if not severities or any(s not in SEVERITIES for s in severities):
        raise ValueError(f"severities: must be among {list(SEVERITIES)}, got {list(severities)}")
    layout = detect_layout(root)
    present = present_corruptions(root, layout)
    missing = [c for c in CORRUPTIONS if c not in present]
    if missing:
        warnings.warn(f"corruption_files: {root} lacks {', '.join(missing)}; the mean is over the "
                      f"{len(present)} present, not the leaderboard's 15 ({SOURCES[layout]})", stacklevel=2)
    if layout == "cifar10c" and classes is not None and len(classes) != len(CIFAR10_CLASSES):
        raise ValueError(f"classes: CIFAR-10-C's labels are CIFAR-10's 10 classes, the model has {len(classes)}")
    dev = resolve_device(device)
    sets = cifar10c_sets if layout == "cifar10c" else imagenetc_sets
    rows = []
    bar = tqdm(total=len(present) * len(severities), desc="corruption files", unit="set", disable=not progress)
    for c in present:
        for s, data in sets(root, c, severities, classes, limit, seed, image_size):
            for name, m in models.items():
                # the benchmark's clean cell (eval mode, sharded under torchrun)
                correct = measure_cell(m, data, CLEAN, batch_size=batch_size, device=dev)
                rows.append({"model": name, "corruption": c, "severity": s,
                             "accuracy": correct / len(data), "n_images": len(data)})
            bar.update(1)
    bar.close()
    long = pd.DataFrame(rows, columns=["model", "corruption", "severity", "accuracy", "n_images"])
    mean = long.groupby("model", sort=False)["accuracy"].mean().to_dict()
    return CorruptionFilesResult(long, layout, str(root), severities, present, mean)


def files_table(results: Mapping[int, CorruptionFilesResult], scores_mean: pd.DataFrame | None = None):
    """The per-model table over training seeds: the leaderboard mean accuracy (mean and std, %), and
    beside it, from our own benchmark (``scores_mean``, the score table), the clean accuracy, the
    files' R (mean accuracy / clean accuracy) and our mean R over the 15 generated corruptions."""
    per_seed = pd.DataFrame({k: pd.Series(r.mean) for k, r in results.items()}) * 100.0
    table = pd.DataFrame(index=per_seed.index)
    table.index.name = "model"
    table["files_mean_acc"] = per_seed.mean(axis=1)
    table["files_mean_acc_std"] = per_seed.std(axis=1, ddof=1) if per_seed.shape[1] > 1 else math.nan
    if scores_mean is not None:
        ours = [c for c in CORRUPTIONS if c in scores_mean.columns]
        clean = scores_mean["clean"].reindex(table.index) if "clean" in scores_mean.columns else math.nan
        table["clean_acc"] = clean
        table["files_R"] = table["files_mean_acc"] / table["clean_acc"]
        table["ours_corruption_R"] = scores_mean[ours].mean(axis=1).reindex(table.index) if ours else math.nan
    return table


def write_corruption_files(results: Mapping[int, CorruptionFilesResult], out_dir,
                           scores_mean: pd.DataFrame | None = None) -> dict:
    """Write ``corruption_files.csv`` (one row per seed, model, corruption, severity), ``.json``
    (everything, with the per-model summary of :func:`files_table`) and ``.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    first = next(iter(results.values()))
    long = pd.concat([r.long.assign(training_seed=k) for k, r in results.items()], ignore_index=True)
    table = files_table(results, scores_mean)
    mio.write_text(out / FILES_CSV, long.to_csv(index=False))
    blob = {"layout": first.layout, "root": first.root, "complete": first.complete,
            "corruptions": list(first.corruptions), "severities": list(first.severities),
            "training_seeds": list(results), "summary": _records(table),
            "per_seed": {str(k): {"mean_accuracy": r.mean, "wide_percent": _records(r.wide)}
                         for k, r in results.items()}}
    mio.write_json(out / FILES_JSON, mio.json_ready(blob))
    what = ("mean over the 15 corruptions x 5 severities (the leaderboard figure)" if first.complete
            else f"mean over the {len(first.corruptions)} corruptions x {len(first.severities)} severities present "
                 "(NOT the leaderboard figure: files missing)")
    wide = pd.concat([r.wide for r in results.values()]).groupby(level=0, sort=False).mean()
    md = [f"# Released corruption files ({first.layout}, {first.root})", "",
          f"Accuracy (%) of each model; `files_mean_acc` is the {what}, averaged over the training seeds "
          f"{', '.join(map(str, results))} (`_std`: their standard deviation). `clean_acc`, `files_R` "
          "(= files_mean_acc / clean_acc) and `ours_corruption_R` (our mean R over the 15 generated "
          "corruptions) set it beside our benchmark.", "",
          _markdown(table, 4), "", "Per corruption (mean over the severities and seeds, %):", "", _markdown(wide, 2), ""]
    mio.write_text(out / FILES_MD, "\n".join(md))
    return {"files_csv": out / FILES_CSV, "files_json": out / FILES_JSON, "files_md": out / FILES_MD}


def _markdown(df: pd.DataFrame, digits: int) -> str:
    rows = [[str(i)] + [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row] for i, row in df.iterrows()]
    return markdown_grid(["model"] + [str(c) for c in df.columns], rows, ["l"] + ["r"] * df.shape[1])


def _records(df: pd.DataFrame) -> dict:
    return {str(i): {str(k): v for k, v in row.items()} for i, row in df.iterrows()}
