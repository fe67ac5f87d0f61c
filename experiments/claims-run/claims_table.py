"""The README's and docs/claims.md's claims table, written from a claims report:

    python experiments/claims-run/claims_table.py results/cpu/claims.json

One row per claim (and per IAT reading for (d)): the verdict, the count of each verdict over the
claim's comparisons, and each comparison's paired difference with its 95 % Student-t interval
(for a claim of more than 11 comparisons, only those that do not hold).
"""
import json
import math
import sys

from mtlat_edu.benchmark import scoreboard
from mtlat_edu.benchmark.scores import CLEAN_COLUMN


def fmt(v, d):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.{d}f}"


def main(path):
    report = json.load(open(path))
    board = scoreboard(report)
    print(f"| claim | verdict | counts | paired differences, mean over seeds {report['seeds']} [95 % CI] (verdict) |")
    print("|---|---|---|---|")
    for c in report["claims"]:
        m = c["measured"]
        readings = m.get("readings") or {"": m}
        for name, r in readings.items():
            rows = board[(board["claim"] == c["id"]) & (board["reading"] == name)]
            rows = rows[~rows["group"].isin(["cw_readings"])]
            counts = r.get("counts") or {}
            if not counts and "corruptions" in r:
                counts = {k: r["corruptions"]["counts"].get(k, 0) + r["attacks"]["counts"].get(k, 0)
                          for k in ("holds", "within_noise", "fails")}
            cnt = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("holds", "within_noise", "fails")) if counts else ""
            many = len(rows) > 11  # (b): 24 columns, list those that do not hold
            if many:
                rows = rows[rows["verdict"] != "holds"]
            diffs = ("the rest: " if many else "") + "; ".join(
                f"{x['comparison'].replace(' - ', '-')} {x['column']} {fmt(x['d'], 2 if x['column'] == CLEAN_COLUMN else 3)} "
                f"[{fmt(x['ci_low'], 2 if x['column'] == CLEAN_COLUMN else 3)}, {fmt(x['ci_high'], 2 if x['column'] == CLEAN_COLUMN else 3)}] "
                f"({x['verdict']}{'' if x['n'] >= len(report['seeds']) else ', ' + str(int(x['n'])) + ' seeds'})"
                for _, x in rows.iterrows())
            label = f"({c['id']}){', IAT reading `' + name + '`:' if name else ''}"
            print(f"| {label} {c['claim']} | **{r.get('verdict', c['verdict'])}** | {cnt} | {diffs} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/cpu/claims.json")
