"""Methods compared over training seeds, one figure per perturbation group (docs/future.md).

The wide score tables (:func:`~mtlat_edu.benchmark.scores.score_table`, one per training seed)
are summarised per model as the clean accuracy and the mean R (eq. 7) of each perturbation group:
the 15 ImageNet-C corruptions, the 4 extra ones, the white-box attacks and the black-box attacks.
Each summary is given as mean and standard deviation over the seeds, and each method is compared
with a reference method (``mtlat``) by :func:`~mtlat_edu.benchmark.stats.two_se` (the
difference of the means against twice its standard error; the claims use the paired rule of
:func:`~mtlat_edu.benchmark.stats.paired`). A training step's cost comes from the
``mtlat-edu bench-step`` output (:func:`read_bench_step`), measured side by side in one run.

    from mtlat_edu.benchmark.comparison import write_comparison
    write_comparison("results/cpu-future", reference="mtlat")   # + every bench_step_*.txt there
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from mtlat_edu.core import io as mio
from . import parts as P
from .stats import summary, two_se
from .scores import CLEAN_COLUMN

GROUPS = {  # summary column -> the kind of perturbation it averages
    "corruptions_R": P.KIND_IMAGENET_C, "extra_R": P.KIND_EXTRA,
    "white_box_R": P.KIND_WHITE_BOX, "black_box_R": P.KIND_BLACK_BOX,
}
LABELS = {CLEAN_COLUMN: "clean acc (%)", "corruptions_R": "mean R, 15 corruptions",
          "extra_R": "mean R, 4 extra corruptions", "white_box_R": "mean R, white-box attacks",
          "black_box_R": "mean R, black-box attacks"}
COMPARISON_JSON, COMPARISON_MD = "comparison.json", "comparison.md"
# a verdict of stats.two_se(method, reference) read as a comparison with the reference
VERDICT_WORDS = {"holds": "better", "fails": "worse", "within_noise": "within noise"}


def group_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per model: ``clean`` and the mean R of each group of :data:`GROUPS` over its columns present."""
    out = pd.DataFrame(index=table.index)
    if CLEAN_COLUMN in table.columns:
        out[CLEAN_COLUMN] = table[CLEAN_COLUMN]
    kinds = {c: P.kind_of(c) for c in table.columns if c != CLEAN_COLUMN}
    for name, kind in GROUPS.items():
        cols = [c for c, k in kinds.items() if k == kind]
        if cols:
            out[name] = table[cols].mean(axis=1)
    return out


def read_scores(folder) -> dict[int, pd.DataFrame]:
    """The per-seed score tables ``<folder>/seed<k>/scores.csv`` written by ``mtlat-edu evaluate --seeds``."""
    tables = {}
    for path in sorted(Path(folder).glob("seed*/scores.csv")):
        tables[int(path.parent.name[4:])] = pd.read_csv(path, index_col=0)
    if not tables:
        raise FileNotFoundError(f"folder: no seed<k>/scores.csv in {folder}; run mtlat-edu evaluate --profile ... "
                                f"--seeds ... --out {folder} first")
    return dict(sorted(tables.items()))


def read_bench_step(path) -> dict:
    """The table printed by ``mtlat-edu bench-step`` (saved to a file): its header line and
    ``{method: {"seconds_per_step", "images_per_second", "ratio"}}``."""
    text = Path(path).read_text(encoding="utf-8")
    rows = {}
    for m in re.finditer(r"^(\w+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x\s*$", text, re.M):
        rows[m.group(1)] = {"seconds_per_step": float(m.group(2)), "images_per_second": float(m.group(3)),
                            "ratio": float(m.group(4))}
    if not rows:
        raise ValueError(f"bench_step: {path} holds no bench-step table (method s/step img/s ratio)")
    return {"setting": text.strip().splitlines()[0], "methods": rows}


def compare_methods(tables: Mapping[int, pd.DataFrame], reference: str = "mtlat",
                    methods: Sequence[str] | None = None) -> dict:
    """Mean, std and n over seeds of every summary column, and each method minus ``reference``
    (:func:`~mtlat_edu.benchmark.stats.two_se` with sign +1: ``holds`` = better than the reference
    beyond 2 SE, ``fails`` = worse beyond 2 SE, else ``within_noise``)."""
    summaries = {k: group_summary(t) for k, t in tables.items()}
    models = list(methods or dict.fromkeys(m for s in summaries.values() for m in s.index))
    cols = list(dict.fromkeys(c for s in summaries.values() for c in s.columns))
    values = {m: {c: [float(s.loc[m, c]) for s in summaries.values() if m in s.index and c in s.columns]
                  for c in cols} for m in models}
    stats = {m: {c: dict(zip(("mean", "std", "n"), summary(v))) for c, v in per.items()} for m, per in values.items()}
    diffs = {}
    if reference in values:
        for m in models:
            if m != reference:
                diffs[m] = {c: two_se(values[m][c], values[reference][c]) for c in cols}
    return {"seeds": list(tables), "reference": reference, "columns": cols, "values": values,
            "stats": stats, "vs_reference": diffs}


def comparison_markdown(report: dict, bench: Sequence[dict] = ()) -> str:
    """The comparison as Markdown: a mean ± std table, the differences to the reference, the step cost."""
    cols = report["columns"]
    digits = {CLEAN_COLUMN: 2}
    head = "| method | " + " | ".join(LABELS.get(c, c) for c in cols) + " |"
    lines = [f"Mean ± std over the training seeds {', '.join(map(str, report['seeds']))}.", "", head,
             "|:---|" + "---:|" * len(cols)]
    for m, per in report["stats"].items():
        lines.append(f"| {m} | " + " | ".join(_pm(per[c], digits.get(c, 3)) for c in cols) + " |")
    if report["vs_reference"]:
        ref = report["reference"]
        lines += ["", f"Difference to `{ref}` (mean over seeds; 2 SE = twice the standard error of the "
                      "difference; better/worse only beyond 2 SE):", "", head, "|:---|" + "---:|" * len(cols)]
        for m, per in report["vs_reference"].items():
            lines.append(f"| {m} − {ref} | " + " | ".join(_diff(per[c], digits.get(c, 3)) for c in cols) + " |")
    for b in bench:
        lines += ["", f"Training step cost (`mtlat-edu bench-step`, {b['setting']}):", "",
                  "| method | s/step | img/s | ratio to standard |", "|:---|---:|---:|---:|"]
        lines += [f"| {m} | {r['seconds_per_step']:.4f} | {r['images_per_second']:.1f} | {r['ratio']:.2f}x |"
                  for m, r in b["methods"].items()]
    return "\n".join(lines) + "\n"


def _pm(s: dict, d: int) -> str:
    if math.isnan(s["mean"]):
        return "–"
    return f"{s['mean']:.{d}f}" + ("" if math.isnan(s["std"]) else f" ± {s['std']:.{d}f}")


def _diff(r: dict, d: int) -> str:
    word = VERDICT_WORDS[r["verdict"]]
    se = "" if math.isnan(r["se"]) else f" (2 SE {2 * r['se']:.{d}f})"
    return f"{r['diff']:+.{d}f}{se} {word}"


def load_comparison(folder, reference: str = "mtlat", methods: Sequence[str] | None = None) -> dict:
    """:func:`compare_methods` of ``<folder>/seed<k>/scores.csv``, with ``bench_step``: every saved
    ``<folder>/bench_step_*.txt`` read by :func:`read_bench_step`."""
    report = compare_methods(read_scores(folder), reference, methods)
    report["bench_step"] = [read_bench_step(p) for p in sorted(Path(folder).glob("bench_step_*.txt"))]
    return report


def write_comparison(folder, reference: str = "mtlat", methods: Sequence[str] | None = None) -> dict:
    """:func:`load_comparison`, written as ``comparison.json`` and ``comparison.md`` into ``folder``."""
    report = load_comparison(folder, reference, methods)
    mio.write_json(Path(folder) / COMPARISON_JSON, mio.json_ready(report))
    mio.write_text(Path(folder) / COMPARISON_MD, comparison_markdown(report, report["bench_step"]))
    return report
