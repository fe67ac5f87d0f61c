"""The executed copies on display (``results/cpu/notebooks/``) cannot go stale: every code cell of
a source notebook must be, in order, the code cell of its executed copy (papermill's injected-
parameters cell aside); no copy may exist without its source."""
from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

from mtlat_edu.course import runner  # noqa: E402

EXECUTED = Path(__file__).resolve().parents[1] / "results" / "cpu" / "notebooks"


def code_cells(path: Path) -> list[str]:
    """The sources of the code cells, without papermill's injected parameters (and its error banners)."""
    nb = nbformat.read(str(path), as_version=4)
    skip = {"injected-parameters", "papermill-error-cell-tag"}
    return [c.source for c in nb.cells if c.cell_type == "code" and not skip & set(c.metadata.get("tags", []))]


def test_code_cells_helper_drops_only_the_injected_cell(tmp_path):
    nb = nbformat.v4.new_notebook()
    injected = nbformat.v4.new_code_cell("profile = 'cpu'")
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells = [nbformat.v4.new_code_cell("a = 1"), injected, nbformat.v4.new_markdown_cell("x"),
                nbformat.v4.new_code_cell("b = 2")]
    nbformat.write(nb, str(tmp_path / "n.ipynb"))
    assert code_cells(tmp_path / "n.ipynb") == ["a = 1", "b = 2"]


@pytest.mark.parametrize("name", runner.NOTEBOOKS)
def test_executed_copy_runs_todays_source(name):
    source, executed = runner.NOTEBOOK_DIR / name, EXECUTED / name
    assert executed.is_file(), f"{executed} is missing: regenerate with `mtlat-edu reproduce --profile cpu --out results/cpu`"
    src, ran = code_cells(source), code_cells(executed)
    first = next((i for i, (a, b) in enumerate(zip(src, ran)) if a != b), min(len(src), len(ran)))
    assert src == ran, (f"{executed} is stale: code cell {first + 1} differs from notebooks/{name} "
                        f"({len(src)} code cells in the source, {len(ran)} in the copy); regenerate it with "
                        "`mtlat-edu reproduce --profile cpu --out results/cpu`")


def test_no_executed_copy_without_a_source():
    assert sorted(p.name for p in EXECUTED.glob("*.ipynb")) == sorted(runner.NOTEBOOKS)
