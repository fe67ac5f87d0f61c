"""The paper's claims, each judged on per-seed score tables with paired tests (docs/claims.md).

Used by :func:`mtlat_edu.benchmark.evaluate` (``claims.json``), notebook 08 and the README.

A *comparison* of two methods on one column is paired by training seed
(:func:`mtlat_edu.benchmark.stats.paired`): ``d`` is the mean over the common seeds of the
per-seed differences, with its two-sided 95 % Student-t interval (``n - 1`` degrees of freedom),
``t`` and ``p``. With the sign the paper reports: ``holds`` when the interval lies on the paper's
side of 0, ``fails`` on the other side, ``within_noise`` otherwise (always with fewer than two
seeds). A difference that is the same on every seed is decided by its sign, unless it is at most
one image of the evaluation set (``resolution``, below): then it is ``within_noise`` and marked
``unresolved``.

A claim made of several comparisons (one per column, or an ordering) is a *family*: its p values
are adjusted by Holm's step-down method (:func:`mtlat_edu.benchmark.stats.holm`, family-wise error
0.05); a comparison holds or fails only when Holm rejects it (its interval gives the direction),
and is ``within_noise`` otherwise. The claim ``holds`` when all of them hold, ``fails`` when any
fails, and is ``within_noise`` otherwise; the count of each verdict and every adjusted p
(``p_holm``) are reported, so a claim that holds on 17 of 19 corruptions reads as such.

The resolution of a column (``images``: the evaluation's image counts): one image of the clean
set in the clean column (``100 / clean_images`` points); in an R column (eq. 7) the smallest step
one image makes, ``1 / (n * A_clean)`` for an attack on ``n = attack_images`` and
``1 / (severities * n * A_clean)`` for a corruption on ``n = eval_images`` (its R is a mean over the
severities), with ``A_clean`` the lower of the two models' mean clean accuracies (a fraction).

The claims (sections 5.2-5.4, Tables 1-3):

(a) M-TLAT's clean accuracy is at least standard's (Table 1a: +0.3 / +0.9 points);
(b) M-TLAT is more robust than standard to each of the 19 corruptions and each of the 5 attacks;
(c) Table 3: clean accuracy TLAT > target-FGSM > LS > FGSM, all four below standard;
(d) M-TLAT is more robust than IAT to every attack, and IAT loses clean accuracy (section 5.2),
    judged under both readings of IAT (``iat``, the headline, and ``iat_targeted``);
(e) Table 2: Mixup and TLAT are complementary -- Mixup beats TLAT on Fog and Contrast, TLAT beats
    Mixup on the three noises, Jpeg and the attacks (section 5.3).

The attack columns of (b), (d) and (e) are the paper's five (:func:`parts.paper_attack_names`);
the CW column under its other success rules (``cw_l2_kappa50``, ``cw_l2_within0.5``,
docs/attacks.md) is reported in (b) and (d) as ``cw_readings``, each judged alone and not
counted in the claim's verdict.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import pandas as pd

from . import parts as P
from .paper_values import paper_value
from .scores import CLEAN_COLUMN
from .stats import FAILS, FAMILY_ALPHA, HOLDS, LEVEL, VERDICTS, WITHIN_NOISE, holm, paired, two_se

RULE = ("paired by training seed: d = mean over the common seeds of the per-seed differences, with its two-sided "
        f"{LEVEL:.0%} Student-t interval (n-1 degrees of freedom) and p; holds = the interval on the paper's side "
        "of 0, fails = on the other side, else within_noise (always with fewer than 2 seeds); the same difference "
        "on every seed is decided by its sign, unless it is at most one image of the evaluation set (then "
        "within_noise, unresolved); a claim of several comparisons adjusts their p values by Holm's step-down "
        f"method (family-wise error {FAMILY_ALPHA}): a comparison holds or fails only when Holm rejects it, and "
        "the claim holds when all hold and fails when any fails")

NOISES = ("gaussian_noise", "shot_noise", "impulse_noise")
MIXUP_SIDE = ("fog", "contrast")
TLAT_SIDE_CORRUPTIONS = (*NOISES, "jpeg_compression")
IAT_READINGS = ("iat", "iat_targeted")   # the two readings of IAT (docs/claims.md); the first is the headline

compare = two_se  # the unpaired 2-SE rule, kept under its former name (docs/future.md's comparison)


def combine(verdicts: Sequence[str]) -> str:
    """All hold -> holds; any fails -> fails; else within_noise (also for an empty list)."""
    if verdicts and all(v == HOLDS for v in verdicts):
        return HOLDS
    return FAILS if FAILS in verdicts else WITHIN_NOISE


def count(verdicts: Sequence[str]) -> dict[str, int]:
    return {v: sum(1 for x in verdicts if x == v) for v in VERDICTS}


def family(comparisons: Sequence[dict], alpha: float = FAMILY_ALPHA) -> list[dict]:
    """Holm over the comparisons' p values (in place): each gets ``p_holm``, ``verdict_alone`` (its
    own interval's verdict) and ``verdict`` (that verdict where Holm rejects, else within_noise)."""
    adjusted, rejected = holm([c["p"] for c in comparisons], alpha)
    for c, p, rej in zip(comparisons, adjusted, rejected):
        c["verdict_alone"] = c.get("verdict_alone", c["verdict"])
        c["p_holm"] = p
        c["verdict"] = c["verdict_alone"] if rej else WITHIN_NOISE
    return list(comparisons)


class SeedScores:
    """Per-seed score tables (rows: models, columns: ``clean`` + perturbations, as
    :func:`~mtlat_edu.benchmark.scores.score_table`), read as ``{seed: value}`` per model and column.

    ``images``: the evaluation's image counts (``clean_images``, ``eval_images``, ``attack_images``,
    ``severities``, as the suite's ``meta["data"]`` names them), for the resolution of each column
    (module docstring); without them the resolution is 0."""

    def __init__(self, tables: Mapping[int, pd.DataFrame], images: Mapping[str, int] | None = None):
        if not tables:
            raise ValueError("tables: no score table (no seed was evaluated)")
        self.tables = dict(tables)
        self.images = dict(images or {})

    @property
    def seeds(self) -> list[int]:
        return list(self.tables)

    def has(self, *models: str) -> bool:
        return all(any(m in t.index for t in self.tables.values()) for m in models)

    def columns(self, names: Sequence[str]) -> list[str]:
        present = set().union(*(t.columns for t in self.tables.values()))
        return [c for c in names if c in present]

    def values(self, model: str, column: str) -> dict[int, float]:
        return {k: float(t.loc[model, column]) for k, t in self.tables.items()
                if model in t.index and column in t.columns}

    def resolution(self, column: str, *models: str) -> float:
        """One image of the evaluation set in ``column``'s unit (module docstring); 0 if unknown."""
        if column == CLEAN_COLUMN:
            n = self.images.get("clean_images")
            return 100.0 / n if n else 0.0
        kind = P.kind_of(column)
        n = self.images.get("attack_images" if kind in (P.KIND_WHITE_BOX, P.KIND_BLACK_BOX) else "eval_images")
        clean = [sum(v.values()) / len(v) / 100 for v in (self.values(m, CLEAN_COLUMN) for m in models) if v]
        if not n or not clean or min(clean) <= 0:
            return 0.0
        steps = 1 if kind in (P.KIND_WHITE_BOX, P.KIND_BLACK_BOX) else (self.images.get("severities") or 1)
        return 1.0 / (steps * n * min(clean))

    def compare(self, a: str, b: str, column: str, sign: int = 1) -> dict:
        """:func:`~mtlat_edu.benchmark.stats.paired` of ``a`` and ``b`` on ``column``."""
        r = paired(self.values(a, column), self.values(b, column), sign, self.resolution(column, a, b))
        return {"a": a, "b": b, "column": column, **r}


def _judged(per: Mapping[str, dict]) -> dict:
    verdicts = [r["verdict"] for r in per.values()]
    return {"verdict": combine(verdicts), "counts": count(verdicts)}


def _missing(s: SeedScores, *models: str) -> dict | None:
    lacking = [m for m in models if not s.has(m)]
    return {"missing_models": lacking} if lacking else None


def _cw_readings(s: SeedScores, a: str, b: str) -> dict:
    """The CW column under each other success rule, ``a`` minus ``b``, each judged alone."""
    return {c: s.compare(a, b, c) for c in s.columns(P.attack_readings())}


def claim_a(s: SeedScores) -> dict:
    out = {"id": "a", "claim": "M-TLAT's clean accuracy is at least standard's (Table 1a)",
           "paper": {"text": "the models trained with M-TLAT are slightly more accurate than the standard models",
                     "difference_points": {"resnet50": 0.3, "resnext50": 0.9}}}
    miss = _missing(s, "mtlat", "standard")
    if miss:
        return {**out, "verdict": WITHIN_NOISE, "measured": miss}
    r = s.compare("mtlat", "standard", CLEAN_COLUMN, +1)
    return {**out, "verdict": r["verdict"], "measured": r}


def claim_b(s: SeedScores) -> dict:
    out = {"id": "b", "claim": "M-TLAT is more robust than standard to each of the 19 corruptions and 5 attacks "
                               "(Table 1: a '+' in every column)",
           "paper": {"corruptions_better": "19/19", "attacks_better": "5/5"}}
    miss = _missing(s, "mtlat", "standard")
    if miss:
        return {**out, "verdict": WITHIN_NOISE, "measured": miss}
    groups = {"corruptions": s.columns(P.corruption_names()), "attacks": s.columns(P.paper_attack_names())}
    per = {g: {c: s.compare("mtlat", "standard", c) for c in cols} for g, cols in groups.items()}
    family([r for g in per.values() for r in g.values()])
    measured = {g: {**_judged(cols), "columns": cols} for g, cols in per.items()}
    measured["cw_readings"] = _cw_readings(s, "mtlat", "standard")
    verdicts = [r["verdict"] for g in per.values() for r in g.values()]
    return {**out, "verdict": combine(verdicts), "measured": measured}


TABLE3_ORDER = ("tlat", "target_fgsm", "ls", "fgsm")


def claim_c(s: SeedScores) -> dict:
    out = {"id": "c", "claim": "Table 3: clean accuracy TLAT > target-FGSM > LS > FGSM, all four below standard",
           "paper": {m: paper_value("table3", m, CLEAN_COLUMN) for m in ("standard", *TABLE3_ORDER)}}
    miss = _missing(s, "standard", *TABLE3_ORDER)
    if miss:
        return {**out, "verdict": WITHIN_NOISE, "measured": miss}
    pairs = list(zip(TABLE3_ORDER, TABLE3_ORDER[1:])) + [("standard", m) for m in TABLE3_ORDER]
    per = {f"{a} > {b}": s.compare(a, b, CLEAN_COLUMN, +1) for a, b in pairs}
    family(list(per.values()))
    judged = _judged(per)
    return {**out, "verdict": judged["verdict"], "measured": {"counts": judged["counts"], "comparisons": per}}


def _claim_d_reading(s: SeedScores, iat: str) -> dict:
    miss = _missing(s, "mtlat", iat, "standard")
    if miss:
        return {"verdict": WITHIN_NOISE, **miss}
    per = {c: s.compare("mtlat", iat, c) for c in s.columns(P.paper_attack_names())}
    clean = s.compare(iat, "standard", CLEAN_COLUMN, -1)
    family([*per.values(), clean])
    verdicts = [r["verdict"] for r in per.values()] + [clean["verdict"]]
    return {"verdict": combine(verdicts), "counts": count(verdicts),
            "attacks": {**_judged(per), "columns": per}, "iat_loses_clean_accuracy": clean,
            "cw_readings": _cw_readings(s, "mtlat", iat)}


def claim_d(s: SeedScores) -> dict:
    out = {"id": "d", "claim": "M-TLAT is more robust than IAT to every attack, and IAT loses clean accuracy "
                               "(Table 1c, section 5.2)",
           "paper": {"text": "the IAT algorithm tends to reduce the clean accuracy ... the IAT models are "
                             "significantly less robust to adversarial examples than the M-TLAT models",
                     "resnet50_R": {m: {c: paper_value("table1", m, c) for c in P.paper_attack_names()}
                                    for m in ("iat", "mtlat")}}}
    readings = {iat: _claim_d_reading(s, iat) for iat in IAT_READINGS}
    head = readings[IAT_READINGS[0]]
    if "missing_models" in head:
        return {**out, "verdict": WITHIN_NOISE, "measured": {"missing_models": head["missing_models"],
                                                             "readings": readings}}
    return {**out, "verdict": head["verdict"],
            "measured": {"attacks": head["attacks"], "iat_loses_clean_accuracy": head["iat_loses_clean_accuracy"],
                         "readings": readings}}


def claim_e(s: SeedScores) -> dict:
    out = {"id": "e", "claim": "Table 2: Mixup and TLAT are complementary (Mixup beats TLAT on Fog and Contrast; "
                               "TLAT beats Mixup on the noises, Jpeg and the attacks)",
           "paper": {"text": "Mixup makes the trained model more robust than the standard model to all the common "
                             "corruptions but the Motion Blur, Pixelate and Jpeg corruptions ... TLAT makes models "
                             "much more robust to any adversarial attacks ... For some other common corruptions "
                             "like Fog or Contrast, the TLAT augmentation decreases significantly the robustness",
                     "resnet50_tlat_R": {c: paper_value("table2", "tlat", c) for c in MIXUP_SIDE}}}
    miss = _missing(s, "mixup", "tlat")
    if miss:
        return {**out, "verdict": WITHIN_NOISE, "measured": miss}
    cols = s.columns((*MIXUP_SIDE, *TLAT_SIDE_CORRUPTIONS, *P.paper_attack_names()))
    per = {c: s.compare("mixup", "tlat", c, +1 if c in MIXUP_SIDE else -1) for c in cols}  # sign of R(mixup) - R(tlat)
    family(list(per.values()))
    judged = _judged(per)
    return {**out, "verdict": judged["verdict"], "measured": {"counts": judged["counts"], "columns": per,
                                                              "read_as": "R(mixup) - R(tlat), paper_sign per column"}}


CLAIMS = (claim_a, claim_b, claim_c, claim_d, claim_e)


def check_claims(tables: Mapping[int, pd.DataFrame], profile: dict | None = None,
                 images: Mapping[str, int] | None = None) -> dict:
    """Every claim judged on the per-seed score tables ``{seed: score_table}``; ``images``: the
    evaluation's image counts (:class:`SeedScores`), for the resolution of each column.

    Returns ``{"seeds", "profile", "rule", "images", "claims": [{"id", "claim", "verdict", "paper", "measured"}]}``.
    """
    s = SeedScores(tables, images)
    return {"seeds": s.seeds, "profile": profile or {}, "rule": RULE, "images": s.images,
            "claims": [c(s) for c in CLAIMS]}


def claims_lines(report: dict) -> list[str]:
    """One line per claim: ``(a) holds        M-TLAT's clean accuracy ... [counts]``; claim (d)
    adds a line per reading of IAT."""
    lines = [f"claims over seeds {report['seeds']} ({len(report['seeds'])} seed(s)"
             + ("; one seed: the noise is unknown, so nothing can hold or fail" if len(report["seeds"]) < 2 else "")
             + ")"]
    for c in report["claims"]:
        m = c["measured"]
        extra = []
        if "counts" in m:
            extra.append(_counts_text(m["counts"]))
        elif "corruptions" in m:
            extra.append("; ".join(f"{g}: {_counts_text(m[g]['counts'])}" for g in ("corruptions", "attacks")))
        elif "d" in m:
            extra.append(comparison_text(m))
        elif "missing_models" in m:
            extra.append(f"not measured: missing {', '.join(m['missing_models'])}")
        for name, r in (m.get("readings") or {}).items():
            what = (f"not measured: missing {', '.join(r['missing_models'])}" if "missing_models" in r
                    else _counts_text(r["counts"]))
            extra.append(f"reading {name}: {r['verdict']} ({what})")
        lines.append(f"({c['id']}) {c['verdict']:<12} {c['claim']}" + "".join(f"\n{'':17}{e}" for e in extra))
    return lines


def comparison_text(r: dict, digits: int = 2) -> str:
    """``difference +1.00 [95% CI +0.10, +1.90], p = 0.041 (n = 5)`` of a paired comparison."""
    spec = f"+.{digits}f"
    text = (f"difference {_num(r['d'], spec)} [{LEVEL:.0%} CI {_num(r['ci_low'], spec)}, "
            f"{_num(r['ci_high'], spec)}], p = {_num(r['p'], '.3g')} (n = {r['n']})")
    return text + (", unresolved: at most one image" if r.get("unresolved") else "")


def _num(value, spec: str) -> str:
    """A number formatted with ``spec``; "n/a" for None (NaN in claims.json) and NaN."""
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _counts_text(counts: dict) -> str:
    return ", ".join(f"{counts[v]} {v}" for v in VERDICTS)
