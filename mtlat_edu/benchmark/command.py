"""``mtlat-edu evaluate``: benchmark trained models and write/print Tables 1-3.

    mtlat-edu evaluate RUN_FOLDER_OR_MODEL_PT [...] [--surrogate PATH]
    mtlat-edu evaluate --profile smoke [--runs runs]        # every method of runs/smoke + its surrogate
    mtlat-edu evaluate --profile cpu --seeds 0 1 2          # every seed: tables of mean ± std, claims
    mtlat-edu evaluate --profile cpu --methods standard mtlat mtlat_pgd --out results/cpu-future
    mtlat-edu evaluate RUN_FOLDER --corruption-files CIFAR-10-C   # + Hendrycks' released files

With a profile, each training seed is benchmarked on its own (its models and its own surrogate, on
the same test images) into ``<out>/seed<k>/``; ``<out>`` then holds the tables of the mean and
standard deviation over the seeds and ``claims.json``, every claim of the paper judged against
that spread (:mod:`.claims`).

:func:`evaluate` is the same thing as a Python function (for notebooks).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mtlat_edu.benchmark import parts as P
from mtlat_edu.benchmark.claims import check_claims, claims_lines
from mtlat_edu.benchmark.corruption_files import corruption_file_accuracy, detect_layout, write_corruption_files
from mtlat_edu.benchmark.report import table3_markdown, write_tables
from mtlat_edu.benchmark.scores import REFERENCE, aggregate, score_table
from mtlat_edu.benchmark.suite import as_model_ref, load_model_ref, run_suite
from mtlat_edu.core import io as mio
from mtlat_edu.core.checks import resolve_device
from mtlat_edu.data import load_dataset
from mtlat_edu.paper.methods import METHODS
from mtlat_edu.training.profiles import SURROGATE, check_seeds, get_profile, load_profile_data, run_dir

CLAIMS_JSON = "claims.json"

DEFAULT_RESULTS = "results"


def _limit(text: str):
    if text == "profile":  # the default: the profile's limit (all images without --profile)
        return text
    if text.lower() in ("all", "none"):
        return None
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of images >= 1 or 'all', got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a number of images >= 1 or 'all', got {text!r}")
    return n


def add_evaluate_args(p: argparse.ArgumentParser) -> None:
    """The arguments of ``mtlat-edu evaluate``."""
    p.add_argument("models", nargs="*", metavar="RUN_FOLDER_OR_MODEL_PT",
                   help="trained models: run folders (with model.pt) or model.pt files; one table row each")
    p.add_argument("--profile", default=None,
                   help="evaluate every trained method of <runs>/<profile>/ and use its vgg_surrogate")
    p.add_argument("--runs", default="runs", help="root folder of the profile run folders (with --profile)")
    p.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   help="with --profile: the trained methods to benchmark (default: the profile's, Tables 1-3; "
                        "e.g. standard mtlat mtlat_pgd manifold_mtlat)")
    p.add_argument("--corruption-files", default=None, metavar="DIR",
                   help="also measure every model on Hendrycks' released CIFAR-10-C (<corruption>.npy + labels.npy) "
                        "or ImageNet-C (<corruption>/<severity>/<class>/*.JPEG) files in DIR: per-corruption "
                        "accuracy and the mean over 15 corruptions x 5 severities, written to corruption_files.*")
    p.add_argument("--seeds", nargs="+", type=int, default=None, metavar="K",
                   help="training seeds to benchmark with --profile (default: the profile's seeds); tables show "
                        "mean ± std over them and claims.json judges each claim against that spread")
    p.add_argument("--surrogate", default=None, metavar="PATH",
                   help="model the black-box MI-FGSM attacks are crafted on (the paper: a VGG trained on the "
                        "same data); default with --profile: <runs>/<profile>/vgg_surrogate")
    p.add_argument("--parts", nargs="+", default=["all"], metavar="PART",
                   help="what to measure: groups (all, clean, corruptions, imagenet_c, extra, attacks, white_box, "
                        "black_box) and/or single corruption or attack names (e.g. fog pgd); default: all")
    p.add_argument("--severities", nargs="+", type=int, default=list(P.SEVERITIES), choices=list(P.SEVERITIES),
                   help="corruption severities averaged in the table (default: 1 2 3 4 5)")
    p.add_argument("--eval-limit", type=_limit, default="profile", metavar="N",
                   help="images (class-balanced subset) for clean accuracy and corruptions; 'all' for the whole "
                        "test set (default: the profile's eval_limit, else all)")
    p.add_argument("--attack-limit", type=_limit, default="profile", metavar="N",
                   help="images attacked; 'all' for the whole test set (default: the profile's attack_limit, else all)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0,
                   help="benchmark seed: image subsets, corruption randomness, PGD random starts (not a training seed)")
    p.add_argument("--data-root", default=None, help="dataset folder (default: the one recorded in the checkpoint)")
    p.add_argument("--out", default=None,
                   help=f"output folder (default: {DEFAULT_RESULTS}/<profile> or {DEFAULT_RESULTS}/<dataset>-<model>)")
    p.add_argument("--reference", default=REFERENCE, help="row the +/- marks compare with (default: standard)")
    p.add_argument("--fresh", action="store_true", help="ignore cached results and recompute every cell")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


@dataclass
class EvaluateResult:
    """What :func:`evaluate` returns.

    ``scores`` is the score table (the mean over the training seeds), ``std`` its standard
    deviation (NaN with one seed), ``per_seed`` the table of every seed, ``suites`` the
    :class:`~mtlat_edu.benchmark.suite.SuiteResult` of every seed (``suite``: the first one),
    ``claims`` the verdicts of :func:`~mtlat_edu.benchmark.claims.check_claims`."""

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

    @property
    def seeds(self) -> list[int]:
        return list(self.per_seed)

    @property
    def computed(self) -> int:
        return sum(s.computed for s in self.suites.values())

    @property
    def reused(self) -> int:
        return sum(s.reused for s in self.suites.values())


def _unique_name(name: str, path: Path, taken: set[str]) -> str:
    if name not in taken:
        return name
    alt = f"{name} ({(path.parent if path.suffix == '.pt' else path).name})"
    i = 2
    while alt in taken:
        alt, i = f"{name} #{i}", i + 1
    return alt


def collect_models(paths=(), profile: str | None = None, runs="runs", surrogate=None, device="cpu",
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


def evaluate(models=(), *, profile: str | None = None, runs="runs", surrogate=None, parts=None,
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

    P.resolve_parts(parts)  # unknown part names fail before any model is loaded
    if methods is not None:
        if profile is None:
            raise ValueError("methods: selects a profile's trained methods; give --profile NAME with --methods")
        for m in methods:
            if m != "vgg_surrogate":
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
                prof.name if prof else f"{first.get('dataset', data.name)}-{first.get('model', 'models')}")
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
    files.update(write_tables(mean, out_root, reference, meta, std=std, seeds=list(seeds)))
    profile_info = dataclasses.asdict(prof) if prof else {"models": [str(m) for m in models]}
    claims = check_claims(tables, profile_info)
    files["claims_json"] = mio.write_json(out_root / CLAIMS_JSON, mio.json_ready(claims))
    if files_res:
        files.update(write_corruption_files(files_res, out_root, mean))
    md = (out_root / "tables.md").read_text(encoding="utf-8")
    return EvaluateResult(suites[seeds[0]], mean, md, table3_markdown(mean, std), out_root, files, std=std,
                          per_seed=tables, suites=suites, claims=claims)


def run_evaluate(args: argparse.Namespace) -> int:
    """The body of ``mtlat-edu evaluate``: run, print the tables and where the files are."""
    if not args.models and args.profile is None:
        raise ValueError("models: give run folders / model.pt files, or --profile NAME (with --runs)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = evaluate(args.models, profile=args.profile, runs=args.runs, surrogate=args.surrogate, seeds=args.seeds,
                       parts=args.parts, eval_limit=args.eval_limit, attack_limit=args.attack_limit,
                       severities=tuple(sorted(set(args.severities))), device=args.device,
                       batch_size=args.batch_size, seed=args.seed, data_root=args.data_root, out=args.out,
                       reference=args.reference, fresh=args.fresh, progress=not args.no_progress,
                       methods=args.methods, corruption_files=args.corruption_files)
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"mtlat-edu: warning: {w.message}", file=sys.stderr)
    print()
    print(res.markdown)
    print("## Table 3: clean accuracy (%)\n")
    print(res.table3_markdown)
    print()
    print("\n".join(claims_lines(res.claims)))
    if "files_md" in res.files:
        print()
        print(Path(res.files["files_md"]).read_text(encoding="utf-8"))
    seconds = sum(s.meta["seconds"] for s in res.suites.values())
    print(f"\n{res.computed} cells computed, {res.reused} reused from the cache ({seconds:.1f} s).")
    print(f"Files in {res.out_dir}:")
    for what, path in res.files.items():
        print(f"  {what:<13} {path}")
    return 0
