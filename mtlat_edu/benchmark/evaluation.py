"""Benchmark trained models and write Tables 1-3: :func:`evaluate` (``mtlat-edu evaluate``, whose
options live in :mod:`mtlat_edu.cli`, and ``S.benchmark()`` in the notebooks).

    mtlat-edu evaluate RUN_FOLDER_OR_MODEL_PT [...] [--surrogate PATH]
    mtlat-edu evaluate --profile smoke [--runs runs]        # every method of runs/smoke + its surrogate
    mtlat-edu evaluate --profile cpu --seeds 0 1 2          # every seed: tables of mean ± std, claims
    mtlat-edu evaluate --profile cpu --methods standard mtlat mtlat_pgd --out results/cpu-future
    mtlat-edu evaluate RUN_FOLDER --corruption-files CIFAR-10-C   # + Hendrycks' released files

With a profile, each training seed is benchmarked on its own (its models and its own surrogate, on
the same test images) into ``<out>/seed<k>/``; ``<out>`` then holds the tables of the mean and
standard deviation over the seeds and ``claims.json``, every claim of the paper judged against
that spread (:mod:`.claims`).

``evaluate`` also takes in-memory models (``{name: model}``) and a test set (``data=``).
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mtlat_edu.benchmark import parts as P
from mtlat_edu.benchmark.claims import check_claims
from mtlat_edu.benchmark.corruption_files import corruption_file_accuracy, detect_layout, write_corruption_files
from mtlat_edu.benchmark.report import table3_markdown, write_tables
from mtlat_edu.benchmark.scores import REFERENCE, aggregate, score_table
from mtlat_edu.benchmark.stats import summary
from mtlat_edu.benchmark.suite import as_model_ref, load_model_ref, run_suite
from mtlat_edu.core import distributed as D
from mtlat_edu.core import io as mio
from mtlat_edu.core.checks import check_int, resolve_device
from mtlat_edu.data import load_dataset
from mtlat_edu.paper.methods import METHODS
from mtlat_edu.training.profiles import SURROGATE, check_seeds, get_profile, load_profile_data, run_dir
from mtlat_edu.training.runs import DEFAULT_RUNS, train_group

CLAIMS_JSON = "claims.json"
LOGIT_SCALE_JSON = "logit_scale.json"

DEFAULT_RESULTS = "results"


@dataclass
class EvaluateResult:
    """What :func:`evaluate` returns.

    ``scores`` is the score table (the mean over the training seeds), ``std`` its standard
    deviation (NaN with one seed), ``per_seed`` the table of every seed, ``suites`` the
    :class:`~mtlat_edu.benchmark.suite.SuiteResult` of every seed (``suite``: the first one),
    ``claims`` the verdicts of :func:`~mtlat_edu.benchmark.claims.check_claims` (paired by seed,
    judged with the evaluation's image counts), ``logit_scale`` each model's mean top-1/top-2 logit
    gap on the clean attack images (:func:`logit_scales`, also ``logit_scale.json``)."""

    suite: object
    scores: object
    markdown: str
    table3_markdown: str
    out_dir: Path
    files: dict
    std: object = None
    per_seed: dict = field(default_factory=dict)
    suites: dict = field(default_factory=dict)
    claims: dict = field(default_factory=dict)
    logit_scale: dict = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return list(self.per_seed)

    @property
    def computed(self) -> int:
        return sum(s.computed for s in self.suites.values())

    @property
    def reused(self) -> int:
        return sum(s.reused for s in self.suites.values())


def logit_scales(per_seed: Mapping[int, Mapping[str, float]]) -> dict:
    """Each model's "logit scale" (the mean gap between its top-1 and top-2 logits on the clean
    attack images, :func:`mtlat_edu.robustness.measure.logit_gap`) per seed and its mean and standard
    deviation over the seeds: ``{"per_seed": {seed: {model: gap}}, "models": {model: {mean, std, n}}}``.
    C&W's success rule asks for a margin of kappa = 50 logits (docs/attacks.md)."""
    models = list(dict.fromkeys(m for gaps in per_seed.values() for m in gaps))
    stats = {m: dict(zip(("mean", "std", "n"), summary([g[m] for g in per_seed.values() if m in g]))) for m in models}
    return {"per_seed": {k: dict(v) for k, v in per_seed.items()}, "models": stats,
            "what": "mean top-1 minus top-2 logit on the clean attack images (CW's kappa is 50)"}


def _unique_name(name: str, path: Path, taken: set[str]) -> str:
    if name not in taken:
        return name
    alt = f"{name} ({(path.parent if path.suffix == '.pt' else path).name})"
    i = 2
    while alt in taken:
        alt, i = f"{name} #{i}", i + 1
    return alt


def collect_models(paths=(), profile: str | None = None, runs=DEFAULT_RUNS, surrogate=None, device="cpu",
                   data_root: str | None = None, seed: int | None = None, methods=None):
    """Load the models to benchmark. Returns ``(refs, surrogate_ref, profile_obj, missing_methods)``.

    ``paths``: run folders / ``model.pt`` files, or a mapping ``{name: model}`` of in-memory models
    (``nn.Module``, :class:`ModelRef` or path; e.g. a notebook session's models, benchmarked without
    reading their files again). With ``profile``, every method (``methods``, default: the profile's) of
    ``<runs>/<profile>/<method>/seed<seed>/model.pt`` that exists (in that order; ``seed``: the
    profile's first when None) and the surrogate of the same seed; methods not trained yet are
    reported in ``missing_methods``.
    """

    refs, taken, missing, prof = [], set(), [], None
    if profile is not None:
        prof = get_profile(profile, **({"data_root": data_root} if data_root else {}))
        for method in (methods or prof.methods):
            folder = run_dir(prof, runs, method, seed)
            if (folder / "model.pt").exists():
                refs.append(load_model_ref(folder, method, device))
                taken.add(method)
            else:
                missing.append(method)
        if surrogate is None and (run_dir(prof, runs, SURROGATE, seed) / "model.pt").exists():
            surrogate = run_dir(prof, runs, SURROGATE, seed)
    if isinstance(paths, Mapping):
        for name, model in paths.items():
            if name in taken:
                raise ValueError(f"models: {name!r} is also one of the profile's runs; give it another name")
            refs.append(as_model_ref(name, model, device))
            taken.add(name)
        paths = ()
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"models: {path} does not exist (expected a run folder with model.pt, "
                                    "or a model.pt file)")
        if path.is_dir() and not (path / "model.pt").exists():
            hint = " (checkpoint.pt only: the run is unfinished, resume it with mtlat-edu train)" \
                if (path / "checkpoint.pt").exists() else ""
            raise FileNotFoundError(f"models: {path} has no model.pt{hint}")
        ref = load_model_ref(path, None, device)
        ref.name = _unique_name(ref.name, path, taken)
        taken.add(ref.name)
        refs.append(ref)
    if not refs:
        where = f" in {Path(runs) / profile}" if profile else ""
        raise FileNotFoundError(f"models: no trained model found{where}; train first "
                                f"(mtlat-edu train ..., or profiles.train_profile) or pass run folders")
    sur = None
    if surrogate is not None and not isinstance(surrogate, (str, Path)):  # an in-memory surrogate
        sur = as_model_ref("surrogate", surrogate, device)
    elif surrogate is not None:
        if not Path(surrogate).exists():
            raise FileNotFoundError(f"surrogate: {surrogate} does not exist (expected a run folder with model.pt "
                                    "or a model.pt file)")
        sur = load_model_ref(surrogate, "surrogate", device)
    return refs, sur, prof, missing


def evaluate(models=(), *, profile: str | None = None, runs=DEFAULT_RUNS, surrogate=None, parts=None,
             eval_limit="profile", attack_limit="profile", severities=P.SEVERITIES, device="auto",
             batch_size: int = 256, seed: int = 0, data_root: str | None = None, out=None,
             reference: str = REFERENCE, fresh: bool = False, progress: bool = True,
             seeds=None, methods=None, corruption_files=None, data=None) -> EvaluateResult:
    """Benchmark trained models (run folders / model.pt files and/or a profile's runs) and write
    every result file into ``out``. ``eval_limit`` / ``attack_limit``: a number of images, None for
    all, or "profile" (the profile's limits with ``profile``, else all). ``seeds``: the training
    seeds of the profile's runs (default: the profile's ``seeds``); each is benchmarked into
    ``<out>/seed<k>/`` and ``out`` gets the mean ± std tables and ``claims.json``. The clean column
    is measured on the whole test set. ``methods`` (with ``profile``): the methods to benchmark
    (default: the profile's). ``corruption_files``: a folder of Hendrycks' released CIFAR-10-C or
    ImageNet-C files; every model is also measured on them (:mod:`.corruption_files`) and
    ``corruption_files.{csv,json,md}`` are written beside the tables (per seed and over the seeds).
    ``models`` may map names to in-memory models (see :func:`collect_models`); ``data``: the test
    set to use (an :class:`~mtlat_edu.data.ImageData`; default: the profile's, else the one the first
    loaded model was trained on) — needed for in-memory models without a profile."""

    P.resolve_parts(parts)  # unknown part names fail before any model is loaded (or --out is created and locked)
    check_int(batch_size, "batch_size")
    check_int(seed, "seed", low=0)
    if methods is not None:
        if profile is None:
            raise ValueError("methods: selects a profile's trained methods; give --profile NAME with --methods")
        for m in methods:
            if m != SURROGATE:
                METHODS.check(m, "methods")
    if corruption_files is not None:
        detect_layout(corruption_files)  # absent or foreign files fail before any model is loaded
    dev = resolve_device(device)
    prof = get_profile(profile, **({"data_root": data_root} if data_root else {})) if profile else None
    if prof is None and seeds is not None:
        raise ValueError("seeds: training seeds select a profile's runs; give --profile NAME with --seeds")
    seeds = check_seeds(prof.seeds if (prof and seeds is None) else (seeds or (0,)))
    if eval_limit == "profile":
        eval_limit = prof.eval_limit if prof else None
    if attack_limit == "profile":
        attack_limit = prof.attack_limit if prof else None
    single = prof is None

    out_root, suites, tables, files_res = None, {}, {}, {}
    with contextlib.ExitStack() as held:  # --out is locked like a run folder (one evaluate at a time)
        for k in seeds:
            refs, sur, _, missing = collect_models(models, profile, runs, surrogate, dev, data_root, seed=k,
                                                   methods=methods)
            if missing:
                warnings.warn(f"models: not trained yet in {Path(runs) / profile} (seed {k}), left out: "
                              f"{', '.join(missing)}", stacklevel=2)
            first = refs[0].info
            if data is None and prof is None and "dataset" not in first:
                raise ValueError("data: in-memory models carry no dataset; pass data= (the test ImageData) or profile=")
            if data is None:
                data = load_profile_data(prof, "test") if prof is not None else load_dataset(
                    first["dataset"], "test", data_root or first["data_root"], first["image_size"])
            if out_root is None:
                out_root = Path(out) if out is not None else Path(DEFAULT_RESULTS) / (
                    prof.name if prof else train_group(first.get("dataset", data.name), first.get("model", "models")))
                if D.is_main():
                    held.enter_context(mio.folder_lock(out_root, "out"))
            for r in [r for r in refs[1:] + ([sur] if sur else []) if r.info and first]:  # loaded ones: one dataset
                for key in ("dataset", "image_size", "num_classes"):
                    if r.info.get(key) != first.get(key):
                        raise ValueError(f"models: {r.name!r} has {key}={r.info.get(key)!r} but {refs[0].name!r} has "
                                         f"{first.get(key)!r}; benchmark models of one dataset together")
            seed_out = out_root if single else out_root / f"seed{k}"
            suites[k] = run_suite({r.name: r for r in refs}, data, seed_out, parts=parts, surrogate=sur,
                                  eval_limit=eval_limit, attack_limit=attack_limit, severities=severities, seed=seed,
                                  batch_size=batch_size, device=dev, progress=progress, fresh=fresh, clean_all=True)
            tables[k] = score_table(suites[k].results)
            if not single:
                write_tables(tables[k], seed_out, reference, suites[k].meta, heatmap=False)
            if corruption_files is not None:
                files_res[k] = corruption_file_accuracy(
                    {r.name: r.model for r in refs}, corruption_files, severities=severities, classes=first.get("classes"),
                    limit=eval_limit, seed=seed, image_size=first.get("image_size"), batch_size=batch_size, device=dev,
                    progress=progress)
                if not single:
                    write_corruption_files({k: files_res[k]}, seed_out, tables[k])

        mean, std = aggregate(tables)
        meta = {**suites[seeds[0]].meta, "training_seeds": list(seeds)}
        files = dict(suites[seeds[0]].files) if single else {}
        row_seeds = {m: [k for k in seeds if m in tables[k].index] for m in mean.index}
        files.update(write_tables(mean, out_root, reference, meta, std=std, seeds=row_seeds))
        profile_info = prof.record() if prof else {"models": [str(m) for m in models]}
        d = suites[seeds[0]].meta["data"]
        images = {"clean_images": d["clean_images"], "eval_images": d["eval_images"],
                  "attack_images": d["attack_images"], "severities": len(tuple(severities))}
        claims = check_claims(tables, profile_info, images)
        files["claims_json"] = mio.write_json(out_root / CLAIMS_JSON, mio.json_ready(claims))
        logit_scale = logit_scales({k: s.meta["logit_gap"] for k, s in suites.items()})
        files["logit_scale_json"] = mio.write_json(out_root / LOGIT_SCALE_JSON, mio.json_ready(logit_scale))
        if files_res:
            files.update(write_corruption_files(files_res, out_root, mean))
        md = (out_root / "tables.md").read_text(encoding="utf-8")
        return EvaluateResult(suites[seeds[0]], mean, md, table3_markdown(mean, std, row_seeds), out_root, files, std=std,
                              per_seed=tables, suites=suites, claims=claims,
                              logit_scale=logit_scale)
