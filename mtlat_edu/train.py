"""Training with the paper's recipe (section 4.2), checkpoints every epoch, exact resume.

Recipe (defaults of :class:`TrainConfig`): Adam, lr 0.002, weight decay 1e-4, the learning
rate divided by 10 at the end of epochs 30, 60 and 80 of 90, batch 256, cross-entropy, Mixup
``alpha = 0.4``, training FGSM ``eps ~ U[0, 0.025]``. For shorter runs the three drops keep
their place as fractions of the run (30/90, 60/90 and 80/90 of all steps), applied per step so
that a 3-epoch run still sees them.

Each epoch ends with a clean test evaluation, a JSON history and an atomic checkpoint holding
the model, optimizer, scheduler and every random generator, so ``fit`` on an interrupted run
continues to the same weights an uninterrupted run reaches (on the CPU, bit for bit), and ``fit``
on a finished run returns at once (notebooks do not retrain).

On CUDA the fast path is used: data resident on the GPU as uint8 (:class:`DeviceBatches`),
bf16 autocast, channels_last, optional ``torch.compile``, and no host synchronisation inside an
epoch (the running loss is summed on the device). ``fast_path="on"`` runs that same code on the
CPU (the tests do), ``"off"`` turns it off on a GPU.

Under ``torchrun`` the same ``fit`` runs DistributedDataParallel (:mod:`mtlat_edu.distributed`):
each rank trains on its share of every global batch of ``batch_size`` images, rank 0 alone writes
the run folder, the checkpoint holds every rank's random streams, and the test accuracy is
measured on shards of the test set and summed.

``track_robustness=N`` measures at the end of every epoch the accuracy under the benchmark's PGD
(section 4.1: eps 0.04, 10 iterations; ``track_attacks`` adds PGD_LL or CW_2) on a fixed
class-balanced subset of N test images, chosen with the run seed (and,
with ``track_corruption``, under one corruption at severity 3), with the benchmark's own
measuring code (:func:`mtlat_edu.benchmark.suite.measure_cell`): the history then shows
robustness appear during training (or FGSM training's catastrophic overfitting).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import distributed as D
from . import io as mio
from .checks import check_choice, check_int, check_nchw, check_positive, check_range, model_channels, resolve_device
from .data import AUGMENTATIONS, DATA_MODES, DATASETS, FileImageData, ImageData, batches as make_batches, load_dataset
from .methods import ADVERSARIAL, MethodConfig, get_method, METHODS
from .models import MODELS, build_model, mix_layer_count

PAPER_EPOCHS = 90
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "epoch", "generators", "history", "config", "torch_rng")
MODEL_KEYS = ("model", "config", "num_classes")
RESUME_REMEDY = "start the run over with resume=False (--no-resume), or delete the file"
PAPER_MILESTONES = (30, 60, 80)
FAST_PATH = ("auto", "on", "off")
TRACK_ATTACKS = ("pgd", "pgd_ll", "cw_l2")  # white-box attacks of the benchmark (attacks.ATTACKS), trackable
TRACK_SEVERITY = 3          # severity of the optional tracked corruption


@dataclass
class TrainConfig:
    """Everything that defines a training run (defaults: the paper's recipe, section 4.2)."""

    method: str = "mtlat"
    model: str = "resnet18"
    dataset: str = "cifar10"
    data_root: str | None = None
    image_size: int | None = None
    train_limit: int | None = None
    test_limit: int | None = None
    epochs: int = 90
    batch_size: int = 256
    lr: float = 0.002
    weight_decay: float = 1e-4
    alpha: float = 0.4
    eps_max: float = 0.025
    per_batch: bool = False
    target: str = "random"
    augment: str = "none"
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    eval_batch_size: int = 1000
    fast_path: str = "auto"              # auto: on for CUDA; on: also on the CPU (tests); off
    sync_bn: bool = False                # SyncBatchNorm across the ranks of a torchrun job
    data_mode: str = "auto"              # memory, stream, auto (stream above data.STREAM_BYTES)
    workers: int = 4                     # DataLoader decoding processes of the streaming path
    track_robustness: int = 0            # PGD accuracy on this many test images after every epoch
    track_attacks: tuple[str, ...] = ("pgd",)  # the white-box attacks tracked (pgd, pgd_ll, cw_l2)
    track_corruption: str | None = None  # and accuracy under this corruption (severity 3)
    # options of the methods beyond the paper (docs/future.md); the others ignore them
    pgd_steps: int = 3                   # mtlat_pgd: targeted PGD iterations k
    pgd_step_factor: float = 2.5         # mtlat_pgd: step size = factor * eps / k
    pgd_random_start: bool = False       # mtlat_pgd: start from a random point of the eps-ball
    manifold_layers: tuple[int, ...] = (0, 1, 2)  # manifold_mtlat: mixing layers (0 = the input)

    def validate(self) -> "TrainConfig":
        """Check every field once, at the entry (``fit`` calls it; the training steps do not re-check)."""
        check_choice(self.method, "method", METHODS)
        check_choice(self.model, "model", MODELS)
        check_choice(self.dataset, "dataset", DATASETS)
        check_choice(self.augment, "augment", AUGMENTATIONS)
        check_int(self.epochs, "epochs")
        check_int(self.batch_size, "batch_size")
        check_int(self.eval_batch_size, "eval_batch_size")
        check_int(self.seed, "seed", 0)
        check_int(self.image_size, "image_size", 1, optional=True, what="the dataset's own size")
        check_int(self.train_limit, "train_limit", 1, optional=True, what="all images")
        check_int(self.test_limit, "test_limit", 1, optional=True, what="all images")
        if self.data_root is not None and not isinstance(self.data_root, str):
            raise ValueError(f"data_root: expected a folder path (a str) or None, got {self.data_root!r}")
        resolve_device(self.device)
        if self.method in ADVERSARIAL and (self.batch_size < 2 or self.batch_size % 2):
            raise ValueError(f"batch_size: method {self.method!r} splits each batch into a clean and an "
                             f"adversarial half, so it must be even and >= 2, got {self.batch_size}")
        check_positive(self.lr, "lr")
        check_range(self.weight_decay, "weight_decay", 0.0, 1.0)
        check_positive(self.alpha, "alpha")
        check_range(self.eps_max, "eps_max", 0.0, 1.0)
        self.method_config(10)  # validates target and the method options
        check_choice(self.fast_path, "fast_path", FAST_PATH)
        check_choice(self.data_mode, "data_mode", DATA_MODES)
        check_int(self.workers, "workers", 0)
        check_int(self.track_robustness, "track_robustness", 0)
        self.track_attacks = tuple(self.track_attacks)
        if not self.track_attacks:
            raise ValueError(f"track_attacks: name at least one of {', '.join(TRACK_ATTACKS)}")
        for name in self.track_attacks:
            check_choice(name, "track_attacks", TRACK_ATTACKS)
        if self.track_corruption is not None:
            from .corruptions import CORRUPTIONS
            check_choice(self.track_corruption, "track_corruption", CORRUPTIONS)
            if not self.track_robustness:
                raise ValueError("track_corruption: needs track_robustness > 0 (the number of test images tracked)")
        if max(self.manifold_layers) >= mix_layer_count(self.model):
            raise ValueError(f"manifold_layers: model {self.model!r} mixes at layers 0 (the input) to "
                             f"{mix_layer_count(self.model) - 1}, got {list(self.manifold_layers)}")
        return self

    def method_config(self, num_classes: int) -> MethodConfig:
        """The :class:`MethodConfig` of this run (checks the method options; a list of
        ``manifold_layers`` becomes a tuple, so that the run's identity does not depend on it)."""
        mcfg = MethodConfig(num_classes=num_classes, alpha=self.alpha, eps_max=self.eps_max, per_batch=self.per_batch,
                            target=self.target, pgd_steps=self.pgd_steps, pgd_step_factor=self.pgd_step_factor,
                            pgd_random_start=self.pgd_random_start, manifold_layers=self.manifold_layers)
        self.manifold_layers = mcfg.manifold_layers
        return mcfg

    def resolved_device(self) -> torch.device:
        return resolve_device(self.device)

    def fast(self, device: torch.device) -> bool:
        """Whether the GPU fast path (bf16 autocast, channels_last, torch.compile) is on for ``device``."""
        return self.fast_path == "on" or (self.fast_path == "auto" and device.type == "cuda")

    def identity(self) -> dict:
        """The fields that must match for a checkpoint to be resumed."""
        d = dataclasses.asdict(self)
        for k in ("device", "compile", "eval_batch_size", "fast_path", "data_mode", "workers"):
            d.pop(k)
        return d


def lr_factor(step: int, total_steps: int, epochs_ref: int = PAPER_EPOCHS,
              milestones=PAPER_MILESTONES) -> float:
    """The paper's step schedule as a function of progress: /10 after each milestone fraction."""
    passed = sum(step >= round(m / epochs_ref * total_steps) for m in milestones)
    return 0.1 ** passed


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: ImageData | FileImageData, batch_size: int = 1000, device=None,
             amp: bool = True, fast: bool | None = None, workers: int = 4) -> float:
    """Clean accuracy (a fraction in [0, 1]) of ``model`` on ``data``, in eval mode, batched.

    bf16 autocast (``amp``) is used where the fast path is on (``fast``; default: on CUDA). Under
    torchrun each rank counts a contiguous share of the images and the counts are summed, so the
    accuracy is the single-process one. ``workers``: decoding processes for a :class:`FileImageData`.
    """
    if not isinstance(data, (ImageData, FileImageData)):
        raise ValueError(f"data: expected an ImageData or FileImageData (data.load_dataset), got {type(data).__name__}")
    check_int(batch_size, "batch_size")
    if isinstance(data, ImageData):
        check_nchw(data.images, "data.images", model_channels(model))
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    use_amp = amp and (device.type == "cuda" if fast is None else fast)
    n, r, w = len(data), D.rank(), D.world_size()
    for x, y in make_batches(_part(data, n * r // w, n * (r + 1) // w), batch_size, device, workers=workers):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            correct += (model(x).argmax(1) == y).sum()
    model.train(was_training)
    return D.all_reduce_sum(correct).item() / n


def _part(data, lo: int, hi: int):
    """Images ``lo:hi`` of an :class:`ImageData` or :class:`FileImageData` (a rank's share)."""
    if lo == 0 and hi == len(data):
        return data
    if isinstance(data, FileImageData):
        return dataclasses.replace(data, samples=data.samples[lo:hi])
    return ImageData(data.images[lo:hi], data.labels[lo:hi], data.classes, data.name)


def track_robustness(model: torch.nn.Module, data: ImageData, cfg: "TrainConfig", device) -> dict:
    """The robustness record of one epoch (``cfg.track_robustness``): clean accuracy, accuracy under
    each of ``cfg.track_attacks`` (keys ``tracked_<attack>_acc``) and (with ``cfg.track_corruption``)
    under the corruption, of ``model`` on ``data``, the fixed tracked subset.

    Measured exactly as ``mtlat-edu evaluate`` measures a cell
    (:func:`mtlat_edu.benchmark.suite.measure_cell`: float32, eval mode, benchmark seed
    ``cfg.seed``, batch ``cfg.eval_batch_size``), so an evaluation of the saved model with those
    settings on the same images gives the same numbers. No training random stream is touched.
    """
    from .attacks import eval_mode
    from .benchmark.suite import measure_cell
    cells = [("tracked_clean_acc", "clean", 0)] + [(f"tracked_{a}_acc", a, 0) for a in cfg.track_attacks]
    if cfg.track_corruption:
        cells.append(("tracked_corruption_acc", cfg.track_corruption, TRACK_SEVERITY))
    with eval_mode(model):
        record = {key: measure_cell(model, data, pert, sev, seed=cfg.seed, batch_size=cfg.eval_batch_size,
                                    device=device) / len(data) for key, pert, sev in cells}
    return {"tracked_images": len(data), **record}


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: list[dict]
    out_dir: Path | None
    config: TrainConfig
    test_acc: float = field(default=float("nan"))


def _checkpoint_state(model, opt, sched, epoch, gens, history, cfg, classes, ranks):
    state = {
        "model": _bare(model).state_dict(), "num_classes": len(classes), "classes": list(classes), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "epoch": epoch, "generators": [g.get_state() for g in gens], "history": history,
        "config": dataclasses.asdict(cfg), "torch_rng": torch.get_rng_state(), "world_size": len(ranks),
    }
    if len(ranks) > 1:  # every rank's own random streams (rank 0's are also in generators / torch_rng)
        state["ranks"] = ranks
    return state


def _plain(value):
    """A saved config value as ``identity()`` holds it (a list read back as a tuple)."""
    return tuple(value) if isinstance(value, list) else value


def _bare(model):
    return getattr(model, "_orig_mod", model)


def _load(cfg: TrainConfig, split: str, limit: int | None):
    """A split of ``cfg.dataset`` (rank 0 decodes and caches it first, the other ranks then read the cache)."""
    if D.rank() != 0:
        D.barrier()
    data = load_dataset(cfg.dataset, split, cfg.data_root, cfg.image_size, limit, cfg.seed, mode=cfg.data_mode)
    if D.rank() == 0:
        D.barrier()
    return data


def fit(cfg: TrainConfig, out_dir=None, train_data: ImageData | FileImageData | None = None,
        test_data: ImageData | FileImageData | None = None, resume: bool = True, progress: bool = True,
        stop_after: int | None = None) -> TrainResult:
    """Train ``cfg.method`` on ``cfg.dataset``; checkpoint into ``out_dir`` after every epoch.

    Args:
        cfg: the run's settings (validated here).
        out_dir: folder for ``checkpoint.pt``, ``model.pt``, ``history.json`` and ``config.json``;
            None keeps everything in memory.
        train_data, test_data: pre-loaded data (else loaded from ``cfg``, in memory or streamed
            from disk as ``cfg.data_mode`` says).
        resume: continue from ``out_dir/checkpoint.pt`` when present (a finished run returns at once);
            False starts over (the folder's previous checkpoint and model are removed first).
        stop_after: stop after this many epochs of *this call* (to simulate an interruption).

    ``out_dir`` is locked for the call (a second run into it fails at once, see
    :func:`mtlat_edu.io.folder_lock`); the checkpoint holds the history and ``history.json`` /
    ``config.json`` are rewritten from it, so a kill at any moment leaves a consistent folder.
    Under torchrun every rank calls ``fit``; rank 0 alone locks and writes ``out_dir``.
    """
    cfg.validate()
    check_int(stop_after, "stop_after", optional=True, what="run to the end")
    D.init(D.local_device(cfg.resolved_device()))
    D.check_batch_split(cfg.batch_size, D.world_size(), cfg.method in ADVERSARIAL)
    if train_data is None:
        train_data = _load(cfg, "train", cfg.train_limit)
    if test_data is None:
        test_data = _load(cfg, "test", cfg.test_limit)
    for name, data in (("train_data", train_data), ("test_data", test_data)):
        if not isinstance(data, (ImageData, FileImageData)):
            raise ValueError(f"{name}: expected an ImageData or FileImageData (data.load_dataset) or None, "
                             f"got {type(data).__name__}")
    if len(train_data) < cfg.batch_size:
        raise ValueError(f"batch_size: {cfg.batch_size} is larger than the training set ({len(train_data)} images)")
    if out_dir is None:
        return _fit(cfg, None, train_data, test_data, resume, progress, stop_after)
    out = Path(out_dir)
    if not D.is_main():
        return _fit(cfg, out, train_data, test_data, resume, False, stop_after)
    with mio.folder_lock(out):
        mio.clean_tmp(out, every=True)
        return _fit(cfg, out, train_data, test_data, resume, progress, stop_after)


def _fit(cfg: TrainConfig, out: Path | None, train_data, test_data, resume: bool,
         progress: bool, stop_after: int | None) -> TrainResult:
    device = D.local_device(cfg.resolved_device())
    rank, world = D.rank(), D.world_size()
    main = rank == 0
    fast = cfg.fast(device)
    num_classes = train_data.num_classes
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, num_classes).to(device)
    if cfg.sync_bn and world > 1:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if fast and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    data_gen = torch.Generator().manual_seed(cfg.seed)  # the same global order on every rank
    step_gen = torch.Generator(device=device).manual_seed(D.rank_seed(cfg.seed, rank))
    positions = D.local_positions(cfg.batch_size, rank, world, cfg.method in ADVERSARIAL) if world > 1 else None
    batches = make_batches(train_data, cfg.batch_size, device, shuffle=True, drop_last=True, generator=data_gen,
                           positions=positions, workers=cfg.workers)
    total_steps = cfg.epochs * len(batches)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total_steps))
    history: list[dict] = []
    start_epoch = 0

    ckpt_path = out / "checkpoint.pt" if out else None
    if D.broadcast_object(bool(out and resume and ckpt_path.exists())):
        state = mio.load_torch(ckpt_path, "training checkpoint", RESUME_REMEDY, device, CHECKPOINT_KEYS)
        asked = cfg.identity()
        defaults = TrainConfig().identity()  # a field added after the run was saved holds its default
        saved = {k: _plain(state["config"].get(k, defaults.get(k))) for k in asked} \
            if isinstance(state["config"], dict) else {}
        if saved != asked:
            diff = {k: (v, asked[k]) for k, v in saved.items() if asked[k] != v}
            raise ValueError(f"out_dir: {out} holds a checkpoint of a different run (saved vs asked: {diff}); "
                             "use another out_dir or resume=False (--no-resume)")
        saved_world = state.get("world_size", 1)
        if saved_world != world:
            raise ValueError(f"out_dir: {out} holds a checkpoint of a run in {saved_world} process(es), resumed in "
                             f"{world} (the batch split and the per-rank random streams depend on it): resume with "
                             f"torchrun --nproc_per_node={saved_world}, or start over with resume=False (--no-resume)")
        try:
            ranks = state.get("ranks") or [{"step": state["generators"][1], "torch_rng": state["torch_rng"]}]
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            data_gen.set_state(state["generators"][0])
            step_gen.set_state(ranks[rank]["step"])
            torch.set_rng_state(ranks[rank]["torch_rng"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise mio.CorruptFileError(f"{ckpt_path}: not a valid training checkpoint of this run ({exc}); "
                                       f"{RESUME_REMEDY}") from exc
        history, start_epoch = list(state["history"]), int(state["epoch"])
        if main:
            print(f"{out}: already finished ({cfg.epochs} epochs), reusing it" if start_epoch >= cfg.epochs else
                  f"{out}: resuming from epoch {start_epoch} of {cfg.epochs}")
    elif out and main:  # a fresh start: nothing of an earlier run may be left to describe this one
        for name in ("checkpoint.pt", "model.pt"):
            (out / name).unlink(missing_ok=True)
    if out and main:  # derived from the checkpoint (or empty), so a kill at any moment leaves them consistent
        mio.write_json(out / "config.json", dataclasses.asdict(cfg))
        mio.write_json(out / "history.json", history)

    run_model = torch.compile(model) if (cfg.compile and fast) else model
    train_model = D.wrap(run_model, device)  # DDP under torchrun; attacks run on the local replica
    method = get_method(cfg.method)
    mcfg = cfg.method_config(num_classes)
    augment = AUGMENTATIONS[cfg.augment]
    use_amp = cfg.amp and fast
    mem = torch.channels_last if (fast and cfg.channels_last) else torch.contiguous_format
    tracked = None
    if cfg.track_robustness:
        tracked = test_data.subset(cfg.track_robustness, cfg.seed)
        tracked = (tracked.load() if isinstance(tracked, FileImageData) else tracked).to(device)

    end_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, start_epoch + stop_after)
    for epoch in range(start_epoch, end_epoch):
        model.train()
        loss_sum = torch.zeros((), device=device)
        t0 = time.perf_counter()
        bar = tqdm(batches, desc=f"{cfg.method} epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not progress)
        for x, y in bar:
            x = augment(x, step_gen).contiguous(memory_format=mem)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = method(train_model, x, y, mcfg, step_gen, validate=False)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach()
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_time = time.perf_counter() - t0
        D.broadcast_buffers(model)  # rank 0's batch-norm statistics: the ones saved and evaluated
        test_acc = evaluate(model, test_data, cfg.eval_batch_size, device, cfg.amp, fast, cfg.workers)
        history.append({
            "epoch": epoch + 1, "train_loss": D.all_reduce_sum(loss_sum).item() / world / len(batches),
            "test_acc": test_acc, "lr": opt.param_groups[0]["lr"], "train_seconds": round(train_time, 3),
            "images_per_second": round(len(batches) * cfg.batch_size / train_time, 1),
        })
        if tracked is not None:
            history[-1].update(track_robustness(model, tracked, cfg, device))
        if progress:
            tracked_msg = "".join(f", {a} acc {history[-1][f'tracked_{a}_acc']:.4f}" for a in cfg.track_attacks) \
                if tracked is not None else ""
            tqdm.write(f"[{cfg.method}] epoch {epoch + 1}/{cfg.epochs}: loss {history[-1]['train_loss']:.4f}, "
                       f"test acc {test_acc:.4f}{tracked_msg}, {history[-1]['images_per_second']:.0f} img/s")
        if out:
            ranks = D.all_gather_object({"step": step_gen.get_state(), "torch_rng": torch.get_rng_state()})
            if main:
                mio.save_torch(ckpt_path, _checkpoint_state(model, opt, sched, epoch + 1, (data_gen, step_gen),
                                                            history, cfg, train_data.classes, ranks))
                mio.write_json(out / "history.json", history)

    finished = bool(history) and history[-1]["epoch"] == cfg.epochs
    if out and finished and main:
        save_model(out / "model.pt", model, cfg, num_classes, train_data.classes, history)
    D.barrier()  # every rank returns once rank 0 has written the run folder
    model.eval()
    return TrainResult(model, history, out, cfg, history[-1]["test_acc"] if history else float("nan"))


def save_model(path, model, cfg: TrainConfig, num_classes: int, classes: list[str], history: list[dict]):
    """Save the final weights with what is needed to rebuild and describe the model."""
    mio.save_torch(path, {
        "model": _bare(model).state_dict(), "num_classes": num_classes, "classes": list(classes),
        "config": dataclasses.asdict(cfg), "history": history,
        "test_acc": history[-1]["test_acc"] if history else None,
    })


def load_checkpoint(path, device="cpu"):
    """Rebuild a trained model from ``model.pt`` (or ``checkpoint.pt``, or their folder).

    Returns ``(model, info)``: the model in eval mode on ``device``, and a dict with ``method``,
    ``model``, ``dataset``, ``data_root``, ``image_size``, ``num_classes``, ``classes``,
    ``test_acc``, ``config`` and ``history``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt" if (path / "model.pt").exists() else path / "checkpoint.pt"
    if not path.exists():
        raise FileNotFoundError(f"path: no model.pt or checkpoint.pt at {path}")
    remedy = ("a plain state_dict has no run description: rebuild the model with models.build_model(name, "
              "num_classes) and call load_state_dict; a damaged file: retrain (mtlat-edu train) or delete it")
    state = mio.load_torch(path, "model file (model.pt or checkpoint.pt of mtlat-edu)", remedy, device, MODEL_KEYS)
    cfg, num_classes = state["config"], state["num_classes"]
    try:
        model = build_model(cfg["model"], num_classes)
        model.load_state_dict(state["model"])
        info_cfg = {k: cfg[k] for k in ("method", "model", "dataset", "data_root", "image_size")}
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise mio.CorruptFileError(f"{path}: not a valid model file ({type(exc).__name__}: {exc}); {remedy}") from exc
    model.to(device).eval()
    history = state.get("history", [])
    info = {
        **info_cfg, "num_classes": num_classes,
        "classes": state.get("classes"), "config": cfg, "history": history,
        "test_acc": history[-1]["test_acc"] if history else None, "path": str(path),
    }
    return model, info


def read_history(out_dir) -> list[dict]:
    """The per-epoch history of a run folder (``[]`` when there is none yet)."""
    path = Path(out_dir) / "history.json"
    hist = mio.read_json(path, [], remedy="it is derived from checkpoint.pt: delete it and run fit (resume) again")
    if not isinstance(hist, list) or not all(isinstance(h, dict) for h in hist):
        raise mio.CorruptFileError(f"{path}: expected a JSON list of per-epoch records, got {type(hist).__name__}; "
                                   "it is derived from checkpoint.pt: delete it and run fit (resume) again")
    return hist
