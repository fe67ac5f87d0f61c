"""The paper's claims, each judged against the noise across training seeds.

Used by :func:`mtlat_edu.benchmark.evaluate` (``claims.json``), notebook 08 and the README.

A *comparison* is a difference of two means over seeds, ``d = mean(a) - mean(b)``, with the
standard error of a difference of two independent means, ``se = sqrt(s_a^2 / n_a + s_b^2 / n_b)``
(``s``: the sample standard deviation across seeds). With the sign the paper reports:

* ``holds``        -- ``d`` has the paper's sign and ``|d| > 2 se``;
* ``fails``        -- ``d`` has the opposite sign and ``|d| > 2 se``;
* ``within_noise`` -- otherwise, and always with fewer than two seeds on either side (the noise
  is then unknown, so no difference can be called real).

A claim made of several comparisons (one per column, or an ordering) ``holds`` when all of them
hold, ``fails`` when any fails, and is ``within_noise`` otherwise; the count of each verdict is
reported beside it, so a claim that holds on 17 of 19 corruptions reads as such.

The claims (sections 5.2-5.4, Tables 1-3):

(a) M-TLAT's clean accuracy is at least standard's (Table 1a: +0.3 / +0.9 points);
(b) M-TLAT is more robust than standard to each of the 19 corruptions and each of the 5 attacks;
(c) Table 3: clean accuracy TLAT > target-FGSM > LS > FGSM, all four below standard;
(d) M-TLAT is more robust than IAT to every attack, and IAT loses clean accuracy (section 5.2);
(e) Table 2: Mixup and TLAT are complementary -- Mixup beats TLAT on Fog and Contrast, TLAT beats
    Mixup on the three noises, Jpeg and the attacks (section 5.3).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import pandas as pd

from . import parts as P
from .scores import CLEAN_COLUMN

HOLDS, WITHIN_NOISE, FAILS = "holds", "within_noise", "fails"
VERDICTS = (HOLDS, WITHIN_NOISE, FAILS)
RULE = ("difference of the means over seeds vs twice its standard error sqrt(s_a^2/n_a + s_b^2/n_b): "
        "holds = the paper's sign beyond 2 SE, fails = the opposite sign beyond 2 SE, else within_noise "
        "(always within_noise with fewer than 2 seeds); a claim of several comparisons holds when all hold "
        "and fails when any fails")

NOISES = ("gaussian_noise", "shot_noise", "impulse_noise")
MIXUP_SIDE = ("fog", "contrast")
TLAT_SIDE_CORRUPTIONS = (*NOISES, "jpeg_compression")


def _stats(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (NaN for one value) and count of the finite ``values``."""
    v = [float(x) for x in values if x is not None and not math.isnan(float(x))]
    n = len(v)
    if n == 0:
        return float("nan"), float("nan"), 0
    mean = sum(v) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1)) if n > 1 else float("nan")
    return mean, sd, n


def compare(a: Sequence[float], b: Sequence[float], sign: int = 1) -> dict:
    """One comparison: is ``mean(a) - mean(b)`` of sign ``sign`` (+1 or -1) beyond twice its
    standard error? Returns the means, the difference, the standard error and the verdict."""
    if sign not in (1, -1):
        raise ValueError(f"sign: must be +1 or -1, got {sign!r}")
    ma, sa, na = _stats(a)
    mb, sb, nb = _stats(b)
    diff = ma - mb
    se = math.sqrt(sa ** 2 / na + sb ** 2 / nb) if na > 1 and nb > 1 else float("nan")
    if math.isnan(diff) or math.isnan(se):
        verdict = WITHIN_NOISE
    elif sign * diff > 2 * se:
        verdict = HOLDS
    elif -sign * diff > 2 * se:
        verdict = FAILS
    else:
        verdict = WITHIN_NOISE
    return {"mean_a": ma, "mean_b": mb, "diff": diff, "se": se, "n_a": na, "n_b": nb,
            "paper_sign": "+" if sign > 0 else "-", "verdict": verdict}


def combine(verdicts: Sequence[str]) -> str:
    """All hold -> holds; any fails -> fails; else within_noise (also for an empty list)."""
    if verdicts and all(v == HOLDS for v in verdicts):
        return HOLDS
    return FAILS if FAILS in verdicts else WITHIN_NOISE


def count(verdicts: Sequence[str]) -> dict[str, int]:
    return {v: sum(1 for x in verdicts if x == v) for v in VERDICTS}


class SeedScores:
    """Per-seed score tables (rows: models, columns: ``clean`` + perturbations, as
    :func:`~mtlat_edu.benchmark.scores.score_table`), read as lists over seeds."""

    def __init__(self, tables: Mapping[int, pd.DataFrame]):
        if not tables:
            raise ValueError("tables: no score table (no seed was evaluated)")
        self.tables = dict(tables)

    @property
    def seeds(self) -> list[int]:
        return list(self.tables)

    def has(self, *models: str) -> bool:
        return all(any(m in t.index for t in self.tables.values()) for m in models)

    def columns(self, names: Sequence[str]) -> list[str]:
        present = set().union(*(t.columns for t in self.tables.values()))
        return [c for c in names if c in present]

    def values(self, model: str, column: str) -> list[float]:
        return [float(t.loc[model, column]) for t in self.tables.values()
                if model in t.index and column in t.columns]


def _columns_claim(s: SeedScores, a: str, b: str, columns: Sequence[str], sign: int = 1,
                   signs: Mapping[str, int] | None = None) -> tuple[str, dict]:
    per = {c: compare(s.values(a, c), s.values(b, c), (signs or {}).get(c, sign)) for c in columns}
    return combine([r["verdict"] for r in per.values()]), per


def _missing(s: SeedScores, *models: str) -> dict | None:
    lacking = [m for m in models if not s.has(m)]
    return {"missing_models": lacking} if lacking else None


def claim_a(s: SeedScores) -> dict:
    out = {"id": "a", "claim": "M-TLAT's clean accuracy is at least standard's (Table 1a)",
           "paper": {"text": "the models trained with M-TLAT are slightly more accurate than the standard models",
                     "difference_points": {"resnet50": 0.3, "resnext50": 0.9}}}
    miss = _missing(s, "mtlat", "standard")
    if miss:
        return {**out, "verdict": WITHIN_NOISE, "measured": miss}
    r = compare(s.values("mtlat", CLEAN_COLUMN), s.values("standard", CLEAN_COLUMN), +1)
    return {**out, "verdict": r["verdict"], "measured": r}


def claim_b(s: SeedScores) -> dict:
    out = {"id": "b", "claim": "M-TLAT is more robust than standard to each of the 19 corruptions and 5 attacks "
                               "(Table 1: a '+' in every column)",
           "paper": {"corruptions_better": "19/19", "attacks_better": "5/5"}}
    miss = _missing(s, "mtlat", "standard")
    if miss:
        return {**out, "verdict": WITHIN_NOISE, "measured": miss}
    groups = {"corruptions": s.columns(P.corruption_names()), "attacks": s.columns(P.attack_names())}
    measured, verdicts = {}, []
    for group, cols in groups.items():
        v, per = _columns_claim(s, "mtlat", "standard", cols)
        measured[group] = {"verdict": v, "counts": count([r["verdict"] for r in per.values()]), "columns": per}
        verdicts += [r["verdict"] for r in per.values()]
    return {**out, "verdict": combine(verdicts), "measured": measured}


TABLE3_ORDER = ("tlat", "target_fgsm", "ls", "fgsm")


def claim_c(s: SeedScores) -> dict:
    out = {"id": "c", "claim": "Table 3: clean accuracy TLAT > target-FGSM > LS > FGSM, all four below standard",
           "paper": {"standard": 73.3, "tlat": 69.4, "target_fgsm": 68.3, "ls": 67.1, "fgsm": 65.8}}
    miss = _missing(s, "standard", *TABLE3_ORDER)
    if miss:
        return {**out, "verdict": WITHIN_NOISE, "measured": miss}
    pairs = list(zip(TABLE3_ORDER, TABLE3_ORDER[1:])) + [("standard", m) for m in TABLE3_ORDER]
    per = {f"{a} > {b}": compare(s.values(a, CLEAN_COLUMN), s.values(b, CLEAN_COLUMN), +1) for a, b in pairs}
    verdicts = [r["verdict"] for r in per.values()]
    return {**out, "verdict": combine(verdicts), "measured": {"counts": count(verdicts), "comparisons": per}}


def claim_d(s: SeedScores) -> dict:
    out = {"id": "d", "claim": "M-TLAT is more robust than IAT to every attack, and IAT loses clean accuracy "
                               "(Table 1c, section 5.2)",
           "paper": {"text": "the IAT algorithm tends to reduce the clean accuracy ... the IAT models are "
                             "significantly less robust to adversarial examples than the M-TLAT models",
                     "resnet50_R": {"iat": {"pgd": 0.01, "pgd_ll": 0.08, "cw_l2": 0.84, "mi_fgsm_0.04": 0.87,
                                            "mi_fgsm_0.08": 0.78},
                                    "mtlat": {"pgd": 0.08, "pgd_ll": 0.45, "cw_l2": 1.00, "mi_fgsm_0.04": 0.96,
                                              "mi_fgsm_0.08": 0.87}}}}
    miss = _missing(s, "mtlat", "iat", "standard")
    if miss:
        return {**out, "verdict": WITHIN_NOISE, "measured": miss}
    v_att, per = _columns_claim(s, "mtlat", "iat", s.columns(P.attack_names()))
    clean = compare(s.values("iat", CLEAN_COLUMN), s.values("standard", CLEAN_COLUMN), -1)
    verdicts = [r["verdict"] for r in per.values()] + [clean["verdict"]]
    return {**out, "verdict": combine(verdicts),
            "measured": {"attacks": {"verdict": v_att, "counts": count([r["verdict"] for r in per.values()]),
                                     "columns": per},
                         "iat_loses_clean_accuracy": clean}}


def claim_e(s: SeedScores) -> dict:
    out = {"id": "e", "claim": "Table 2: Mixup and TLAT are complementary (Mixup beats TLAT on Fog and Contrast; "
                               "TLAT beats Mixup on the noises, Jpeg and the attacks)",
           "paper": {"text": "Mixup makes the trained model more robust than the standard model to all the common "
                             "corruptions but the Motion Blur, Pixelate and Jpeg corruptions ... TLAT makes models "
                             "much more robust to any adversarial attacks ... For some other common corruptions "
                             "like Fog or Contrast, the TLAT augmentation decreases significantly the robustness",
                     "resnet50_tlat_R": {"fog": 0.15, "contrast": 0.13}}}
    miss = _missing(s, "mixup", "tlat")
    if miss:
        return {**out, "verdict": WITHIN_NOISE, "measured": miss}
    cols = s.columns((*MIXUP_SIDE, *TLAT_SIDE_CORRUPTIONS, *P.attack_names()))
    signs = {c: (+1 if c in MIXUP_SIDE else -1) for c in cols}   # sign of R(mixup) - R(tlat)
    v, per = _columns_claim(s, "mixup", "tlat", cols, signs=signs)
    verdicts = [r["verdict"] for r in per.values()]
    return {**out, "verdict": v, "measured": {"counts": count(verdicts), "columns": per,
                                              "read_as": "R(mixup) - R(tlat), paper_sign per column"}}


CLAIMS = (claim_a, claim_b, claim_c, claim_d, claim_e)


def check_claims(tables: Mapping[int, pd.DataFrame], profile: dict | None = None) -> dict:
    """Every claim judged on the per-seed score tables ``{seed: score_table}``.

    Returns ``{"seeds", "profile", "rule", "claims": [{"id", "claim", "verdict", "paper", "measured"}]}``.
    """
    s = SeedScores(tables)
    return {"seeds": s.seeds, "profile": profile or {}, "rule": RULE, "claims": [c(s) for c in CLAIMS]}


def claims_lines(report: dict) -> list[str]:
    """One line per claim: ``(a) holds        M-TLAT's clean accuracy ... [counts]``."""
    lines = [f"claims over seeds {report['seeds']} ({len(report['seeds'])} seed(s)"
             + ("; one seed: the noise is unknown, so nothing can hold or fail" if len(report["seeds"]) < 2 else "")
             + ")"]
    for c in report["claims"]:
        m = c["measured"]
        extra = ""
        if "counts" in m:
            extra = _counts_text(m["counts"])
        elif "corruptions" in m:
            extra = "; ".join(f"{g}: {_counts_text(m[g]['counts'])}" for g in ("corruptions", "attacks"))
        elif "diff" in m:
            extra = f"difference {_num(m['diff'], '+.2f')} (2 SE = {_num(None if m['se'] is None else 2 * m['se'], '.2f')})"
        elif "missing_models" in m:
            extra = f"not measured: missing {', '.join(m['missing_models'])}"
        lines.append(f"({c['id']}) {c['verdict']:<12} {c['claim']}" + (f"\n{'':17}{extra}" if extra else ""))
    return lines


def _num(value, spec: str) -> str:
    """A number formatted with ``spec``; "n/a" for None (NaN in claims.json) and NaN."""
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _counts_text(counts: dict) -> str:
    return ", ".join(f"{counts[v]} {v}" for v in VERDICTS)
