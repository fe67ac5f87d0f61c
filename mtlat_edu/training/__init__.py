"""Training (section 4.2): one run's settings, the loop, the run folders' files, the named
profiles and the step-cost benchmark.

* :mod:`.config`       :class:`TrainConfig` (the paper's recipe as defaults) and the lr schedule
* :mod:`.loop`         :func:`fit`: epochs, the fast path, DDP, per-epoch checkpoints, exact resume
* :mod:`.checkpoints`  ``checkpoint.pt`` / ``model.pt`` / ``history.json``: save, load, read
* :mod:`.profiles`     the named settings (smoke, cpu, cifar10, paper) and training every run of one
* :mod:`.step_cost`    ``mtlat-edu bench-step``: seconds per step of each method, side by side
"""
from mtlat_edu.training.checkpoints import load_checkpoint, read_history, save_model
from mtlat_edu.training.config import TrainConfig, lr_factor
from mtlat_edu.training.loop import TrainResult, evaluate, fit

__all__ = ["TrainConfig", "TrainResult", "evaluate", "fit", "load_checkpoint", "lr_factor", "read_history", "save_model"]
