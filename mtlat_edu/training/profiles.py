"""Named run settings ("profiles") shared by the notebooks, the CLI and ``make reproduce``.

=========  ===================  ==========  =====================================================
profile    data                 model       budget
=========  ===================  ==========  =====================================================
smoke      generated (offline)  small_cnn   seconds on a CPU; for tests only, not real data
cpu        CIFAR-10, 5k train   small_cnn   the paper's regime (30 epochs, no augmentation); < 1 h on 2 cores
cpu_short  CIFAR-10, 10k train  small_cnn   6 epochs: the under-trained regime notebook 05 contrasts
cpu_wide   CIFAR-10, 5k train   2x width    ``cpu`` with a wider CNN: claim (a) at a larger capacity
cifar10    CIFAR-10, full       resnet18    the GPU reproduction (flip+crop augmentation)
paper      ImageNet-100, 224px  resnet50    section 4.2's recipe: 90 epochs, batch 256 (days)
=========  ===================  ==========  =====================================================

:func:`train_seeds` trains every method of Tables 1-3 plus the VGG surrogate of the black-box
attacks, for every seed of the profile, into ``<runs>/<profile>/<method>/seed<k>/`` (in parallel
processes on a CPU) and reuses the runs already finished there; :func:`train_profile` does one seed.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mtlat_edu.core import distributed as D
from mtlat_edu.core import io as mio
from mtlat_edu.core.checks import resolve_device
from mtlat_edu.core.registry import Registry
from mtlat_edu.data import ImageData, load_dataset
from mtlat_edu.paper.methods import ADVERSARIAL, FUTURE_METHODS, METHODS, TABLE_METHODS  # noqa: F401  (re-exported)
from mtlat_edu.training.checkpoints import load_checkpoint
from mtlat_edu.training.config import NOT_IDENTITY, TrainConfig, field_value
from mtlat_edu.training.loop import TrainResult, fit, run_data
from mtlat_edu.training.runs import DEFAULT_RUNS, run_folder

# TABLE_METHODS: the rows of Tables 1-3, with both readings of IAT (docs/claims.md); FUTURE_METHODS: the
# paper's future work (section 6), implemented beyond it, not in the reproduction of Tables 1-3, compared
# with mtlat (and standard) by the multi-seed run of docs/future.md and notebook 10. Both are views of
# the methods' registry entries (registered with future=True or not).
SURROGATE = "vgg_surrogate"
TRAIN_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))  # the fields of a profile's template
# TrainConfig fields that a profile's runs do not take from settings: the run's method and seed (--methods,
# --seeds), what makes the profile (its data and model: another profile) and its robustness record
# (Profile.tracked_*); the device is a setting of its own (--device, the notebooks' ``device``).
FIXED_SETTINGS = ("method", "seed", "dataset", "model", "data_root", "track_robustness", "track_attacks",
                  "track_corruption", "track_every")


@dataclass(frozen=True)
class Profile:
    """A named set of runs. ``train`` is the template of every run's :class:`TrainConfig` (the data,
    the model and the schedule; each run sets its method, seed and robustness record on a copy,
    :meth:`train_config`): one record of the training settings, with one default per field. The other
    fields say which runs the profile has and how the course and the benchmark read them. The
    template's data and model fields (:data:`TEMPLATE_FIELDS`) read through the profile
    (``profile.dataset`` is ``profile.train.dataset``)."""
    name: str
    train: TrainConfig
    eval_limit: int | None = None        # images of the robustness benchmark (corruptions)
    attack_limit: int | None = None      # images attacked (white-box attacks are the slow part)
    surrogate_epochs: int | None = None  # defaults to ``train.epochs``
    surrogate_model: str = "vgg"
    methods: tuple[str, ...] = TABLE_METHODS
    seeds: tuple[int, ...] = (0,)       # one run folder per method and seed; tables show mean +- std
    short_profile: str | None = None     # the profile notebook 05 contrasts this regime with
    # Robustness recorded after every epoch (TrainConfig.track_robustness) by the first seed's runs of
    # these methods: notebook 05's curves come from the profile's own runs, never from a second training
    # (tracking leaves the weights unchanged and costs only its evaluations).
    tracked_methods: tuple[str, ...] = ()
    tracked_images: int = 500
    tracked_attacks: tuple[str, ...] = ("pgd", "pgd_ll")
    tracked_corruption: str | None = "gaussian_noise"
    tracked_every: int = 1               # epoch 1, every k-th after it and the last (a record costs ~2 epochs of small_cnn)
    description: str = ""

    def tracking_settings(self) -> dict:
        """The profile's robustness record as ``TrainConfig`` fields (``track_robustness``, ...)."""
        return {"track_robustness": self.tracked_images, "track_attacks": tuple(self.tracked_attacks),
                "track_corruption": self.tracked_corruption, "track_every": self.tracked_every}

    def tracking(self, method: str, seed: int) -> dict:
        """The tracking settings of the run of ``method`` with ``seed``: :meth:`tracking_settings` for
        the profile's ``tracked_methods`` at its first seed, else none."""
        if method not in self.tracked_methods or seed != self.seeds[0]:
            return {}
        return self.tracking_settings()

    def record(self) -> dict:
        """The profile as one flat dict (its name, the template's :data:`TEMPLATE_FIELDS`, its own
        fields): what ``claims.json`` records of the profile it judged."""
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("name", "train")}
        return {"name": self.name, **{k: getattr(self.train, k) for k in TEMPLATE_FIELDS}, **own}

    def train_config(self, method: str, **overrides) -> TrainConfig:
        """The :class:`TrainConfig` of ``method`` under this profile: a copy of the template with the
        method, the profile's first seed and the run's :meth:`tracking`, then ``overrides``."""
        METHODS.check(method)
        seed = overrides.get("seed", self.seeds[0])
        return dataclasses.replace(self.train, **{"method": method, "seed": seed, **self.tracking(method, seed), **overrides})

    def surrogate_config(self, **overrides) -> TrainConfig:
        """The VGG surrogate of the black-box attacks: trained with ``standard`` on the same data."""
        untracked = {"track_robustness": 0, "track_corruption": None}  # notebook 05 tracks the methods only
        return self.train_config("standard", **{"model": self.surrogate_model,
                                                "epochs": self.surrogate_epochs or self.epochs, **untracked, **overrides})


# The template's fields that the course, the benchmark and the notebooks read through the profile
# (``profile.epochs`` is ``profile.train.epochs``), and that ``Profile.record`` lists.
TEMPLATE_FIELDS = ("dataset", "model", "epochs", "batch_size", "data_root", "image_size", "train_limit", "test_limit",
                   "augment")
for _name in TEMPLATE_FIELDS:
    setattr(Profile, _name, property(lambda self, name=_name: getattr(self.train, name)))

# the runs notebook 05 shows robustness during training for: standard, the adversarial training whose
# one-step attack can be overfitted, and M-TLAT
TRACKED_METHODS = ("standard", "fgsm", "mtlat")
PROFILES = Registry("profile")  # name -> Profile, described by its description
for _profile in (
    Profile(
        "smoke", TrainConfig(dataset="synthetic", model="small_cnn", epochs=1, batch_size=64, train_limit=768,
                             test_limit=200),
        eval_limit=64, attack_limit=32, tracked_methods=TRACKED_METHODS, tracked_images=16,
        description="generated data, seconds on a CPU: checks that everything runs (not real data)"),
    # The paper's regime on a laptop CPU, chosen by experiment (docs/regime.md): no augmentation,
    # trained until the standard model's test accuracy has plateaued.
    Profile(
        "cpu", TrainConfig(dataset="cifar10", model="small_cnn", epochs=30, batch_size=128, train_limit=5000,
                           test_limit=2000),
        eval_limit=1000, attack_limit=500, surrogate_model="vgg_small", short_profile="cpu_short",
        tracked_methods=TRACKED_METHODS, tracked_every=3,
        description="CIFAR-10, 5k training images, a small CNN, the paper's regime (no augmentation, "
                    "trained to a plateau): a 2-core CPU in under an hour"),
    # The former default: under-trained (6 epochs); notebook 05 contrasts it with ``cpu``.
    Profile(
        "cpu_short", TrainConfig(dataset="cifar10", model="small_cnn", epochs=6, batch_size=128, train_limit=10000,
                                 test_limit=2000),
        eval_limit=1000, attack_limit=500, surrogate_model="vgg_small",
        description="CIFAR-10, 10k training images, 6 epochs: the under-trained regime (notebook 05)"),
    # One larger point of the paper's regime (docs/claims.md, "Is (a) a matter of scale?"), chosen
    # before any result: ``cpu`` with the CNN at twice the width, the three methods of claim (a).
    Profile(
        "cpu_wide", TrainConfig(dataset="cifar10", model="small_cnn_wide", epochs=30, batch_size=128,
                                train_limit=5000, test_limit=2000),
        eval_limit=1000, attack_limit=500, surrogate_model="vgg_small",
        methods=("standard", "mixup", "mtlat"), seeds=(0, 1, 2),
        description="the cpu profile with a CNN of twice the width (4x the parameters), standard / mixup / "
                    "mtlat, seeds 0-2: claim (a) at a larger capacity"),
    Profile(
        "cifar10", TrainConfig(dataset="cifar10", model="resnet18", epochs=18, batch_size=512, augment="flipcrop"),
        surrogate_epochs=10, tracked_methods=TRACKED_METHODS,
        description="CIFAR-10, ResNet-18, all 60k images: the GPU reproduction"),
    Profile(
        "paper", TrainConfig(dataset="imagenet100", model="resnet50", epochs=90, batch_size=256, image_size=224),
        tracked_methods=TRACKED_METHODS,
        description="ImageNet-100 at 224 px, ResNet-50, the paper's full recipe (section 4.2)"),
):
    PROFILES.add(_profile.name, _profile, description=_profile.description)


def get_profile(name: str, **overrides) -> Profile:
    """A registered profile, with optional overrides: of its template's training settings (a
    :class:`TrainConfig` field, e.g. ``data_root=...``, ``train_limit=...``) or of its own fields
    (``seeds=...``, ``eval_limit=...``)."""
    profile = PROFILES.lookup(name)
    train = {k: v for k, v in overrides.items() if k in TRAIN_FIELDS}
    own = {k: v for k, v in overrides.items() if k not in TRAIN_FIELDS}
    return dataclasses.replace(profile, train=dataclasses.replace(profile.train, **train), **own)


def run_dir(profile: Profile, runs_root, method: str, seed: int | None = None) -> Path:
    """``<runs_root>/<profile>/<method>/seed<k>``: the folder of one of the profile's trained models
    (:func:`~mtlat_edu.training.runs.run_folder` with the profile's name as the group; ``seed``: the
    profile's first seed when None). Used by the trainer here, the benchmark's model collection,
    ``ship`` and the notebooks' session (``Course.run_dir``, notebook 05)."""
    return run_folder(runs_root, profile.name, method, profile.seeds[0] if seed is None else seed)


def load_profile_data(profile: Profile, split: str, limit: int | None = None, seed: int = 0) -> ImageData:
    """The profile's ``split`` (optionally a class-balanced subset of ``limit`` images)."""
    return load_dataset(profile.dataset, split, profile.data_root, profile.image_size, limit, seed)


def _jobs(profile: Profile, runs_root, methods, surrogate: bool, seeds, device: str, overrides: dict):
    """``[(name, seed, TrainConfig, run folder)]``, the most expensive first (:func:`job_cost`)."""
    jobs = []
    for seed in seeds:
        jobs += [(m, seed, profile.train_config(m, device=device, seed=seed, **overrides)) for m in methods]
        if surrogate:
            jobs.append((SURROGATE, seed, profile.surrogate_config(device=device, seed=seed, **overrides)))
    jobs = [(n, s, cfg, run_dir(profile, runs_root, n, s)) for n, s, cfg in jobs]
    return sorted(jobs, key=lambda j: -job_cost(j[2]))


def job_cost(cfg: TrainConfig) -> float:
    """A run's rough cost in image passes, to start the longest runs first: an adversarial step
    costs about two clean ones, and a tracked epoch adds ten attack iterations per tracked attack
    on its tracked images."""
    images = cfg.train_limit or 50_000
    records = sum(cfg.tracks(e) for e in range(1, cfg.epochs + 1))
    return cfg.epochs * images * (2 if cfg.method in ADVERSARIAL else 1) \
        + records * 10 * cfg.track_robustness * len(cfg.track_attacks)


def _train_job(cfg: TrainConfig, out: str, threads: int) -> str:
    """One run in a worker process (its own data load from the decoded cache, ``threads`` threads)."""
    torch.set_num_threads(threads)
    fit(cfg, out, progress=False)
    return out


def default_workers(device: str, jobs: int) -> int:
    """Parallel training processes: one per core on a CPU (at most 4, each with one thread; several
    small models train faster side by side than one model on all cores), one on a GPU."""
    if resolve_device(device).type != "cpu":
        return 1
    return max(1, min(jobs, os.cpu_count() or 1, 4))


def train_seeds(profile: Profile, runs_root=DEFAULT_RUNS, methods=None, surrogate: bool = True, seeds=None,
                device: str = "auto", progress: bool = True, workers: int | None = None,
                **overrides) -> dict[int, dict[str, TrainResult]]:
    """Train every ``method`` (default: the profile's) and the VGG surrogate for every seed (default:
    the profile's ``seeds``) into :func:`run_dir`; finished runs are reused, interrupted ones resume.

    On a CPU the missing runs train in ``workers`` processes (default :func:`default_workers`), one
    thread each. Returns ``{seed: {name: TrainResult}}`` (the surrogate under :data:`SURROGATE`).

    A seed means one thing whatever the number of workers, processes or devices: every run trains
    on its own seed's training subset (loaded with the run's ``data_mode``), from its seed's
    initialisation and data order, in one process as in a worker (tested: the same weights on the
    CPU). The split is decoded and cached once; in one process, one seed's data at a time is held.

    Under ``torchrun`` (``torchrun --nproc_per_node=N -m mtlat_edu train-profile --profile NAME``)
    every missing run trains in turn with DistributedDataParallel over the N processes.
    """
    methods = tuple(methods or profile.methods)
    seeds = check_seeds(profile.seeds if seeds is None else seeds)
    jobs = _jobs(profile, runs_root, methods, surrogate, seeds, device, overrides)
    _train_missing(jobs, device, progress, workers)
    results: dict[int, dict[str, TrainResult]] = {s: {} for s in seeds}
    for name, seed, cfg, out in sorted(jobs, key=lambda j: (seeds.index(j[1]), _order(j[0], methods))):
        model, info = load_checkpoint(out, device=resolve_device(device))
        results[seed][name] = TrainResult(model, info["history"], out, cfg, info["test_acc"])
    return results


def _train_missing(jobs, device: str, progress: bool, workers: int | None) -> list:
    """Train the jobs without a finished ``model.pt`` (interrupted ones resume): in ``workers``
    processes on a CPU (default :func:`default_workers`), in turn otherwise; returns those trained."""
    todo = [j for j in jobs if not (j[3] / "model.pt").exists()]
    for name, seed, cfg, out in jobs:  # a finished run is reused only when it is the run asked for
        if (out / "model.pt").exists() and (out / "config.json").exists():
            diff = cfg.differences(mio.read_json(out / "config.json"))
            if diff:
                raise ValueError(f"runs: {out} holds a finished run of other settings (saved vs asked: {diff}); "
                                 "train these settings into their own runs folder (--runs, the notebooks' runs_root)")
    workers = default_workers(device, len(todo)) if workers is None else workers
    if D.launched():  # one DDP job per run, every rank on the list rank 0 found
        D.init(D.local_device(resolve_device(device)))
        for name, seed, cfg, out in D.broadcast_object(todo):
            fit(cfg, out, progress=progress)
    elif workers <= 1 or len(todo) == 1:
        data: dict = {}  # the data of one seed at a time: each job trains on its own seed's subset
        for name, seed, cfg, out in sorted(todo, key=lambda j: j[1]):
            fit(cfg, out, *job_data(cfg, data), progress=progress)
    elif todo:
        for cfg in {(c.dataset, c.data_root, c.image_size): c for _, _, c, _ in todo}.values():
            job_data(cfg, {})  # decode (and cache) each split once, before any worker starts
        _train_parallel(todo, workers, progress)
    return todo


def check_settings(profile: Profile, settings=None, device: str = "auto", methods=None, surrogate: bool = True) -> dict:
    """Training settings that differ from the profile's (``{TrainConfig field: value}``: the options of
    ``train-profile`` and ``reproduce``, the notebooks' ``settings`` parameter), checked once where they
    enter: each a field of :class:`TrainConfig` that the profile does not fix (:data:`FIXED_SETTINGS`,
    the device), and every run of the profile (``methods``, default its own, and the surrogate unless
    ``surrogate`` is False) valid with them; they apply to every run, the surrogate's ``epochs`` included. Returns them as the dataclass holds them (lists as tuples). A setting that changes
    the weights (``eps_max``, ``lr``, ``epochs``, ...) makes other runs: give them their own runs root."""
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise ValueError(f"settings: expected a dict of training settings, e.g. {{'eps_max': 0.05}}, got {settings!r}")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    allowed = sorted(fields - set(FIXED_SETTINGS) - {"device"})
    for name in settings:
        if name not in allowed:
            why = "comes from the profile or the course" if name in fields else "is not a training setting"
            raise ValueError(f"settings: {name!r} {why}; the settings are {', '.join(allowed)}")
    settings = {k: field_value(v) for k, v in settings.items()}
    for method in methods or profile.methods:
        profile.train_config(method, device=device, **settings).validate()
    if surrogate:
        profile.surrogate_config(device=device, **settings).validate()
    return settings


def changes_weights(settings) -> bool:
    """Whether ``settings`` change what a run learns (a field of the run's identity, not a speed,
    device or tracking setting such as ``data_mode`` or ``compile``): such runs are other runs."""
    return any(k not in NOT_IDENTITY for k in settings or {})


def course_jobs(profile: Profile, runs_root=DEFAULT_RUNS, seeds=None, device: str = "auto", **overrides) -> list:
    """Every run the course notebooks use with ``profile``: its methods and the VGG surrogate for
    every seed, and the first seed's ``standard`` and ``mixup`` of its short profile (notebook 05's two
    regimes), as ``[(name, seed, TrainConfig, run folder)]``, the most expensive first."""
    seeds = check_seeds(profile.seeds if seeds is None else seeds)
    jobs = _jobs(profile, runs_root, profile.methods, True, seeds, device, overrides)
    if profile.short_profile and profile.short_profile != profile.name:
        short = get_profile(profile.short_profile, data_root=profile.data_root)
        jobs += _jobs(short, runs_root, ("standard", "mixup"), False, seeds[:1], device, overrides)
    return sorted(jobs, key=lambda j: -job_cost(j[2]))


def train_course(profile: Profile, runs_root=DEFAULT_RUNS, seeds=None, device: str = "auto", progress: bool = True,
                 workers: int | None = None, **overrides) -> list:
    """Train every missing run of :func:`course_jobs` at once, so that all cores work from the first
    minute (``mtlat-edu reproduce`` does this before the first notebook; the notebooks then reuse
    the runs). Returns the jobs that were trained."""
    return _train_missing(course_jobs(profile, runs_root, seeds, device, **overrides), device, progress, workers)


def job_data(cfg: TrainConfig, memo: dict) -> tuple:
    """``(train, test)`` of a run: what ``fit`` itself loads for ``cfg`` (:func:`~mtlat_edu.training.loop.run_data`),
    reused from ``memo`` when the previous job of the same seed loaded them (``memo`` keeps one
    seed's data at a time)."""
    key = (cfg.dataset, cfg.data_root, cfg.image_size, cfg.train_limit, cfg.test_limit, cfg.seed, cfg.data_mode)
    if key not in memo:
        memo.clear()
        memo[key] = run_data(cfg)
    return memo[key]


def _order(name: str, methods) -> int:
    return methods.index(name) if name in methods else len(methods)


def _train_parallel(todo, workers: int, progress: bool) -> None:
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=ctx) as ex:
        futures = {ex.submit(_train_job, cfg, str(out), threads): (name, seed) for name, seed, cfg, out in todo}
        bar = tqdm(total=len(todo), desc=f"training in {workers} processes", unit="run", disable=not progress)
        for fut in as_completed(futures):
            name, seed = futures[fut]
            fut.result()  # re-raises a worker's error
            bar.update(1)
            if progress:
                tqdm.write(f"[{name} seed {seed}] finished after {time.perf_counter() - t0:.0f} s")
        bar.close()


def train_profile(profile: Profile, runs_root=DEFAULT_RUNS, methods=None, surrogate: bool = True,
                  device: str = "auto", progress: bool = True, seed: int | None = None,
                  workers: int | None = None, **overrides) -> dict[str, TrainResult]:
    """:func:`train_seeds` for one seed (default: the profile's first): ``{method: TrainResult}``."""
    seed = profile.seeds[0] if seed is None else seed
    return train_seeds(profile, runs_root, methods, surrogate, (seed,), device, progress, workers, **overrides)[seed]


class Seeds(tuple):
    """Training seeds :func:`check_seeds` accepted (distinct integers >= 0): a tuple that carries its
    check, so the functions it is passed on to (``train_seeds``, ``evaluate``, the notebook session)
    do not check it again; a slice of it (``seeds[:1]``) stays checked."""

    __slots__ = ()

    def __getitem__(self, index):
        item = super().__getitem__(index)
        return Seeds(item) if isinstance(index, slice) else item


def check_seeds(seeds) -> Seeds:
    """Seeds must be distinct integers >= 0; checked once, where they enter (the CLI, the notebook
    session, a public function given a plain sequence): :class:`Seeds` pass through unchanged."""
    if isinstance(seeds, Seeds):
        return seeds
    seeds = tuple(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: must be distinct integers >= 0 (e.g. 0 1 2), got {list(seeds)!r}")
    return Seeds(seeds)
