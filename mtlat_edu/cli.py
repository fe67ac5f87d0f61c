"""The ``mtlat-edu`` command line, every subcommand: ``train``, ``train-profile``, ``bench-step``,
``evaluate``, ``reproduce`` and ``ship`` (their options here, their work in the package).

Examples::

    mtlat-edu train --method standard mixup tlat mtlat --model small_cnn --dataset synthetic --epochs 3
    mtlat-edu train --method mtlat --dataset cifar10 --data-root ../shared/data/cifar10-jpeg --train-limit 10000
    mtlat-edu bench-step --model resnet18 --batch-size 128
    torchrun --standalone --nproc_per_node=2 -m mtlat_edu train --method mtlat --device cpu ...   # DDP
    torchrun --standalone --nproc_per_node=8 -m mtlat_edu train-profile --profile cifar10        # 8 GPUs

Under torchrun, ``train`` and ``evaluate`` join one process group for the command
(:mod:`mtlat_edu.core.distributed`); rank 0 alone writes files and prints.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import re
import sys
import types
import typing
import warnings
from pathlib import Path

from mtlat_edu.benchmark import parts as P
from mtlat_edu.benchmark.claims import claims_lines
from mtlat_edu.benchmark.evaluation import DEFAULT_RESULTS, evaluate
from mtlat_edu.benchmark.scores import REFERENCE
from mtlat_edu.core import distributed as D
from mtlat_edu.core import io as mio
from mtlat_edu.core.checks import resolve_device
from mtlat_edu.course import shipped
from mtlat_edu.course.runner import run_notebooks
from mtlat_edu.models import MODELS
from mtlat_edu.paper.methods import METHODS
from mtlat_edu.training import fit
from mtlat_edu.training.config import TrainConfig, field_value, option_exceptions
from mtlat_edu.training.profiles import (FIXED_SETTINGS, PROFILES, changes_weights, check_seeds, check_settings,
                                         get_profile, train_seeds)
from mtlat_edu.training.runs import DEFAULT_RUNS, run_folder, train_group
from mtlat_edu.training.step_cost import step_table, time_steps


def add_runs_arg(p: argparse.ArgumentParser, help: str) -> None:
    """``--runs`` (default :data:`~mtlat_edu.training.runs.DEFAULT_RUNS`), the root of the run folders,
    the same option in every command that reads or writes runs."""
    p.add_argument("--runs", default=DEFAULT_RUNS, help=help)


# The TrainConfig fields that ``train`` does not set from an option of the same name, and why (every
# other field is an option ``--field-name`` with the field's default: tests/test_cli_config.py checks it).
TRAIN_OPTION_EXCEPTIONS = option_exceptions()



def add_setting_options(p: argparse.ArgumentParser, skip=(), from_profile: bool = False) -> None:
    """One option per :class:`~mtlat_edu.training.config.TrainConfig` field, generated from the field
    (:func:`~mtlat_edu.training.config.setting`): ``--field-name``, its type, ``nargs="+"`` for a tuple,
    ``store_true`` for a bool (its ``flag``, e.g. ``--no-amp``, when it defaults to True), its choices,
    help and metavar. The default is the field's, or None ("the profile's") with ``from_profile``.
    A field declared with ``option=...`` or named in ``skip`` gets none."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        if f.name in skip or meta.get("option"):
            continue
        kind = hints[f.name]
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        base = args[0] if typing.get_origin(kind) in (typing.Union, types.UnionType) else kind
        default = None if from_profile else f.default
        kw = {"dest": f.name, "help": meta.get("help") or None}
        if meta.get("choices") is not None:
            kw["choices"] = list(meta["choices"])
        if meta.get("metavar"):
            kw["metavar"] = meta["metavar"]
        if base is bool:
            flag = meta.get("flag") if f.default else None
            p.add_argument(flag or f"--{f.name.replace('_', '-')}", action="store_false" if flag else "store_true",
                           default=default, **kw)
            continue
        if typing.get_origin(base) is tuple:
            kw.update(nargs="+", type=typing.get_args(base)[0])
            default = None if default is None else list(default)
        else:
            kw["type"] = base
        p.add_argument(f"--{f.name.replace('_', '-')}", default=default, **kw)


def setting_values(args, skip=()) -> dict:
    """``{field: value}`` of the setting options given on the command line (a None: not given, the
    profile's; lists become tuples, as the dataclass holds them)."""
    return {f.name: field_value(getattr(args, f.name)) for f in dataclasses.fields(TrainConfig)
            if f.name not in skip and not f.metadata.get("option") and getattr(args, f.name, None) is not None}


def add_train_args(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--method", nargs="+", default=[d.method], choices=list(METHODS),
                   help="one or more training methods (Tables 1-3); each is trained in turn")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--seeds", nargs="+", type=int, default=None, metavar="K",
                   help="train every method once per seed into <run folder>/seed<k> (instead of --seed)")
    add_setting_options(p)
    add_runs_arg(p, "root of the run folders: <runs>/<dataset>-<model>/<method> (with --seeds: ...<method>/seed<k>)")
    p.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")


def train_configs(args) -> list:
    """The validated :class:`~mtlat_edu.training.config.TrainConfig` of every run ``train`` asks for
    (each method x each seed): every field from its option, checked before anything trains."""
    seeds = check_seeds(args.seeds) if args.seeds is not None else (args.seed,)
    common = setting_values(args)
    return [TrainConfig(method=method, seed=seed, **common).validate() for method in args.method for seed in seeds]


def cmd_train(args) -> int:
    cfgs = train_configs(args)
    rows = []
    for cfg in cfgs:
        out = run_folder(args.runs, train_group(cfg.dataset, cfg.model), cfg.method,
                         cfg.seed if args.seeds is not None else None)
        res = fit(cfg, out, resume=not args.no_resume)
        rows.append((cfg.method, cfg.seed, res.test_acc, out))
    if not D.is_main():
        return 0
    print(f"\n{'method':<12} {'seed':>4} {'clean acc':>9}  run folder")
    for m, k, acc, out in rows:
        print(f"{m:<12} {k:>4} {100 * acc:>8.2f}%  {out}")
    return 0


def add_train_profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", required=True, choices=list(PROFILES), help="the named settings (training/profiles.py)")
    add_runs_arg(p, "root of the run folders: <runs>/<profile>/<method>/seed<k>")
    p.add_argument("--methods", nargs="+", default=None, choices=list(METHODS), help="default: the profile's")
    p.add_argument("--seeds", nargs="+", type=int, default=None, metavar="K", help="default: the profile's")
    p.add_argument("--no-surrogate", action="store_true", help="skip the VGG surrogate of the black-box attacks")
    p.add_argument("--data-root", default=None, help="dataset folder (default: the profile's)")
    add_profile_settings(p)


def add_profile_settings(p: argparse.ArgumentParser, device: bool = True) -> None:
    """The training settings of a profile's runs (``train-profile``, ``reproduce``): one option per
    TrainConfig field but :data:`~mtlat_edu.training.profiles.FIXED_SETTINGS` (and ``--device`` when
    the command has its own), default the profile's."""
    group = p.add_argument_group(
        "training settings", "each defaults to the profile's (the paper's recipe where the profile says nothing); "
        "one that changes the weights (e.g. --eps-max, --lr, --epochs) makes other runs: give them their own --runs")
    add_setting_options(group, skip=FIXED_SETTINGS + (() if device else ("device",)), from_profile=True)


def profile_overrides(args) -> dict:
    """The training settings ``train-profile`` or ``reproduce`` was given (``{field: value}``; the device apart)."""
    return {k: v for k, v in setting_values(args, skip=FIXED_SETTINGS).items() if k != "device"}


def cmd_train_profile(args) -> int:
    """Train a profile's runs (every method and seed, and the surrogate) the way ``make reproduce``
    and the notebooks find them; finished runs are reused. Under torchrun each run is one DDP job."""
    profile = get_profile(args.profile, **({"data_root": args.data_root} if args.data_root else {}))
    device = args.device or "auto"
    overrides = check_settings(profile, profile_overrides(args), device, args.methods,  # before anything trains
                               surrogate=not args.no_surrogate)
    train_seeds(profile, args.runs, methods=args.methods, surrogate=not args.no_surrogate, seeds=args.seeds,
                device=device, **overrides)
    if D.is_main():
        print(f"{args.profile}: every run is in {Path(args.runs) / args.profile}")
    return 0


def add_bench_step_args(p: argparse.ArgumentParser) -> None:
    """The options of ``mtlat-edu bench-step`` (:mod:`mtlat_edu.training.step_cost`)."""
    p.add_argument("--methods", nargs="+", default=["standard", "mtlat"], choices=list(METHODS))
    p.add_argument("--model", default="resnet18", choices=list(MODELS))
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported")
    p.add_argument("--steps-per-round", type=int, default=3)
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, ...")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA)")


def cmd_bench_step(args) -> int:
    """Seconds per training step of each method, side by side, and the ratio to the first."""
    res = time_steps(tuple(args.methods), args.model, args.batch_size, args.image_size, args.rounds,
                     args.steps_per_round, args.device, compile=args.compile)
    print(step_table(res, args.model, args.batch_size, args.image_size, args.device))
    return 0


def _limit(text: str):
    if text == "profile":  # the default: the profile's limit (all images without --profile)
        return text
    if text.lower() in ("all", "none"):
        return None
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of images >= 1 or 'all', got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a number of images >= 1 or 'all', got {text!r}")
    return n


def add_evaluate_args(p: argparse.ArgumentParser) -> None:
    """The options of ``mtlat-edu evaluate`` (:func:`mtlat_edu.benchmark.evaluate`)."""
    p.add_argument("models", nargs="*", metavar="RUN_FOLDER_OR_MODEL_PT",
                   help="trained models: run folders (with model.pt) or model.pt files; one table row each")
    p.add_argument("--profile", default=None,
                   help="evaluate every trained method of <runs>/<profile>/ and use its vgg_surrogate")
    add_runs_arg(p, "root of the profile's run folders (with --profile): <runs>/<profile>/<method>/seed<k>")
    p.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   help="with --profile: the trained methods to benchmark (default: the profile's, Tables 1-3; "
                        "e.g. standard mtlat mtlat_pgd manifold_mtlat)")
    p.add_argument("--corruption-files", default=None, metavar="DIR",
                   help="also measure every model on Hendrycks' released CIFAR-10-C (<corruption>.npy + labels.npy) "
                        "or ImageNet-C (<corruption>/<severity>/<class>/*.JPEG) files in DIR: per-corruption "
                        "accuracy and the mean over 15 corruptions x 5 severities, written to corruption_files.*")
    p.add_argument("--seeds", nargs="+", type=int, default=None, metavar="K",
                   help="training seeds to benchmark with --profile (default: the profile's seeds); tables show "
                        "mean ± std over them and claims.json judges each claim against that spread")
    p.add_argument("--surrogate", default=None, metavar="PATH",
                   help="model the black-box MI-FGSM attacks are crafted on (the paper: a VGG trained on the "
                        "same data); default with --profile: <runs>/<profile>/vgg_surrogate")
    p.add_argument("--parts", nargs="+", default=["all"], metavar="PART",
                   help="what to measure: groups (all, clean, corruptions, imagenet_c, extra, attacks, white_box, "
                        "black_box) and/or single corruption or attack names (e.g. fog pgd); default: all")
    p.add_argument("--severities", nargs="+", type=int, default=list(P.SEVERITIES), choices=list(P.SEVERITIES),
                   help="corruption severities averaged in the table (default: 1 2 3 4 5)")
    p.add_argument("--eval-limit", type=_limit, default="profile", metavar="N",
                   help="images (class-balanced subset) for clean accuracy and corruptions; 'all' for the whole "
                        "test set (default: the profile's eval_limit, else all)")
    p.add_argument("--attack-limit", type=_limit, default="profile", metavar="N",
                   help="images attacked; 'all' for the whole test set (default: the profile's attack_limit, else all)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0,
                   help="benchmark seed: image subsets, corruption randomness, PGD random starts (not a training seed)")
    p.add_argument("--data-root", default=None, help="dataset folder (default: the one recorded in the checkpoint)")
    p.add_argument("--out", default=None,
                   help=f"output folder (default: {DEFAULT_RESULTS}/<profile> or {DEFAULT_RESULTS}/<dataset>-<model>)")
    p.add_argument("--reference", default=REFERENCE, help="row the +/- marks compare with (default: standard)")
    p.add_argument("--fresh", action="store_true", help="ignore cached results and recompute every cell")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_evaluate(args: argparse.Namespace) -> int:
    """Benchmark, print the tables and the claims, and where the files are."""
    if not args.models and args.profile is None:
        raise ValueError("models: give run folders / model.pt files, or --profile NAME (with --runs)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = evaluate(args.models, profile=args.profile, runs=args.runs, surrogate=args.surrogate, seeds=args.seeds,
                       parts=args.parts, eval_limit=args.eval_limit, attack_limit=args.attack_limit,
                       severities=tuple(sorted(set(args.severities))), device=args.device,
                       batch_size=args.batch_size, seed=args.seed, data_root=args.data_root, out=args.out,
                       reference=args.reference, fresh=args.fresh, progress=not args.no_progress,
                       methods=args.methods, corruption_files=args.corruption_files)
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"mtlat-edu: warning: {w.message}", file=sys.stderr)
    print()
    print(res.markdown)
    print("## Table 3: clean accuracy (%)\n")
    print(res.table3_markdown)
    print()
    print("\n".join(claims_lines(res.claims)))
    if "files_md" in res.files:
        print()
        print(Path(res.files["files_md"]).read_text(encoding="utf-8"))
    seconds = sum(s.meta["seconds"] for s in res.suites.values())
    print(f"\n{res.computed} cells computed, {res.reused} reused from the cache ({seconds:.1f} s).")
    print(f"Files in {res.out_dir}:")
    for what, path in res.files.items():
        print(f"  {what:<13} {path}")
    return 0


def cmd_evaluate(args) -> int:
    if D.is_main():
        return run_evaluate(args)
    with contextlib.redirect_stdout(io.StringIO()):  # under torchrun rank 0 alone prints the tables
        return run_evaluate(args)


def add_reproduce_args(p) -> None:
    """The arguments of ``mtlat-edu reproduce``."""
    p.add_argument("--profile", default="cpu", choices=list(PROFILES),
                   help="smoke (generated data, offline, tests), cpu (CIFAR-10 on a CPU; default), cifar10 (GPU), paper")
    p.add_argument("--out", default=None, help="output folder (default: output/<profile>)")
    p.add_argument("--notebooks", nargs="+", default=None, metavar="NN",
                   help="only these notebooks, by number or name prefix (e.g. 02 03); default: all, in order")
    p.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda, ...")
    add_runs_arg(p, "root of the run folders: <runs>/<profile>/<method>/seed<k>")
    p.add_argument("--runs-root", dest="runs", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # its former name
    add_profile_settings(p, device=False)  # passed to the notebooks as their ``settings`` parameter
    p.add_argument("--seeds", nargs="+", type=int, default=None, metavar="K",
                   help="training seeds (default: the profile's); with several, the tables show mean ± std and the "
                        "claims are judged against that spread")
    p.add_argument("--data-root", default=None, help="dataset folder (default: the profile's; CIFAR-10 is found offline)")
    p.add_argument("--threads", type=int, default=None,
                   help="OMP/MKL threads of the notebook kernels (1 is fastest on a small shared CPU)")
    p.add_argument("--cell-timeout", type=int, default=None, help="seconds per cell (default: no limit)")
    p.add_argument("--no-progress", action="store_true", help="a line per notebook instead of a progress bar")
    p.add_argument("--use-shipped", action="store_true",
                   help="let the models shipped with the package stand in for missing runs (default: train every "
                        "missing run from scratch and compare its clean accuracy with the shipped model's)")
    p.add_argument("--notebook-dir", default=None, help=argparse.SUPPRESS)


def cmd_reproduce(args) -> int:
    """The body of ``mtlat-edu reproduce``: 0 when every notebook ran, 1 at the first failure."""
    seeds = None if args.seeds is None else list(check_seeds(args.seeds))
    settings = profile_overrides(args)
    report = run_notebooks(args.profile, out=args.out, notebooks=args.notebooks, device=args.device,
                           runs_root=args.runs, data_root=args.data_root, threads=args.threads,
                           cell_timeout=args.cell_timeout, notebook_folder=args.notebook_dir,
                           extra_parameters={"seeds": seeds}, progress=not args.no_progress,
                           reproduce=not args.use_shipped, settings=settings)
    if report.ok and not args.use_shipped and not changes_weights(settings):  # else: other runs than the shipped
        print("\n" + "\n".join(shipped.compare_with_runs(args.profile, args.runs, (seeds or [0])[0])))
    claims = report.out / "benchmark" / "claims.json"
    if report.ok and claims.exists():
        print("\nThe paper's claims, judged against the spread over training seeds (notebook 08):")
        print("\n".join(claims_lines(mio.read_json(claims))))
        print(f"  details: {claims}")
    return 0 if report.ok else 1


def add_ship_args(p) -> None:
    """The arguments of ``mtlat-edu ship`` (:func:`mtlat_edu.course.shipped.ship`)."""
    p.add_argument("--profile", default="cpu", choices=list(PROFILES), help="the profile whose runs are shipped")
    add_runs_arg(p, "root of the run folders: <runs>/<profile>/<method>/seed<k>")
    p.add_argument("--seed", type=int, default=0, help="the training seed shipped (default 0)")
    p.add_argument("--methods", nargs="+", default=None, choices=list(METHODS), help="default: the profile's")
    p.add_argument("--no-surrogate", action="store_true", help="do not ship the VGG surrogate")
    p.add_argument("--group", default=shipped.RUNS_GROUP, choices=list(shipped.GROUPS),
                   help="runs: <runs>/<profile>/...; tracked: <runs>/tracked/<profile>/... (notebook 05's runs with "
                        "a robustness record)")
    p.add_argument("--history-only", action="store_true", help="ship the histories only, no weights")
    p.add_argument("--out", default=None, help="root of the shipped folders (default: the package's pretrained/)")
    p.add_argument("--check", action="store_true", help="only verify the shipped folder of --profile (sizes, SHA-256)")


def cmd_ship(args) -> int:
    """Export finished runs as shipped models (safetensors + manifest), or verify a shipped folder."""
    if not args.check:
        shipped.ship(args.profile, args.runs, seed=args.seed, methods=args.methods, surrogate=not args.no_surrogate,
                     group=args.group, history_only=args.history_only, root=args.out)
    problems = shipped.check_folder(args.profile, args.out)
    print("\n".join(problems) if problems else f"{shipped.profile_folder(args.profile, args.out)}: every entry verified")
    return 1 if problems else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mtlat-edu", description="M-TLAT (ECCV 2020) for learning and research")
    sub = p.add_subparsers(dest="command", required=True)
    add_train_args(sub.add_parser("train", help="train one or more methods with the paper's recipe"))
    add_train_profile_args(sub.add_parser("train-profile", help="train every run of a profile (what reproduce uses)"))
    add_bench_step_args(sub.add_parser("bench-step", help="time a training step per method (ratio to standard)"))
    add_evaluate_args(sub.add_parser("evaluate", help="robustness benchmark of trained models (Tables 1-3)"))
    add_reproduce_args(sub.add_parser("reproduce", help="run the course notebooks in order with papermill"))
    add_ship_args(sub.add_parser("ship", help="export finished runs as shipped models (safetensors + manifest)"))
    return p


def option_message(message: str, parser: argparse.ArgumentParser) -> str:
    """``eps_max: must ...`` -> ``--eps-max: must ...`` when the command has that option: the
    validation layer names arguments, the command line names its options."""
    m = re.match(r"(\w+): ", message)
    option = f"--{m.group(1).replace('_', '-')}" if m else ""
    return option + message[m.end(1):] if option in parser._option_string_actions else message


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "reproduce":
            return cmd_reproduce(args)
        if args.command == "bench-step":
            return cmd_bench_step(args)
        if args.command == "ship":
            return cmd_ship(args)
        with D.session(D.local_device(resolve_device(args.device))):  # torchrun: one process group per command
            return {"train": cmd_train, "train-profile": cmd_train_profile, "evaluate": cmd_evaluate}[args.command](args)
    except KeyboardInterrupt:
        print("mtlat-edu: interrupted (Ctrl-C); every file written is complete: run the same command again to "
              "resume", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as exc:  # OSError: FileNotFoundError, io.WriteError, permissions
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[args.command]
        print(f"mtlat-edu: error: {option_message(one_line(exc), sub)}", file=sys.stderr)
        return 2


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line: the package's own messages are one line already; an
    ``OSError`` from elsewhere becomes ``<file>: <reason>``, anything longer keeps its first line."""
    if isinstance(exc, OSError) and not isinstance(exc, mio.WriteError) and exc.strerror and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    text = str(exc).strip() or type(exc).__name__
    lines = text.splitlines()
    return lines[0] + (f" (+{len(lines) - 1} more lines)" if len(lines) > 1 else "")


if __name__ == "__main__":
    sys.exit(main())
