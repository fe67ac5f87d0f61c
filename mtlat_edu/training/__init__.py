"""Training (section 4.2): one run's settings, the loop, the run folders' files, the named
profiles and the step-cost benchmark.

* :mod:`.config`       :class:`TrainConfig` (the paper's recipe as defaults) and the lr schedule
* :mod:`.loop`         :func:`fit`: epochs, the fast path, DDP, per-epoch checkpoints, exact resume;
                       :func:`epoch_accuracy`, the clean test accuracy at the end of an epoch
* :mod:`.checkpoints`  ``checkpoint.pt`` / ``model.pt`` / ``history.json``: save, load, read
* :mod:`.runs`         the run-folder layout ``<runs>/<group>/<method>[/seed<k>]`` of every command
* :mod:`.profiles`     the named settings (smoke, cpu, cifar10, paper) and training every run of one
* :mod:`.step_cost`    ``mtlat-edu bench-step``: seconds per step of each method, side by side
"""
from mtlat_edu.training.checkpoints import load_checkpoint, read_history, save_model
from mtlat_edu.training.config import TrainConfig, lr_factor
from mtlat_edu.training.loop import TrainResult, epoch_accuracy, fit
from mtlat_edu.training.runs import DEFAULT_RUNS, run_folder

__all__ = ["DEFAULT_RUNS", "TrainConfig", "TrainResult", "epoch_accuracy", "fit", "load_checkpoint", "lr_factor",
           "read_history", "run_folder", "save_model"]
