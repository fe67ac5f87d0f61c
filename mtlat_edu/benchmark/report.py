"""Reports of the benchmark: Markdown tables (parts a, b, c of Tables 1-2), Table 3, a heatmap, files.

The heatmap shows R in every cell (the annotation) and colours each cell by its difference with
the reference (``standard``) row on a diverging map centred on 0: blue where a model is more
robust than the standard model, red where it is less, white where equal, i.e. the paper's "+" and
"-" indices as colours. Without a reference row the colour is R itself (0 to 1).
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import pandas as pd

from mtlat_edu.core import io as mio
from . import parts as P
from .scores import (CLEAN_COLUMN, REFERENCE, TABLE3_METHODS, TABLE3_TITLES, format_scores, score_table,
                     scores_to_records, table3)

SCORES_CSV, SCORES_JSON, TABLES_MD, TABLE3_MD, HEATMAP_PNG = (
    "scores.csv", "scores.json", "tables.md", "table3.md", "heatmap.png")
STD_CSV = "scores_std.csv"

PART_TITLES = {
    "a": "(a) Robustness scores towards the common corruptions of ImageNet-C",
    "b": "(b) Robustness scores towards our additional common corruptions",
    "c": "(c) Robustness scores towards adversarial examples",
}


def table_parts(columns) -> dict[str, list[str]]:
    """Split score-table columns into the paper's parts: a (ImageNet-C), b (extra), c (attacks).

    The clean column goes with the first non-empty part (part a in a full run)."""
    cols = list(columns)
    split = {"a": [c for c in P.imagenet_c_names() if c in cols],
             "b": [c for c in P.extra_names() if c in cols],
             "c": [c for c in P.attack_names() if c in cols]}
    if CLEAN_COLUMN in cols:
        first = next((k for k in "abc" if split[k]), "a")
        split[first] = [CLEAN_COLUMN] + split[first]
    return {k: v for k, v in split.items() if v}


def markdown_grid(header: list[str], rows: list[list[str]], align: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(" :--- " if a == "l" else " ---: " for a in align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_part(scores: pd.DataFrame, columns: list[str], reference: str = REFERENCE,
                  std: pd.DataFrame | None = None) -> str:
    """One part as a Markdown table: a ``model`` column, then ``columns`` under their short names."""
    text = format_scores(scores[columns], reference, None if std is None else std[columns])
    header = ["model"] + [P.display_name(c) for c in columns]
    rows = [[str(m)] + [text.loc[m, c] for c in columns] for m in scores.index]
    return markdown_grid(header, rows, ["l"] + ["r"] * len(columns))


def _seed_list(seeds) -> str:
    return ", ".join(map(str, seeds))


def row_seeds(seeds, models) -> tuple[list[int] | None, dict[str, list[int]]]:
    """``seeds`` (one list for every row, or ``{model: its seeds}``) as (all seeds, the rows measured
    on fewer of them: ``{model: its seeds}``), so a table can name the seeds of every row."""
    if seeds is None:
        return None, {}
    if not isinstance(seeds, dict):
        return list(seeds), {}
    every = sorted({k for ks in seeds.values() for k in ks})
    return every, {m: list(seeds[m]) for m in models if m in seeds and list(seeds[m]) != every}


def markdown_tables(scores: pd.DataFrame, reference: str = REFERENCE, meta: dict | None = None,
                    std: pd.DataFrame | None = None, seeds=None) -> str:
    """The three parts of Tables 1-2 as Markdown (only the parts with measured columns); with
    ``std`` and ``seeds`` the cells are means ± standard deviations over the training seeds.
    ``seeds``: one list for every row, or ``{model: its seeds}`` when some rows have fewer (those
    rows then carry their seeds beside their name)."""
    out = ["## Robustness scores R = A_perturbed / A_clean (eq. 7)", ""]
    notes = ["Clean: accuracy in %. Other columns: R, averaged over the severities for corruptions."]
    every, fewer = row_seeds(seeds, scores.index)
    if every is not None:
        notes.append(f"Mean ± standard deviation over {len(every)} training seed(s) ({_seed_list(every)})"
                     + (" (one seed: no spread)." if len(every) < 2 else "."))
        if fewer:
            notes.append("Rows measured on fewer seeds name theirs: "
                         + "; ".join(f"{m} ({_seed_list(ks)})" for m, ks in fewer.items()) + ".")
        named = {m: f"{m} (seeds {_seed_list(ks)})" for m, ks in fewer.items()}
        scores, reference = scores.rename(index=named), named.get(reference, reference)
        if std is not None:
            std = std.rename(index=named)
    if reference in scores.index:
        notes.append(f'"+" / "-": more / less robust than the `{reference}` row at two decimals.')
    else:
        notes.append(f"No `{reference}` row, so no +/- marks.")
    if meta:
        d = meta.get("data", {})
        clean_n = d.get("clean_images") or d.get("eval_images")
        notes.append(f"Data: {d.get('name')} test set; {clean_n} images for the clean column, {d.get('eval_images')} "
                     f"for the corruptions (severities {', '.join(map(str, meta.get('severities', [])))}), "
                     f"{d.get('attack_images')} for attacks; benchmark seed {meta.get('seed')}.")
        for name, why in (meta.get("skipped") or {}).items():
            notes.append(f"Skipped {name}: {why}.")
    out += [" ".join(notes), ""]
    for part, cols in table_parts(scores.columns).items():
        out += [f"### {PART_TITLES[part]}", "", markdown_part(scores, cols, reference, std), ""]
    return "\n".join(out)


def table3_markdown(scores: pd.DataFrame, std: pd.DataFrame | None = None, seeds=None) -> str:
    """Table 3 (section 5.4): clean accuracy in % of standard, FGSM, target-FGSM, LS and TLAT
    (± the standard deviation over seeds with ``std``; ``seeds`` as in :func:`markdown_tables`: a
    method measured on fewer seeds than the others names its seeds in its cell)."""
    values = table3(scores)
    spread = table3(std) if std is not None else {}
    _, fewer = row_seeds(seeds, scores.index)

    def cell(m):
        if values[m] is None:
            return "n/a"
        d = spread.get(m)
        return (f"{values[m]:.1f}" + ("" if d is None or math.isnan(d) else f" ± {d:.1f}")
                + (f" (seeds {_seed_list(fewer[m])})" if m in fewer else ""))

    header = [""] + [TABLE3_TITLES[m] for m in TABLE3_METHODS]
    row = ["clean accuracy"] + [cell(m) for m in TABLE3_METHODS]
    return markdown_grid(header, [row], ["l"] + ["r"] * len(TABLE3_METHODS))


def plot_heatmap(scores: pd.DataFrame, reference: str = REFERENCE, ax=None, *, differences: bool = False,
                 title: str | None = None):
    """Models x perturbations heatmap annotated with R (see the module docstring for the colours);
    the package's one heatmap.

    With ``differences``, ``scores`` already holds differences of R against ``reference`` (for
    example :func:`mtlat_edu.course.analysis.complementarity`, corruptions x methods): each cell
    shows its signed difference on the same diverging map centred on 0 (blue: more robust than
    ``reference``, red: less). Corruption and attack names become the tables' short titles.

    Returns the matplotlib Figure (made without pyplot, so nothing global is touched, unless ``ax``
    is given)."""
    import seaborn as sns
    from matplotlib.figure import Figure

    cols = [c for c in scores.columns if c != CLEAN_COLUMN]
    if not cols:
        raise ValueError("scores: no perturbation column to plot (only clean accuracy was measured)")
    r = scores[cols].astype(float)
    annot = r.map(lambda v: "" if math.isnan(v) else (f"{v:+.2f}" if differences else f"{v:.2f}"))
    if differences:
        labels = [P.display_name(str(m)) for m in scores.index]
    else:
        labels = [f"{m} ({scores.loc[m, CLEAN_COLUMN]:.1f}%)" if CLEAN_COLUMN in scores.columns else str(m)
                  for m in scores.index]
    if ax is None:
        fig = Figure(figsize=(max(6.0, 0.55 * len(cols) + 2.5), max(2.5, 0.5 * len(scores) + 1.8)))
        ax = fig.subplots()
    else:
        fig = ax.figure
    data = r.copy()
    data.index, data.columns = labels, [P.display_name(c) for c in cols]
    with warnings.catch_warnings():
        # seaborn 0.13 calls Colormap.set_bad, which matplotlib 3.11 deprecates (not ours to fix)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        style = dict(annot=annot.values, fmt="", linewidths=0.5, annot_kws={"fontsize": 7}, ax=ax)
        if differences or reference in scores.index:
            diff = data if differences else data - data.iloc[list(scores.index).index(reference)]
            span = float(diff.abs().max().max())
            span = span if span > 0 and not math.isnan(span) else 1.0
            sns.heatmap(diff, cmap="RdBu", center=0.0, vmin=-span, vmax=span,
                        cbar_kws={"label": f"R - R({reference})"}, **style)
            ax.set_title(title or (f"R(method) - R({reference})" if differences
                                   else f"Robustness scores R (colour: difference with {reference})"))
        else:
            vmax = max(1.0, float(r.max().max()) if r.notna().any().any() else 1.0)
            sns.heatmap(data, cmap="viridis", vmin=0.0, vmax=vmax, cbar_kws={"label": "R"}, **style)
            ax.set_title(title or "Robustness scores R")
    bounds = [len([c for c in cols if c in names]) for names in (P.imagenet_c_names(), P.corruption_names())]
    for b in sorted(set(bounds) - {0, len(cols)}):  # separate the parts a | b | c
        ax.axvline(b, color="black", linewidth=1.5)
    ax.set_xlabel("")
    ax.set_ylabel("" if differences else "model (clean accuracy)")
    ax.tick_params(axis="x", labelrotation=0 if differences else 60)
    return fig


def write_report(results: pd.DataFrame, out_dir, reference: str = REFERENCE, meta: dict | None = None,
                 heatmap: bool = True) -> dict[str, Path]:
    """Write the report of one suite run (its score table) into ``out_dir``; see :func:`write_tables`."""
    return write_tables(score_table(results), out_dir, reference, meta, heatmap=heatmap)


def write_tables(scores: pd.DataFrame, out_dir, reference: str = REFERENCE, meta: dict | None = None,
                 std: pd.DataFrame | None = None, seeds=None, heatmap: bool = True) -> dict[str, Path]:
    """Write the score table (CSV, JSON; the spread over seeds in ``scores_std.csv``), the Markdown
    tables, Table 3 and the heatmap into ``out_dir`` (atomically); ``seeds`` as in
    :func:`markdown_tables`. Returns ``{what: path}``."""
    out = Path(out_dir)
    files = {
        "scores_csv": mio.write_text(out / SCORES_CSV, scores.to_csv()),
        "scores_json": mio.write_json(out / SCORES_JSON, scores_to_records(scores)),
        "tables_md": mio.write_text(out / TABLES_MD, markdown_tables(scores, reference, meta, std, seeds)),
        "table3_md": mio.write_text(out / TABLE3_MD, "## Table 3: clean accuracy (%)\n\n"
                                    + table3_markdown(scores, std, seeds) + "\n"),
    }
    if std is not None:
        files["scores_std_csv"] = mio.write_text(out / STD_CSV, std.to_csv())
    if heatmap and any(c != CLEAN_COLUMN for c in scores.columns):
        fig = plot_heatmap(scores, reference)
        files["heatmap_png"] = mio.save_figure(out / HEATMAP_PNG, fig, dpi=130)
    return files
