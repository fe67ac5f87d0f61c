"""Where trained runs live: the one run-folder layout of every command, the profiles and the notebooks.

::

    <runs>/<group>/<method>[/seed<k>]/      checkpoint.pt, model.pt, history.json, config.json

* ``runs``: the root (:data:`DEFAULT_RUNS`, relative to the current directory, unless ``--runs`` or a
  notebook's ``runs_root`` says otherwise).
* ``group``: a profile's name for the profiles' runs (``train-profile``, ``reproduce``,
  ``evaluate --profile``, ``ship``, the notebooks' :class:`~mtlat_edu.course.session.Course`), or
  ``<dataset>-<model>`` (:func:`train_group`) for ``mtlat-edu train``.
* ``seed<k>``: always for a profile's runs (one folder per training seed); for ``mtlat-edu train``
  only with ``--seeds`` (without it the run folder is ``<runs>/<dataset>-<model>/<method>``).

Notebook 05's tracked copies (runs retrained with a robustness record when the profile's own run
has none) use the same layout under ``<runs>/`` :data:`TRACKED` as their root.
"""
from __future__ import annotations

from pathlib import Path

DEFAULT_RUNS = "runs"  # the default root of the run folders (every command's ``--runs``)
TRACKED = "tracked"    # <runs>/tracked/<profile>/<method>/seed<k>: notebook 05's tracked copies (course.shipped GROUPS)


def run_folder(runs, group: str, method: str, seed: int | None = None) -> Path:
    """``<runs>/<group>/<method>/seed<seed>`` (``<runs>/<group>/<method>`` when ``seed`` is None): the
    folder of one trained model. Every place that builds a run's folder calls this (the ``train``
    command, :func:`mtlat_edu.training.profiles.run_dir`, the benchmark's model collection, ``ship``,
    the notebooks' ``Course.run_dir``, used by notebook 05)."""
    folder = Path(runs) / group / method
    return folder if seed is None else folder / f"seed{seed}"


def train_group(dataset: str, model: str) -> str:
    """``<dataset>-<model>``: the group of ``mtlat-edu train``'s runs (and the default results folder
    name of ``mtlat-edu evaluate`` without ``--profile``)."""
    return f"{dataset}-{model}"
