"""docs/regime.md's table of the regime sweep: ``python experiments/cpu-regime-sweep/table.py [results.jsonl]``.

Reads the committed ``results/cpu-regime-sweep/results.jsonl`` by default (``runs/sweep/results.jsonl``
after a new ``sweep.py``)."""
import json, collections, sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "results" / "cpu-regime-sweep" / "results.jsonl"
rows = [json.loads(l) for l in open(sys.argv[1] if len(sys.argv) > 1 else RESULTS)]
by = collections.defaultdict(dict)
for r in rows:
    by[(r["candidate"], r["train_limit"], r["epochs"])][r["method"]] = r
print("| candidate | train images | epochs | standard | mixup | mtlat | mixup - standard | mtlat - standard | standard at 2/3 of the run -> end (2,000 images) | core-seconds (std / mixup / mtlat) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
for (c, n, e), m in sorted(by.items()):
    g = lambda k: m[k]["test_acc_10k"] * 100 if k in m else None
    f = lambda v: "n/a" if v is None else f"{v:.2f}"
    d = lambda a, b: "n/a" if a is None or b is None else f"{a - b:+.2f}"
    s = m.get("standard")
    plateau = "n/a" if not s else f"{100*s['curve_2k'][round(2*e/3)-1]:.1f} -> {100*s['curve_2k'][-1]:.1f}"
    secs = " / ".join(str(round(m[k]["seconds"])) if k in m else "-" for k in ("standard", "mixup", "mtlat"))
    print(f"| {c} | {n} | {e} | {f(g('standard'))} | {f(g('mixup'))} | {f(g('mtlat'))} | {d(g('mixup'), g('standard'))} | {d(g('mtlat'), g('standard'))} | {plateau} | {secs} |")
