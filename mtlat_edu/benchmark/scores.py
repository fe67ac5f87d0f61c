"""Robustness scores (eq. 7), the wide score table of Tables 1-2, "+"/"-" marks, Table 3, differences.

Section 5.1 defines the robustness score of a network N towards a perturbation phi as

    R = A_phi / A_clean                                                            (eq. 7)

with both accuracies measured on the same test images. For a corruption the table shows the mean
of R over its severities (Table 1: "the mean robustness score of the corruptions computed with
their five severity levels"); for an attack, R itself.

The long results (one row per model x perturbation x severity) have the columns ``model``,
``kind``, ``perturbation``, ``severity`` (0 where not applicable), ``accuracy`` (a fraction) and
``n_images``; the clean accuracy of a row is the ``clean`` row of the same model with the same
``n_images`` (the corruption and the attack image sets can differ in size).
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping

import pandas as pd

from mtlat_edu.core.checks import check_choice
from mtlat_edu.paper.methods import METHODS, TABLE3_METHODS
from . import parts as P

CLEAN_COLUMN = P.CLEAN
LONG_COLUMNS = ("model", "kind", "perturbation", "severity", "accuracy", "n_images")
REFERENCE = "standard"

# Table 3 (section 5.4): clean accuracy of the adversarial trainings, in the paper's order
# (TABLE3_METHODS: the methods registered with table3=True)
TABLE3_TITLES: dict[str, str] = METHODS.labels(TABLE3_METHODS)  # standard, FGSM, target-FGSM, LS, TLAT


def robustness_score(perturbed_accuracy: float, clean_accuracy: float) -> float:
    """``R = A_perturbed / A_clean`` (eq. 7); NaN when the clean accuracy is 0 (R is undefined)."""
    for v, name in ((perturbed_accuracy, "perturbed_accuracy"), (clean_accuracy, "clean_accuracy")):
        if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
            raise ValueError(f"{name}: must be an accuracy (a fraction in [0, 1]), got {v!r}")
    return float("nan") if clean_accuracy == 0 else perturbed_accuracy / clean_accuracy


def mean_robustness(perturbed_accuracies: Iterable[float], clean_accuracy: float) -> float:
    """The mean of R over several severities (Table 1's corruption columns)."""
    scores = [robustness_score(a, clean_accuracy) for a in perturbed_accuracies]
    if not scores:
        raise ValueError("perturbed_accuracies: empty; give one accuracy per severity")
    return sum(scores) / len(scores)


def _check_long(results: pd.DataFrame) -> None:
    missing = [c for c in LONG_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(f"results: missing column(s) {', '.join(missing)}; the long results need "
                         f"{', '.join(LONG_COLUMNS)}")


def add_robustness(results: pd.DataFrame) -> pd.DataFrame:
    """A copy of the long results with ``clean_accuracy`` and ``robustness`` (R of the row) columns.

    The clean accuracy of a row is that of the ``clean`` row of the same model on the same number
    of images. R is NaN where the clean accuracy is 0 or was not measured.
    """
    _check_long(results)
    out = results.copy()
    clean = out[out["perturbation"] == CLEAN_COLUMN].drop_duplicates(["model", "n_images"])
    lookup = {(m, int(n)): float(a) for m, n, a in zip(clean["model"], clean["n_images"], clean["accuracy"])}
    ref = [lookup.get((m, int(n)), float("nan")) for m, n in zip(out["model"], out["n_images"])]
    out["clean_accuracy"] = ref
    out["robustness"] = [float("nan") if (math.isnan(c) or c == 0) else a / c
                         for a, c in zip(out["accuracy"], ref)]
    return out


def score_table(results: pd.DataFrame) -> pd.DataFrame:
    """The wide table of Tables 1-2: one row per model (in order of appearance), columns ``clean``
    (clean accuracy in %, on the largest image set measured) then each perturbation measured, in
    table order (ImageNet-C, extra corruptions, attacks), holding R averaged over the severities."""
    scored = add_robustness(results)
    models = list(dict.fromkeys(scored["model"]))
    table = pd.DataFrame(index=pd.Index(models, name="model"))
    clean = scored[scored["perturbation"] == CLEAN_COLUMN].sort_values("n_images", ascending=False)
    clean = clean.drop_duplicates("model").set_index("model")["accuracy"]
    table[CLEAN_COLUMN] = [100.0 * clean[m] if m in clean.index else float("nan") for m in models]
    perturbed = scored[scored["perturbation"] != CLEAN_COLUMN]
    means = perturbed.groupby(["model", "perturbation"], sort=False)["robustness"].mean()
    present = set(perturbed["perturbation"])
    for name in sorted(present):  # the one unknown-name error, naming the first unknown perturbation
        check_choice(name, "results", P.perturbation_names())
    for col in P.perturbation_names():
        if col in present:
            table[col] = [float(means.get((m, col), float("nan"))) for m in models]
    return table


def _round2(v: float) -> float:
    return float(f"{v:.2f}")


def mark(value: float, reference: float) -> str:
    """"+" if ``value`` beats ``reference`` at two decimals, "-" if it is worse, "" when equal or NaN."""
    if value is None or reference is None or math.isnan(value) or math.isnan(reference):
        return ""
    a, b = _round2(value), _round2(reference)
    return "+" if a > b else "-" if a < b else ""


def marks(scores: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """"+"/"-"/"" per cell against the ``reference`` row (as the paper's indices). The reference row
    and the clean column carry no mark; without a reference row every cell is ""."""
    out = pd.DataFrame("", index=scores.index, columns=scores.columns)
    if reference not in scores.index:
        return out
    ref = scores.loc[reference]
    for model in scores.index:
        if model == reference:
            continue
        for col in scores.columns:
            if col != CLEAN_COLUMN:
                out.loc[model, col] = mark(scores.loc[model, col], ref[col])
    return out


def format_scores(scores: pd.DataFrame, reference: str = REFERENCE, std: pd.DataFrame | None = None) -> pd.DataFrame:
    """The table as strings: clean accuracy ``73.2``, scores ``0.47`` with their mark (``0.59+``),
    ``n/a`` for a cell that was not measured. With ``std`` (the spread over seeds of a mean table)
    each cell also shows it: ``73.2 ± 0.4``, ``0.59 ± 0.02+`` (the mark compares the means)."""
    m = marks(scores, reference)
    out = pd.DataFrame("", index=scores.index, columns=scores.columns)
    for model in scores.index:
        for col in scores.columns:
            v = scores.loc[model, col]
            d = float("nan") if std is None else float(std.loc[model, col])
            digits = 1 if col == CLEAN_COLUMN else 2
            if v is None or math.isnan(v):
                out.loc[model, col] = "n/a"
                continue
            text = f"{v:.{digits}f}" + ("" if math.isnan(d) else f" ± {d:.{digits}f}")
            out.loc[model, col] = text if col == CLEAN_COLUMN else text + m.loc[model, col]
    return out


def score_differences(scores: pd.DataFrame, row: str, reference: str) -> dict:
    """Per column ``scores[row] - scores[reference]`` (the clean column in percentage points) and
    which columns are better / worse / equal at two decimals (the rule of the marks)."""
    for name, value in (("row", row), ("reference", reference)):
        if value not in scores.index:
            raise ValueError(f"{name}: {value!r} is not a row of the score table; rows: {', '.join(scores.index)}")
    diff, better, worse, equal = {}, [], [], []
    for col in scores.columns:
        a, b = scores.loc[row, col], scores.loc[reference, col]
        diff[col] = float(a - b)
        if col == CLEAN_COLUMN or math.isnan(a) or math.isnan(b):
            continue
        {"+": better, "-": worse, "": equal}[mark(a, b)].append(col)
    return {"row": row, "reference": reference, "differences": diff,
            "better": better, "worse": worse, "equal": equal}


def table3(scores: pd.DataFrame) -> dict[str, float | None]:
    """Table 3: the clean accuracy (in %) of standard, FGSM, target-FGSM, LS and TLAT (None if absent)."""
    return {m: (float(scores.loc[m, CLEAN_COLUMN]) if m in scores.index else None) for m in TABLE3_METHODS}


def aggregate(tables: Mapping[int, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean and sample standard deviation over seeds of per-seed score tables ``{seed: table}``.

    Rows keep their order of appearance, columns the table order; a cell missing in a seed is left
    out of that cell's statistics; the standard deviation of one value is NaN.
    """
    if not tables:
        raise ValueError("tables: no score table to aggregate")
    stacked = pd.concat({s: t for s, t in tables.items()}, names=["seed", "model"])
    rows = list(dict.fromkeys(m for t in tables.values() for m in t.index))
    cols = list(dict.fromkeys(c for t in tables.values() for c in t.columns))
    grouped = stacked.groupby(level="model", sort=False)
    return (grouped.mean().reindex(index=rows, columns=cols),
            grouped.std(ddof=1).reindex(index=rows, columns=cols))


def scores_to_records(scores: pd.DataFrame) -> list[Mapping]:
    """The score table as JSON-ready records (NaN -> None)."""
    records = []
    for model in scores.index:
        row = {"model": model}
        for col in scores.columns:
            v = float(scores.loc[model, col])
            row[col] = None if math.isnan(v) else v
        records.append(row)
    return records
