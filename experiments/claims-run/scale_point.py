"""Claim (a) at two widths: the pre-registered larger point of docs/claims.md ("Is (a) a matter of scale?").

    python experiments/claims-run/scale_point.py [--narrow results/cpu/benchmark] [--wide results/cpu_wide/benchmark]
                                                 [--runs <runs>] [--out results/cpu_wide]

Reads the per-seed clean accuracies (all 10,000 test images) that ``mtlat-edu evaluate`` wrote into
``<benchmark>/seed<k>/scores.csv`` for the ``cpu`` profile (``small_cnn``) and the ``cpu_wide`` profile
(``small_cnn_wide``, twice the width), and gives, at each width, the paired differences
mtlat - standard and mixup - standard over the seeds both widths have (0, 1, 2; the narrow one also
over all its seeds) with their two-sided 95 % Student-t intervals (``benchmark.stats.paired``).
Read-out fixed before the runs: the gap "shrinks with capacity" when the wide interval of
mtlat - standard lies above the narrow mean difference. With ``--runs``, the plateau check: each
standard run's last training loss and the change of its test accuracy over the last ten epochs.

Writes ``<out>/scale_point.md`` (the table), ``<out>/scale_point.json`` and ``<out>/scale_point.png``
(the differences against the parameter count).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from mtlat_edu.benchmark.stats import paired
from mtlat_edu.core import io as mio
from mtlat_edu.models import build_model

PAIRS = (("mtlat", "standard"), ("mixup", "standard"))


def clean_by_seed(folder: Path) -> dict[str, dict[int, float]]:
    """``{method: {seed: clean accuracy %}}`` from ``<folder>/seed<k>/scores.csv``."""
    out: dict[str, dict[int, float]] = {}
    for sub in sorted(folder.glob("seed*")):
        table = pd.read_csv(sub / "scores.csv", index_col=0)
        for model, acc in table["clean"].items():
            out.setdefault(model, {})[int(sub.name[4:])] = float(acc)
    return out


def params(model: str) -> int:
    return sum(p.numel() for p in build_model(model, 10).parameters())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--narrow", default="results/cpu/benchmark")
    ap.add_argument("--wide", default="results/cpu_wide/benchmark")
    ap.add_argument("--runs", default=None, help="run folders root, for the plateau check")
    ap.add_argument("--out", default="results/cpu_wide")
    args = ap.parse_args(argv)

    widths = {"small_cnn": clean_by_seed(Path(args.narrow)), "small_cnn_wide": clean_by_seed(Path(args.wide))}
    common = sorted(set(widths["small_cnn_wide"]["standard"]) & set(widths["small_cnn"]["standard"]))
    rows = []
    for model, acc in widths.items():
        for seeds in ([common] + ([sorted(acc["standard"])] if sorted(acc["standard"]) != common else [])):
            for a, b in PAIRS:
                res = paired({k: acc[a][k] for k in seeds if k in acc[a]}, {k: acc[b][k] for k in seeds}, +1, 0.01)
                rows.append({"model": model, "parameters": params(model), "comparison": f"{a} - {b}",
                             "seeds": res["seeds"], "mean_a": res["mean_a"], "mean_b": res["mean_b"], "d": res["d"],
                             "ci_low": res["ci_low"], "ci_high": res["ci_high"], "p": res["p"], "verdict": res["verdict"]})
    table = pd.DataFrame(rows)
    lines = ["| model | parameters | comparison | seeds | mean a | mean b | d (points) | 95 % CI | p |",
             "|---|---:|---|---|---:|---:|---:|---|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['parameters']:,} | {r['comparison']} | {', '.join(map(str, r['seeds']))} | "
                     f"{r['mean_a']:.2f} | {r['mean_b']:.2f} | {r['d']:+.2f} | [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] | "
                     f"{r['p']:.3f} |")
    narrow = next(r for r in rows if r["model"] == "small_cnn" and r["comparison"] == "mtlat - standard"
                  and r["seeds"] == common)
    wide = next(r for r in rows if r["model"] == "small_cnn_wide" and r["comparison"] == "mtlat - standard")
    shrinks = wide["ci_low"] > narrow["d"]
    verdict = (f"Pre-registered read-out (seeds {', '.join(map(str, common))} at both widths): the wide interval of "
               f"mtlat - standard [{wide['ci_low']:+.2f}, {wide['ci_high']:+.2f}] "
               + ("lies above" if shrinks else "does not lie above")
               + f" the narrow mean difference {narrow['d']:+.2f}: the gap "
               + ("shrinks with capacity." if shrinks else "is not shown to shrink with capacity."))
    lines += ["", verdict]
    plateau = {}
    if args.runs:
        for model, prof in (("small_cnn", "cpu"), ("small_cnn_wide", "cpu_wide")):
            for k in common:
                h = json.loads((Path(args.runs) / prof / "standard" / f"seed{k}" / "history.json").read_text())
                plateau[f"{model} seed {k}"] = {"last_train_loss": h[-1]["train_loss"],
                                                "test_acc_change_last_10_epochs": 100 * (h[-1]["test_acc"] - h[-11]["test_acc"])}
        lines += ["", "Plateau check (standard): " + "; ".join(
            f"{n}: last training loss {v['last_train_loss']:.4f}, test accuracy {v['test_acc_change_last_10_epochs']:+.2f} "
            "points over the last 10 epochs" for n, v in plateau.items())]
    out = Path(args.out)
    mio.write_text(out / "scale_point.md", "\n".join(lines) + "\n")
    mio.write_json(out / "scale_point.json", mio.json_ready({"rows": rows, "common_seeds": common, "shrinks": shrinks,
                                                            "read_out": verdict, "plateau": plateau}))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    sub = table[table["seeds"].map(lambda s: s == common)]
    for comp, color, shift in (("mtlat - standard", "tab:red", 1.0), ("mixup - standard", "tab:blue", 1.04)):
        part = sub[sub["comparison"] == comp].sort_values("parameters")
        x = part["parameters"] * shift
        ax.errorbar(x, part["d"], yerr=[part["d"] - part["ci_low"], part["ci_high"] - part["d"]], marker="o",
                    color=color, capsize=3, label=comp)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xticks(sorted(sub["parameters"].unique()), [f"{p / 1e6:.2f} M" for p in sorted(sub["parameters"].unique())])
    ax.minorticks_off()
    ax.set_xlabel("parameters (small_cnn, small_cnn_wide)")
    ax.set_ylabel("clean accuracy difference (points)")
    ax.set_title(f"Claim (a) against width: paired differences, 95 % CI\nseeds {', '.join(map(str, common))}, "
                 "10,000 CIFAR-10 test images", fontsize=9)
    ax.legend(fontsize=8)
    mio.save_figure(out / "scale_point.png", fig, dpi=130)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
