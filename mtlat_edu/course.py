"""The course: settings shared by the notebooks and the papermill runner behind ``mtlat-edu reproduce``.

Two halves:

* :func:`setup` is what the second cell of every notebook calls. It turns the notebook's
  parameters (``profile``, ``device``, ``data_root``, ``runs_root``, ``output_dir``) into a
  :class:`Course` object that loads the profile's data, trains or reuses the profile's runs and
  saves results (atomically, through :mod:`mtlat_edu.io`) under ``output_dir/<notebook>/``.
* :func:`run_notebooks` executes the notebooks in order with papermill, passing the same
  parameters, writes the executed copies to ``<out>/notebooks/`` and stops at the first failing
  notebook, printing the failing cell and its error.

Relative paths given to :func:`setup` are resolved against *the notebooks' folder*: the current
directory when it holds notebooks (JupyterLab, nbval and papermill with ``cwd`` all start the
kernel there), else the repository's ``notebooks/`` folder. The runner passes absolute paths.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from . import checks, io as mio
from .profiles import (PROFILES, SURROGATE, TABLE_METHODS, Profile, check_seeds, get_profile, load_profile_data, run_dir,
                       train_seeds)
from .train import read_history

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"

NOTEBOOKS: tuple[str, ...] = (
    "01_introduction.ipynb",
    "02_mixup.ipynb",
    "03_targeted_fgsm.ipynb",
    "04_tlat_and_mtlat.ipynb",
    "05_training.ipynb",
    "06_corruptions.ipynb",
    "07_attacks.ipynb",
    "08_benchmark.ipynb",
    "09_labeling_ablation.ipynb",
    "10_beyond_the_paper.ipynb",
)

KERNEL_NAME = "python3"

# The smoke profile's benchmark in the notebooks uses fewer images than ``mtlat-edu evaluate`` does,
# so that the automatic test of all notebooks stays within a few minutes of CPU.
SMOKE_NOTEBOOK_LIMITS = {"eval_limit": 16, "attack_limit": 8}


# ---------------------------------------------------------------------------------------------
# settings of one notebook

def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``; anything else is checked."""
    return str(checks.resolve_device(device))


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
            f"runs        {self.runs_root / p.name}  (trained models, reused when present)",
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

    # ---- runs
    def train(self, methods: Sequence[str] | None = None, surrogate: bool = True, progress: bool = True):
        """Train what is missing of this profile for every seed of the course (reuse the rest) and
        return ``{name: TrainResult}`` of the first seed (:func:`~mtlat_edu.profiles.train_seeds`)."""
        return self.train_all(methods, surrogate, progress)[self.seeds[0]]

    def train_all(self, methods: Sequence[str] | None = None, surrogate: bool = True, progress: bool = True):
        """``{seed: {name: TrainResult}}`` for every seed of the course (trained when missing)."""
        return train_seeds(self.profile, self.runs_root, methods=methods, surrogate=surrogate, seeds=self.seeds,
                           device=self.device, progress=progress)

    def models(self, methods: Sequence[str] | None = None, surrogate: bool = False, progress: bool = False):
        """``{name: model}`` in eval mode, first seed (trained first if missing)."""
        return {name: res.model.eval() for name, res in self.train(methods, surrogate, progress).items()}

    def run_dir(self, method: str, seed: int | None = None) -> Path:
        return run_dir(self.profile, self.runs_root, method, self.seeds[0] if seed is None else seed)

    def histories(self, names: Sequence[str] | None = None, seed: int | None = None,
                  profile: Profile | None = None) -> dict[str, list[dict]]:
        """``{name: history}`` of one seed (default: the first) of this profile (or ``profile``)."""
        prof = profile or self.profile
        names = list(names or (*prof.methods, SURROGATE))
        seed = self.seeds[0] if seed is None else seed
        return {n: read_history(run_dir(prof, self.runs_root, n, seed)) for n in names}

    def clean_accuracy(self, names: Sequence[str] | None = None):
        """Final test accuracy (%) of every run during training (the profile's ``test_limit`` images)
        per seed, with the mean and standard deviation over seeds: a DataFrame, one row per name."""
        import pandas as pd
        names = list(names or (*self.profile.methods, SURROGATE))
        rows = {}
        for n in names:
            accs = {f"seed {k}": 100 * h[-1]["test_acc"] for k in self.seeds
                    if (h := read_history(self.run_dir(n, k)))}
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
            train_seeds(short, self.runs_root, methods=methods, surrogate=False, seeds=(self.seeds[0],),
                        device=self.device, progress=progress)
        label = lambda p: f"{p.name}: {p.train_limit or 'all'} images, {p.epochs} epochs"  # noqa: E731
        return {label(short): self.histories(methods, profile=short),
                label(self.profile): self.histories(methods)}

    def run_status(self, name: str, seed: int | None = None) -> str:
        """"finished", "partial (k/E epochs)" or "missing" for the run folder of ``name``."""
        d = self.run_dir(name, seed)
        if (d / "model.pt").exists():
            return "finished"
        hist = read_history(d)
        if hist:
            epochs = self.profile.surrogate_epochs if name == SURROGATE and self.profile.surrogate_epochs \
                else self.profile.epochs
            return f"partial ({hist[-1]['epoch']}/{epochs} epochs)"
        return "missing"

    def plan(self) -> str:
        """The runs of this profile (Tables 1-3 + the surrogate) for every seed, settings and status."""
        p = self.profile
        rows = [f"{'run':<14} {'seed':>4} {'model':<10} {'epochs':>6}  {'status':<22} folder"]
        for seed in self.seeds:
            for name in (*p.methods, SURROGATE):
                cfg = p.surrogate_config() if name == SURROGATE else p.train_config(name)
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
        tables and the claims verdicts. Trains what is missing first."""
        from .benchmark import evaluate
        self.train_all(progress=progress)
        return evaluate(profile=self.profile.name, runs=self.runs_root, out=self.benchmark_dir, device=self.device,
                        data_root=self.profile.data_root, eval_limit=self.eval_limit, attack_limit=self.attack_limit,
                        seeds=self.seeds, progress=progress, **kw)

    def summary(self) -> dict:
        """The settings of this notebook run, for a results JSON."""
        p = self.profile
        return {"profile": p.name, "dataset": p.dataset, "synthetic_data": self.synthetic, "model": p.model,
                "epochs": p.epochs, "train_images": p.train_limit, "seeds": list(self.seeds), "device": self.device, "device_description": device_description(self.device),
                "runs_root": str(self.runs_root), "output_dir": str(self.output_dir), "notebook": self.notebook,
                "torch": torch.__version__}


def setup(profile: str = "cpu", device: str = "auto", data_root=None, runs_root="../runs", output_dir=None,
          notebook: str | None = None, seed: int = 0, verbose: bool = True, seeds=None) -> Course:
    """The derived settings of a notebook (its second cell).

    Args:
        profile: a name of :data:`~mtlat_edu.profiles.PROFILES` (smoke / cpu / cifar10 / paper).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        data_root: dataset folder (None: the profile's default; CIFAR-10 is found offline).
        runs_root: root of the run folders (``<runs_root>/<profile>/<method>/``).
        output_dir: results folder (None: ``../output/<profile>``).
        notebook: sub-folder of ``output_dir`` for this notebook's files.
        seed: the notebook's own randomness (example images, ...).
        seeds: training seeds (None: the profile's); one run folder per method and seed.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile: unknown name {profile!r}; valid names: {', '.join(PROFILES)}")
    base = notebook_dir()
    prof = get_profile(profile, **({"data_root": str(_resolve(data_root, base))} if data_root else {}))
    out = _resolve(output_dir if output_dir else Path("..") / "output" / profile, base)
    seeds = check_seeds(prof.seeds if seeds is None else seeds)
    course = Course(prof, resolve_device(device), _resolve(runs_root, base), out, notebook or "notebook", seed, seeds)
    course.out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if verbose:
        print(course.describe())
        if course.synthetic:
            print("\n" + course.data_warning())
    return course


def profiles_table() -> str:
    """The registered profiles, one line each."""
    rows = [f"{'profile':<10} {'dataset':<12} {'model':<10} {'epochs':>6} {'train images':>12}  description"]
    for p in PROFILES.values():
        rows.append(f"{p.name:<10} {p.dataset:<12} {p.model:<10} {p.epochs:>6} {str(p.train_limit or 'all'):>12}  "
                    f"{p.description}")
    return "\n".join(rows)


def data_summary(data) -> str:
    """Size, image shape and images per class of an :class:`~mtlat_edu.data.ImageData`."""
    counts = torch.bincount(data.labels, minlength=data.num_classes).tolist()
    per = ", ".join(f"{c} {n}" for c, n in zip(data.classes, counts))
    return (f"{data.name}: {len(data)} images of {tuple(data.images.shape[1:])} (C, H, W), uint8, "
            f"{data.num_classes} classes\nper class: {per}")


@torch.no_grad()
def _accuracy(model, x, y) -> float:
    return (model(x).argmax(1) == y).float().mean().item()


def fgsm_sweep(model, data, eps_values: Sequence[float] = (0.0, 0.005, 0.01, 0.02, 0.04, 0.08),
               seed: int = 0, batch_size: int = 250) -> list[dict]:
    """Accuracy under untargeted FGSM (eq. 2) and targeted FGSM (eq. 5, random other target) per eps.

    ``target_hit`` is the fraction of images the targeted step sends to its target class.
    """
    from .adversarial import fgsm as _fgsm, random_targets, targeted_fgsm
    device = next(model.parameters()).device
    model.eval()
    g = torch.Generator().manual_seed(seed)
    targets = random_targets(data.labels, data.num_classes, exclude_true=True, generator=g)
    rows = []
    for eps in eps_values:
        n_u = n_t = n_hit = 0
        for s in range(0, len(data), batch_size):
            x = data.float_images(slice(s, s + batch_size), device)
            y, t = data.labels[s:s + batch_size].to(device), targets[s:s + batch_size].to(device)
            n_u += _accuracy(model, _fgsm(model, x, y, eps), y) * len(y)
            xt = targeted_fgsm(model, x, t, eps)
            n_t += _accuracy(model, xt, y) * len(y)
            n_hit += _accuracy(model, xt, t) * len(y)
        rows.append({"eps": eps, "acc_untargeted": n_u / len(data), "acc_targeted": n_t / len(data),
                     "target_hit": n_hit / len(data)})
    return rows


def photo(size: int = 224, fallback=None) -> tuple[torch.Tensor, str]:
    """A real photo as a float CHW image of ``size`` x ``size`` and where it comes from.

    scikit-image's ``chelsea`` (a cat, bundled with the package) centre-cropped and resized; without
    scikit-image, ``fallback`` (a CHW image, e.g. a CIFAR image) upsampled, and the description says so.
    """
    from torchvision.transforms import v2
    try:
        from skimage import data as skdata
        img = torch.from_numpy(skdata.chelsea().copy()).permute(2, 0, 1)
        h, w = img.shape[-2:]
        side = min(h, w)
        img = img[:, (h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        x = v2.functional.resize(img, [size, size], antialias=True).float() / 255
        return x.clamp(0, 1), f"scikit-image's 'chelsea' photo resized to {size} px"
    except ImportError:
        if fallback is None:
            raise
        x = torch.nn.functional.interpolate(torch.as_tensor(fallback)[None].float(), size=(size, size),
                                            mode="bicubic", align_corners=False)[0]
        return x.clamp(0, 1), (f"scikit-image is not installed: a {fallback.shape[-1]} px dataset image upsampled "
                               f"to {size} px instead (blurry; `pip install scikit-image` for the real photo)")


def accuracy_by_severity(results, model: str) -> dict[str, dict[int, float]]:
    """``{corruption: {severity: accuracy}}`` of ``model`` from the benchmark's long results."""
    rows = results[(results["model"] == model) & (results["severity"] > 0)]
    out: dict[str, dict[int, float]] = {}
    for name, sev, acc in zip(rows["perturbation"], rows["severity"], rows["accuracy"]):
        out.setdefault(name, {})[int(sev)] = float(acc)
    return out


def accuracy_table(results, kind_prefix: str | None = None):
    """Accuracy in % as a models x perturbations table (severities averaged) from the long results."""
    df = results if kind_prefix is None else results[results["kind"].str.startswith(kind_prefix)]
    table = df.groupby(["model", "perturbation"], sort=False)["accuracy"].mean().unstack() * 100
    return table.reindex(index=list(dict.fromkeys(df["model"])), columns=list(dict.fromkeys(df["perturbation"])))


# The paper's Table 3 (ResNet-50 on ImageNet-100): quoted for comparison, never recomputed here.
PAPER_TABLE3 = {"standard": 73.3, "fgsm": 65.8, "target_fgsm": 68.3, "ls": 67.1, "tlat": 69.4}


def print_claims(report: dict) -> None:
    """The verdict of every claim (``holds`` / ``within_noise`` / ``fails``), one line each."""
    from .benchmark.claims import claims_lines
    print("\n".join(claims_lines(report)))


def complementarity(scores, methods: Sequence[str] = ("mixup", "tlat", "mtlat"), reference: str = "standard"):
    """Per-corruption ``R(method) - R(reference)`` (section 5.3), as a corruptions x methods DataFrame."""
    import pandas as pd
    from .benchmark import parts as BP
    cols = [c for c in BP.corruption_names() if c in scores.columns]
    present = [m for m in methods if m in scores.index]
    if reference not in scores.index or not present or not cols:
        raise ValueError(f"scores: need the {reference!r} row, some of {list(methods)} and corruption columns")
    data = {m: [float(scores.loc[m, c] - scores.loc[reference, c]) for c in cols] for m in present}
    return pd.DataFrame(data, index=pd.Index(cols, name="corruption"))


def complementarity_summary(diff) -> dict:
    """Where Mixup and TLAT cover each other (section 5.3), at two decimals (the rule of the marks)."""
    r = diff.round(2)
    out = {}
    if {"mixup", "tlat"} <= set(r.columns):
        out["mixup_hurts_tlat_helps"] = [c for c in r.index if r.loc[c, "mixup"] < 0 < r.loc[c, "tlat"]]
        out["tlat_hurts_mixup_helps"] = [c for c in r.index if r.loc[c, "tlat"] < 0 < r.loc[c, "mixup"]]
        out["both_help"] = [c for c in r.index if r.loc[c, "mixup"] > 0 and r.loc[c, "tlat"] > 0]
        out["both_hurt"] = [c for c in r.index if r.loc[c, "mixup"] < 0 and r.loc[c, "tlat"] < 0]
    if "mtlat" in r.columns:
        out["mtlat_helps"] = [c for c in r.index if r.loc[c, "mtlat"] > 0]
        out["mtlat_hurts"] = [c for c in r.index if r.loc[c, "mtlat"] < 0]
        if {"mixup", "tlat"} <= set(r.columns):
            out["mtlat_at_least_the_worse_part"] = [
                c for c in r.index if r.loc[c, "mtlat"] >= min(r.loc[c, "mixup"], r.loc[c, "tlat"])]
    out["corruptions"] = len(r)
    return out


# ---------------------------------------------------------------------------------------------
# the papermill runner

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def select_notebooks(keys: Sequence[str] | None = None, folder: Path | None = None) -> list[Path]:
    """The course notebooks in order, or those whose name starts with one of ``keys`` ("02", "03_t")."""
    folder = Path(folder or NOTEBOOK_DIR)
    paths = [folder / n for n in NOTEBOOKS]
    if keys:
        wanted = [k.removesuffix(".ipynb") for k in keys]
        unknown = [k for k in wanted if not any(p.name.startswith(k) for p in paths)]
        if unknown:
            raise ValueError(f"notebooks: no notebook starts with {', '.join(unknown)}; known: "
                             f"{', '.join(n.split('_')[0] for n in NOTEBOOKS)}")
        paths = [p for p in paths if any(p.name.startswith(k) for k in wanted)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"notebooks: missing {', '.join(missing)}")
    return paths


def ensure_kernel(name: str = KERNEL_NAME, install: bool = True) -> list[str]:
    """Make sure the Jupyter kernel ``name`` runs *this* Python (``sys.executable``).

    When the kernelspec found by Jupyter starts another interpreter (or none exists), the
    ipykernel spec of this interpreter is installed into ``sys.prefix`` (the virtual environment).
    Returns the kernel's argv; raises RuntimeError if it still points elsewhere.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def argv():
        try:
            return KernelSpecManager().get_kernel_spec(name).argv
        except NoSuchKernel:
            return None

    def ok(a):
        return bool(a) and Path(a[0]).expanduser().absolute() == Path(sys.executable).absolute()

    spec = argv()
    if ok(spec):
        return spec
    if install:
        from ipykernel.kernelspec import install as install_kernel
        install_kernel(kernel_name=name, display_name="Python 3", prefix=sys.prefix)
        spec = argv()
        if ok(spec):
            return spec
    raise RuntimeError(
        f"kernel: Jupyter's {name!r} kernel starts {spec[0] if spec else 'nothing'}, not this Python "
        f"({sys.executable}); run `{sys.executable} -m ipykernel install --sys-prefix --name {name}` "
        "(and remove any user-level kernelspec of that name that shadows it)")


@dataclass
class NotebookResult:
    notebook: str
    executed: str
    status: str             # "ok", "failed" or "skipped"
    seconds: float = 0.0
    error: str | None = None


@dataclass
class ReproduceReport:
    out: Path
    results: list[NotebookResult]

    @property
    def ok(self) -> bool:
        return all(r.status == "ok" for r in self.results)

    @property
    def failed(self) -> NotebookResult | None:
        return next((r for r in self.results if r.status == "failed"), None)


def describe_failure(exc, executed=None) -> str:
    """The failing cell and its error from papermill's PapermillExecutionError (or any exception).

    Cells are numbered from 1 as in the source notebook: papermill's injected-parameters cell
    (found in the ``executed`` copy) is not counted. When the kernel dies (or a cell times out),
    the cell that was running is read from the ``executed`` copy (the last one papermill started).
    """
    from papermill.exceptions import PapermillExecutionError
    cells, injected = [], None
    if executed is not None and Path(executed).is_file():
        import nbformat
        try:
            cells = [c for c in nbformat.read(str(executed), as_version=4).cells  # without papermill's error banners
                     if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
        except Exception:  # noqa: BLE001  (an unreadable copy: report without the cell)
            cells = []
        injected = next((i for i, c in enumerate(cells) if "injected-parameters" in c.metadata.get("tags", [])), None)

    def number(index):  # 1-based, in the source notebook
        return index + 1 - (injected is not None and injected < index)
    total = len(cells) - (injected is not None) if cells else None
    of = f" of {total}" if total else ""
    if isinstance(exc, PapermillExecutionError):
        tb = strip_ansi("\n".join(exc.traceback or []))
        src = "\n".join("    " + line for line in (exc.source or "").splitlines())
        return (f"cell {number(exc.cell_index)}{of} (execution count {exc.exec_count}) raised {exc.ename}: "
                f"{strip_ansi(str(exc.evalue))}\n--- cell source ---\n{src}\n--- traceback ---\n{tb}")
    started = [i for i, c in enumerate(cells) if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    if not started:
        return f"{type(exc).__name__}: {exc}"
    cell = cells[started[-1]]
    src = "\n".join("    " + line for line in cell.source.splitlines())
    died = "the kernel died (a crash, os._exit or out of memory?)" if "DeadKernel" in type(exc).__name__ \
        else f"{type(exc).__name__}: {exc}"
    return f"cell {number(started[-1])}{of} was running when {died}\n--- cell source ---\n{src}"


def run_notebooks(profile: str = "cpu", out=None, notebooks: Sequence[str] | None = None, device: str = "auto",
                  runs_root="runs", data_root=None, kernel_name: str = KERNEL_NAME,
                  notebook_folder=None, cell_timeout: int | None = None, log: Callable[[str], None] = print,
                  extra_parameters: dict | None = None, threads: int | None = None,
                  progress: bool = False) -> ReproduceReport:
    """Execute the course notebooks in order with papermill; stop at the first failure.

    Executed copies go to ``<out>/notebooks/``, the notebooks' results to ``<out>/<notebook>/`` and
    a summary to ``<out>/reproduce.json``. Relative ``out``, ``runs_root`` and ``data_root`` are
    resolved against the current directory; the kernel runs in the notebooks' folder.
    ``threads`` sets OMP_NUM_THREADS / MKL_NUM_THREADS for the kernels (1 is much faster on a
    small shared CPU, where several processes compete for the cores). ``progress`` shows one
    progress bar over the notebooks (``mtlat-edu reproduce``) instead of a line per notebook.
    """
    import papermill  # noqa: F401  (fail early, before any work, when papermill is missing)

    checks.check_choice(profile, "profile", PROFILES)
    checks.resolve_device(device)  # a bad device fails here, not inside the first notebook
    checks.check_int(threads, "threads", 1, optional=True, what="the kernels' default")
    checks.check_int(cell_timeout, "cell_timeout", 1, optional=True, what="no limit")
    folder = Path(notebook_folder or NOTEBOOK_DIR).resolve()
    paths = select_notebooks(notebooks, folder)
    out = Path(out or Path("output") / profile).expanduser().resolve()
    exec_dir = out / "notebooks"
    exec_dir.mkdir(parents=True, exist_ok=True)
    ensure_kernel(kernel_name)
    params = {"profile": profile, "device": device, "runs_root": str(Path(runs_root).expanduser().resolve()),
              "output_dir": str(out), "data_root": str(Path(data_root).expanduser().resolve()) if data_root else None}
    params.update(extra_parameters or {})
    log(f"mtlat-edu reproduce: profile {profile}, device {device}, {len(paths)} notebook(s)\n"
        f"  runs    {params['runs_root']}/{profile}\n  output  {out}")
    results: list[NotebookResult] = []
    saved_env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads:
        os.environ.update({k: str(int(threads)) for k in saved_env})
    try:
        _execute_all(paths, exec_dir, params, kernel_name, folder, cell_timeout, results, log, progress)
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    report = ReproduceReport(out, results)
    mio.write_json(out / "reproduce.json", {
        "profile": profile, "device": device, "threads": threads, "parameters": params,
        "notebooks": [r.__dict__ for r in results],
        "total_seconds": round(sum(r.seconds for r in results), 1),
    })
    total = sum(r.seconds for r in results)
    if progress:
        log(summary_table(out))
    if report.ok:
        log(f"\nall {len(results)} notebook(s) ran in {total:.0f} s. Results:\n"
            f"  executed notebooks   {exec_dir}\n"
            f"  results per notebook {out}/<notebook>/ (JSON, Markdown, PNG)\n"
            f"  benchmark tables     {out / 'benchmark'}/tables.md (notebooks 06-09)\n"
            f"  summary              {out / 'reproduce.json'}")
    else:
        log(f"\nstopped at {report.failed.notebook}; summary in {out / 'reproduce.json'}")
    return report


@contextlib.contextmanager
def private_kernel():
    """Papermill options that start each kernel on IPC sockets in a private temporary folder.

    Papermill's default TCP transport makes every kernel log "running over TCP without
    encryption"; Unix sockets in a folder only this user can open need no encryption. Yields the
    keyword arguments for ``papermill.execute_notebook`` (nbclient still creates, watches and
    shuts down the kernel; only its transport changes).
    """
    if os.name == "nt":  # no Unix sockets: papermill's own TCP kernel
        yield {}
        return
    from jupyter_client.manager import AsyncKernelManager

    with tempfile.TemporaryDirectory(prefix="mtlat-kernel-") as folder:
        class PrivateKernelManager(AsyncKernelManager):
            def __init__(self, **kwargs):
                super().__init__(transport="ipc", ip=os.path.join(folder, "kernel"), **kwargs)

        yield {"kernel_manager_class": PrivateKernelManager}


def _execute_all(paths, exec_dir, params, kernel_name, folder, cell_timeout, results, log,
                 progress: bool = False) -> None:
    """Run ``paths`` in order (one progress bar over the notebooks); stop at the first failure."""
    import papermill as pm
    from tqdm.auto import tqdm

    bar = tqdm(paths, desc="notebooks", unit="notebook", disable=not progress, dynamic_ncols=True)
    say = bar.write if progress and log is print else log
    for i, src in enumerate(bar):
        bar.set_postfix_str(src.name)
        dst = exec_dir / src.name
        t0 = time.perf_counter()
        if not progress:
            say(f"[{i + 1}/{len(paths)}] {src.name} ...")
        try:
            with private_kernel() as transport:
                pm.execute_notebook(str(src), str(dst), parameters=params, kernel_name=kernel_name, cwd=str(folder),
                                    progress_bar=False, log_output=False, execution_timeout=cell_timeout,
                                    **transport)
        except Exception as exc:  # PapermillExecutionError and kernel/launch failures
            dt = time.perf_counter() - t0
            msg = describe_failure(exc, dst)
            results.append(NotebookResult(src.name, str(dst), "failed", round(dt, 1), msg))
            results += [NotebookResult(p.name, "", "skipped") for p in paths[i + 1:]]
            say(f"FAILED {src.name} after {dt:.1f} s: {msg}\nexecuted copy (up to the error): {dst}")
            break
        dt = time.perf_counter() - t0
        results.append(NotebookResult(src.name, str(dst), "ok", round(dt, 1)))
        if not progress:  # with the bar, the times come as one table at the end (summary_table)
            say(f"      done in {dt:.1f} s -> {dst}")
    bar.close()


def summary_table(out) -> str:
    """The ``reproduce.json`` of a run as a small text table (printed at the end of ``reproduce``)."""
    path = Path(out) / "reproduce.json"
    data = mio.read_json(path, remedy="run mtlat-edu reproduce again to rewrite it")
    if data is None:
        raise FileNotFoundError(f"out: {path} does not exist (run mtlat-edu reproduce --out {out} first)")
    rows = [f"{r['notebook']:<28} {r['status']:<8} {r['seconds']:>7.1f} s" for r in data["notebooks"]]
    return "\n".join(rows + [f"{'total':<28} {'':<8} {data['total_seconds']:>7.1f} s"])


# ---------------------------------------------------------------------------------------------
# ``mtlat-edu reproduce``

def add_reproduce_args(p) -> None:
    """The arguments of ``mtlat-edu reproduce``."""
    p.add_argument("--profile", default="cpu", choices=list(PROFILES),
                   help="smoke (generated data, offline, tests), cpu (CIFAR-10 on a CPU; default), cifar10 (GPU), paper")
    p.add_argument("--out", default=None, help="output folder (default: output/<profile>)")
    p.add_argument("--notebooks", nargs="+", default=None, metavar="NN",
                   help="only these notebooks, by number or name prefix (e.g. 02 03); default: all, in order")
    p.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda, ...")
    p.add_argument("--runs-root", default="runs", help="root of the run folders (<runs-root>/<profile>/<method>/seed<k>)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, metavar="K",
                   help="training seeds (default: the profile's); with several, the tables show mean ± std and the "
                        "claims are judged against that spread")
    p.add_argument("--data-root", default=None, help="dataset folder (default: the profile's; CIFAR-10 is found offline)")
    p.add_argument("--threads", type=int, default=None,
                   help="OMP/MKL threads of the notebook kernels (1 is fastest on a small shared CPU)")
    p.add_argument("--cell-timeout", type=int, default=None, help="seconds per cell (default: no limit)")
    p.add_argument("--no-progress", action="store_true", help="a line per notebook instead of a progress bar")
    p.add_argument("--notebook-dir", default=None, help=argparse.SUPPRESS)


def cmd_reproduce(args) -> int:
    """The body of ``mtlat-edu reproduce``: 0 when every notebook ran, 1 at the first failure."""
    seeds = None if args.seeds is None else list(check_seeds(args.seeds))
    report = run_notebooks(args.profile, out=args.out, notebooks=args.notebooks, device=args.device,
                           runs_root=args.runs_root, data_root=args.data_root, threads=args.threads,
                           cell_timeout=args.cell_timeout, notebook_folder=args.notebook_dir,
                           extra_parameters={"seeds": seeds}, progress=not args.no_progress)
    claims = report.out / "benchmark" / "claims.json"
    if report.ok and claims.exists():
        from .benchmark.claims import claims_lines
        print("\nThe paper's claims, judged against the spread over training seeds (notebook 08):")
        print("\n".join(claims_lines(mio.read_json(claims))))
        print(f"  details: {claims}")
    return 0 if report.ok else 1
