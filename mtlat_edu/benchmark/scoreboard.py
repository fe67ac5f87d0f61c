"""The scoreboard of notebook 08 and the README: every comparison of the claims beside the paper.

The paper's numbers come from :data:`mtlat_edu.benchmark.paper_values.PAPER_ROWS`.

* :func:`scoreboard` -- one row per comparison of ``claims.json``: the claim, the reading, the
  column, the paper's difference (where :data:`PAPER_ROWS` has both rows), ours (mean +- sd of
  each side over the seeds), the paired ``d`` with its 95 % interval, ``p``, Holm's ``p`` and the
  verdict.
* :func:`plot_forest` -- the differences with their intervals, signed so that the paper's side
  is to the right of 0 (one panel per unit: clean accuracy in points, R).
* :func:`paper_tables` -- our Tables 1 and 2 (mean +- sd over seeds) beside the paper's numbers.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import pandas as pd

from .paper_values import PAPER_ROWS, paper_row_value
from .scores import CLEAN_COLUMN

_NA = float("nan")

def _comparisons(node, path: tuple[str, ...] = ()):
    """Every comparison (a dict with ``d``, ``column`` and ``verdict``) of a claim's ``measured``, with its path."""
    if isinstance(node, Mapping):
        if "d" in node and "column" in node and "verdict" in node:
            yield path, node
            return
        for k, v in node.items():
            yield from _comparisons(v, path + (str(k),))


def _pm(mean, sd, digits: int) -> str:
    if mean is None or math.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f}" + ("" if sd is None or math.isnan(sd) else f" ± {sd:.{digits}f}")


def _num(v) -> float:
    return _NA if v is None else float(v)


def scoreboard(report: Mapping) -> pd.DataFrame:
    """One row per comparison of a :func:`~mtlat_edu.benchmark.claims.check_claims` report (or
    ``claims.json`` read back): ``claim``, ``reading`` (``iat`` / ``iat_targeted`` in claim (d), else
    ""), ``group`` (where in the claim: ``corruptions``, ``attacks``, ``cw_readings``, ...),
    ``comparison`` (``a - b``), ``column``, ``paper_sign``, ``paper_d`` (the paper's difference, NaN
    where it shows no number for one side), ``ours_a`` / ``ours_b`` (mean ± sd over the seeds), ``d``,
    ``ci_low``, ``ci_high``, ``p``, ``p_holm``, ``n``, ``unresolved`` and ``verdict``."""
    rows = []
    for claim in report["claims"]:
        for path, r in _comparisons(claim.get("measured", {})):
            reading = path[1] if len(path) > 1 and path[0] == "readings" else ""
            if claim["id"] == "d" and not reading:
                continue  # the headline repeats the iat reading
            digits = 2 if r["column"] == CLEAN_COLUMN else 3
            group = next((p for p in path if p not in ("readings", reading, "columns", "comparisons")), "")
            rows.append({
                "claim": claim["id"], "reading": reading, "group": "" if group == r["column"] else group,
                "comparison": f"{r['a']} - {r['b']}", "column": r["column"], "paper_sign": r["paper_sign"],
                "paper_d": paper_row_value(r["a"], r["column"]) - paper_row_value(r["b"], r["column"]),
                "ours_a": _pm(_num(r["mean_a"]), _num(r.get("sd_a")), digits),
                "ours_b": _pm(_num(r["mean_b"]), _num(r.get("sd_b")), digits),
                "d": _num(r["d"]), "ci_low": _num(r["ci_low"]), "ci_high": _num(r["ci_high"]), "p": _num(r["p"]),
                "p_holm": _num(r.get("p_holm")), "n": int(r["n"]), "unresolved": bool(r.get("unresolved")),
                "verdict": r["verdict"]})
    return pd.DataFrame(rows)


VERDICT_COLORS = {"holds": "tab:blue", "within_noise": "tab:gray", "fails": "tab:red"}


def plot_forest(board: pd.DataFrame, title: str | None = None):
    """A forest plot of :func:`scoreboard`'s rows: each difference and its 95 % interval, multiplied
    by the paper's sign so that **right of 0 is the paper's side**, coloured by verdict (blue holds,
    grey within noise, red fails); one panel for the clean accuracy (points), one for R.
    Returns a matplotlib Figure (made without pyplot)."""
    from matplotlib.figure import Figure

    if board.empty:
        raise ValueError("board: no comparison to plot")
    panels = [(u, board[(board["column"] == CLEAN_COLUMN) == (u == "clean")]) for u in ("clean", "R")]
    panels = [(u, b) for u, b in panels if not b.empty]
    height = max(2.5, 0.22 * max(len(b) for _, b in panels) + 1.2)
    fig = Figure(figsize=(6.0 * len(panels), height))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (unit, rows) in zip(axes, panels):
        for i, (_, r) in enumerate(rows.iloc[::-1].iterrows()):
            s = 1.0 if r["paper_sign"] == "+" else -1.0
            lo, hi = sorted((s * r["ci_low"], s * r["ci_high"]))
            color = VERDICT_COLORS[r["verdict"]]
            if not math.isnan(lo):
                ax.plot([lo, hi], [i, i], color=color, linewidth=1.5)
            ax.plot([s * r["d"]], [i], "o", color=color, markersize=4)
        labels = [f"({r['claim']}{' ' + r['reading'] if r['reading'] else ''}) {r['comparison']}: {r['column']}"
                  for _, r in rows.iloc[::-1].iterrows()]
        ax.set_yticks(range(len(rows)), labels, fontsize=7)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_xlabel("difference x paper's sign (" + ("clean accuracy, points" if unit == "clean" else "R")
                      + "); right of 0: the paper's side")
    fig.suptitle(title or "Paired differences over seeds, 95 % intervals (blue holds, grey within noise, red fails)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def paper_tables(mean: pd.DataFrame, std: pd.DataFrame | None = None,
                 tables: Sequence[str] = ("table1", "table2")) -> pd.DataFrame:
    """Our score table (mean ± sd over seeds) beside the paper's numbers, for the rows of ``tables``:
    one row per (table, method), two columns per measured column, ``(column, "paper")`` and
    ``(column, "ours")`` (clean accuracy in %, R elsewhere; "" where the paper shows no number)."""
    rows, index = [], []
    cols = [c for c in mean.columns]
    for table in tables:
        for entry in PAPER_ROWS.entries(kind=table):
            method = entry.name.split(":", 1)[1]
            if method not in mean.index:
                continue
            row = {}
            for c in cols:
                digits = 1 if c == CLEAN_COLUMN else 2
                v = entry.value.get(c)
                row[(c, "paper")] = "" if v is None else f"{v:.{digits}f}"
                sd = float(std.loc[method, c]) if std is not None and method in std.index else _NA
                row[(c, "ours")] = _pm(float(mean.loc[method, c]), sd, digits)
            rows.append(row)
            index.append((table, entry.label))
    out = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["table", "model"]))
    out.columns = pd.MultiIndex.from_tuples(out.columns, names=["column", "source"])
    return out
