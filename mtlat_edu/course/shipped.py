"""Trained models shipped with the package, so that no notebook waits for training.

``mtlat_edu/pretrained/<profile>/`` holds one ``<name>.safetensors`` per shipped run (the weights
only: a format that cannot hold code) and one ``manifest.json`` that describes every entry:

* ``file``, ``sha256``, ``size``: the weights file, checked before a byte of it is parsed
  (``file`` is null for a *history-only* entry: curves a notebook plots without the weights);
* ``method``, ``group``, ``seed``, ``config`` (the run's ``config.json``), ``classes``: enough to
  rebuild the network from :data:`mtlat_edu.models.MODELS` and to say how it was trained;
* ``test_acc``, ``test_images``: the final clean test accuracy during training and its image count;
* ``history``: the per-epoch record of ``history.json`` (learning and robustness curves).

Entry names: the method (or ``vgg_surrogate``) for the profile's own runs (group ``runs``,
``<runs>/<profile>/<method>/seed<k>``), ``tracked-<method>`` for the runs trained with a robustness
record (group ``tracked``, ``<runs>/tracked/<profile>/<method>/seed<k>``, notebook 05).

:func:`ship` (``mtlat-edu ship``) exports finished run folders; :func:`load_shipped` verifies and
loads one entry; :func:`check_folder` verifies a whole folder (sizes, hashes, no unlisted file).
The notebook session (:mod:`.session`) uses a shipped model when the run folder has none.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

from mtlat_edu.core import checks, io as mio
from mtlat_edu.data import load_dataset
from mtlat_edu.models import build_model
from mtlat_edu.paper.methods import METHODS
from mtlat_edu.training.checkpoints import load_checkpoint
from mtlat_edu.training.config import TrainConfig, field_value
from mtlat_edu.training.profiles import SURROGATE, Profile, get_profile, run_dir
from mtlat_edu.training.runs import TRACKED

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"
MANIFEST = "manifest.json"
FORMAT = "mtlat-edu shipped models 1"
SUFFIX = ".safetensors"
# The shipped groups and where their run folders live under the runs root given to ship() (the layout
# of training/runs.py): RUNS_GROUP, the profile's own runs; TRACKED, notebook 05's tracked copies.
RUNS_GROUP = "runs"
GROUPS = {RUNS_GROUP: "", TRACKED: TRACKED}
ENTRY_KEYS = ("file", "sha256", "size", "method", "group", "seed", "config", "classes", "test_acc", "test_images",
              "history")
REMEDY = "re-export it with `mtlat-edu ship` (or restore the file from git)"


class ShippedModelError(mio.CorruptFileError):
    """A shipped model (or its manifest) is not what the manifest promises: refused, nothing read."""


# ---------------------------------------------------------------------------------------------
# names and the manifest

def entry_name(method: str, group: str = RUNS_GROUP) -> str:
    """The manifest name of a run: the method for group ``runs``, ``<group>-<method>`` otherwise."""
    checks.check_choice(group, "group", tuple(GROUPS))
    return method if group == RUNS_GROUP else f"{group}-{method}"


def profile_folder(profile: str, root=None) -> Path:
    """``<root>/<profile>`` (``root``: the package's :data:`PRETRAINED` folder)."""
    return Path(PRETRAINED if root is None else root) / profile


def read_manifest(profile: str, root=None, required: bool = False) -> dict | None:
    """The manifest of ``profile`` (None when there is none and not ``required``), structure checked."""
    path = profile_folder(profile, root) / MANIFEST
    if not path.exists():
        if required:
            raise ShippedModelError(f"{path}: no manifest; shipped models are only read through their manifest; "
                                    f"{REMEDY}")
        return None
    data = mio.read_json(path, remedy=REMEDY)
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries"), dict):
        raise ShippedModelError(f"{path}: not a manifest of mtlat-edu (expected format {FORMAT!r}); {REMEDY}")
    if data.get("profile") != profile:
        raise ShippedModelError(f"{path}: manifest of profile {data.get('profile')!r} in the folder of {profile!r}; "
                                f"{REMEDY}")
    for name, entry in data["entries"].items():
        missing = [k for k in ENTRY_KEYS if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise ShippedModelError(f"{path}: entry {name!r} lacks {', '.join(missing)}; {REMEDY}")
    return data


def find_shipped(profile: str, name: str, seed: int | None = None, root=None, weights: bool = True) -> dict | None:
    """The manifest entry ``name`` of ``profile`` (of training ``seed`` when given; with weights when
    ``weights``), or None. A weights file on disk that the manifest does not list is refused."""
    folder = profile_folder(profile, root)
    manifest = read_manifest(profile, root)
    entry = (manifest or {"entries": {}})["entries"].get(name)
    if entry is None:
        stray = folder / f"{name}{SUFFIX}"
        if stray.exists():
            raise ShippedModelError(f"{stray}: not listed in {folder / MANIFEST}; an unlisted file is never loaded; "
                                    f"{REMEDY}")
        return None
    if (seed is not None and entry["seed"] != seed) or (weights and entry["file"] is None):
        return None
    return entry


def describe(entry: dict) -> str:
    """``shipped model (seed 0, trained with ..., clean acc x % on n images)``: what a notebook prints."""
    cfg = entry["config"]
    images = cfg.get("train_limit") or "all"
    kind = "shipped model" if entry["file"] else "shipped history"
    return (f"{kind} (seed {entry['seed']}, trained with {entry['method']}: {cfg.get('model')}, "
            f"{cfg.get('epochs')} epochs on {images} {cfg.get('dataset')} images; clean acc "
            f"{100 * entry['test_acc']:.1f} % on {entry['test_images']} images)")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# loading

def verified_bytes(profile: str, name: str, root=None) -> tuple[bytes, dict]:
    """The weights file of entry ``name``, read only after its size and then its SHA-256 matched the
    manifest: ``(bytes, entry)``. Every mismatch raises :class:`ShippedModelError` in one line."""
    manifest = read_manifest(profile, root, required=True)
    folder = profile_folder(profile, root)
    entry = manifest["entries"].get(name)
    if entry is None:
        listed = ", ".join(manifest["entries"]) or "none"
        raise ShippedModelError(f"{folder / MANIFEST}: no entry {name!r} (listed: {listed}); {REMEDY}")
    if entry["file"] is None:
        raise ShippedModelError(f"{folder / MANIFEST}: entry {name!r} ships its history only, no weights")
    path = folder / entry["file"]
    if Path(entry["file"]).name != entry["file"] or not entry["file"].endswith(SUFFIX):
        raise ShippedModelError(f"{folder / MANIFEST}: entry {name!r} names {entry['file']!r}, not a "
                                f"{SUFFIX} file of this folder; {REMEDY}")
    if not path.is_file():
        raise ShippedModelError(f"{path}: missing (listed in {MANIFEST}); {REMEDY}")
    size = path.stat().st_size
    if size != entry["size"]:
        raise ShippedModelError(f"{path}: {size} bytes, the manifest says {entry['size']}: refused; {REMEDY}")
    data = path.read_bytes()
    if sha256(data) != entry["sha256"]:
        raise ShippedModelError(f"{path}: SHA-256 differs from the manifest's (changed or damaged): refused; {REMEDY}")
    return data, entry


def load_shipped(profile: str, name: str, device="cpu", root=None):
    """Verify (size, SHA-256) and load the shipped model ``name`` of ``profile``, rebuilt from the
    model registry: ``(model in eval mode, info)`` with the keys of
    :func:`mtlat_edu.training.checkpoints.load_checkpoint`'s info, plus ``shipped`` (the entry) and
    ``description`` (:func:`describe`)."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    data, entry = verified_bytes(profile, name, root)
    path = profile_folder(profile, root) / entry["file"]
    cfg = entry["config"]
    try:
        state = load_safetensors(data)
        model = build_model(cfg["model"], len(entry["classes"]))
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError, ValueError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ShippedModelError(f"{path}: does not fit model {cfg.get('model')!r} ({type(exc).__name__}: {first}); "
                                f"{REMEDY}") from exc
    model.to(device).eval()
    info = {**{k: cfg.get(k) for k in ("method", "model", "dataset", "data_root", "image_size")},
            "num_classes": len(entry["classes"]), "classes": entry["classes"], "config": cfg,
            "history": entry["history"], "test_acc": entry["test_acc"], "path": str(path),
            "shipped": entry, "description": describe(entry)}
    return model, info


def train_config(entry: dict) -> TrainConfig:
    """The :class:`TrainConfig` a shipped entry was trained with (fields this version lacks are dropped)."""
    fields = TrainConfig.__dataclass_fields__
    return TrainConfig(**{k: field_value(v) for k, v in entry["config"].items() if k in fields})


def check_folder(profile: str, root=None) -> list[str]:
    """Every problem of a shipped folder, one line each (``[]``: all verified): an entry whose file is
    missing or differs from the manifest, a weights file the manifest does not list."""
    folder = profile_folder(profile, root)
    try:
        manifest = read_manifest(profile, root, required=True)
    except mio.CorruptFileError as exc:
        return [str(exc)]
    problems, listed = [], set()
    for name, entry in manifest["entries"].items():
        if entry["file"] is None:
            continue
        listed.add(entry["file"])
        try:
            verified_bytes(profile, name, root)
        except ShippedModelError as exc:
            problems.append(str(exc))
    problems += [f"{p}: not listed in {MANIFEST}" for p in sorted(folder.glob(f"*{SUFFIX}")) if p.name not in listed]
    return problems


# ---------------------------------------------------------------------------------------------
# exporting

def export_entry(run_folder, name: str, group: str, history_only: bool = False) -> tuple[dict, bytes | None]:
    """A manifest entry (and the safetensors bytes) of one finished run folder."""
    from safetensors.torch import save as save_safetensors

    run_folder = Path(run_folder)
    if not (run_folder / "model.pt").exists():
        raise FileNotFoundError(f"runs: {run_folder} has no model.pt (the run is missing or unfinished); "
                                "train it first (mtlat-edu train-profile)")
    model, info = load_checkpoint(run_folder / "model.pt")
    cfg = mio.read_json(run_folder / "config.json", remedy="it is written by fit; train the run again") or info["config"]
    test = load_dataset(cfg["dataset"], "test", cfg.get("data_root"), cfg.get("image_size"), cfg.get("test_limit"),
                        cfg.get("seed", 0))
    data = None if history_only else save_safetensors({k: v.detach().cpu().contiguous()
                                                       for k, v in model.state_dict().items()})
    entry = {"file": None if history_only else f"{name}{SUFFIX}",
             "sha256": None if data is None else sha256(data), "size": None if data is None else len(data),
             "method": cfg["method"],
             "group": group, "seed": cfg.get("seed", 0), "config": mio.json_ready(cfg), "classes": info["classes"],
             "test_acc": info["test_acc"], "test_images": len(test), "history": mio.json_ready(info["history"]),
             "source": str(run_folder)}
    return entry, data


def ship(profile: str | Profile, runs, seed: int = 0, methods: Sequence[str] | None = None, surrogate: bool = True,
         group: str = RUNS_GROUP, history_only: bool = False, root=None, log=print) -> dict:
    """Export the finished runs of ``profile``, training ``seed``, from ``runs`` into
    ``<root>/<profile>/``: one ``<name>.safetensors`` each (none with ``history_only``) and their
    entries in ``manifest.json`` (merged with the entries already there; written last, atomically).

    ``group="runs"`` reads ``<runs>/<profile>/<method>/seed<k>`` (``methods``: default the profile's,
    plus the VGG surrogate unless ``surrogate`` is False); ``group="tracked"`` reads
    ``<runs>/tracked/<profile>/<method>/seed<k>`` (notebook 05's runs with a robustness record).
    Returns the manifest written."""
    prof = get_profile(profile) if isinstance(profile, str) else profile
    checks.check_choice(group, "group", tuple(GROUPS))
    checks.check_int(seed, "seed", 0)
    for m in methods or ():
        METHODS.check(m, "methods")
    names = list(methods or prof.methods) + ([SURROGATE] if surrogate and group == RUNS_GROUP else [])
    base = Path(runs) / GROUPS[group]
    folders = {n: run_dir(prof, base, n, seed) for n in names}
    absent = [str(f) for f in folders.values() if not (f / "model.pt").exists()]
    if absent:  # nothing is written unless every run is there
        raise FileNotFoundError(f"runs: no finished model in {', '.join(absent)}; train them first "
                                f"(mtlat-edu train-profile --profile {prof.name} --runs {runs}) or choose --methods")
    folder = profile_folder(prof.name, root)
    manifest = read_manifest(prof.name, root) or {"format": FORMAT, "profile": prof.name, "entries": {}}
    for n, run_folder in folders.items():
        name = entry_name(n, group)
        entry, data = export_entry(run_folder, name, group, history_only)
        if data is not None:
            mio.write_bytes(folder / entry["file"], data)
        elif (folder / f"{name}{SUFFIX}").exists():  # history only now: the old weights would be unlisted
            (folder / f"{name}{SUFFIX}").unlink()
        manifest["entries"][name] = entry
        log(f"shipped {name}: {describe(entry)}" + (f", {entry['size'] / 1e6:.2f} MB" if data else ""))
    mio.write_json(folder / MANIFEST, manifest)
    total = sum(p.stat().st_size for p in folder.glob(f"*{SUFFIX}"))
    log(f"{folder / MANIFEST}: {len(manifest['entries'])} entries, weights {total / 1e6:.1f} MB in all")
    return manifest


def compare_with_runs(profile: str, runs, seed: int = 0, root=None) -> list[str]:
    """One line per shipped entry of group ``runs``: its clean accuracy beside the one the run
    folder of ``runs`` reached (what ``mtlat-edu reproduce`` prints after training from scratch)."""
    manifest = read_manifest(profile, root)
    if manifest is None:
        return [f"{profile}: no shipped models to compare with"]
    prof = get_profile(profile)
    lines = [f"clean accuracy during training (%), {profile}, seed {seed}: trained now vs shipped"]
    for name, entry in manifest["entries"].items():
        if entry["group"] != RUNS_GROUP or entry["seed"] != seed:
            continue
        hist = mio.read_json(run_dir(prof, runs, name, seed) / "history.json", [])
        now = f"{100 * hist[-1]['test_acc']:6.2f}" if hist else "   n/a"
        diff = f"{100 * (hist[-1]['test_acc'] - entry['test_acc']):+6.2f}" if hist else ""
        lines.append(f"  {name:<14} {now}   shipped {100 * entry['test_acc']:6.2f}   {diff}  "
                     f"({entry['test_images']} images)")
    return lines
