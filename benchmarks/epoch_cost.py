"""Where the time of a training epoch goes, and the M-TLAT / standard epoch ratio in real runs.

    python -m benchmarks.epoch_cost [--profile cpu] [--methods standard mtlat] [--epochs 3]
                                    [--part-epochs 2] [--threads 1]

Run from the repository root (issue 23; the output is committed as
``results/cpu/bench_epoch_cost.txt``, read in docs/training-profile.md). Three measurements, each
side by side in one run:

1. **Step ratio** (:func:`mtlat_edu.training.step_cost.time_steps`): full optimisation steps of the
   profile's model on one batch, the methods interleaved in rounds (``mtlat-edu bench-step``).
2. **Epoch parts**, in this process on ``--threads`` threads: one epoch of each method after the
   other (``--part-epochs`` rounds, medians), built as :func:`mtlat_edu.training.fit` builds it (the
   profile's data, model, Adam, schedule, batches), timing each part of the step: fetching the batch,
   augmenting it, the loss (for M-TLAT split into Algorithm 1's couples and TLAT labels with the
   attack, and the loss forward), the backward pass, the optimiser and scheduler step; then the
   end-of-epoch clean evaluation and (for the profile's tracked methods) the robustness record.
3. **Real runs**: the methods trained by :func:`mtlat_edu.training.fit` for ``--epochs`` epochs at the
   same time, one worker process each with one thread (as ``train-profile`` and ``make reproduce``
   run them on a 2-core machine), into a temporary folder; the ratio of the median ``train_seconds``
   of their epochs (the batch loop only, as ``history.json`` records it; the end-of-epoch evaluation
   and the robustness record are the same work for every method, timed in 2).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch


def part_times(profile, methods, rounds: int) -> dict[str, dict[str, float]]:
    """Median seconds per epoch of each part of the training step, per method (see the module doc)."""
    from mtlat_edu.data import AUGMENTATIONS, batches as make_batches
    from mtlat_edu.models import build_model
    from mtlat_edu.paper import methods as M
    from mtlat_edu.training.config import lr_factor
    from mtlat_edu.training.loop import epoch_accuracy, track_robustness
    from mtlat_edu.training.profiles import job_data

    device = torch.device("cpu")
    cfgs = {m: profile.train_config(m, device="cpu") for m in methods}
    train, test = job_data(cfgs[methods[0]], {})
    tracked = test.subset(profile.tracked_images, cfgs[methods[0]].seed) if profile.tracked_methods else None
    state = {}
    for m, cfg in cfgs.items():
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, train.num_classes)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        batches = make_batches(train, cfg.batch_size, device, shuffle=True, drop_last=True,
                               generator=torch.Generator().manual_seed(cfg.seed))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s, n=cfg.epochs * len(batches): lr_factor(s, n))
        state[m] = (cfg, model, opt, sched, batches, torch.Generator().manual_seed(cfg.seed))
    times: dict[str, dict[str, list[float]]] = {m: defaultdict(list) for m in methods}
    for _ in range(rounds):
        for m in methods:
            cfg, model, opt, sched, batches, g = state[m]
            mcfg, augment, fn = cfg.method_config(train.num_classes), AUGMENTATIONS[cfg.augment], M.trusted_method(m)
            acc: dict[str, float] = defaultdict(float)
            model.train()
            t_epoch = time.perf_counter()
            it = iter(batches)
            while True:
                t0 = time.perf_counter()
                try:
                    x, y = next(it)
                except StopIteration:
                    break
                t1 = time.perf_counter()
                x = augment(x, g)
                t2 = time.perf_counter()
                acc["batch"] += t1 - t0
                acc["augment"] += t2 - t1
                if m == "mtlat":  # Algorithm 1 in its two parts, exactly as mtlat_method runs it
                    x_mix1, y_mix1, x_mtlat, y_mtlat, _ = M._mtlat_couples(model, x, y, mcfg, g)
                    t3 = time.perf_counter()
                    loss = M.two_part_loss(model, x_mix1, y_mix1, x_mtlat, y_mtlat)
                    acc["couples + attack (lines 1-6)"] += t3 - t2
                    acc["loss forward"] += time.perf_counter() - t3
                else:
                    loss = fn(model, x, y, mcfg, g)
                    acc["loss forward" if m in ("standard", "mixup") else "loss (attack + forward)"] += \
                        time.perf_counter() - t2
                t4 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                t5 = time.perf_counter()
                opt.step()
                sched.step()
                t6 = time.perf_counter()
                acc["backward"] += t5 - t4
                acc["optimizer + scheduler"] += t6 - t5
            acc["= batch loop (history's train_seconds)"] = time.perf_counter() - t_epoch
            t7 = time.perf_counter()
            epoch_accuracy(model, test, cfg.eval_batch_size, device)
            acc["end-of-epoch clean evaluation"] = time.perf_counter() - t7
            if tracked is not None and m in profile.tracked_methods:
                t8 = time.perf_counter()
                track_robustness(model, tracked, profile.train_config(m, device="cpu"), device)
                acc["robustness record (tracked runs)"] = time.perf_counter() - t8
            for k, v in acc.items():
                times[m][k].append(v)
    return {m: {k: statistics.median(v) for k, v in parts.items()} for m, parts in times.items()}


def real_runs(profile, methods, epochs: int) -> dict[str, dict]:
    """Train ``methods`` at the same time (one worker process and one thread each) for ``epochs``
    epochs; the median batch-loop seconds of their epochs (``history.json``'s ``train_seconds``)."""
    from mtlat_edu.training.profiles import _train_parallel, job_data

    with tempfile.TemporaryDirectory(prefix="mtlat-epoch-cost-") as root:
        jobs = [(m, 0, profile.train_config(m, device="cpu", epochs=epochs), Path(root) / m) for m in methods]
        job_data(jobs[0][2], {})  # decoded and cached before the workers start, as train-profile does
        _train_parallel(jobs, len(jobs), progress=False)
        out = {}
        for m, _, _, folder in jobs:
            hist = json.loads((folder / "history.json").read_text())
            out[m] = {"train_seconds": statistics.median(h["train_seconds"] for h in hist),
                      "epochs": len(hist)}
        return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--methods", nargs="+", default=["standard", "mtlat"])
    ap.add_argument("--epochs", type=int, default=3, help="epochs of the real side-by-side runs")
    ap.add_argument("--part-epochs", type=int, default=2, help="rounds of the part timing (medians)")
    ap.add_argument("--threads", type=int, default=1, help="threads of the step and part timings")
    ap.add_argument("--skip-real", action="store_true")
    args = ap.parse_args(argv)

    from mtlat_edu.training.profiles import get_profile
    from mtlat_edu.training.step_cost import step_table, time_steps

    torch.set_num_threads(args.threads)
    profile = get_profile(args.profile)
    base = args.methods[0]
    print(f"profile {profile.name}: {profile.model}, batch {profile.batch_size}, {profile.train_limit} training images; "
          f"torch {torch.__version__}, {args.threads} thread(s) for 1-2, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")

    print("\n1. step ratio (mtlat-edu bench-step, interleaved rounds, median)")
    steps = time_steps(tuple(args.methods), profile.model, profile.batch_size, 32, rounds=7, steps_per_round=5,
                       device="cpu")
    print(step_table(steps, profile.model, profile.batch_size, 32, "cpu"))

    print(f"\n2. one epoch by part, seconds (median of {args.part_epochs} interleaved epochs per method)")
    parts = part_times(profile, args.methods, args.part_epochs)
    order = ["batch", "augment", "couples + attack (lines 1-6)", "loss (attack + forward)", "loss forward", "backward",
             "optimizer + scheduler", "= batch loop (history's train_seconds)", "end-of-epoch clean evaluation",
             "robustness record (tracked runs)"]
    names = [k for k in order if any(k in p for p in parts.values())]
    print(f"{'part':<42}" + "".join(f"{m:>12}" for m in args.methods) + "   ratio to " + base)
    for k in names:
        vals = [parts[m].get(k) for m in args.methods]
        ratio = "" if not (vals[0] and vals[-1]) else f"{vals[-1] / vals[0]:>8.2f}x"
        print(f"{k:<42}" + "".join(f"{v:>12.3f}" if v is not None else f"{'-':>12}" for v in vals) + f"   {ratio}")

    if not args.skip_real:
        print(f"\n3. real runs: fit() of each method at the same time, one worker process and one thread each, "
              f"{args.epochs} epochs (median epoch)")
        real = real_runs(profile, args.methods, args.epochs)
        for m, r in real.items():
            print(f"{m:<12} batch loop {r['train_seconds']:7.2f} s/epoch   ratio {r['train_seconds'] / real[base]['train_seconds']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
