"""Copy the training record of a claims run into ``results/<profile>/training``: every finished run's
``history.json`` and ``config.json`` as ``<profile>/<method>/seed<k>.history.json`` / ``.config.json``,
and a README table of the final test accuracy during training per method and seed (mean ± sd).

    python experiments/claims-run/collect.py --runs /work/runs-claims --out results/cpu/training \
        --profiles cpu cpu_short

Only finished runs (a ``model.pt``) are copied; the clean accuracies of the tables (all test images)
are in the benchmark folder, not here.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

HEADER = """# Training histories of the claims run

`<profile>/<method>/seed<k>.history.json` and `.config.json`, copied from the run folders by
`python experiments/claims-run/collect.py --runs {runs} --out {out} --profiles {profiles}`.
The clean accuracies of the tables (all 10,000 test images) are in `../benchmark/`.

| profile | method | model | seeds | final test acc during training ({images} images): per seed | mean ± sd |
|---|---|---|---:|---|---|
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="root of the run folders (<runs>/<profile>/<method>/seed<k>)")
    ap.add_argument("--out", required=True, help="the results folder of the histories")
    ap.add_argument("--profiles", nargs="+", default=["cpu"])
    args = ap.parse_args()
    runs, out = Path(args.runs), Path(args.out)
    rows, images = [], set()
    for profile in args.profiles:
        for method_dir in sorted(p for p in (runs / profile).iterdir() if p.is_dir()):
            accs, model = {}, ""
            for seed_dir in sorted(method_dir.glob("seed*")):
                if not (seed_dir / "model.pt").is_file():
                    continue
                dest = out / profile / method_dir.name
                dest.mkdir(parents=True, exist_ok=True)
                for name in ("history", "config"):
                    shutil.copyfile(seed_dir / f"{name}.json", dest / f"{seed_dir.name}.{name}.json")
                history = json.loads((seed_dir / "history.json").read_text())
                config = json.loads((seed_dir / "config.json").read_text())
                accs[int(seed_dir.name[4:])] = 100 * history[-1]["test_acc"]
                model = config.get("model", "")
                images.add(config.get("test_limit"))
            if not accs:
                continue
            vals = [accs[k] for k in sorted(accs)]
            sd = f" ± {statistics.stdev(vals):.2f}" if len(vals) > 1 else ""
            rows.append(f"| {profile} | {method_dir.name} | {model} | {len(vals)} ({', '.join(map(str, sorted(accs)))}) | "
                        f"{', '.join(f'{v:.2f}' for v in vals)} | {statistics.fmean(vals):.2f}{sd} |")
    n = ", ".join(f"{i:,}" for i in sorted(i for i in images if i)) or "the profile's"
    text = HEADER.format(runs=args.runs, out=args.out, profiles=" ".join(args.profiles), images=n) + "\n".join(rows) + "\n"
    (out / "README.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
