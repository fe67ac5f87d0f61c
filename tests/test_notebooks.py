"""The course notebooks, executed end to end by papermill on the ``smoke`` profile, then nbval.

* ``test_notebook_runs[NN]`` runs the notebooks in order (papermill, kernel ``python3`` = this
  venv's Python) with one session-wide runs folder, so only notebook 05 (and 03, which needs the
  ``standard`` model first) trains; the others reuse the checkpoints. A failing notebook fails its
  test with the failing cell's source and error (papermill's PapermillExecutionError); the
  notebooks after it are skipped.
* ``test_training_happened_once`` checks that no run was retrained after notebook 05.
* ``test_nbval_check_output_cells`` runs ``pytest --nbval-lax`` in a subprocess on the executed
  copies of 01-04: every cell is re-executed and the cells marked ``# NBVAL_CHECK_OUTPUT`` must print
  what the papermill run stored (the committed notebooks have no outputs to compare against).
  ``test_nbval_detects_a_changed_output`` tampers with one stored output and expects nbval to fail.
* ``test_reproduce_reports_the_failing_cell`` runs ``mtlat-edu reproduce`` on a copy of notebook 01
  with a failing cell appended and checks the exit code and the message.

The kernels run with one OMP thread (``MTLAT_TEST_THREADS``, default 1): on a small shared CPU
that is several times faster than letting every process use all cores.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("papermill")

from mtlat_edu import cli  # noqa: E402
from mtlat_edu.course import runner  # noqa: E402
from mtlat_edu.training.profiles import SURROGATE, TABLE_METHODS  # noqa: E402

KEYS = [n.split("_")[0] for n in runner.NOTEBOOKS]
NBVAL_KEYS = ("01", "02", "03", "04")
THREADS = int(os.environ.get("MTLAT_TEST_THREADS", "1"))
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="session")
def course_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    return {"runs": root / "runs", "out": root / "out", "failed": [], "done": [], "mtimes": None}


def _executed(run, key) -> Path:
    return run["out"] / "notebooks" / next(n for n in runner.NOTEBOOKS if n.startswith(key))


def _outputs(nb, kind=None):
    for cell in nb.cells:
        if cell.cell_type == "code":
            for o in cell.get("outputs", []):
                if kind is None or o.get("output_type") == kind:
                    yield cell, o


def _checkpoint_mtimes(runs: Path) -> dict:
    return {str(p.relative_to(runs)): p.stat().st_mtime_ns for p in sorted(runs.glob("smoke/*/seed*/checkpoint.pt"))}


def test_committed_notebooks_are_clean():
    """Committed without outputs, kernelspec python3, nbformat 4, first code cell tagged parameters."""
    for path in runner.select_notebooks():
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
        assert nb.nbformat == 4 and nb.metadata["kernelspec"]["name"] == "python3", path.name
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.outputs == [] and c.execution_count is None for c in code), f"{path.name} has outputs"
        assert "parameters" in code[0].metadata.get("tags", []), f"{path.name}: first code cell not tagged"
        for name in ("profile", "device", "data_root", "runs_root", "output_dir"):
            assert f"\n{name} = " in "\n" + code[0].source, f"{path.name}: parameter {name} missing"


@pytest.mark.parametrize("key", KEYS)
def test_notebook_runs(key, course_run):
    if course_run["failed"]:
        pytest.skip(f"notebook {course_run['failed'][0]} failed before this one")
    report = runner.run_notebooks("smoke", out=course_run["out"], notebooks=[key], runs_root=course_run["runs"],
                                  threads=THREADS, log=lambda s: None)
    if not report.ok:
        course_run["failed"].append(key)
        pytest.fail(f"notebook {key} failed: {report.failed.error}", pytrace=False)
    course_run["done"].append(key)
    nb = nbformat.read(str(_executed(course_run, key)), as_version=4)
    assert not list(_outputs(nb, "error"))
    results = course_run["out"] / _executed(course_run, key).stem
    assert results.is_dir() and any(results.iterdir()), f"notebook {key} saved no results in {results}"
    if key in ("02", "03", "06", "10"):  # the slider notebooks: a live widget and its static figure
        assert any(WIDGET_MIME in o.get("data", {}) for _, o in _outputs(nb)), f"{key}: no widget displayed"
        assert any("image/png" in o.get("data", {}) for _, o in _outputs(nb)), f"{key}: no figure"
    if key == "01":
        setup = json.loads((results / "setup.json").read_text())
        assert setup["synthetic_data"] is True and setup["profile"] == "smoke"
    if key == "05":
        acc = json.loads((results / "clean_accuracy.json").read_text())["clean_accuracy"]
        assert set(acc) == {*TABLE_METHODS, SURROGATE}
        course_run["mtimes"] = _checkpoint_mtimes(course_run["runs"])
        assert len(course_run["mtimes"]) == len(acc)
    if key == "08":
        assert (course_run["out"] / "benchmark" / "tables.md").exists()
        claims = json.loads((results / "claims.json").read_text())
        assert claims["seeds"] == [0] and [c["id"] for c in claims["claims"]] == ["a", "b", "c", "d", "e"]
        # one training seed: the noise is unknown, so no claim may hold or fail
        assert all(c["verdict"] == "within_noise" for c in claims["claims"]), claims["claims"]
    if key == "09":
        assert (results / "complementarity.json").exists()
    if key == "10":  # the future-work methods: k = 1 is FGSM; the committed multi-seed comparison was read
        assert json.loads((results / "pgd_steps.json").read_text())["k1_equals_fgsm"] is True
        verdicts = json.loads((results / "comparison_verdicts.json").read_text())
        assert set(verdicts) >= {"mtlat_pgd", "manifold_mtlat"}


def test_training_happened_once(course_run):
    if course_run["mtimes"] is None or course_run["done"][-1:] != [KEYS[-1]]:
        pytest.skip("the notebooks did not all run")
    assert _checkpoint_mtimes(course_run["runs"]) == course_run["mtimes"], "a run was retrained after notebook 05"


def _nbval(paths, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS), "MTLAT_PROFILE": "smoke"}
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider", "-q",
           "-o", "addopts=", *map(str, paths)]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_nbval_check_output_cells(course_run):
    missing = [k for k in NBVAL_KEYS if k not in course_run["done"]]
    if missing:
        pytest.skip(f"notebooks {missing} did not run")
    paths = [_executed(course_run, k) for k in NBVAL_KEYS]
    checked = sum("NBVAL_CHECK_OUTPUT" in c.source for p in paths
                  for c in nbformat.read(str(p), as_version=4).cells if c.cell_type == "code")
    assert checked >= 5, "the notebooks lost their NBVAL_CHECK_OUTPUT cells"
    proc = _nbval(paths, paths[0].parent)
    assert proc.returncode == 0, f"nbval failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"


def test_nbval_detects_a_changed_output(course_run, tmp_path):
    if "01" not in course_run["done"]:
        pytest.skip("notebook 01 did not run")
    nb = nbformat.read(str(_executed(course_run, "01")), as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in c.source)
    cell.outputs[0]["text"] = cell.outputs[0]["text"].replace("smoke", "smog")
    bad = tmp_path / "01_tampered.ipynb"
    nbformat.write(nb, str(bad))
    proc = _nbval([bad], tmp_path)
    assert proc.returncode != 0, "nbval accepted a changed output: the CHECK_OUTPUT cells are not compared"


def test_reproduce_reports_the_failing_cell(course_run, tmp_path, capsys):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    src = runner.NOTEBOOK_DIR / runner.NOTEBOOKS[0]
    nb = nbformat.read(str(src), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell('raise ValueError("boom from the test")'))
    nbformat.write(nb, str(folder / src.name))
    out = tmp_path / "out"
    rc = cli.main(["reproduce", "--profile", "smoke", "--out", str(out), "--notebooks", "01", "--threads", str(THREADS),
                   "--runs-root", str(course_run["runs"]), "--notebook-dir", str(folder)])
    text = capsys.readouterr().out
    assert rc == 1
    assert "FAILED 01_introduction.ipynb" in text and "ValueError: boom from the test" in text
    assert 'raise ValueError("boom from the test")' in text  # the failing cell's source
    summary = json.loads((out / "reproduce.json").read_text())
    assert summary["notebooks"][0]["status"] == "failed"
