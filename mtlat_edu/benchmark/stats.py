"""The statistics the claims and the comparisons are judged with: one home for all of them.

* :func:`summary` -- mean, sample standard deviation and count of the finite values.
* :func:`paired` -- the claims' rule (docs/claims.md, "The paired rule"): a comparison of two
  methods *paired by training seed*. A seed fixes the training subset, the initialisation and
  the data order for every method (docs/design.md), so the per-seed differences
  ``d_k = a_k - b_k`` remove what the seeds share. ``d = mean_k d_k``, ``se = s_d / sqrt(n)`` and
  the two-sided 95 % interval ``d +- t_{0.975, n-1} * se`` (Student's t, ``n - 1`` degrees of
  freedom), with ``t = d / se`` and its two-sided p value. The verdict, with the sign the paper
  reports (``+1``: a above b):

  * ``holds``        -- the interval lies on the paper's side of 0;
  * ``fails``        -- it lies on the other side;
  * ``within_noise`` -- it contains 0, and always with fewer than two common seeds.

  Zero spread (every seed gives the same difference): ``t`` is infinite, so the evaluation's
  resolution decides. When ``|d|`` is at most ``resolution`` (one image of the evaluation set in
  the column's unit) the difference is not resolved: ``within_noise`` with ``unresolved: true``.
  Above it, the sign decides (``holds`` / ``fails``, ``p = 0``, the interval ``[d, d]``).
* :func:`holm` -- Holm's step-down adjustment of the p values of a family of comparisons (a claim
  made of several columns): the family-wise error stays at ``alpha``.
* :func:`two_se` -- the unpaired rule of the comparison over seeds (docs/future.md): the
  difference of two independent means against twice its standard error.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

HOLDS, WITHIN_NOISE, FAILS = "holds", "within_noise", "fails"
VERDICTS = (HOLDS, WITHIN_NOISE, FAILS)
LEVEL = 0.95          # the two-sided confidence level of the paired interval
FAMILY_ALPHA = 0.05   # Holm's family-wise error rate
ZERO_SPREAD = 1e-12   # a standard deviation of the differences this small (relative to |d|) is zero


def _finite(x) -> bool:
    return x is not None and not math.isnan(float(x))


def summary(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (NaN for one value) and count of the finite ``values``."""
    v = [float(x) for x in values if _finite(x)]
    n = len(v)
    if n == 0:
        return float("nan"), float("nan"), 0
    mean = sum(v) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1)) if n > 1 else float("nan")
    return mean, sd, n


def _check_sign(sign) -> None:
    if sign not in (1, -1):
        raise ValueError(f"sign: must be +1 or -1, got {sign!r}")


def _side(sign: int, low: float, high: float) -> str:
    """holds / fails / within_noise for an interval [low, high] and the paper's sign."""
    if (sign > 0 and low > 0) or (sign < 0 and high < 0):
        return HOLDS
    if (sign > 0 and high < 0) or (sign < 0 and low > 0):
        return FAILS
    return WITHIN_NOISE


def paired(a: Mapping[int, float], b: Mapping[int, float], sign: int = 1, resolution: float = 0.0) -> dict:
    """One comparison paired by seed: is ``a - b`` of sign ``sign`` (+1 / -1)?

    ``a`` and ``b`` map a training seed to a value; only the seeds both hold (with finite values)
    are used. ``resolution``: the smallest difference the evaluation can show (one image of the
    evaluation set, in the values' unit; 0 when unknown). Returns ``d``, ``ci_low``, ``ci_high``,
    ``p``, ``n``, ``t``, ``df``, ``sd_d``, ``mean_a``, ``mean_b``, ``sd_a``, ``sd_b`` (over the common seeds),
    ``seeds``, ``paper_sign``, ``resolution``, ``unresolved`` and the ``verdict`` (module docstring).
    """
    _check_sign(sign)
    for name, m in (("a", a), ("b", b)):
        if not isinstance(m, Mapping):
            raise ValueError(f"{name}: expected a mapping seed -> value (paired by seed), got {type(m).__name__}")
    if not (_finite(resolution) and float(resolution) >= 0):
        raise ValueError(f"resolution: must be a number >= 0 (one image of the evaluation set), got {resolution!r}")
    seeds = sorted(k for k in a if k in b and _finite(a[k]) and _finite(b[k]))
    n = len(seeds)
    diffs = [float(a[k]) - float(b[k]) for k in seeds]
    mean_a, sd_a, _ = summary([a[k] for k in seeds])
    mean_b, sd_b, _ = summary([b[k] for k in seeds])
    d, sd, _ = summary(diffs)
    nan = float("nan")
    out = {"d": d, "ci_low": nan, "ci_high": nan, "p": nan, "n": n, "t": nan, "df": max(n - 1, 0), "sd_d": sd,
           "mean_a": mean_a, "mean_b": mean_b, "sd_a": sd_a, "sd_b": sd_b, "seeds": seeds, "paper_sign": "+" if sign > 0 else "-",
           "resolution": float(resolution), "unresolved": False, "verdict": WITHIN_NOISE}
    if n < 2:
        return out
    if sd <= ZERO_SPREAD * max(1.0, abs(d)):          # every seed gives the same difference
        out.update(sd_d=0.0, ci_low=d, ci_high=d)
        if abs(d) <= float(resolution) or d == 0:
            out["unresolved"] = True
            return out
        out.update(t=math.copysign(math.inf, d), p=0.0, verdict=_side(sign, d, d))
        return out
    from scipy import stats

    se = sd / math.sqrt(n)
    q = float(stats.t.ppf(0.5 + LEVEL / 2, n - 1))
    t = d / se
    low, high = d - q * se, d + q * se
    out.update(t=t, p=float(2 * stats.t.sf(abs(t), n - 1)), ci_low=low, ci_high=high, verdict=_side(sign, low, high))
    return out


def holm(pvalues: Sequence[float], alpha: float = FAMILY_ALPHA) -> tuple[list[float], list[bool]]:
    """Holm's step-down adjustment: ``(adjusted p values, rejected)`` in the order given.

    With the m p values sorted ``p_(1) <= ... <= p_(m)``, ``p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``
    and ``H_(i)`` is rejected when ``p~_(i) <= alpha`` (equivalently: step down while
    ``p_(i) <= alpha / (m - i + 1)``). A missing p value (NaN or None) is never rejected and is
    adjusted to NaN; it does not count in ``m``.
    """
    idx = [i for i, p in enumerate(pvalues) if _finite(p)]
    m = len(idx)
    adjusted = [float("nan")] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: float(pvalues[i]))):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        adjusted[i] = running
    return adjusted, [_finite(p) and p <= alpha for p in adjusted]


def two_se(a: Sequence[float], b: Sequence[float], sign: int = 1) -> dict:
    """The unpaired rule (docs/future.md's comparison over seeds): ``diff = mean(a) - mean(b)``
    against twice ``se = sqrt(s_a^2 / n_a + s_b^2 / n_b)``; holds / fails beyond 2 SE with / against
    the paper's sign, else within_noise (also with fewer than two values on either side)."""
    _check_sign(sign)
    ma, sa, na = summary(a)
    mb, sb, nb = summary(b)
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
