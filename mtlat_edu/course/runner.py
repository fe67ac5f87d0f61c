"""The papermill runner behind ``mtlat-edu reproduce`` and the notebook tests.

:func:`run_notebooks` executes the course notebooks in order with papermill, passing every
notebook the same parameters (profile, device, data and runs folders, seeds), writes the
executed copies to ``<out>/notebooks/`` and a ``reproduce.json`` record, shows one progress bar
over the notebooks, and stops at the first failing notebook, printing the failing cell and its
error (:func:`describe_failure`). Kernels talk over private Unix sockets (:func:`private_kernel`).
Used by :mod:`mtlat_edu.cli` (``reproduce``), ``make reproduce`` and tests/test_notebooks.py.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from mtlat_edu.core import checks, io as mio
from mtlat_edu.course.session import NOTEBOOK_DIR
from mtlat_edu.training.profiles import PROFILES, Profile, changes_weights, check_settings, get_profile, train_course
from mtlat_edu.training.runs import DEFAULT_RUNS

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
# the notebooks that read trained runs: before the first of them, ``reproduce`` trains every missing run
# of the course at once (training.profiles.train_course), so both cores work from the first minute
NEEDS_RUNS = frozenset(NOTEBOOKS[2:])


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
                  runs_root=DEFAULT_RUNS, data_root=None, kernel_name: str = KERNEL_NAME,
                  notebook_folder=None, cell_timeout: int | None = None, log: Callable[[str], None] = print,
                  extra_parameters: dict | None = None, threads: int | None = None,
                  progress: bool = False, reproduce: bool = True, settings: dict | None = None) -> ReproduceReport:
    """Execute the course notebooks in order with papermill; stop at the first failure.

    Executed copies go to ``<out>/notebooks/``, the notebooks' results to ``<out>/<notebook>/`` and
    a summary to ``<out>/reproduce.json``. Relative ``out``, ``runs_root`` and ``data_root`` are
    resolved against the current directory; the kernel runs in the notebooks' folder.
    ``threads`` sets OMP_NUM_THREADS / MKL_NUM_THREADS for the kernels (1 is much faster on a
    small shared CPU, where several processes compete for the cores). ``progress`` shows one
    progress bar over the notebooks (``mtlat-edu reproduce``) instead of a line per notebook.
    ``reproduce`` (the notebooks' parameter): True trains every missing run from scratch, False lets
    the shipped models stand in for them (:mod:`mtlat_edu.course.shipped`). ``settings``: training
    settings that differ from the profile's (``{"eps_max": 0.05}``, the ``reproduce`` options; checked
    here, :func:`~mtlat_edu.training.profiles.check_settings`), used by the training step and passed
    to every notebook as its ``settings`` parameter.
    """
    import papermill  # noqa: F401  (fail early, before any work, when papermill is missing)

    checks.check_choice(profile, "profile", PROFILES)
    checks.resolve_device(device)  # a bad device fails here, not inside the first notebook
    checks.check_int(threads, "threads", 1, optional=True, what="the kernels' default")
    checks.check_int(cell_timeout, "cell_timeout", 1, optional=True, what="no limit")
    prof = get_profile(profile, **({"data_root": str(Path(data_root).expanduser().resolve())} if data_root else {}))
    settings = check_settings(prof, settings, device)  # before any notebook or training
    folder = Path(notebook_folder or NOTEBOOK_DIR).resolve()
    paths = select_notebooks(notebooks, folder)
    out = Path(out or Path("output") / profile).expanduser().resolve()
    exec_dir = out / "notebooks"
    exec_dir.mkdir(parents=True, exist_ok=True)
    ensure_kernel(kernel_name)
    params = {"profile": profile, "device": device, "runs_root": str(Path(runs_root).expanduser().resolve()),
              "output_dir": str(out), "data_root": str(Path(data_root).expanduser().resolve()) if data_root else None,
              "reproduce": bool(reproduce),
              "settings": mio.json_ready(settings)}
    params.update(extra_parameters or {})
    log(f"mtlat-edu reproduce: profile {profile}, device {device}, {len(paths)} notebook(s)\n"
        f"  runs    {params['runs_root']}/{profile}\n  output  {out}")
    results: list[NotebookResult] = []
    training = None
    if (reproduce or changes_weights(settings)) and any(p.name in NEEDS_RUNS for p in paths):
        training = _train_first(prof, params, settings, device, log, progress)
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
    total = sum(r.seconds for r in results) + (training["seconds"] if training else 0.0)
    mio.write_json(out / "reproduce.json", {
        "profile": profile, "device": device, "threads": threads, "parameters": params,
        "training": training, "notebooks": [r.__dict__ for r in results],
        "total_seconds": round(total, 1),
    })
    if progress:
        log(summary_table(out))
    if report.ok:
        log(f"\nall {len(results)} notebook(s) ran" + (" after the training" if training else "") + f" in {total:.0f} s. Results:\n"
            f"  executed notebooks   {exec_dir}\n"
            f"  results per notebook {out}/<notebook>/ (JSON, Markdown, PNG)\n"
            f"  benchmark tables     {out / 'benchmark'}/tables.md (notebooks 06-09)\n"
            f"  summary              {out / 'reproduce.json'}")
    else:
        log(f"\nstopped at {report.failed.notebook}; summary in {out / 'reproduce.json'}")
    return report


def _train_first(prof: Profile, params: dict, settings: dict, device: str, log, progress: bool) -> dict:
    """Train every missing run of the course (:func:`~mtlat_edu.training.profiles.train_course`, with
    ``settings``) before the first notebook; ``{"seconds", "trained": [run folders]}`` for ``reproduce.json``."""
    log(f"training every missing run of the course first ({prof.name}: its methods, the surrogate"
        + (f", {prof.short_profile}'s standard and mixup" if prof.short_profile else "") + ")")
    t0 = time.perf_counter()
    trained = train_course(prof, params["runs_root"], seeds=params.get("seeds"), device=device, progress=progress,
                           **settings)
    seconds = round(time.perf_counter() - t0, 1)
    log(f"      {len(trained)} run(s) trained in {seconds:.0f} s")
    return {"seconds": seconds, "trained": [str(out) for _, _, _, out in trained]}


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
    if data.get("training"):
        t = data["training"]
        rows.insert(0, f"{'training (' + str(len(t['trained'])) + ' runs)':<28} {'ok':<8} {t['seconds']:>7.1f} s")
    return "\n".join(rows + [f"{'total':<28} {'':<8} {data['total_seconds']:>7.1f} s"])
