"""Run folders' files: the per-epoch checkpoint, the final ``model.pt``, ``history.json``.

``checkpoint.pt`` holds the model, optimizer, scheduler, every random generator and the history,
so :func:`mtlat_edu.training.loop.fit` resumes to the same weights; ``model.pt`` holds the final
weights with what is needed to rebuild and describe the model (:func:`load_checkpoint`). All
writes are atomic and all loads ``weights_only`` (:mod:`mtlat_edu.core.io`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from mtlat_edu.core import io as mio
from mtlat_edu.core.checks import check_int
from mtlat_edu.models import build_model

if TYPE_CHECKING:
    from mtlat_edu.training.config import TrainConfig

CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "epoch", "generators", "history", "config", "torch_rng")
MODEL_KEYS = ("model", "config", "num_classes")
RESUME_REMEDY = "start the run over with resume=False (--no-resume), or delete the file"


def checkpoint_state(model, opt, sched, epoch, gens, history, cfg, classes, ranks):
    state = {
        "model": bare(model).state_dict(), "num_classes": len(classes), "classes": list(classes), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "epoch": epoch, "generators": [g.get_state() for g in gens], "history": history,
        "config": dataclasses.asdict(cfg), "torch_rng": torch.get_rng_state(), "world_size": len(ranks),
    }
    if len(ranks) > 1:  # every rank's own random streams (rank 0's are also in generators / torch_rng)
        state["ranks"] = ranks
    return state


def bare(model):
    return getattr(model, "_orig_mod", model)


def save_model(path, model, cfg: TrainConfig, num_classes: int, classes: list[str], history: list[dict]):
    """Save the final weights with what is needed to rebuild and describe the model."""
    mio.save_torch(path, {
        "model": bare(model).state_dict(), "num_classes": num_classes, "classes": list(classes),
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

    def bad(why: str) -> mio.CorruptFileError:
        return mio.CorruptFileError(f"{path}: not a valid model file ({why}); {remedy}")
    try:
        info_cfg = {k: cfg[k] for k in ("method", "model", "dataset", "data_root", "image_size")}
        check_int(num_classes, "num_classes", 2)
        model = _fitted_model(cfg["model"], num_classes, state["model"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise bad(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else exc}") from exc
    model.to(device).eval()
    history = state.get("history", [])
    if not isinstance(history, list) or not all(isinstance(h, dict) and "test_acc" in h for h in history):
        raise bad("its 'history' is not a list of per-epoch records with 'test_acc'")
    classes = state.get("classes")
    if classes is not None and (not isinstance(classes, list) or len(classes) != num_classes):
        raise bad(f"its 'classes' is not a list of {num_classes} class names")
    info = {
        **info_cfg, "num_classes": num_classes,
        "classes": classes, "config": cfg, "history": history,
        "test_acc": history[-1]["test_acc"] if history else None, "path": str(path),
    }
    return model, info


def _fitted_model(name: str, num_classes: int, weights) -> torch.nn.Module:
    """``build_model(name, num_classes)`` loaded with ``weights``, after checking on the meta device (no
    memory) that every tensor fits: a file's claims (e.g. ``num_classes`` = 2,000,000) are believed only
    once its weights agree with them, and a model of another architecture gets one line, not one per tensor."""
    if not isinstance(weights, dict):
        raise TypeError(f"'model' holds a {type(weights).__name__}, not a state_dict")
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_model(name, num_classes).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in weights.items() if isinstance(v, torch.Tensor)}
    missing, unexpected = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    other = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    if missing or unexpected or other:
        example = (f"{other[0]} is {got[other[0]]}, expected {expected[other[0]]}" if other
                   else f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}")
        raise ValueError(f"its weights do not fit a {name} with {num_classes} classes ({len(other)} tensors of other "
                         f"shapes, {len(missing)} missing, {len(unexpected)} unexpected; e.g. {example}): the file "
                         "holds another architecture or was edited")
    model = build_model(name, num_classes)
    model.load_state_dict(weights)
    return model


def read_history(out_dir) -> list[dict]:
    """The per-epoch history of a run folder (``[]`` when there is none yet)."""
    path = Path(out_dir) / "history.json"
    hist = mio.read_json(path, [], remedy="it is derived from checkpoint.pt: delete it and run fit (resume) again")
    if not isinstance(hist, list) or not all(isinstance(h, dict) for h in hist):
        raise mio.CorruptFileError(f"{path}: expected a JSON list of per-epoch records, got {type(hist).__name__}; "
                                   "it is derived from checkpoint.pt: delete it and run fit (resume) again")
    return hist
