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
epoch (the running loss is summed on the device).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import io as mio
from .checks import check_positive, check_range, resolve_device
from .data import AUGMENTATIONS, DATASETS, DeviceBatches, ImageData, load_dataset
from .methods import ADVERSARIAL, MethodConfig, get_method, METHODS
from .models import MODELS, build_model

PAPER_EPOCHS = 90
PAPER_MILESTONES = (30, 60, 80)


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

    def validate(self) -> "TrainConfig":
        if self.method not in METHODS:
            raise ValueError(f"method: unknown name {self.method!r}; valid names: {', '.join(METHODS)}")
        if self.model not in MODELS:
            raise ValueError(f"model: unknown name {self.model!r}; valid names: {', '.join(MODELS)}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset: unknown name {self.dataset!r}; valid names: {', '.join(DATASETS)}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment: unknown name {self.augment!r}; valid names: {', '.join(AUGMENTATIONS)}")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs: must be an integer >= 1, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size: must be an integer >= 1, got {self.batch_size!r}")
        if self.method in ADVERSARIAL and (self.batch_size < 2 or self.batch_size % 2):
            raise ValueError(f"batch_size: method {self.method!r} splits each batch into a clean and an "
                             f"adversarial half, so it must be even and >= 2, got {self.batch_size}")
        check_positive(self.lr, "lr")
        check_range(self.weight_decay, "weight_decay", 0.0, 1.0)
        check_positive(self.alpha, "alpha")
        check_range(self.eps_max, "eps_max", 0.0, 1.0)
        MethodConfig(alpha=self.alpha, eps_max=self.eps_max, target=self.target)  # validates target
        return self

    def resolved_device(self) -> torch.device:
        return resolve_device(self.device)

    def identity(self) -> dict:
        """The fields that must match for a checkpoint to be resumed."""
        d = dataclasses.asdict(self)
        for k in ("device", "compile", "eval_batch_size"):
            d.pop(k)
        return d


def lr_factor(step: int, total_steps: int, epochs_ref: int = PAPER_EPOCHS,
              milestones=PAPER_MILESTONES) -> float:
    """The paper's step schedule as a function of progress: /10 after each milestone fraction."""
    passed = sum(step >= round(m / epochs_ref * total_steps) for m in milestones)
    return 0.1 ** passed


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: ImageData, batch_size: int = 1000, device=None,
             amp: bool = True) -> float:
    """Clean accuracy (a fraction in [0, 1]) of ``model`` on ``data``, in eval mode, batched."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    use_amp = amp and device.type == "cuda"
    for x, y in DeviceBatches(data, batch_size, device):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            correct += (model(x).argmax(1) == y).sum()
    model.train(was_training)
    return correct.item() / len(data)


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: list[dict]
    out_dir: Path | None
    config: TrainConfig
    test_acc: float = field(default=float("nan"))


def _checkpoint_state(model, opt, sched, epoch, gens, history, cfg, classes):
    return {
        "model": _bare(model).state_dict(), "num_classes": len(classes), "classes": list(classes), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "epoch": epoch, "generators": [g.get_state() for g in gens], "history": history,
        "config": dataclasses.asdict(cfg), "torch_rng": torch.get_rng_state(),
    }


def _bare(model):
    return getattr(model, "_orig_mod", model)


def fit(cfg: TrainConfig, out_dir=None, train_data: ImageData | None = None,
        test_data: ImageData | None = None, resume: bool = True, progress: bool = True,
        stop_after: int | None = None) -> TrainResult:
    """Train ``cfg.method`` on ``cfg.dataset``; checkpoint into ``out_dir`` after every epoch.

    Args:
        cfg: the run's settings (validated here).
        out_dir: folder for ``checkpoint.pt``, ``model.pt``, ``history.json`` and ``config.json``;
            None keeps everything in memory.
        train_data, test_data: pre-loaded data (else loaded from ``cfg``).
        resume: continue from ``out_dir/checkpoint.pt`` when present (a finished run returns at once).
        stop_after: stop after this many epochs of *this call* (to simulate an interruption).
    """
    cfg.validate()
    device = cfg.resolved_device()
    if train_data is None:
        train_data = load_dataset(cfg.dataset, "train", cfg.data_root, cfg.image_size, cfg.train_limit, cfg.seed)
    if test_data is None:
        test_data = load_dataset(cfg.dataset, "test", cfg.data_root, cfg.image_size, cfg.test_limit, cfg.seed)
    num_classes = train_data.num_classes
    if len(train_data) < cfg.batch_size:
        raise ValueError(f"batch_size: {cfg.batch_size} is larger than the training set ({len(train_data)} images)")

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, num_classes).to(device)
    if device.type == "cuda" and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    data_gen = torch.Generator().manual_seed(cfg.seed)
    step_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    batches = DeviceBatches(train_data, cfg.batch_size, device, shuffle=True, drop_last=True, generator=data_gen)
    total_steps = cfg.epochs * len(batches)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total_steps))
    history: list[dict] = []
    start_epoch = 0

    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / "checkpoint.pt" if out else None
    if out and resume and ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False, map_location=device)
        saved = TrainConfig(**state["config"])
        if saved.identity() != cfg.identity():
            diff = {k: (v, cfg.identity()[k]) for k, v in saved.identity().items() if cfg.identity()[k] != v}
            raise ValueError(f"out_dir: {out} holds a checkpoint of a different run (saved vs asked: {diff}); "
                             "use another out_dir or resume=False")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        for g, s in zip((data_gen, step_gen), state["generators"]):
            g.set_state(s)
        torch.set_rng_state(state["torch_rng"])
        history, start_epoch = state["history"], state["epoch"]
    if out:
        mio.write_json(out / "config.json", dataclasses.asdict(cfg))

    run_model = torch.compile(model) if (cfg.compile and device.type == "cuda") else model
    method = get_method(cfg.method)
    mcfg = MethodConfig(num_classes=num_classes, alpha=cfg.alpha, eps_max=cfg.eps_max,
                        per_batch=cfg.per_batch, target=cfg.target)
    augment = AUGMENTATIONS[cfg.augment]
    use_amp = cfg.amp and device.type == "cuda"
    mem = torch.channels_last if (device.type == "cuda" and cfg.channels_last) else torch.contiguous_format

    end_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, start_epoch + stop_after)
    for epoch in range(start_epoch, end_epoch):
        model.train()
        loss_sum = torch.zeros((), device=device)
        t0 = time.perf_counter()
        bar = tqdm(batches, desc=f"{cfg.method} epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not progress)
        for x, y in bar:
            x = augment(x, step_gen).contiguous(memory_format=mem)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = method(run_model, x, y, mcfg, step_gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach()
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_time = time.perf_counter() - t0
        test_acc = evaluate(model, test_data, cfg.eval_batch_size, device, cfg.amp)
        history.append({
            "epoch": epoch + 1, "train_loss": loss_sum.item() / len(batches), "test_acc": test_acc,
            "lr": opt.param_groups[0]["lr"], "train_seconds": round(train_time, 3),
            "images_per_second": round(len(batches) * cfg.batch_size / train_time, 1),
        })
        if progress:
            tqdm.write(f"[{cfg.method}] epoch {epoch + 1}/{cfg.epochs}: loss {history[-1]['train_loss']:.4f}, "
                       f"test acc {test_acc:.4f}, {history[-1]['images_per_second']:.0f} img/s")
        if out:
            mio.save_torch(ckpt_path, _checkpoint_state(model, opt, sched, epoch + 1, (data_gen, step_gen), history, cfg,
                                                    train_data.classes))
            mio.write_json(out / "history.json", history)

    finished = bool(history) and history[-1]["epoch"] == cfg.epochs
    if out and finished:
        save_model(out / "model.pt", model, cfg, num_classes, train_data.classes, history)
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
    state = torch.load(path, map_location=device, weights_only=False)
    cfg = state["config"]
    num_classes = state["num_classes"]
    model = build_model(cfg["model"], num_classes)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    history = state.get("history", [])
    info = {
        "method": cfg["method"], "model": cfg["model"], "dataset": cfg["dataset"],
        "data_root": cfg["data_root"], "image_size": cfg["image_size"], "num_classes": num_classes,
        "classes": state.get("classes"), "config": cfg, "history": history,
        "test_acc": history[-1]["test_acc"] if history else None, "path": str(path),
    }
    return model, info


def read_history(out_dir) -> list[dict]:
    path = Path(out_dir) / "history.json"
    return json.loads(path.read_text()) if path.exists() else []
