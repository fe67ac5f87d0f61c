"""The training loop: ``fit`` runs one :class:`~mtlat_edu.training.config.TrainConfig` (section 4.2).

Each epoch ends with a clean test evaluation, a JSON history and an atomic checkpoint holding
the model, optimizer, scheduler and every random generator, so ``fit`` on an interrupted run
continues to the same weights an uninterrupted run reaches (on the CPU, bit for bit), and ``fit``
on a finished run returns at once (notebooks do not retrain).

On CUDA the fast path is used: data resident on the GPU as uint8 (:class:`DeviceBatches`),
bf16 autocast, channels_last batches (the weights are channels-last on every device:
:func:`~mtlat_edu.models.build_model`), optional ``torch.compile``, and no host synchronisation inside an
epoch (the running loss is summed on the device). ``fast_path="on"`` runs that same code on the
CPU (the tests do), ``"off"`` turns it off on a GPU.

Under ``torchrun`` the same ``fit`` runs DistributedDataParallel (:mod:`mtlat_edu.core.distributed`):
each rank trains on its share of every global batch of ``batch_size`` images, rank 0 alone writes
the run folder, the checkpoint holds every rank's random streams, and the test accuracy is
measured on shards of the test set and summed.

``track_robustness=N`` measures at the end of every epoch (or of epoch 1, every ``track_every``-th
epoch after it and the last) the accuracy under the benchmark's PGD
(section 4.1: eps 0.04, 10 iterations; ``track_attacks`` adds PGD_LL or CW_2) on a fixed
class-balanced subset of N test images, chosen with the run seed (and,
with ``track_corruption``, under one corruption at severity 3), with the benchmark's own
measuring code (:func:`mtlat_edu.robustness.measure.measure_cell`): the history then shows
robustness appear during training (or FGSM training's catastrophic overfitting).
"""
from __future__ import annotations

import dataclasses
import errno
import math
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mtlat_edu.core import distributed as D
from mtlat_edu.core import io as mio
from mtlat_edu.core.checks import check_int
from mtlat_edu.data import (AUGMENTATIONS, FileImageData, ImageData, batches as make_batches, check_same_classes,
                            load_dataset)
from mtlat_edu.models import build_model
from mtlat_edu.paper.methods import ADVERSARIAL, trusted_method
from mtlat_edu.robustness.measure import CLEAN, accuracy, measure_cell
from mtlat_edu.training.checkpoints import (CHECKPOINT_KEYS, RESUME_REMEDY, checkpoint_state,
                                            save_model)
from mtlat_edu.training.config import TRACK_SEVERITY, TrainConfig, lr_factor


def epoch_accuracy(model: torch.nn.Module, data: ImageData | FileImageData, batch_size: int = 1000, device=None,
                   amp: bool = True, fast: bool | None = None, workers: int = 4) -> float:
    """Clean accuracy (a fraction in [0, 1]) of ``model`` on ``data`` at the end of an epoch: the
    package's one accuracy count (:func:`mtlat_edu.robustness.measure.accuracy`: eval mode, the
    modes restored, batched, sharded under torchrun) with the training's fast-path rule for bf16
    autocast: ``amp`` where the fast path is on (``fast``; default: on CUDA).
    ``workers``: decoding processes for a :class:`FileImageData`.

    :func:`fit` calls it after every epoch (the ``test_acc`` of the history, plotted in notebook 05).
    Not the benchmark: that is :func:`mtlat_edu.benchmark.evaluate` (``mtlat-edu evaluate``).
    """
    if not isinstance(data, (ImageData, FileImageData)):
        raise ValueError(f"data: expected an ImageData or FileImageData (data.load_dataset), got {type(data).__name__}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    use_amp = amp and (device.type == "cuda" if fast is None else fast)
    return accuracy(model, data, batch_size=batch_size, device=device, amp=use_amp, workers=workers)


def track_robustness(model: torch.nn.Module, data: ImageData, cfg: "TrainConfig", device) -> dict:
    """The robustness record of one epoch (``cfg.track_robustness``): clean accuracy, accuracy under
    each of ``cfg.track_attacks`` (keys ``tracked_<attack>_acc``) and (with ``cfg.track_corruption``)
    under the corruption, of ``model`` on ``data``, the fixed tracked subset.

    Measured exactly as ``mtlat-edu evaluate`` measures a cell
    (:func:`mtlat_edu.robustness.measure.measure_cell`: float32, eval mode with the modes restored,
    benchmark seed ``cfg.seed``, batch ``cfg.eval_batch_size``), so an evaluation of the saved model
    with those settings on the same images gives the same numbers. No training random stream is touched.
    """
    cells = [("tracked_clean_acc", CLEAN, 0)] + [(f"tracked_{a}_acc", a, 0) for a in cfg.track_attacks]
    if cfg.track_corruption:
        cells.append(("tracked_corruption_acc", cfg.track_corruption, TRACK_SEVERITY))
    record = {key: measure_cell(model, data, pert, sev, seed=cfg.seed, batch_size=cfg.eval_batch_size,
                                device=device) / len(data) for key, pert, sev in cells}
    return {"tracked_images": len(data), **record}


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite: the run stops, and no model.pt is written."""


RUN_FILES = ("checkpoint.pt", "model.pt", "history.json", "config.json")


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: list[dict]
    out_dir: Path | None
    config: TrainConfig
    test_acc: float = field(default=float("nan"))


def _load(cfg: TrainConfig, split: str, limit: int | None):
    """A split of ``cfg.dataset`` (rank 0 decodes and caches it first, the other ranks then read the cache)."""
    if D.rank() != 0:
        D.barrier()
    data = load_dataset(cfg.dataset, split, cfg.data_root, cfg.image_size, limit, cfg.seed, mode=cfg.data_mode)
    if D.rank() == 0:
        D.barrier()
    return data


def run_data(cfg: TrainConfig, train=None, test=None) -> tuple:
    """``(train, test)``: the data a run of ``cfg`` trains and is tested on, its seed's class-balanced
    subsets (``train_limit``, ``test_limit``) loaded as its ``data_mode`` says (a split given here is
    kept). The one loader of a run's data: :func:`fit` calls it for the splits it is not given, the
    profiles' trainer to load a seed's data once for several runs (``profiles.job_data``)."""
    return (_load(cfg, "train", cfg.train_limit) if train is None else train,
            _load(cfg, "test", cfg.test_limit) if test is None else test)


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
        resume: continue from ``out_dir/checkpoint.pt`` when present (a finished run returns at once,
            also from a read-only folder); False starts over: the new run trains in a temporary folder
            beside ``out_dir`` (``.mtlat-<name>.<pid>.<random>.tmp``) and replaces the previous run's
            files only once it has finished (a failed, stopped or killed new run leaves them intact).
        stop_after: stop after this many epochs of *this call* (to simulate an interruption).

    ``out_dir`` is locked for the call (a second run into it fails at once, see
    :func:`mtlat_edu.core.io.folder_lock`); the checkpoint holds the history and ``history.json`` /
    ``config.json`` are rewritten from it, so a kill at any moment leaves a consistent folder.
    Under torchrun every rank calls ``fit``; rank 0 alone locks and writes ``out_dir``.

    A loss that becomes NaN or infinite stops the run at the end of that epoch with
    :class:`TrainingDivergedError` (naming the epoch and ``--lr``); nothing of that epoch is saved.
    """
    cfg.validate()
    check_int(stop_after, "stop_after", optional=True, what="run to the end")
    D.init(D.local_device(cfg.resolved_device()))
    D.check_batch_split(cfg.batch_size, D.world_size(), cfg.method in ADVERSARIAL)
    train_data, test_data = run_data(cfg, train_data, test_data)
    for name, data in (("train_data", train_data), ("test_data", test_data)):
        if not isinstance(data, (ImageData, FileImageData)):
            raise ValueError(f"{name}: expected an ImageData or FileImageData (data.load_dataset) or None, "
                             f"got {type(data).__name__}")
    check_same_classes(train_data.classes, test_data.classes)
    if len(train_data) < cfg.batch_size:
        raise ValueError(f"batch_size: {cfg.batch_size} is larger than the training set ({len(train_data)} images)")
    if out_dir is None:
        return _fit(cfg, None, train_data, test_data, resume, progress, stop_after)
    out = Path(out_dir)
    if not D.is_main():
        return _fit(cfg, out, train_data, test_data, resume, False, stop_after)
    if resume and out.is_dir() and not os.access(out, os.W_OK) and (out / "checkpoint.pt").is_file():
        # a read-only folder (another user's, an unpacked archive): a finished run is reused, nothing written
        return _fit(cfg, out, train_data, test_data, resume, progress, stop_after, readonly=True)
    with mio.folder_lock(out):
        mio.clean_tmp(out, every=True)
        if not resume and any((out / f).exists() for f in ("checkpoint.pt", "model.pt")):
            return _fit_beside(cfg, out, train_data, test_data, progress, stop_after)
        return _fit(cfg, out, train_data, test_data, resume, progress, stop_after)


def _fit_beside(cfg: TrainConfig, out: Path, train_data, test_data, progress: bool,
                stop_after: int | None) -> TrainResult:
    """``resume=False`` over a folder holding a run: train in a fresh temporary sibling, then move the
    finished run's files into ``out`` (each by an atomic rename; ``model.pt`` of the previous run is
    removed just before, so no moment shows the old model with the new checkpoint). The caller
    holds ``out``'s lock."""
    mio.clean_tmp(out.parent)  # temporary folders of killed --no-resume runs
    tmp = out.parent / f"{mio.TMP_PREFIX}{out.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    tmp.mkdir()
    print(f"{out}: starting over in {tmp.name}; the previous run is replaced once the new one has finished")
    try:
        res = _fit(cfg, tmp, train_data, test_data, False, progress, stop_after)
        if not (res.history and res.history[-1]["epoch"] == cfg.epochs):
            print(f"{out}: the new run stopped after epoch {res.history[-1]['epoch'] if res.history else 0} of "
                  f"{cfg.epochs}; the previous run is left as it was")
            res.out_dir = out
            return res
        (out / "model.pt").unlink(missing_ok=True)
        for name in RUN_FILES:
            os.replace(tmp / name, out / name)
        res.out_dir = out
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fit(cfg: TrainConfig, out: Path | None, train_data, test_data, resume: bool,
         progress: bool, stop_after: int | None, readonly: bool = False) -> TrainResult:
    device = D.local_device(cfg.resolved_device())
    rank, world = D.rank(), D.world_size()
    main = rank == 0
    write = bool(out) and main and not readonly  # rank 0 alone writes the run folder
    fast = cfg.fast(device)
    num_classes = train_data.num_classes
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, num_classes).to(device)
    if cfg.sync_bn and world > 1:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
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
        diff = cfg.differences(state["config"])
        if diff:
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
        if readonly and start_epoch < cfg.epochs:
            raise mio.WriteError(errno.EACCES, f"out_dir: {out} is read-only and its run is unfinished (epoch {start_epoch} of "
                                     f"{cfg.epochs}); copy the folder somewhere writable to resume it")
        if main:
            print(f"{out}: already finished ({cfg.epochs} epochs), reusing it" if start_epoch >= cfg.epochs else
                  f"{out}: resuming from epoch {start_epoch} of {cfg.epochs}")
    elif write:  # a fresh start: nothing of an earlier run may be left to describe this one
        for name in ("checkpoint.pt", "model.pt"):
            (out / name).unlink(missing_ok=True)
    if write and (start_epoch < cfg.epochs or not (out / "model.pt").exists()):
        # derived from the checkpoint (or empty), so a kill at any moment leaves them consistent (a kill
        # between the last checkpoint and model.pt is finished here); a finished run's files stay as
        # written (reused with other speed or tracking settings, its config.json says how it was trained)
        mio.write_json(out / "config.json", dataclasses.asdict(cfg))
        mio.write_json(out / "history.json", history)

    run_model = torch.compile(model) if (cfg.compile and fast) else model
    train_model = D.wrap(run_model, device)  # DDP under torchrun; attacks run on the local replica
    method = trusted_method(cfg.method)  # cfg validated once above; the batches are valid by construction
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
                loss = method(train_model, x, y, mcfg, step_gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach()
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_time = time.perf_counter() - t0
        train_loss = D.all_reduce_sum(loss_sum).item() / world / len(batches)
        if not math.isfinite(train_loss):  # every rank sees the same sum, so every rank stops here
            raise TrainingDivergedError(
                f"lr: training diverged in epoch {epoch + 1} of {cfg.epochs} ({cfg.method}): the mean training loss "
                f"is {train_loss}; lower the learning rate (--lr, now {cfg.lr:g}) and start over (--no-resume or "
                f"another folder); nothing of this epoch was saved and no model.pt was written")
        D.broadcast_buffers(model)  # rank 0's batch-norm statistics: the ones saved and evaluated
        test_acc = epoch_accuracy(model, test_data, cfg.eval_batch_size, device, cfg.amp, fast, cfg.workers)
        history.append({
            "epoch": epoch + 1, "train_loss": train_loss,
            "test_acc": test_acc, "lr": opt.param_groups[0]["lr"], "train_seconds": round(train_time, 3),
            "images_per_second": round(len(batches) * cfg.batch_size / train_time, 1),
        })
        if tracked is not None and cfg.tracks(epoch + 1):
            history[-1].update(track_robustness(model, tracked, cfg, device))
        if progress:
            tracked_msg = "".join(f", {a} acc {history[-1][f'tracked_{a}_acc']:.4f}" for a in cfg.track_attacks) \
                if "tracked_images" in history[-1] else ""
            tqdm.write(f"[{cfg.method}] epoch {epoch + 1}/{cfg.epochs}: loss {history[-1]['train_loss']:.4f}, "
                       f"test acc {test_acc:.4f}{tracked_msg}, {history[-1]['images_per_second']:.0f} img/s")
        if out:
            ranks = D.all_gather_object({"step": step_gen.get_state(), "torch_rng": torch.get_rng_state()})
            if write:
                mio.save_torch(ckpt_path, checkpoint_state(model, opt, sched, epoch + 1, (data_gen, step_gen),
                                                            history, cfg, train_data.classes, ranks))
                mio.write_json(out / "history.json", history)

    finished = bool(history) and history[-1]["epoch"] == cfg.epochs
    if write and finished:
        save_model(out / "model.pt", model, cfg, num_classes, train_data.classes, history)
    D.barrier()  # every rank returns once rank 0 has written the run folder
    model.eval()
    return TrainResult(model, history, out, cfg, history[-1]["test_acc"] if history else float("nan"))


