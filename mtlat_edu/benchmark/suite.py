"""The suite runner: every model on the clean test set, each corruption x severity and each attack.

* **Shared perturbed sets.** The corrupted images of one (corruption, severity) are generated once,
  batch by batch, from a generator seeded by ``(seed, corruption, severity)``, and every model is
  evaluated on the very same batch, as the paper evaluates every model on one corrupted test set.
  The black-box attacks (MI-FGSM) are crafted once on the surrogate and shared the same way. The
  white-box attacks (PGD, PGD_LL, CW_2) are computed on each model (PGD's random start seeded by
  ``(seed, attack)``).
* **Image sets.** Corruptions use a class-balanced subset of ``eval_limit`` images, attacks one of
  ``attack_limit`` images (``ImageData.subset(n, seed)``); the clean accuracy is measured on each
  set, so R always divides by the clean accuracy of the same images.
* **Cache and resume.** Every measured cell is stored in ``<out_dir>/cache.json`` (rewritten
  atomically after each perturbation) under a key made of the model's weights hash, the image
  set's hash, the perturbation, the severity, the number of images, the seed, the batch size
  (random corruptions draw batch by batch) and, for black-box attacks, the surrogate's weights
  hash. A re-run computes only the missing cells, so an interrupted run resumes. A cached entry is
  reused only when it repeats every setting of its key (weights hash, image-set hash, perturbation,
  severity, number of images, seed, batch size, surrogate hash) and its counts agree
  (``0 <= correct <= n_images``, ``accuracy == correct / n_images``); any other entry (edited,
  forged, of an older format) is recomputed and replaced, and a warning says how many.
* **Evaluation** runs in float32 in eval mode (no autocast), batched on ``device``, through
  :func:`mtlat_edu.robustness.measure.measure_models`, the one measuring code of the package.
* **Per-batch randomness, sharded evaluation.** The random draws of batch ``b`` of a cell (a
  random corruption's noise, PGD's random start) come from a generator seeded by ``(seed,
  perturbation, severity, b)``, so a batch's result does not depend on which process measures it.
  Under ``torchrun`` batch ``b`` of every cell goes to rank ``b % N`` and the counts are summed
  (:mod:`mtlat_edu.core.distributed`): the tables equal a single process's on the same images. Rank 0
  alone reads and writes the cache and the result files.
"""
from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mtlat_edu.core import distributed as D
from mtlat_edu.core import io as mio
from mtlat_edu.core.checks import check_int, resolve_device
from mtlat_edu.data import ImageData, check_same_classes
from mtlat_edu.robustness import attacks as A
from mtlat_edu.robustness.measure import logit_gap, measure_attack_columns, measure_models
from mtlat_edu.training.checkpoints import load_checkpoint
from . import parts as P
from .scores import add_robustness

CACHE_FILE = "cache.json"
CACHE_VERSION = 3  # 3: entries repeat their key's settings (verified); 2: per-batch random streams
RESULTS_CSV, RESULTS_JSON, META_JSON = "results_long.csv", "results_long.json", "meta.json"


# ---------------------------------------------------------------------------------------------
# models and identities


def weights_identity(model: torch.nn.Module) -> str:
    """A SHA-1 of the model's state dict (names, dtypes, shapes and values): the cache's model key.

    It does not depend on where the checkpoint lives, so moved or copied run folders keep their
    cached results, and retrained weights never reuse stale ones.
    """
    h = hashlib.sha1()
    for name, t in getattr(model, "_orig_mod", model).state_dict().items():
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def data_identity(data: ImageData) -> str:
    """A SHA-1 of an image set (pixels, labels, class names)."""
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(data.images.cpu().numpy()))
    h.update(np.ascontiguousarray(data.labels.cpu().numpy()))
    h.update("|".join(data.classes).encode())
    return h.hexdigest()


@dataclass
class ModelRef:
    """A model to benchmark: its row name, the module (on the device; every measurement runs it in
    eval mode and restores its modes, :mod:`mtlat_edu.robustness.measure`), its weights hash, and
    where it came from (``info`` of :func:`mtlat_edu.training.checkpoints.load_checkpoint` when loaded)."""

    name: str
    model: torch.nn.Module
    identity: str
    info: dict = field(default_factory=dict)


def load_model_ref(path, name: str | None = None, device="cpu") -> ModelRef:
    """Load ``model.pt`` (or a run folder) as a :class:`ModelRef` named ``name`` (default: its method)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"model: {p} does not exist (expected a run folder with model.pt, or a model.pt)")
    model, info = load_checkpoint(p, device=device)
    return ModelRef(name or info["method"], model, weights_identity(model), info)


def as_model_ref(name: str, model, device) -> ModelRef:
    """A :class:`ModelRef` from a ModelRef, an ``nn.Module`` or a checkpoint path."""
    if isinstance(model, ModelRef):
        model.model.to(device)
        return ModelRef(name, model.model, model.identity, model.info)
    if isinstance(model, torch.nn.Module):
        model.to(device)
        return ModelRef(name, model, weights_identity(model), {})
    if isinstance(model, (str, Path)):
        return load_model_ref(model, name, device)
    raise ValueError(f"models: {name!r} must be an nn.Module, a ModelRef or a checkpoint path, "
                     f"got {type(model).__name__}")


# ---------------------------------------------------------------------------------------------
# the cache


class ResultCache:
    """Measured cells, keyed by what determines them; persisted atomically in ``path`` (or in memory)."""

    KEY_FIELDS = ("model_id", "data_id", "perturbation", "severity", "n_images", "seed", "batch_size", "source_id")

    def __init__(self, path=None, fresh: bool = False):
        self.path = Path(path) if path is not None else None
        self.entries: dict[str, dict] = {}
        self.rejected: set[str] = set()  # keys whose entry failed verification (recomputed)
        if self.path is not None and self.path.exists() and not fresh:
            try:
                blob = mio.read_json(self.path)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                warnings.warn(f"cache: {self.path} is unreadable ({exc}); starting a new cache", stacklevel=2)
                blob = None
            if isinstance(blob, dict) and blob.get("version") == CACHE_VERSION:
                self.entries = dict(blob.get("entries", {}))

    @staticmethod
    def key(model_id: str, data_id: str, perturbation: str, severity: int, n_images: int, seed: int,
            batch_size: int, source_id: str = "") -> str:
        return json.dumps([model_id, data_id, perturbation, int(severity), int(n_images), int(seed),
                           int(batch_size), source_id])

    def get(self, key: str) -> dict | None:
        """The entry of ``key`` if it verifies (:meth:`verified`), else None (to be recomputed)."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        if not self.verified(key, entry):
            self.rejected.add(key)
            return None
        return entry

    @classmethod
    def verified(cls, key: str, entry) -> bool:
        """``entry`` repeats every setting of ``key`` and its counts are consistent."""
        try:
            settings = json.loads(key)
            if not isinstance(entry, dict) or [entry.get(f) for f in cls.KEY_FIELDS] != settings:
                return False
            n, correct = entry["n_images"], entry["correct"]
            ok_int = all(isinstance(v, int) and not isinstance(v, bool) for v in (n, correct))
            return ok_int and 0 <= correct <= n and n > 0 and entry.get("accuracy") == correct / n
        except (ValueError, TypeError, KeyError):
            return False

    def put(self, key: str, entry: dict) -> None:
        self.entries[key] = entry

    def save(self) -> None:
        if self.path is not None:
            mio.write_json(self.path, {"version": CACHE_VERSION, "entries": self.entries})


# ---------------------------------------------------------------------------------------------
# measuring


@dataclass
class _Cell:
    perturbation: str
    severity: int
    data: ImageData
    data_id: str
    black_box: bool = False


@dataclass
class SuiteResult:
    """What :func:`run_suite` returns: the long results (with ``clean_accuracy`` and ``robustness``),
    how many model-cells were computed and reused, what was skipped, and the files written."""

    results: pd.DataFrame
    computed: int
    reused: int
    skipped: dict[str, str]
    files: dict[str, Path]
    meta: dict


def _check_models(refs: list[ModelRef], data: ImageData, surrogate: ModelRef | None) -> None:
    names = [r.name for r in refs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"models: duplicate row name(s) {', '.join(dupes)}; give every model its own name")
    for r in refs + ([surrogate] if surrogate is not None else []):
        n = r.info.get("num_classes")
        if n is not None and n != data.num_classes:
            raise ValueError(f"models: {r.name!r} has {n} classes but the test data has {data.num_classes}")
        if r.info.get("classes"):  # the labels are indices: the same classes in the same order
            check_same_classes(r.info["classes"], data.classes, "data")
        ds = r.info.get("dataset")
        if ds not in (None, "imagefolder") and data.name and ds != data.name:
            warnings.warn(f"models: {r.name!r} was trained on {ds!r} but the test data is {data.name!r}",
                          stacklevel=3)


def run_suite(models: Mapping, data: ImageData, out_dir=None, *, parts=None, surrogate=None,
              eval_limit: int | None = None, attack_limit: int | None = None,
              severities=P.SEVERITIES, seed: int = 0, batch_size: int = 256, device=None,
              progress: bool = True, fresh: bool = False, clean_all: bool = False) -> SuiteResult:
    """Benchmark ``models`` on ``data`` (a test :class:`ImageData`).

    Args:
        models: ``{row name: nn.Module | ModelRef | checkpoint path}`` (rows in this order).
        data: the test set; class-balanced subsets of ``eval_limit`` (clean + corruptions) and
            ``attack_limit`` (attacks) images are drawn with ``seed`` (None: all images).
        out_dir: folder for ``cache.json``, ``results_long.csv/json`` and ``meta.json`` (None: in memory).
        parts: None (everything) or group / perturbation names, see :func:`parts.resolve_parts`.
        surrogate: the model the black-box attacks are crafted on (nn.Module, ModelRef or path);
            without one, black-box attacks are skipped with a warning (an error if named explicitly).
        severities: corruption severities to evaluate (1..5).
        seed: subsets, corruption randomness and PGD random starts.
        batch_size: images per batch (corruption, attack and evaluation).
        device: "cpu", "cuda", ... (None or "auto": CUDA when available).
        progress: a tqdm.auto bar over the model-cells.
        fresh: ignore the cache and recompute everything (the cache file is then overwritten).
        clean_all: also measure the clean accuracy on every image of ``data`` (the table's clean
            column then shows it; R still divides by the clean accuracy of its own image set).
    """
    t0 = time.perf_counter()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: must be an integer >= 1, got {batch_size!r}")
    for name, lim in (("eval_limit", eval_limit), ("attack_limit", attack_limit)):
        if lim is not None and (isinstance(lim, bool) or not isinstance(lim, int) or lim < 1):
            raise ValueError(f"{name}: must be an integer >= 1 or None (all images), got {lim!r}")
    check_int(seed, "seed", low=0)
    severities = tuple(severities)
    bad = [s for s in severities if s not in P.SEVERITIES]
    if bad or not severities:
        raise ValueError(f"severities: must be a non-empty selection of {P.SEVERITIES}, got {severities!r}")
    if not isinstance(data, ImageData):
        raise ValueError(f"data: expected an ImageData, got {type(data).__name__}")
    if not models:
        raise ValueError("models: no model to evaluate")

    dev = resolve_device(device)
    refs = [as_model_ref(str(name), m, dev) for name, m in models.items()]
    sur = as_model_ref("surrogate", surrogate, dev) if surrogate is not None else None
    _check_models(refs, data, sur)
    sel = P.resolve_parts(parts, have_surrogate=sur is not None)

    eval_set = data.subset(eval_limit, seed).to(dev)
    attack_set = data.subset(attack_limit, seed).to(dev) if sel.attacks else None
    eval_id = data_identity(eval_set)
    attack_id = data_identity(attack_set) if attack_set is not None else None

    cells: list[_Cell] = [_Cell(P.CLEAN, 0, eval_set, eval_id)]
    if clean_all and len(data) > len(eval_set):
        full = data.to(dev)
        cells.append(_Cell(P.CLEAN, 0, full, data_identity(full)))
    if attack_set is not None and attack_id != eval_id:
        cells.append(_Cell(P.CLEAN, 0, attack_set, attack_id))
    cells += [_Cell(c, s, eval_set, eval_id) for c in sel.corruptions for s in severities]
    cells += [_Cell(a, 0, attack_set, attack_id, P.is_black_box(a)) for a in sel.attacks]

    cache = ResultCache(Path(out_dir) / CACHE_FILE if out_dir is not None and D.is_main() else None, fresh=fresh)
    cache.entries = D.broadcast_object(cache.entries)  # every rank measures the cells rank 0 is missing

    def key(ref: ModelRef, cell: _Cell) -> str:
        source = sur.identity if cell.black_box else ""
        return cache.key(ref.identity, cell.data_id, cell.perturbation, cell.severity, len(cell.data),
                         seed, batch_size, source)

    n_total = len(cells) * len(refs)
    n_missing = sum(cache.get(key(r, cell)) is None for cell in cells for r in refs)
    if cache.rejected:
        warnings.warn(f"cache: {len(cache.rejected)} entries of {cache.path or 'the cache'} could not be verified "
                      "(edited, forged or of another format); recomputing them", stacklevel=2)
    bar = tqdm(total=n_total, initial=n_total - n_missing, desc="benchmark", unit="cell",
               disable=not (progress and D.is_main()))
    computed = 0
    try:
        for group in _groups(cells):  # the white-box columns of one attack's run are measured together
            missing = [r for r in refs if any(cache.get(key(r, cell)) is None for cell in group)]
            if not missing:
                continue
            head = group[0]
            bar.set_postfix_str(", ".join(c.perturbation for c in group) + (f" s{head.severity}" if head.severity else ""))
            t_cell = time.perf_counter()
            correct = _measure(group, missing, sur, seed, batch_size, dev)
            seconds = round(time.perf_counter() - t_cell, 3)
            for cell in group:
                for r in missing:
                    n = len(cell.data)
                    c = int(correct[cell.perturbation][r.name])
                    cache.put(key(r, cell), {
                        "model_id": r.identity, "data_id": cell.data_id,
                        "source_id": sur.identity if cell.black_box else "",
                        "model": r.name, "kind": P.kind_of(cell.perturbation),
                        "perturbation": cell.perturbation, "severity": cell.severity, "n_images": n,
                        "correct": c, "accuracy": c / n, "seed": seed,
                        "batch_size": batch_size, "seconds_for_all_models": seconds,
                    })
            cache.save()
            computed += len(missing) * len(group)
            bar.update(len(missing) * len(group))
    finally:
        bar.close()
    logit_gaps = {r.name: logit_gap(r.model, attack_set if attack_set is not None else eval_set,
                                    batch_size=batch_size, device=dev) for r in refs}

    rows = []
    for cell in cells:
        for r in refs:
            e = cache.get(key(r, cell))
            rows.append({"model": r.name, "kind": P.kind_of(cell.perturbation), "perturbation": cell.perturbation,
                         "severity": cell.severity, "accuracy": e["accuracy"], "n_images": e["n_images"],
                         "correct": e["correct"], "model_id": r.identity})
    results = add_robustness(pd.DataFrame(rows))

    meta = {
        "models": {r.name: {"identity": r.identity, "path": r.info.get("path"), "method": r.info.get("method"),
                            "architecture": r.info.get("model"), "dataset": r.info.get("dataset")} for r in refs},
        "surrogate": None if sur is None else {"identity": sur.identity, "path": sur.info.get("path"),
                                               "architecture": sur.info.get("model")},
        "data": {"name": data.name, "num_classes": data.num_classes, "image_size": data.image_size,
                 "test_images": len(data), "eval_images": len(eval_set),
                 "clean_images": max(len(data) if clean_all else 0, len(eval_set)),
                 "attack_images": None if attack_set is None else len(attack_set)},
        "eval_limit": eval_limit, "attack_limit": attack_limit, "severities": list(severities), "seed": seed,
        "batch_size": batch_size, "device": str(dev), "parts": list(parts) if parts is not None else ["all"],
        "perturbations": list(sel.perturbations), "skipped": dict(sel.skipped),
        "computed_cells": computed, "reused_cells": n_total - computed,
        "logit_gap": logit_gaps,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    files: dict[str, Path] = {}
    if out_dir is not None and D.is_main():
        out = Path(out_dir)
        files["cache"] = out / CACHE_FILE
        cache.save()
        files["results_csv"] = mio.write_text(out / RESULTS_CSV, results.to_csv(index=False))
        files["results_json"] = mio.write_json(out / RESULTS_JSON, _records(results))
        files["meta"] = mio.write_json(out / META_JSON, meta)
    return SuiteResult(results, computed, n_total - computed, dict(sel.skipped), files, meta)


def _records(df: pd.DataFrame) -> list[dict]:
    """JSON-ready rows (NaN -> None, numpy scalars -> Python)."""
    return json.loads(df.to_json(orient="records"))


def _groups(cells: list[_Cell]) -> list[list[_Cell]]:
    """The cells in order, the white-box attack columns of one attack's run (an attack and its
    readings, :func:`mtlat_edu.robustness.attacks.family`) gathered into one group."""
    groups: list[list[_Cell]] = []
    where: dict[str, list[_Cell]] = {}
    for cell in cells:
        white = cell.perturbation in A.ATTACKS and not cell.black_box
        if white and A.family(cell.perturbation) in where:
            where[A.family(cell.perturbation)].append(cell)
            continue
        groups.append([cell])
        if white:
            where[A.family(cell.perturbation)] = groups[-1]
    return groups


def _measure(group: list[_Cell], models: list[ModelRef], surrogate: ModelRef | None, seed: int,
             batch_size: int, device: torch.device) -> dict[str, dict[str, int]]:
    """``{perturbation: {model: correct}}`` of one group of cells, the perturbed batches shared by
    all models (:func:`mtlat_edu.robustness.measure.measure_models`; sharded under torchrun); the
    white-box columns of one attack's run from one run (:func:`~mtlat_edu.robustness.measure.measure_attack_columns`)."""
    cell = group[0]
    if cell.perturbation in A.ATTACKS and not cell.black_box:
        counts = measure_attack_columns([r.model for r in models], cell.data, [c.perturbation for c in group],
                                        seed=seed, batch_size=batch_size, device=device)
    else:
        counts = {cell.perturbation: measure_models(
            [r.model for r in models], cell.data, cell.perturbation, cell.severity, seed=seed, batch_size=batch_size,
            device=device, surrogate=surrogate.model if surrogate is not None else None)}
    return {p: {r.name: c for r, c in zip(models, per)} for p, per in counts.items()}
