"""The notebook session: :func:`setup` is what the second cell of every notebook calls.

It turns the notebook's parameters (``profile``, ``device``, ``data_root``, ``runs_root``,
``output_dir``, ``reproduce``) into a :class:`Course` object that loads the profile's data, trains
or reuses the profile's runs, benchmarks them and saves results (atomically, through
:mod:`mtlat_edu.core.io`) under ``output_dir/<notebook>/``.

*Load if present, else train.* A run is taken, in order, from its run folder (finished
``model.pt``), from the models shipped with the package (:mod:`.shipped`: the profile's seed-0
runs, verified by SHA-256; the notebook prints which it used), or trained now. ``reproduce=True``
(``make reproduce``) ignores the shipped models and trains every missing run; so does a course of
several seeds (the claims need every seed's run folders). The papermill runner that executes
the notebooks with the same parameters is :mod:`mtlat_edu.course.runner`.

Relative paths given to :func:`setup` are resolved against *the notebooks' folder*: the current
directory when it holds notebooks (JupyterLab, nbval and papermill with ``cwd`` all start the
kernel there), else the repository's ``notebooks/`` folder. The runner passes absolute paths.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from mtlat_edu.benchmark import evaluate, run_suite
from mtlat_edu.core import checks, io as mio
from mtlat_edu.course import shipped as ship
from mtlat_edu.data import REPO_ROOT
from mtlat_edu.training.checkpoints import read_history
from mtlat_edu.training.config import TrainConfig
from mtlat_edu.training.loop import TrainResult, fit
from mtlat_edu.training.profiles import (PROFILES, SURROGATE, Profile, changes_weights, check_seeds, check_settings,
                                         get_profile, load_profile_data, run_dir, train_seeds)
from mtlat_edu.training.runs import DEFAULT_RUNS, TRACKED

NOTEBOOK_DIR = REPO_ROOT / "notebooks"  # the course's notebooks in a source checkout

# The smoke profile's benchmark in the notebooks uses fewer images than ``mtlat-edu evaluate`` does,
# so that the automatic test of all notebooks stays within a few minutes of CPU.
SMOKE_NOTEBOOK_LIMITS = {"eval_limit": 16, "attack_limit": 8}


def has_record(history: Sequence[dict]) -> bool:
    """Whether a run's history holds its robustness record (its first and last epochs always do)."""
    return bool(history) and "tracked_images" in history[0] and "tracked_images" in history[-1]


# ---------------------------------------------------------------------------------------------
# settings of one notebook

def notebook_dir() -> Path:
    """The folder relative paths are resolved against (see the module docstring)."""
    cwd = Path.cwd()
    if any(cwd.glob("*.ipynb")) or not NOTEBOOK_DIR.is_dir():
        return cwd
    return NOTEBOOK_DIR


def _resolve(path, base: Path) -> Path:
    p = Path(path).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def device_description(device: str) -> str:
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({torch.get_num_threads()} threads, {os.cpu_count()} cores visible)"


@dataclass
class Course:
    """Everything a notebook needs, derived from its parameters by :func:`setup`."""

    profile: Profile
    device: str
    runs_root: Path
    output_dir: Path
    notebook: str = "notebook"
    seed: int = 0
    seeds: tuple[int, ...] = (0,)
    reproduce: bool = False              # True: never use a shipped model, train what is missing
    shipped_root: Path | None = None     # the shipped models' root (None: the package's pretrained/)
    settings: dict = field(default_factory=dict)  # training settings that differ from the profile's (checked)
    _cache: dict = field(default_factory=dict, repr=False)

    # ---- descriptions
    @property
    def eval_limit(self) -> int | None:
        """Images for clean accuracy and corruptions in the notebooks' benchmark (the profile's;
        fewer on ``smoke``, see :data:`SMOKE_NOTEBOOK_LIMITS`)."""
        return self._limit("eval_limit")

    @property
    def attack_limit(self) -> int | None:
        """Images attacked in the notebooks' benchmark (the profile's; fewer on ``smoke``)."""
        return self._limit("attack_limit")

    def _limit(self, name: str) -> int | None:
        value = getattr(self.profile, name)
        if self.profile.name == "smoke":
            return min(value or SMOKE_NOTEBOOK_LIMITS[name], SMOKE_NOTEBOOK_LIMITS[name])
        return value

    @property
    def synthetic(self) -> bool:
        """True when the profile's data is the *generated* smoke set, not real images."""
        return self.profile.dataset == "synthetic"

    def data_warning(self) -> str:
        if self.synthetic:
            return ("NOTE: profile 'smoke' uses a small GENERATED dataset (coloured gratings under noise), "
                    "not real images. It only checks that everything runs; its numbers mean nothing. "
                    "Use profile='cpu' (CIFAR-10) or 'cifar10' (GPU) for real results.")
        return f"data: {self.profile.dataset} (real images)"

    def describe(self) -> str:
        p = self.profile
        lines = [
            f"profile     {p.name}: {p.description}",
            f"dataset     {p.dataset}" + (" (GENERATED, not real data)" if self.synthetic else ""),
            f"model       {p.model}, {p.epochs} epoch(s), batch {p.batch_size}, augmentation {p.augment}",
            f"seeds       {', '.join(map(str, self.seeds))} (one run per method and seed"
            + ("; tables show mean ± std)" if len(self.seeds) > 1 else "; one seed: no spread, claims cannot be judged)"),
            f"limits      train {p.train_limit or 'all'}, test {p.test_limit or 'all'}, benchmark "
            f"{self.eval_limit or 'all'}, attacks {self.attack_limit or 'all'} images"
            + (" (fewer than `mtlat-edu evaluate --profile smoke`, to keep the test short)" if p.name == "smoke" else ""),
            f"device      {device_description(self.device)}",
            "settings    " + (", ".join(f"{k}={v}" for k, v in self.settings.items()) + " (the profile's otherwise)"
                              if self.settings else "the profile's"),
            f"runs        {self.runs_root / p.name}  (trained models, reused when present)",
            "shipped     " + (f"models of {ship.profile_folder(p.name, self.shipped_root)} stand in for missing runs"
                               if self.uses_shipped else f"not used ({self._why_trained()}: every run is trained)"),
            f"results     {self.out_dir}",
        ]
        return "\n".join(lines)

    # ---- results
    @property
    def out_dir(self) -> Path:
        """``output_dir/<notebook>``: where this notebook's results go."""
        return self.output_dir / self.notebook

    def save_json(self, name: str, obj) -> None:
        """Write ``obj`` as JSON (atomically) under this notebook's results folder."""
        print(f"saved {mio.write_json(self.out_dir / name, obj)}")

    def save_text(self, name: str, text: str) -> None:
        print(f"saved {mio.write_text(self.out_dir / name, text)}")

    def save_figure(self, fig, name: str):
        """Save ``fig`` under the results folder and return it (so a cell displays it)."""
        mio.save_figure(self.out_dir / name, fig, dpi=110)
        return fig

    # ---- data
    def data(self, split: str = "test", limit: int | None = None):
        """The profile's ``split`` (a class-balanced subset of ``limit`` images), cached."""
        key = ("data", split, limit)
        if key not in self._cache:
            self._cache[key] = load_profile_data(self.profile, split, limit, seed=self.seed)
        return self._cache[key]

    @property
    def classes(self) -> list[str]:
        return self.data("test", 10 * 2).classes

    def images(self, n: int = 8, split: str = "test", seed: int | None = None):
        """``n`` images of distinct classes where possible: ``(x, y)`` with x float NCHW in [0, 1]."""
        data = self.data(split, max(4 * n, 40))
        g = torch.Generator().manual_seed(self.seed if seed is None else seed)
        order = torch.randperm(len(data), generator=g)
        picked, seen = [], set()
        for i in order.tolist():
            c = int(data.labels[i])
            if c not in seen or len(seen) >= data.num_classes:
                picked.append(i)
                seen.add(c)
            if len(picked) == n:
                break
        idx = torch.tensor(picked)
        return data.float_images(idx), data.labels[idx]

    def _why_trained(self) -> str:
        """Why shipped models do not stand in (:attr:`uses_shipped` is False)."""
        return ("reproduce=True" if self.reproduce else "settings of its own" if changes_weights(self.settings)
                else "several seeds")

    # ---- runs: the run folder, else a shipped model, else train
    @property
    def uses_shipped(self) -> bool:
        """Shipped models stand in for missing runs: not when reproducing, not with several seeds, not
        with settings that change the weights (the shipped models were trained with the profile's)."""
        return not self.reproduce and len(self.seeds) == 1 and not changes_weights(self.settings)

    def shipped_entry(self, name: str, seed: int | None = None, profile: Profile | None = None,
                      group: str = ship.RUNS_GROUP, weights: bool = True) -> dict | None:
        """The shipped entry that stands in for the run ``name`` (None when the run folder has a
        finished model, when nothing is shipped for it, or when shipped models are not used)."""
        prof = profile or self.profile
        seed = self.seeds[0] if seed is None else seed
        if not self.uses_shipped or (run_dir(prof, self.runs_root / ship.GROUPS[group], name, seed) / "model.pt").exists():
            return None
        return ship.find_shipped(prof.name, ship.entry_name(name, group), seed, self.shipped_root, weights)

    def _shipped_result(self, name: str, profile: Profile | None = None, group: str = ship.RUNS_GROUP) -> TrainResult:
        """The shipped run ``name`` (verified and loaded once; the model is None for a history-only
        entry), announced with what it is: ``name: shipped model (seed 0, trained with ...)``."""
        prof = profile or self.profile
        key = ("shipped", prof.name, group, name)
        if key not in self._cache:
            entry_name = ship.entry_name(name, group)
            entry = ship.find_shipped(prof.name, entry_name, root=self.shipped_root, weights=False)
            model = None
            if entry["file"] is not None:
                model, _ = ship.load_shipped(prof.name, entry_name, self.device, self.shipped_root)
            print(f"{entry_name}: {ship.describe(entry)}")
            where = ship.profile_folder(prof.name, self.shipped_root) / (entry["file"] or ship.MANIFEST)
            self._cache[key] = TrainResult(model, entry["history"], where, ship.train_config(entry), entry["test_acc"])
        return self._cache[key]

    def _runs(self, profile: Profile, runs_root: Path, methods, surrogate: bool, group: str = ship.RUNS_GROUP,
              weights: bool = True, progress: bool = False, seeds=None, **overrides) -> dict[int, dict]:
        """``{seed: {name: TrainResult}}``: shipped runs where they stand in, the others trained
        (or reused) by :func:`~mtlat_edu.training.profiles.train_seeds`."""
        seeds = seeds or self.seeds  # checked by setup (Seeds), or by train_seeds when given here
        overrides = {**self.settings, **overrides}  # the course's settings, checked by setup
        methods = tuple(methods or profile.methods)
        names = (*methods, *((SURROGATE,) if surrogate else ()))
        shipped = {n for n in names if self.shipped_entry(n, profile=profile, group=group, weights=weights)}
        todo, need_surrogate = [m for m in methods if m not in shipped], surrogate and SURROGATE not in shipped
        results = {s: {} for s in seeds}
        if todo:
            results = train_seeds(profile, runs_root, methods=todo, surrogate=need_surrogate, seeds=seeds,
                                  device=self.device, progress=progress, **overrides)
        elif need_surrogate:  # train_seeds reads "no methods" as "all of them"
            for s in seeds:
                results[s][SURROGATE] = fit(profile.surrogate_config(device=self.device, seed=s, **overrides),
                                            run_dir(profile, runs_root, SURROGATE, s), progress=progress)
        for n in shipped:
            results[seeds[0]][n] = self._shipped_result(n, profile, group)
        return {s: {n: r[n] for n in names if n in r} for s, r in results.items()}

    def train(self, methods: Sequence[str] | None = None, surrogate: bool = True, progress: bool = True):
        """The first seed's runs ``{name: TrainResult}`` (:meth:`train_all`)."""
        return self.train_all(methods, surrogate, progress)[self.seeds[0]]

    def train_all(self, methods: Sequence[str] | None = None, surrogate: bool = True, progress: bool = True):
        """``{seed: {name: TrainResult}}`` for every seed of the course: a finished run folder is
        reused, else a shipped model stands in (:meth:`shipped_entry`), else the run is trained now."""
        return self._runs(self.profile, self.runs_root, methods, surrogate, progress=progress)

    def train_tracked(self, methods: Sequence[str] | None = None, progress: bool = False) -> dict:
        """The first seed's runs of ``methods`` (default: the profile's ``tracked_methods``) with their
        robustness record (``TrainConfig.track_robustness``, the profile's settings:
        :meth:`~mtlat_edu.training.profiles.Profile.tracking_settings`): ``{method: TrainResult}``.

        The profile's own runs record it while they train (tracking draws from its own generators,
        so the weights are those of a run without it): nothing is trained twice. A run whose history
        has no record (trained before the profile tracked it, or a shipped model) is replaced by a
        tracked copy of the same run: shipped (group ``tracked``, a history-only entry whose model is
        None) when shipped models stand in, else trained into ``<runs_root>/tracked`` (same seed,
        same weights)."""
        methods = tuple(methods or self.profile.tracked_methods)
        if not methods:
            raise ValueError(f"methods: profile {self.profile.name!r} tracks no run (Profile.tracked_methods); "
                             "name the methods to track")
        runs = self.train(methods, surrogate=False, progress=progress)
        out = {m: runs[m] for m in methods if has_record(runs[m].history)}
        if len(out) < len(methods):
            copies = self._runs(self.profile, self.runs_root / TRACKED, [m for m in methods if m not in out], False,
                                TRACKED, weights=False, progress=progress, seeds=self.seeds[:1],
                                **self.profile.tracking_settings())[self.seeds[0]]
            out.update(copies)
        for m in methods:
            records = sum("tracked_images" in h for h in out[m].history)
            print(f"{m}: robustness recorded in {records} of its {len(out[m].history)} epoch(s) ({out[m].out_dir})")
        return {m: out[m] for m in methods}

    def tracked_histories(self, methods: Sequence[str] | None = None, progress: bool = False) -> dict[str, list[dict]]:
        """``{method: the epochs of its history that hold a robustness record}`` (:meth:`train_tracked`)."""
        return {m: [h for h in r.history if "tracked_images" in h]
                for m, r in self.train_tracked(methods, progress).items()}

    def models(self, methods: Sequence[str] | None = None, surrogate: bool = False, progress: bool = False):
        """``{name: model}`` in eval mode, first seed (shipped or trained first if missing)."""
        return {name: res.model.eval() for name, res in self.train(methods, surrogate, progress).items()}

    def config(self, method: str = "mtlat") -> TrainConfig:
        """The training settings of this course's run of ``method`` or of the surrogate (the profile's,
        with the notebook's ``settings``): ``S.config().eps_max`` is the training attack's largest epsilon."""
        kw = {"device": self.device, "seed": self.seeds[0], **self.settings}
        return self.profile.surrogate_config(**kw) if method == SURROGATE else self.profile.train_config(method, **kw)

    def run_dir(self, method: str, seed: int | None = None) -> Path:
        """The run folder of ``method`` (``seed``: the course's first), ``<runs_root>/<profile>/<method>/seed<k>``
        (:func:`~mtlat_edu.training.profiles.run_dir`; notebook 05 looks inside it)."""
        return run_dir(self.profile, self.runs_root, method, self.seeds[0] if seed is None else seed)

    def history(self, name: str, seed: int | None = None, profile: Profile | None = None) -> list[dict]:
        """The per-epoch history of one run: its run folder's, else the shipped one's (``[]``: none)."""
        prof = profile or self.profile
        seed = self.seeds[0] if seed is None else seed
        hist = read_history(run_dir(prof, self.runs_root, name, seed))
        if not hist and self.shipped_entry(name, seed, prof, weights=False):
            hist = self._shipped_result(name, prof).history
        return hist

    def histories(self, names: Sequence[str] | None = None, seed: int | None = None,
                  profile: Profile | None = None) -> dict[str, list[dict]]:
        """``{name: history}`` of one seed (default: the first) of this profile (or ``profile``)."""
        prof = profile or self.profile
        names = list(names or (*prof.methods, SURROGATE))
        return {n: self.history(n, seed, prof) for n in names}

    def clean_accuracy(self, names: Sequence[str] | None = None):
        """Final test accuracy (%) of every run during training (the profile's ``test_limit`` images)
        per seed, with the mean and standard deviation over seeds: a DataFrame, one row per name."""
        import pandas as pd
        names = list(names or (*self.profile.methods, SURROGATE))
        rows = {}
        for n in names:
            accs = {f"seed {k}": 100 * h[-1]["test_acc"] for k in self.seeds if (h := self.history(n, k))}
            values = pd.Series(accs, dtype=float)
            rows[n] = {**accs, "mean": values.mean(), "std": values.std(ddof=1), "seeds": len(values)}
        return pd.DataFrame.from_dict(rows, orient="index")

    def short_profile(self) -> Profile:
        """The under-trained regime notebook 05 contrasts with this profile (itself when it has none)."""
        name = self.profile.short_profile or self.profile.name
        return get_profile(name, data_root=self.profile.data_root)

    def regime_histories(self, methods: Sequence[str] = ("standard", "mixup"), progress: bool = False) -> dict:
        """``{regime label: {method: history}}`` for the short and the converged regime (first seed);
        the short regime's runs are trained when missing (a few minutes on a CPU)."""
        short = self.short_profile()
        if short.name != self.profile.name:
            self._runs(short, self.runs_root, methods, False, weights=False, progress=progress, seeds=self.seeds[:1])
        def label(p: Profile) -> str:
            cfg = p.train_config("standard", **self.settings)  # what the runs were trained with
            return f"{p.name}: {cfg.train_limit or 'all'} images, {cfg.epochs} epochs"
        return {label(short): self.histories(methods, profile=short),
                label(self.profile): self.histories(methods)}

    def run_status(self, name: str, seed: int | None = None) -> str:
        """"finished", "partial (k/E epochs)" or "missing" for the run folder of ``name``."""
        d = self.run_dir(name, seed)
        if (d / "model.pt").exists():
            return "finished"
        if self.shipped_entry(name, seed):
            return "shipped (not trained)"
        hist = read_history(d)
        if hist:
            return f"partial ({hist[-1]['epoch']}/{self.config(name).epochs} epochs)"
        return "missing"

    def plan(self) -> str:
        """The runs of this profile (Tables 1-3 + the surrogate) for every seed, settings and status."""
        p = self.profile
        rows = [f"{'run':<14} {'seed':>4} {'model':<10} {'epochs':>6}  {'status':<22} folder"]
        for seed in self.seeds:
            for name in (*p.methods, SURROGATE):
                cfg = self.config(name)
                rows.append(f"{name:<14} {seed:>4} {cfg.model:<10} {cfg.epochs:>6}  {self.run_status(name, seed):<22} "
                            f"{self.run_dir(name, seed)}")
        return "\n".join(rows)

    # ---- the benchmark (notebooks 06-09)
    @property
    def benchmark_dir(self) -> Path:
        """The benchmark folder shared by notebooks 06-09 (its cache lets each reuse the others' cells)."""
        return self.output_dir / "benchmark"

    def suite_dir(self, seed: int | None = None) -> Path:
        """Where :meth:`benchmark` keeps the suite (and its cache) of one training seed (default: the first)."""
        return self.benchmark_dir / f"seed{self.seeds[0] if seed is None else seed}"

    def benchmark(self, progress: bool = False, **kw):
        """Every run of this profile and of every seed through the benchmark (cells already in the
        cache are reused): an :class:`~mtlat_edu.benchmark.EvaluateResult` with the mean ± std
        tables and the claims verdicts. Trains what is missing first.

        When shipped models stand in for some runs (one seed, not reproducing), the first seed's
        models are benchmarked in memory into :meth:`suite_dir` (sharing the cache of notebooks 06-07)."""
        runs = self.train_all(progress=progress)[self.seeds[0]]
        if any(self.shipped_entry(n) for n in runs):
            models = {n: r.model for n, r in runs.items() if n != SURROGATE}
            return evaluate(models, surrogate=runs[SURROGATE].model if SURROGATE in runs else None,
                            data=self.data("test"), out=self.suite_dir(), device=self.device,
                            eval_limit=self.eval_limit, attack_limit=self.attack_limit, progress=progress, **kw)
        return evaluate(profile=self.profile.name, runs=self.runs_root, out=self.benchmark_dir, device=self.device,
                        data_root=self.profile.data_root, eval_limit=self.eval_limit, attack_limit=self.attack_limit,
                        seeds=self.seeds, progress=progress, **kw)

    def suite(self, models=None, parts=None, surrogate=None, progress: bool = False, **kw):
        """Models through the benchmark's suite on this course's test set, limits and device, kept in
        :meth:`suite_dir` (cells already in its cache are reused): a :class:`~mtlat_edu.benchmark.SuiteResult`.

        ``models``: a ``{name: model}`` dict, or method names of this profile (default: all of them;
        the first seed's runs, trained when missing); ``surrogate``: the VGG surrogate of the
        black-box attacks (a model); ``parts``: the benchmark's columns (default: all)."""
        if not isinstance(models, dict):
            models = self.models(models)
        return run_suite(models, self.data("test"), self.suite_dir(), parts=parts, surrogate=surrogate,
                         eval_limit=self.eval_limit, attack_limit=self.attack_limit, device=self.device,
                         progress=progress, **kw)

    def summary(self) -> dict:
        """The settings of this notebook run, for a results JSON."""
        p = self.profile
        return {"profile": p.name, "dataset": p.dataset, "synthetic_data": self.synthetic, "model": p.model,
                "epochs": self.config().epochs, "train_images": self.config().train_limit, "seeds": list(self.seeds),
                "settings": mio.json_ready(self.settings), "device": self.device,
                "device_description": device_description(self.device),
                "runs_root": str(self.runs_root), "output_dir": str(self.output_dir), "notebook": self.notebook,
                "torch": torch.__version__}


def setup(profile: str = "cpu", device: str = "auto", data_root=None, runs_root=f"../{DEFAULT_RUNS}", output_dir=None,
          notebook: str | None = None, seed: int = 0, verbose: bool = True, seeds=None, reproduce: bool = False,
          shipped_root=None, settings: dict | None = None) -> Course:
    """The derived settings of a notebook (its second cell).

    Args:
        profile: a name of :data:`~mtlat_edu.training.profiles.PROFILES` (smoke / cpu / cifar10 / paper).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        data_root: dataset folder (None: the profile's default; CIFAR-10 is found offline).
        runs_root: root of the run folders (``<runs_root>/<profile>/<method>/seed<k>/``,
            :mod:`mtlat_edu.training.runs`).
        output_dir: results folder (None: ``../output/<profile>``).
        notebook: sub-folder of ``output_dir`` for this notebook's files.
        seed: the notebook's own randomness (example images, ...).
        seeds: training seeds (None: the profile's); one run folder per method and seed.
        reproduce: True trains every missing run from scratch (``make reproduce``); False (default)
            lets the models shipped with the package stand in for missing runs of a one-seed course.
        shipped_root: the shipped models' root (None: the package's ``pretrained/`` folder).
        settings: training settings that differ from the profile's, ``{TrainConfig field: value}``
            (e.g. ``{"eps_max": 0.05}``; the ``train-profile`` / ``reproduce`` options; None or ``{}``:
            the profile's), checked here (:func:`~mtlat_edu.training.profiles.check_settings`). With
            settings, every run is trained (shipped models were trained with the profile's): give
            them their own ``runs_root``.
    """
    if not isinstance(reproduce, bool):
        raise ValueError(f"reproduce: must be True (train every run) or False (use shipped models), got {reproduce!r}")
    PROFILES.check(profile)
    base = notebook_dir()
    prof = get_profile(profile, **({"data_root": str(_resolve(data_root, base))} if data_root else {}))
    out = _resolve(output_dir if output_dir else Path("..") / "output" / profile, base)
    seeds = check_seeds(prof.seeds if seeds is None else seeds)
    device = str(checks.resolve_device(device))  # "auto" -> "cuda" when a GPU is visible, else "cpu"
    course = Course(prof, device, _resolve(runs_root, base), out, notebook or "notebook", seed, seeds, reproduce,
                    None if shipped_root is None else _resolve(shipped_root, base), check_settings(prof, settings, device))
    course.out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if verbose:
        print(course.describe())
        if course.synthetic:
            print("\n" + course.data_warning())
    return course


