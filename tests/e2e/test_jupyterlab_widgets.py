"""Browser end-to-end test: the course notebooks' ipywidgets sliders really work in JupyterLab.

For each notebook: open it in a real JupyterLab (this venv's ``sys.executable -m jupyter lab``) in a
headless Chromium, Run > Run All Cells, fail on any traceback, assert the slider is a live widget (not
the text repr JupyterLab 4 shows when ``jupyterlab_widgets`` is missing), move it with the keyboard and
check that the figure beside it is re-rendered with different content.

Run::

    .venv/bin/python -m pytest -m e2e tests/e2e -v

Other notebooks (e.g. before the course notebooks exist)::

    MTLAT_E2E_NOTEBOOKS="demo" ...                       # a generated demo notebook (slider "lambda")
    MTLAT_E2E_NOTEBOOKS="/tmp/a.ipynb=lambda;/tmp/b.ipynb=severity" ...

A notebook that does not exist yet is skipped; without Chromium (``CHROMIUM``, ``chromium``,
``chromium-browser``) or the ``playwright`` package every case is skipped.

Screenshots (numbered per step), ``result.json``, the browser console and the server log go to
``$MTLAT_E2E_OUT`` (default ``<repo>/output/e2e/<notebook>/``).  Time limits (s):
``MTLAT_E2E_RUN_TIMEOUT`` (Run All, default 180), ``MTLAT_E2E_SLIDER_TIMEOUT`` (re-render after the
move, default 60), ``MTLAT_E2E_TOTAL_TIMEOUT`` (whole run, default 540), ``MTLAT_E2E_SERVER_TIMEOUT``
(server start, default 120).  ``MTLAT_E2E_DISABLE_WIDGET_EXTENSION=1`` disables the widget extension
(simulates a missing ``jupyterlab_widgets``: the test must then fail; a check of the test itself).
``MTLAT_E2E_PROFILE`` (default ``smoke``): value injected after the cell tagged ``parameters``, papermill
style, in the throwaway copy (set it empty to run the notebook exactly as written).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# (notebook, slider description): the notebooks under test
NOTEBOOKS = [
    ("notebooks/02_mixup.ipynb", "lambda"),
    ("notebooks/03_targeted_fgsm.ipynb", "eps"),
    ("notebooks/06_corruptions.ipynb", "severity"),
]

RUN_TIMEOUT_S = float(os.environ.get("MTLAT_E2E_RUN_TIMEOUT", "180"))
SLIDER_TIMEOUT_S = float(os.environ.get("MTLAT_E2E_SLIDER_TIMEOUT", "60"))
OPEN_TIMEOUT_S = 60.0  # page load, then again for the kernel to be ready
PROFILE = os.environ.get("MTLAT_E2E_PROFILE", "smoke")

MISSING_EXTENSION_HELP = (
    "JupyterLab shows the widget's text repr instead of the slider: the ipywidgets front-end extension "
    "(@jupyter-widgets/jupyterlab-manager, PyPI package `jupyterlab_widgets`) is missing or disabled in the "
    "environment that runs JupyterLab. Fix: `pip install 'ipywidgets>=8' jupyterlab_widgets` in the SAME "
    "environment as `jupyter lab`, restart JupyterLab, hard-refresh the browser; "
    "`jupyter labextension list` must show @jupyter-widgets/jupyterlab-manager enabled OK.")

# text repr of a widget (what JupyterLab renders from text/plain when no widget manager is present)
WIDGET_REPR_RE = re.compile(
    r"\b(?:Float|Int)(?:Log|Range)?Slider\(|\binteractive\(children=|\b[HV]?Box\(children=|\bOutput\(\)")
# what the widget manager shows when it is there but cannot render the view
WIDGET_BROKEN_RE = re.compile(r"Error displaying widget|model not found|Loading widget\.\.\.")
TRACEBACK_RE = re.compile(r"Traceback \(most recent call last\)|^\s*\w*(?:Error|Exception)\b\s*(?::|$)",
                          re.MULTILINE)

DEMO_SOURCE = '''import ipywidgets as widgets, matplotlib.pyplot as plt, numpy as np
slider = widgets.FloatSlider(value=0.5, min=0, max=1, step=0.05, description="lambda", continuous_update=False)
def show(lam):
    fig, ax = plt.subplots(figsize=(3, 3))
    ax.imshow(np.random.default_rng(0).random((8, 8)) * lam, vmin=0, vmax=1)
    ax.set_title(f"lambda = {lam:.2f}")
    plt.show()
widgets.interactive(show, lam=slider)'''


def _cases():
    spec = os.environ.get("MTLAT_E2E_NOTEBOOKS", "").strip()
    if not spec:
        return NOTEBOOKS
    cases = []
    for entry in filter(None, (e.strip() for e in spec.split(";"))):
        if entry == "demo":
            cases.append(("demo", "lambda"))
        else:
            path, sep, desc = entry.rpartition("=")
            if not sep:
                raise ValueError(f"MTLAT_E2E_NOTEBOOKS entry {entry!r} is not 'path=slider description'")
            cases.append((path, desc))
    return cases


CASES = _cases()
_marks = [pytest.mark.e2e]
if importlib.util.find_spec("pytest_timeout") is not None:
    _marks.append(pytest.mark.timeout(2 * OPEN_TIMEOUT_S + RUN_TIMEOUT_S + SLIDER_TIMEOUT_S + 120))  # backstop
pytestmark = _marks


# ------------------------------------------------------------------------------------------ helpers
def _write_demo(path: Path) -> None:
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    params = nbformat.v4.new_code_cell('profile = "smoke"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# e2e demo: a widget slider driving a figure"), params,
                nbformat.v4.new_code_cell(DEMO_SOURCE)]
    nbformat.write(nb, str(path))


def _stage_notebook(src: Path, dest_dir: Path) -> Path:
    """Copy ``src`` (and the small non-notebook files beside it) into the server root, outputs cleared."""
    import nbformat
    for sib in src.parent.iterdir():
        if (sib.is_file() and sib.suffix != ".ipynb" and not sib.name.startswith(".")
                and sib.stat().st_size < 5_000_000 and not (dest_dir / sib.name).exists()):
            shutil.copy2(sib, dest_dir / sib.name)
    nb = nbformat.read(str(src), as_version=4)
    for cell in nb.cells:  # stale outputs/prompts must not be mistaken for this run's
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    if PROFILE:
        for i, cell in enumerate(nb.cells):
            if "parameters" in cell.get("metadata", {}).get("tags", []):
                inj = nbformat.v4.new_code_cell(f"# Injected by the e2e test\nprofile = {PROFILE!r}")
                inj.metadata["tags"] = ["injected-parameters"]
                nb.cells.insert(i + 1, inj)
                break
    dest = dest_dir / src.name
    nbformat.write(nb, str(dest))
    return dest


class Recorder:
    """Numbered screenshots and notes for one notebook, kept in ``out``."""

    def __init__(self, page, out: Path):
        self.page, self.out, self.n = page, out, 0
        self.console: list[str] = []
        page.on("console", lambda m: self.console.append(f"[{m.type}] {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"[pageerror] {e}"))

    def shot(self, name: str, locator=None) -> Path:
        self.n += 1
        path = self.out / f"{self.n:02d}-{name}.png"
        try:
            (locator or self.page).screenshot(path=str(path), **({} if locator else {"full_page": False}))
        except Exception as exc:  # a screenshot must never hide the real failure
            path.with_suffix(".txt").write_text(f"screenshot failed: {exc}\n")
        return path

    def dump(self) -> None:
        (self.out / "browser-console.log").write_text("\n".join(self.console) + "\n")


ACTIVE_NB = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"

JS_STATE = r"""() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook') ||
             document.querySelector('.jp-Notebook');
  const ind = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator')
              || document.querySelector('.jp-Notebook-ExecutionIndicator');
  const kn = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Toolbar-kernelName');
  const bar = document.querySelector('#jp-main-statusbar');
  const kname = kn ? kn.textContent.trim() : '';
  const barText = bar ? bar.textContent : '';
  // the indicator says 'idle' even before a kernel exists: also require a kernel name and '| Idle' in the status bar
  const ready = !!kname && !/No Kernel/i.test(kname) && /\|\s*Idle/.test(barText);
  const st = {kernel: (ind && ind.dataset.status === 'idle' && !ready) ? 'not-ready' : (ind ? ind.dataset.status : null),
              kernelName: kname, running: 0, executed: 0, cells: 0,
              dialog: !!document.querySelector('.jp-Dialog')};
  if (!nb) return st;
  for (const cell of nb.querySelectorAll('.jp-CodeCell')) {
    st.cells++;
    const p = cell.querySelector('.jp-InputPrompt');
    const t = p ? p.textContent : '';
    if (t.includes('*')) st.running++;
    else if (/\[\d+\]/.test(t)) st.executed++;
  }
  return st;
}"""

JS_ERRORS = r"""() => {
  const out = [];
  document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell').forEach((cell, i) => {
    cell.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
        .forEach(o => out.push({cell: i, text: o.innerText}));
  });
  return out;
}"""

JS_TEXT_OUTPUTS = r"""() => {
  const out = [];
  document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell').forEach((cell, i) => {
    cell.querySelectorAll('.jp-OutputArea-output').forEach(o => {
      if (!o.closest('.jupyter-widgets') && !o.querySelector('.jupyter-widgets'))
        out.push({cell: i, text: o.innerText});
    });
  });
  return out;
}"""

# figures rendered in `scope` (the slider's cell, else the whole notebook): img src / svg / canvas
JS_FIGURES = r"""(scope) => {
  const figs = el => [...el.querySelectorAll('.jp-OutputArea-output img, .jp-OutputArea-output svg.jp-RenderedSVG, .jp-RenderedSVG svg, .jp-OutputArea-output canvas')]
      .filter(e => !e.closest('.jp-OutputArea-promptOverlay'))
      .map(e => e.tagName === 'IMG' ? e.src : e.tagName === 'CANVAS' ? e.toDataURL() : e.outerHTML);
  let f = figs(scope);
  if (f.length) return {where: 'cell', figs: f};
  const nb = scope.closest('.jp-Notebook') || document;
  return {where: 'notebook', figs: figs(nb)};
}"""


def _digest(figs) -> str:
    return hashlib.sha256("\n".join(figs).encode()).hexdigest()[:16] if figs else ""


def _wait_idle_after_run(page, timeout: float, rec: Recorder) -> dict:
    """Until no cell shows [*], the kernel is idle and something ran (stable over two polls)."""
    start = time.monotonic()
    deadline, stable, st, started = start + timeout, 0, {}, False
    while time.monotonic() < deadline:
        st = page.evaluate(JS_STATE)
        if st.get("dialog"):
            _accept_dialog(page)
        started = started or st["running"] > 0 or st["executed"] > 0
        if not started and time.monotonic() - start > 45:
            rec.shot("run-all-did-not-start")
            pytest.fail(f"Run > Run All Cells started nothing within 45 s (state: {st})")
        done = st["running"] == 0 and st["executed"] > 0 and st["kernel"] == "idle"
        stable = stable + 1 if done else 0
        if stable >= 2:
            return st
        time.sleep(1.0)
    rec.shot("timeout-run-all")
    pytest.fail(f"Run All Cells did not finish within {timeout:.0f} s (state: {st}); "
                f"raise MTLAT_E2E_RUN_TIMEOUT or make the notebook's smoke profile cheaper")


def _run_all_cells(page, rec: Recorder) -> None:
    """Run > Run All Cells from the menu bar; checks that cells were queued, retries once."""
    for attempt in (1, 2):
        page.locator(ACTIVE_NB).first.click(position={"x": 5, "y": 5})  # make the notebook the current widget
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^\s*Run\s*$")).click()
        item = page.locator('.lm-Menu-item:has(.lm-Menu-itemLabel:text-is("Run All Cells"))')
        item.wait_for(state="visible")
        rec.shot(f"run-menu-{attempt}")
        item.click()
        end = time.monotonic() + 10
        while time.monotonic() < end:
            st = page.evaluate(JS_STATE)
            if st["running"] or st["executed"]:
                return
            time.sleep(0.25)
        page.keyboard.press("Escape")
    rec.shot("run-all-did-not-start")
    pytest.fail(f"Run > Run All Cells queued no cell (state: {page.evaluate(JS_STATE)})")


def _accept_dialog(page) -> None:
    """E.g. 'Select Kernel' when the notebook has no kernelspec: take the default."""
    btn = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
    if btn.count():
        btn.first.click()


def _fail_on_errors(page, rec: Recorder, when: str) -> None:
    bad = [e for e in page.evaluate(JS_ERRORS) if TRACEBACK_RE.search(e["text"])]
    if bad:
        rec.shot(f"error-{when.replace(' ', '-')}")
        details = "\n\n".join(f"--- cell #{e['cell']} ---\n{e['text'][-2500:]}" for e in bad)
        pytest.fail(f"{len(bad)} cell output(s) show an error {when}:\n{details}")


def _check_no_text_repr(page, description: str, slider_found: bool) -> None:
    outs = page.evaluate(JS_TEXT_OUTPUTS)
    desc_re = re.compile(r"description=['\"]" + re.escape(description) + r"['\"]")
    for o in outs:
        t = o["text"]
        if WIDGET_REPR_RE.search(t) and (desc_re.search(t) or not slider_found):
            pytest.fail(f"{MISSING_EXTENSION_HELP}\nCell #{o['cell']} shows, as plain text:\n{t[:800]}")
        if WIDGET_BROKEN_RE.search(t) and not slider_found:
            pytest.fail(f"A widget failed to render in cell #{o['cell']}: {t[:500]!r}. Usually ipywidgets (kernel "
                        f"side) and jupyterlab_widgets (JupyterLab side) do not match; {MISSING_EXTENSION_HELP}")


def _slider_value(slider) -> str:
    """The readout text (what the learner sees), else the handle's aria-valuenow."""
    readout = slider.locator(".widget-readout")
    text = readout.first.inner_text().strip() if readout.count() else ""
    return text or (slider.locator(".noUi-handle").first.get_attribute("aria-valuenow") or "")


def _move_slider(page, slider, rec: Recorder) -> tuple[str, str, str]:
    """Move the slider like a user (keyboard on the noUiSlider handle; readout box as fallback)."""
    handle = slider.locator(".noUi-handle").first
    readout = slider.locator(".widget-readout").first
    before = _slider_value(slider)
    aria_before = handle.get_attribute("aria-valuenow")

    def changed(wait: float = 3.0) -> bool:
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if _slider_value(slider) != before or handle.get_attribute("aria-valuenow") != aria_before:
                return True
            time.sleep(0.1)
        return False

    for key in ("ArrowRight", "ArrowRight", "ArrowRight", "End", "Home"):
        handle.focus()
        page.keyboard.press(key)
        if changed():
            return before, _slider_value(slider), f"keyboard {key}"
    # fallback: type a value into the readout text box
    vmax, vmin = handle.get_attribute("aria-valuemax"), handle.get_attribute("aria-valuemin")
    target = vmax if aria_before != vmax else vmin
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(str(target))
    page.keyboard.press("Enter")
    if changed(5.0):
        return before, _slider_value(slider), "readout text box"
    rec.shot("slider-did-not-move")
    pytest.fail(f"could not move the slider (value stays {before}) with the keyboard or its readout box")


# --------------------------------------------------------------------------------------------- test
@pytest.mark.parametrize("notebook,description", CASES, ids=[Path(n).stem for n, _ in CASES])
def test_slider_widget_drives_figure(notebook, description, lab_server, browser_context, e2e_out, e2e_deadline):
    nb_dir = lab_server.root / "notebooks"
    if notebook == "demo":
        src = lab_server.root.parent / "demo_widget.ipynb"
        _write_demo(src)
    else:
        src = Path(notebook) if Path(notebook).is_absolute() else REPO_ROOT / notebook
        if not src.is_file():
            pytest.skip(f"{notebook} does not exist yet (nothing to test)")
    left = e2e_deadline - time.monotonic()
    if left < 30:
        pytest.fail(f"the e2e time budget (MTLAT_E2E_TOTAL_TIMEOUT) is spent: {notebook} not run")
    run_timeout = min(RUN_TIMEOUT_S, left)
    staged = _stage_notebook(src, nb_dir)
    out = e2e_out / staged.stem
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    page = browser_context.new_page()
    page.bring_to_front()  # a background tab gets throttled timers/animation frames: JupyterLab would stall
    rec = Recorder(page, out)
    t0 = time.monotonic()
    timings = {}
    try:
        # ---- open the notebook
        # a workspace of its own (+ reset): no notebook of a previous test is restored beside this one
        page.goto(lab_server.url(f"/lab/workspaces/e2e-{staged.stem}/tree/notebooks/{staged.name}?reset"), wait_until="domcontentloaded",
                  timeout=OPEN_TIMEOUT_S * 1000)
        page.locator(f"{ACTIVE_NB} .jp-Cell").first.wait_for(state="visible", timeout=OPEN_TIMEOUT_S * 1000)
        deadline = time.monotonic() + OPEN_TIMEOUT_S
        while time.monotonic() < deadline:  # kernel started (accept a 'Select Kernel' dialog if any)
            st = page.evaluate(JS_STATE)
            if st.get("dialog"):
                _accept_dialog(page)
            elif st["kernel"] == "idle":
                break
            time.sleep(0.5)
        else:
            rec.shot("kernel-not-ready")
            pytest.fail(f"the kernel did not become idle within {OPEN_TIMEOUT_S:.0f} s after opening {staged.name} (state {st})")
        timings["open"] = time.monotonic() - t0
        rec.shot("loaded")

        # ---- Run > Run All Cells (the menu, as a learner does)
        t1 = time.monotonic()
        _run_all_cells(page, rec)
        st = _wait_idle_after_run(page, run_timeout, rec)
        timings["run_all"] = time.monotonic() - t1
        _fail_on_errors(page, rec, "after Run All Cells")
        if st["executed"] < st["cells"]:
            pending = page.evaluate(r"""() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-CodeCell')]
                .map((c, i) => [i, c.querySelector('.jp-InputPrompt').textContent,
                                (c.querySelector('.cm-content') || {}).innerText || ''])
                .filter(([i, p, src]) => !/\[\d+\]/.test(p) && src.trim())""")
            if pending:
                rec.shot("not-all-cells-ran")
                pytest.fail(f"Run All Cells left non-empty code cells unexecuted: {pending}")

        # ---- the slider must be a live widget, not the text repr
        label = re.compile(r"(?<![\w])" + re.escape(description) + r"(?![\w])")
        slider = page.locator(f"{ACTIVE_NB} .jupyter-widgets.widget-slider").filter(
            has=page.locator(".widget-label", has_text=label)).first
        found, end = False, time.monotonic() + 20  # widget views render asynchronously after the cell ran
        while time.monotonic() < end:
            if slider.count() and slider.is_visible():
                found = True
                break
            desc_re = re.compile(r"description=['\"]" + re.escape(description) + r"['\"]")
            if any(WIDGET_REPR_RE.search(o["text"]) and desc_re.search(o["text"])
                   for o in page.evaluate(JS_TEXT_OUTPUTS)):
                break  # the slider's plain-text repr: no need to wait, the widget manager is not there
            time.sleep(0.5)
        rec.shot("after-run-all")
        _check_no_text_repr(page, description, found)
        if not found:
            labels = page.locator(".jupyter-widgets .widget-label").all_inner_texts()
            pytest.fail(f"no widget slider labelled {description!r} was rendered (widget labels seen: {labels}). "
                        f"If the notebook shows no widget at all: {MISSING_EXTENSION_HELP}")
        slider.scroll_into_view_if_needed()

        cell = slider.locator("xpath=ancestor::div[contains(concat(' ', @class, ' '), ' jp-Cell ')][1]")
        figs_before = cell.evaluate(JS_FIGURES)
        if not figs_before["figs"]:
            pytest.fail(f"no figure (img/svg/canvas output) found next to the {description!r} slider")
        fig_box = cell.locator(".widget-output").first if cell.locator(".widget-output").count() else None
        shot_before = rec.shot("figure-before", fig_box) if fig_box else None

        # ---- move it and wait for the figure to be re-rendered
        v0, v1, how = _move_slider(page, slider, rec)
        t2 = time.monotonic()
        deadline, stable, figs_after = time.monotonic() + SLIDER_TIMEOUT_S, 0, figs_before
        while time.monotonic() < deadline:
            figs_after = cell.evaluate(JS_FIGURES)
            st = page.evaluate(JS_STATE)
            ok = (figs_after["figs"] and _digest(figs_after["figs"]) != _digest(figs_before["figs"])
                  and st["kernel"] == "idle" and st["running"] == 0)
            stable = stable + 1 if ok else 0
            if stable >= 2:
                break
            time.sleep(0.5)
        timings["rerender"] = time.monotonic() - t2
        rec.shot("after-slider")
        shot_after = rec.shot("figure-after", fig_box) if fig_box else None
        _fail_on_errors(page, rec, f"after moving the slider {v0} -> {v1}")
        if stable < 2:
            pytest.fail(f"moving {description!r} from {v0} to {v1} ({how}) did not change the figure within "
                        f"{SLIDER_TIMEOUT_S:.0f} s (figure digest {_digest(figs_before['figs'])} -> "
                        f"{_digest(figs_after['figs'])}, {len(figs_after['figs'])} figure(s) in the {figs_after['where']})")
        report = {
            "notebook": str(notebook), "slider": description, "moved": [v0, v1], "how": how,
            "figures_in": figs_after["where"],
            "figure_digest": [_digest(figs_before["figs"]), _digest(figs_after["figs"])],
            "figure_screenshots_differ": (shot_before.read_bytes() != shot_after.read_bytes())
            if shot_before and shot_after and shot_before.exists() and shot_after.exists() else None,
            "timings_s": {k: round(v, 1) for k, v in timings.items()},
        }
        (out / "result.json").write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report))
    except BaseException:
        rec.shot("failure")
        raise
    finally:
        rec.dump()
        try:
            page.close()
        finally:
            lab_server.shutdown_kernels()
