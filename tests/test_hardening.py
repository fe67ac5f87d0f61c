"""Issue 10: nothing silent, nothing lost, nothing executed.

* a bad-input suite over the public functions and the CLI options (NaN, inf, -0.0, huge, empty
  batches, wrong shapes and dtypes, float labels): each gets a ValueError naming the argument (the
  option on the command line) and the allowed values, or the right result;
* safe loading: a crafted pickle never runs; 0-byte, truncated and garbage model, checkpoint and
  cache files and plain state_dicts get a refusal naming the file and the remedy;
* run folders: kill -9 at several moments of a tiny training run (in a subprocess, killed from a
  hook inside and right after checkpoint, history and model writes), then resume = the weights and
  history of an uninterrupted run; concurrent runs, stale locks, orphan temporary files, umask;
* bounded network (a proxy that never answers) and no folder created for a missing data root;
* the notebook runner names the cell where a kernel died and numbers cells as the source notebook.
"""
from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from mtlat_edu.core import io as mio
from mtlat_edu.paper.adversarial import fgsm, sample_eps, targeted_fgsm
from mtlat_edu.robustness.attacks import cw_l2, mi_fgsm, pgd, pgd_ll
from mtlat_edu.robustness.measure import attack_accuracy
from mtlat_edu.core.checks import check_positive, check_range
from mtlat_edu.cli import main as cli_main
from mtlat_edu.data import load_cifar10, load_dataset, load_imagefolder
from mtlat_edu.paper.labels import one_hot, smooth_labels, tlat_labels
from mtlat_edu.paper.methods import METHODS, MethodConfig
from mtlat_edu.paper.mixup import mixup, sample_lambda
from mtlat_edu.models import NormalizedModel, build_model
from mtlat_edu.training import TrainConfig, epoch_accuracy, fit, load_checkpoint, read_history

pytestmark = pytest.mark.usefixtures("one_thread")

NAN, INF = float("nan"), float("inf")
REPO = Path(__file__).resolve().parents[1]
# 3 epochs of 4 M-TLAT steps on generated data: every generator, the optimizer and the scheduler matter
TINY = dict(method="mtlat", model="small_cnn", dataset="synthetic", epochs=3, batch_size=32, train_limit=128,
            test_limit=40, device="cpu", seed=1)
TIMING = ("train_seconds", "images_per_second")


def tiny_model():
    return NormalizedModel(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                         nn.Linear(4, 10)))


def batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(4, 3, 8, 8, generator=g), torch.tensor([0, 1, 2, 3])


# ------------------------------------------------------------------------------------------------
# bad input: the API

M = tiny_model()
X, Y = batch()
Y_SOFT = one_hot(Y, 10)
PERM = torch.tensor([1, 0, 3, 2])
X_NAN = X.clone()
X_NAN[0, 0, 0, 0] = NAN

API_CASES = {
    # NaN / inf numbers (all used to pass or return NaN tensors)
    "fgsm eps nan": (lambda: fgsm(M, X, Y, NAN), r"eps: must lie in \[0.0, 1.0\] \(a finite number\), got nan"),
    "fgsm eps inf": (lambda: fgsm(M, X, Y, INF), r"eps: must lie in \[0.0, 1.0\]"),
    "targeted_fgsm eps nan": (lambda: targeted_fgsm(M, X, Y, NAN), r"eps: must lie in \[0.0, 1.0\]"),
    "fgsm per-sample eps with a nan": (lambda: fgsm(M, X, Y, torch.tensor([0.1, NAN, 0.1, 0.1])), r"eps: must lie"),
    "pgd eps nan": (lambda: pgd(M, X, Y, eps=NAN), r"eps: must lie in \[0.0, 1.0\]"),
    "pgd_ll eps nan": (lambda: pgd_ll(M, X, Y, eps=NAN), r"eps: must lie in \[0.0, 1.0\]"),
    "pgd step_size inf": (lambda: pgd(M, X, Y, step_size=INF), r"step_size: must lie in \(0.0, 1.0\]"),
    "pgd steps 0": (lambda: pgd(M, X, Y, steps=0), "steps: must be an integer >= 1, got 0"),
    "pgd steps 2.0": (lambda: pgd(M, X, Y, steps=2.0), "steps: must be an integer >= 1, got 2.0"),
    "mi_fgsm decay nan": (lambda: mi_fgsm(M, X, Y, decay=NAN), r"decay: must be >= 0 \(a finite number\), got nan"),
    "mi_fgsm decay inf": (lambda: mi_fgsm(M, X, Y, decay=INF), r"decay: must be >= 0"),
    "cw_l2 c inf": (lambda: cw_l2(M, X, Y, c=INF), r"c: must be > 0"),
    "cw_l2 confidence nan": (lambda: cw_l2(M, X, Y, confidence=NAN), r"confidence: must be >= 0"),
    "mixup lam nan": (lambda: mixup(X, Y_SOFT, NAN, PERM), r"lam: must lie in \[0.0, 1.0\]"),
    "sample_lambda alpha nan": (lambda: sample_lambda(4, NAN), r"alpha: must be > 0 \(a finite number\)"),
    "sample_lambda alpha inf": (lambda: sample_lambda(4, INF), r"alpha: must be > 0"),
    "sample_eps eps_max nan": (lambda: sample_eps(4, NAN), r"eps_max: must lie in \[0.0, 1.0\]"),
    "tlat_labels eps nan": (lambda: tlat_labels(Y_SOFT, Y, NAN), r"eps: must lie in \[0.0, 1.0\]"),
    "smooth_labels eps nan": (lambda: smooth_labels(Y, 10, NAN), r"eps: must lie in \[0.0, 1.0\]"),
    "MethodConfig alpha inf": (lambda: MethodConfig(alpha=INF), "alpha: must be > 0"),
    "MethodConfig eps_max nan": (lambda: MethodConfig(eps_max=NAN), "eps_max: must lie"),
    "TrainConfig lr inf": (lambda: TrainConfig(lr=INF).validate(), "lr: must be > 0"),
    "TrainConfig lr nan": (lambda: TrainConfig(lr=NAN).validate(), "lr: must be > 0"),
    "TrainConfig alpha inf": (lambda: TrainConfig(alpha=INF).validate(), "alpha: must be > 0"),
    "TrainConfig eps_max nan": (lambda: TrainConfig(eps_max=NAN).validate(), "eps_max: must lie"),
    "TrainConfig weight_decay nan": (lambda: TrainConfig(weight_decay=NAN).validate(), "weight_decay: must lie"),
    "TrainConfig image_size 0": (lambda: TrainConfig(image_size=0).validate(), "image_size: must be an integer >= 1"),
    "TrainConfig train_limit 0": (lambda: TrainConfig(train_limit=0).validate(), "train_limit: must be an integer"),
    "TrainConfig test_limit 2.5": (lambda: TrainConfig(test_limit=2.5).validate(), "test_limit: must be an integer"),
    "TrainConfig device nosuch": (lambda: TrainConfig(device="nosuch").validate(), "device: unknown device 'nosuch'"),
    "load_dataset image_size 0": (lambda: load_dataset("synthetic", "train", image_size=0), "image_size: must be"),
    "load_dataset limit 0": (lambda: load_dataset("synthetic", "train", limit=0), "limit: must be an integer >= 1"),
    "build_model num_classes 1": (lambda: build_model("small_cnn", 1), "num_classes: must be an integer >= 2"),
    "epoch_accuracy batch_size 0": (lambda: epoch_accuracy(M, load_dataset("synthetic", "test", limit=10), 0),
                                    "batch_size: must be an integer >= 1"),
    # images: shape, layout, dtype, values
    "1-channel batch into a 3-channel model": (lambda: M(X[:, :1]), r"x: expected NCHW with 3 channels in dim 1, "
                                               r"got shape \(4, 1, 8, 8\)"),
    "fgsm 1-channel": (lambda: fgsm(M, X[:, :1], Y, 0.01), "x: expected NCHW with 3 channels"),
    "pgd NHWC": (lambda: pgd(M, X.permute(0, 2, 3, 1), Y), r"NHWC\? use x.permute\(0, 3, 1, 2\)"),
    "fgsm float64": (lambda: fgsm(M, X.double(), Y, 0.01), "x: expected dtype float32, float16 or bfloat16"),
    "cw_l2 float64": (lambda: cw_l2(M, X.double(), Y), "expected dtype float32, float16 or bfloat16"),
    "fgsm uint8": (lambda: fgsm(M, (X * 255).to(torch.uint8), Y, 0.01), r"floating-point .* x.float\(\) / 255"),
    "fgsm nan pixel": (lambda: fgsm(M, X_NAN, Y, 0.01), r"x: values must lie in \[0, 1\]"),
    "mixup 3-d images": (lambda: mixup(X[0], Y_SOFT, 0.5, PERM), "x: expected a 4-d NCHW batch"),
    # eps shapes
    "fgsm eps of 3 for 4 images": (lambda: fgsm(M, X, Y, torch.full((3,), 0.01)),
                                   r"eps: expected a float or a \(4,\) tensor \(one per sample\), got shape \(3,\)"),
    "tlat_labels eps (4, 1)": (lambda: tlat_labels(Y_SOFT, Y, torch.full((4, 1), 0.1)), r"eps: expected .* \(4,\)"),
    "mixup lam of 2": (lambda: mixup(X, Y_SOFT, torch.full((2,), 0.5), PERM), r"lam: expected .* \(4,\)"),
    # labels: float labels refused (not truncated), out of range, hard labels where soft ones go
    "one_hot float labels": (lambda: one_hot(torch.tensor([2.7]), 10), "y: expected a 1-d int64 tensor"),
    "one_hot out of range": (lambda: one_hot(torch.tensor([10]), 10), r"y: class indices must lie in \[0, 9\]"),
    "tlat_labels float target": (lambda: tlat_labels(Y_SOFT, Y.float() + 0.7, 0.1), "y_target: expected a 1-d int64"),
    "smooth_labels float labels": (lambda: smooth_labels(Y.float(), 10, 0.1), "y: expected a 1-d int64 tensor"),
    "attack_accuracy float labels": (lambda: attack_accuracy("pgd", M, X, Y.float() + 0.7), "labels: expected"),
    "fgsm float labels": (lambda: fgsm(M, X, Y.float(), 0.01), "y: expected a 1-d int64 tensor"),
    "pgd labels out of range": (lambda: pgd(M, X, torch.tensor([0, 1, 2, 10])), r"y: class indices .* \[0, 9\]"),
    "fgsm 3 labels for 4 images": (lambda: fgsm(M, X, Y[:3], 0.01), "y: expected 4 integer class indices"),
    "mixup with hard labels": (lambda: mixup(X, Y, 0.5, PERM), r"y_soft: expected float \(B, N\) label vectors"),
    "mixup perm out of range": (lambda: mixup(X, Y_SOFT, 0.5, torch.tensor([0, 1, 2, 4])), r"perm: class indices"),
}


@pytest.mark.parametrize("case", list(API_CASES))
def test_bad_input_is_refused_naming_the_argument(case):
    call, message = API_CASES[case]
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.parametrize("images, message", [
    ((X * 255).to(torch.uint8), "floating-point"), (X + 1, r"values must lie in \[0, 1\]"), (X_NAN, "values must lie"),
    (X.double(), "float32, float16 or bfloat16"), (X[:, :1], "3 channels"),
])
def test_every_training_loss_checks_its_batch(name, images, message):
    with pytest.raises(ValueError, match=f"x: .*{message}"):
        METHODS[name](M, images, Y, MethodConfig(), torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="y: expected a 1-d int64"):
        METHODS[name](M, X, Y.float(), MethodConfig(), torch.Generator().manual_seed(0))


def test_the_training_step_does_not_revalidate(monkeypatch):
    """Validation happens once at the entry: fit's steps run no check (a check syncs the GPU)."""
    import mtlat_edu.core.checks as checks
    cfg, calls = MethodConfig(), []
    for name in ("check_range", "check_images", "check_labels", "check_eps", "check_positive"):
        monkeypatch.setattr(checks, name, lambda *a, _n=name, **k: calls.append(_n))
    import mtlat_edu.paper.adversarial as adv
    import mtlat_edu.paper.labels as lab
    import mtlat_edu.paper.methods as meth
    import mtlat_edu.paper.mixup as mix
    for mod in (adv, lab, meth, mix):
        for name in ("check_range", "check_images", "check_labels", "check_eps", "check_positive", "check_model_input",
                     "check_soft_labels"):
            if hasattr(mod, name):
                monkeypatch.setattr(mod, name, lambda *a, _n=name, **k: calls.append(_n))
    x, y = torch.rand(8, 3, 8, 8), torch.arange(8)
    model = tiny_model()
    model.mix_points = (model.net[0], model.net[1])     # manifold_mtlat's hidden layers 1 and 2 (as build_model)
    for name in METHODS:
        meth.trusted_method(name)(model, x, y, cfg, torch.Generator().manual_seed(0))  # what fit's steps call
    assert calls == []


def test_empty_batches_give_empty_results():
    x, y = X[:0], Y[:0]
    assert fgsm(M, x, y, 0.1).shape == (0, 3, 8, 8)
    assert fgsm(M, x, y, torch.empty(0)).shape == (0, 3, 8, 8)
    assert pgd(M, x, y).shape == (0, 3, 8, 8)
    x_mix, y_mix = mixup(x, Y_SOFT[:0], torch.empty(0), y)
    assert x_mix.shape == (0, 3, 8, 8) and y_mix.shape == (0, 10)


def test_negative_zero_and_tiny_values_are_valid():
    x_adv = fgsm(M, X, Y, -0.0)                          # -0.0 == 0: no step
    assert torch.equal(x_adv, X)
    assert tlat_labels(Y_SOFT, Y, -0.0).equal(Y_SOFT)
    check_positive(5e-324, "lr")                         # the smallest positive double is > 0


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True, width=64))
def test_check_range_accepts_exactly_the_finite_values_in_range(v):
    ok = math.isfinite(v) and 0.0 <= v <= 1.0
    try:
        check_range(v, "eps", 0.0, 1.0)
        assert ok, f"{v!r} passed"
    except ValueError as exc:
        assert not ok and str(exc).startswith("eps: must lie in [0.0, 1.0] (a finite number), got ")


@settings(max_examples=150, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True, width=32))
def test_mixup_lambda_either_mixes_convexly_or_is_refused(lam):
    if not (math.isfinite(lam) and 0.0 <= lam <= 1.0):
        with pytest.raises(ValueError, match="lam: must lie"):
            mixup(X, Y_SOFT, lam, PERM)
        return
    x_mix, y_mix = mixup(X, Y_SOFT, lam, PERM)
    assert torch.allclose(x_mix, lam * X + (1 - lam) * X[PERM], atol=1e-6)   # eq. (1)
    assert torch.allclose(y_mix.sum(1), torch.ones(4)) and 0 <= x_mix.min() and x_mix.max() <= 1


# ------------------------------------------------------------------------------------------------
# bad input: the command line (each message names its own option and the allowed values)

TRAIN = ["train", "--method", "standard", "--model", "small_cnn", "--dataset", "synthetic", "--epochs", "1",
         "--batch-size", "32", "--train-limit", "64", "--test-limit", "16"]
CLI_CASES = [
    (["--weight-decay", "nan"], r"--weight-decay: must lie in \[0.0, 1.0\] \(a finite number\), got nan"),
    (["--lr", "inf"], r"--lr: must be > 0 \(a finite number\), got inf"),
    (["--alpha", "inf"], r"--alpha: must be > 0"),
    (["--eps-max", "nan"], r"--eps-max: must lie in \[0.0, 1.0\]"),
    (["--eps-max", "1e308"], r"--eps-max: must lie in \[0.0, 1.0\]"),
    (["--train-limit", "0"], r"--train-limit: must be an integer >= 1 \(or left out: all images\), got 0"),
    (["--test-limit", "0"], r"--test-limit: must be an integer >= 1 \(or left out: all images\), got 0"),
    (["--image-size", "0"], r"--image-size: must be an integer >= 1 .*got 0"),
    (["--image-size", "-3"], r"--image-size: must be an integer >= 1 .*got -3"),
    (["--device", "nosuch"], r"--device: unknown device 'nosuch'; valid: auto, cpu, cuda, cuda:N, mps \(available here: "),
    (["--epochs", "0"], "--epochs: must be an integer >= 1, got 0"),
    (["--batch-size", "0"], "--batch-size: must be an integer >= 1, got 0"),
    (["--seed", "-1"], "--seed: must be an integer >= 0, got -1"),
]


@pytest.mark.parametrize("extra, message", CLI_CASES, ids=[" ".join(c[0]) for c in CLI_CASES])
def test_cli_train_names_the_option(extra, message, tmp_path, capsys):
    assert cli_main(TRAIN + ["--runs", str(tmp_path / "runs")] + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtlat-edu: error: ") and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert not (tmp_path / "runs").exists()               # refused before anything is created


OTHER_CLI_CASES = [
    (["bench-step", "--model", "small_cnn", "--batch-size", "0"], "--batch-size: must be an integer >= 1, got 0"),
    (["bench-step", "--model", "small_cnn", "--rounds", "0"], "--rounds: must be an integer >= 1, got 0"),
    (["bench-step", "--model", "small_cnn", "--device", "nosuch"], "--device: unknown device 'nosuch'; valid: auto"),
    (["reproduce", "--profile", "smoke", "--threads", "0"], r"--threads: must be an integer >= 1 \(or left out"),
    (["reproduce", "--profile", "smoke", "--cell-timeout", "-1"], r"--cell-timeout: must be an integer >= 1"),
    (["reproduce", "--profile", "smoke", "--device", "nosuch"], "--device: unknown device 'nosuch'"),
    (["evaluate", "{run}", "--device", "nosuch"], "--device: unknown device 'nosuch'"),
    (["evaluate", "{run}", "--batch-size", "0"], "--batch-size: must be an integer >= 1"),
    (["evaluate", "{run}", "--seed", "-1"], "--seed: must be an integer >= 0, got -1"),
]


@pytest.mark.parametrize("argv, message", OTHER_CLI_CASES, ids=[" ".join(c[0]) for c in OTHER_CLI_CASES])
def test_cli_other_commands_name_the_option(argv, message, finished_run, tmp_path, capsys):
    argv = [str(finished_run) if a == "{run}" else a for a in argv]
    if argv[0] != "bench-step":
        argv += ["--out", str(tmp_path / "out")]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtlat-edu: error: ") and re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_cli_device_mps_names_the_option(tmp_path, capsys):
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    assert cli_main(TRAIN + ["--runs", str(tmp_path), "--device", "mps"]) == 2
    assert "--device: 'mps' asked but Apple's MPS backend is not available on this machine; valid: auto, cpu" \
        in capsys.readouterr().err


def test_missing_data_root_is_refused_and_not_created(tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    assert cli_main(["train", "--dataset", "cifar10", "--data-root", str(missing), "--model", "small_cnn",
                     "--runs", str(tmp_path / "runs")]) == 2
    assert f"--data-root: {missing} does not exist" in capsys.readouterr().err
    assert not missing.exists() and not (tmp_path / "runs").exists()
    with pytest.raises(FileNotFoundError, match="data_root: .* does not exist"):
        load_cifar10("train", missing)
    assert not missing.exists()


def test_silent_proxy_times_out_with_the_offline_message(tmp_path, monkeypatch):
    """A proxy that accepts connections but never answers: the download gives up (no hang)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held = []
    threading.Thread(target=lambda: [held.append(srv.accept()) for _ in range(8)], daemon=True).start()
    proxy = f"http://127.0.0.1:{srv.getsockname()[1]}"
    for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(k, proxy)
    for k in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(k, raising=False)
    # urllib reads the proxy variables once, when its global opener is first built: an earlier
    # urlopen in this process (the browser tests poll JupyterLab with it) would hide them.
    urllib.request.install_opener(urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": proxy, "https": proxy})))
    try:
        with pytest.raises(RuntimeError, match=r"timed out.*Without internet access, point the package at a local copy"):
            load_cifar10("train", tmp_path, timeout=0.5)
    finally:
        urllib.request.install_opener(None)                # the next urlopen builds the default again
    assert held, "the download never reached the proxy"
    assert socket.getdefaulttimeout() is None              # the bound was for the download only
    srv.close()


# ------------------------------------------------------------------------------------------------
# safe loading


class Payload:
    """Unpickling this runs ``Path(marker).touch()``: what a crafted model.pt could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted(path, marker):
    torch.save({"model": {}, "config": {"model": "small_cnn"}, "num_classes": 10, "x": Payload(marker)}, path)
    return path


def _damaged(kind: str, path: Path, good: Path | None = None) -> Path:
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(b"not a checkpoint at all\n" * 10)
    return path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished tiny run folder (model.pt, checkpoint.pt) written by the current code."""
    out = tmp_path_factory.mktemp("finished") / "run"
    fit(TrainConfig(**{**TINY, "method": "standard", "epochs": 1}), out, progress=False)
    return out


def test_a_crafted_pickle_never_runs(tmp_path, finished_run, capsys):
    marker = tmp_path / "pwned"
    model_pt = _crafted(tmp_path / "model.pt", marker)
    with pytest.raises(mio.CorruptFileError, match=f"{model_pt}: refused: not a valid model file .*nothing in it was run"):
        load_checkpoint(model_pt)
    assert cli_main(["evaluate", str(model_pt), "--device", "cpu", "--no-progress", "--out", str(tmp_path / "o")]) == 2
    assert "refused" in capsys.readouterr().err
    run = tmp_path / "run"                               # as the checkpoint fit resumes from
    run.mkdir()
    _crafted(run / "checkpoint.pt", marker)
    with pytest.raises(mio.CorruptFileError, match=r"checkpoint.pt: refused: .*--no-resume"):
        fit(TrainConfig(**TINY), run, progress=False)
    assert not marker.exists(), "the payload ran"


@pytest.mark.parametrize("kind", ["empty", "truncated", "garbage"])
def test_damaged_files_are_refused_naming_the_file_and_the_remedy(kind, tmp_path, finished_run, capsys):
    model_pt = _damaged(kind, tmp_path / "model.pt", finished_run / "model.pt")
    with pytest.raises(mio.CorruptFileError, match=f"{model_pt}: not a valid model file .*retrain .* or delete it"):
        load_checkpoint(model_pt)
    assert cli_main(["evaluate", str(model_pt), "--device", "cpu", "--no-progress"]) == 2
    assert f"{model_pt}: not a valid model file" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    _damaged(kind, run / "checkpoint.pt", finished_run / "checkpoint.pt")
    with pytest.raises(mio.CorruptFileError, match=r"checkpoint.pt: not a valid training checkpoint.*resume=False "
                                                   r"\(--no-resume\), or delete the file"):
        fit(TrainConfig(**TINY), run, progress=False)
    res = fit(TrainConfig(**{**TINY, "epochs": 1}), run, resume=False, progress=False)   # the remedy works
    assert res.history[-1]["epoch"] == 1


def test_a_plain_state_dict_is_refused_clearly(tmp_path, capsys):
    path = tmp_path / "weights.pt"
    torch.save(build_model("small_cnn").state_dict(), path)
    with pytest.raises(mio.CorruptFileError, match=r"missing 'model', 'config', 'num_classes', got a plain "
                                                   r"state_dict .*build_model\(name, num_classes\)"):
        load_checkpoint(path)
    assert cli_main(["evaluate", str(path), "--device", "cpu", "--no-progress"]) == 2
    assert "plain state_dict" in capsys.readouterr().err


def test_files_of_the_current_format_load(finished_run):
    model, info = load_checkpoint(finished_run)
    assert info["method"] == "standard" and len(info["history"]) == 1 and not model.training
    state = mio.load_torch(finished_run / "checkpoint.pt", keys=("model", "optimizer", "history"))
    assert state["epoch"] == 1 and state["history"] == read_history(finished_run)


@pytest.mark.parametrize("kind", ["empty", "truncated", "garbage"])
def test_a_damaged_cache_file_names_itself_and_the_remedy(kind, tmp_path, monkeypatch):
    from PIL import Image
    for split in ("train", "test"):
        for c in ("a", "b"):
            (tmp_path / "tree" / split / c).mkdir(parents=True)
            Image.new("RGB", (8, 8), (10, 200, 30)).save(tmp_path / "tree" / split / c / "0.png")
    monkeypatch.setenv("MTLAT_CACHE", str(tmp_path / "cache"))
    first = load_imagefolder("train", tmp_path / "tree")
    (cache,) = (tmp_path / "cache").glob("*.pt")
    assert load_imagefolder("train", tmp_path / "tree").images.equal(first.images)   # read back from the cache
    _damaged(kind, cache, cache)
    with pytest.raises(mio.CorruptFileError, match=f"{cache}: not a valid decoded-dataset cache file.*delete this cache"):
        load_imagefolder("train", tmp_path / "tree")
    marker = tmp_path / "pwned"
    _crafted(cache, marker)
    with pytest.raises(mio.CorruptFileError, match="refused"):
        load_imagefolder("train", tmp_path / "tree")
    assert not marker.exists()


def test_garbage_history_json_names_its_path(tmp_path):
    (tmp_path / "history.json").write_text("{not json")
    with pytest.raises(ValueError, match=f"{tmp_path / 'history.json'}: not valid JSON .*derived from checkpoint.pt"):
        read_history(tmp_path)
    (tmp_path / "history.json").write_text('{"epoch": 1}')
    with pytest.raises(ValueError, match="history.json: expected a JSON list"):
        read_history(tmp_path)


# ------------------------------------------------------------------------------------------------
# run folders

CHILD = r"""
import os, signal, sys, time, json
import torch
torch.set_num_threads(1)
from mtlat_edu.core import io as mio
from mtlat_edu.training import loop as train
folder, point, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = train.TrainConfig(**json.loads(sys.argv[4]))
calls = {}
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
atomic = mio._atomic
def hooked(path, write):
    name = os.path.basename(str(path))
    calls[name] = calls.get(name, 0) + 1
    hit = point.startswith(name + ":") and calls[name] == n
    if hit and point.endswith(":during"):          # the temporary file half written, then killed
        def half(tmp):
            write(tmp)
            with open(tmp, "r+b") as f:
                f.truncate(os.path.getsize(tmp) // 2)
            die()
        return atomic(path, half)
    out = atomic(path, write)
    if hit:                                         # ":after": the file replaced, nothing after it
        die()
    return out
mio._atomic = hooked
epoch_accuracy = train.epoch_accuracy
def hooked_eval(*a, **k):                           # called at the end of each epoch's training
    calls["eval"] = calls.get("eval", 0) + 1
    if point == "evaluate" and calls["eval"] == n:
        die()
    if point == "hold" and calls["eval"] == 1:      # hold the folder until the test says go
        open(os.path.join(folder, "..", "ready"), "w").close()
        while not os.path.exists(os.path.join(folder, "..", "go")):
            time.sleep(0.02)
    return epoch_accuracy(*a, **k)
train.epoch_accuracy = hooked_eval
if point == "lock-and-die":
    with mio.folder_lock(folder):
        die()
train.fit(cfg, folder, progress=False)
"""


def _child(folder, point, n=1, cfg=TINY, wait=True):
    args = [sys.executable, "-c", CHILD, str(folder), point, str(n), json.dumps(cfg)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, env=env, cwd=str(REPO))
    return proc.wait(timeout=300) if wait else proc


def _plain(history):
    return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


@pytest.fixture(scope="module")
def reference(one_thread):
    """The uninterrupted run (in memory), for comparison."""
    res = fit(TrainConfig(**TINY), progress=False)
    return res.model.state_dict(), _plain(res.history)


def _assert_consistent_and_identical(folder, reference, res):
    weights, history = reference
    got = res.model.state_dict()
    assert all(torch.equal(got[k], weights[k]) for k in weights), "resumed weights differ from the uninterrupted run"
    assert _plain(res.history) == history
    ckpt = mio.load_torch(folder / "checkpoint.pt")
    assert read_history(folder) == ckpt["history"] == res.history
    model, info = load_checkpoint(folder / "model.pt")
    assert info["history"] == res.history and all(torch.equal(model.state_dict()[k], weights[k]) for k in weights)
    config = json.loads((folder / "config.json").read_text())
    assert {k: config[k] for k in TINY} == TINY
    assert not list(folder.glob(".*.tmp")) and not (folder / mio.LOCK_NAME).exists()


KILL_POINTS = [
    ("evaluate", 2, "resuming from epoch 1 of 3"),                   # during epoch 2, before its checkpoint
    ("checkpoint.pt:during", 2, "resuming from epoch 1 of 3"),       # epoch 2's checkpoint half written
    ("checkpoint.pt:after", 1, "resuming from epoch 1 of 3"),        # right after a checkpoint, before history.json
    ("history.json:during", 3, "resuming from epoch 2 of 3"),        # history.json of epoch 2 half written
    ("checkpoint.pt:after", 3, "already finished (3 epochs)"),       # the last checkpoint, before model.pt
    ("model.pt:during", 1, "already finished (3 epochs)"),           # model.pt half written
]


@pytest.mark.parametrize("point, n, announced", KILL_POINTS, ids=[f"{p}#{n}" for p, n, _ in KILL_POINTS])
def test_kill_9_then_resume_gives_the_uninterrupted_run(point, n, announced, tmp_path, reference, capsys):
    folder = tmp_path / "run"
    assert _child(folder, point, n) == -signal.SIGKILL
    # the folder is consistent as the kill left it: history.json parses and is a prefix of the
    # uninterrupted history; no model.pt before the end
    partial = _plain(read_history(folder))
    assert partial == reference[1][:len(partial)]
    assert not (folder / "model.pt").exists()
    res = fit(TrainConfig(**TINY), folder, progress=False)
    assert f"{folder}: {announced}" in capsys.readouterr().out
    _assert_consistent_and_identical(folder, reference, res)
    again = fit(TrainConfig(**TINY), folder, progress=False)        # a finished run is reused
    assert again.history == res.history and "already finished" in capsys.readouterr().out


def test_two_runs_into_one_folder(tmp_path, reference, capsys):
    runs = tmp_path / "runs"
    folder = runs / "synthetic-small_cnn" / "mtlat"                  # the CLI's run folder for TINY
    first = _child(folder, "hold", wait=False)
    try:
        deadline = time.monotonic() + 240
        while not (folder.parent / "ready").exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.05)
        with pytest.raises(mio.FolderBusyError, match=rf"out_dir: {folder} is in use by another run \(pid {first.pid}, "
                                                      r"lock file .*\.lock\); wait for it to finish or use another"):
            fit(TrainConfig(**TINY), folder, progress=False)
        cli = ["train", "--method", "mtlat", "--model", "small_cnn", "--dataset", "synthetic", "--epochs", "3",
               "--batch-size", "32", "--train-limit", "128", "--test-limit", "40", "--device", "cpu", "--seed", "1",
               "--runs", str(runs), "--no-resume"]
        assert cli_main(cli) == 2
        assert f"is in use by another run (pid {first.pid}" in capsys.readouterr().err
        (folder.parent / "go").touch()
        assert first.wait(timeout=300) == 0
    finally:
        if first.poll() is None:
            first.kill()
    res = fit(TrainConfig(**TINY), folder, progress=False)           # the first run's result, intact
    assert "already finished" in capsys.readouterr().out
    _assert_consistent_and_identical(folder, reference, res)


def test_a_stale_lock_is_taken_over(tmp_path, reference, capsys):
    folder = tmp_path / "run"
    assert _child(folder, "lock-and-die", wait=True) == -signal.SIGKILL
    pid = (folder / mio.LOCK_NAME).read_text().strip()
    assert pid.isdigit()
    res = fit(TrainConfig(**TINY), folder, progress=False)
    assert f"{folder}: taking over the lock left by pid {pid}, which is no longer running" in capsys.readouterr().out
    _assert_consistent_and_identical(folder, reference, res)


def test_orphan_temporary_files_are_cleaned(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    folder = tmp_path / "cache"
    folder.mkdir()
    orphan = folder / f"{mio.TMP_PREFIX}abc.pt.{dead_pid}.x1y2.tmp"     # its writer is gone
    live = folder / f"{mio.TMP_PREFIX}abc.pt.{os.getpid()}.x1y2.tmp"   # a write in progress: kept
    old_style, fresh_old_style = folder / f"{mio.TMP_PREFIX}abc.pt.q9w8.tmp", folder / f"{mio.TMP_PREFIX}def.pt.q9w8.tmp"
    for p in (orphan, live, old_style, fresh_old_style):
        p.write_bytes(b"partial")
    os.utime(old_style, (time.time() - 2 * 86400,) * 2)
    assert set(mio.clean_tmp(folder)) == {orphan, old_style}
    assert live.exists() and fresh_old_style.exists()
    assert set(mio.clean_tmp(folder, every=True)) == {live, fresh_old_style}   # a locked run folder: all of them


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(umask, mode, tmp_path):
    previous = os.umask(umask)
    try:
        for path in (mio.write_json(tmp_path / "a.json", [1]), mio.save_torch(tmp_path / "b.pt", {"x": 1})):
            assert path.stat().st_mode & 0o777 == mode
    finally:
        os.umask(previous)


def test_no_resume_starts_over_without_stale_files(tmp_path, finished_run, capsys):
    import shutil
    folder = tmp_path / "run"
    shutil.copytree(finished_run, folder)
    before = read_history(folder)
    res = fit(TrainConfig(**{**TINY, "method": "standard", "epochs": 2}), folder, resume=False, progress=False,
              stop_after=1)
    out = capsys.readouterr().out
    assert "resuming" not in out and "the previous run is left as it was" in out
    assert len(res.history) == 1                         # the new run stopped: the finished one is kept (issue 22)
    assert read_history(folder) == before and (folder / "model.pt").exists()
    res = fit(TrainConfig(**{**TINY, "method": "standard", "epochs": 2}), folder, resume=False, progress=False)
    assert read_history(folder) == res.history and len(res.history) == 2
    assert load_checkpoint(folder)[1]["method"] == "standard"   # the model.pt of the new run, not the old one


# ------------------------------------------------------------------------------------------------
# the notebook runner


@pytest.fixture(scope="module")
def tiny_notebooks(tmp_path_factory):
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("papermill")
    from mtlat_edu.course import runner
    runner.ensure_kernel()
    folder = tmp_path_factory.mktemp("nb")
    for name, body in [("raises.ipynb", 'raise ValueError("boom")'), ("dies.ipynb", "import os\nos._exit(1)")]:
        nb = nbformat.v4.new_notebook()
        params = nbformat.v4.new_code_cell("profile = 'smoke'")
        params.metadata["tags"] = ["parameters"]
        nb.cells = [nbformat.v4.new_markdown_cell("# a test"), params, nbformat.v4.new_code_cell("x = 1"),
                    nbformat.v4.new_code_cell(body)]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, str(folder / name))
    return folder


@pytest.mark.parametrize("name, expected", [
    ("raises.ipynb", "cell 4 of 4 (execution count 4) raised ValueError: boom"),       # not 5: the injected cell
    ("dies.ipynb", "cell 4 of 4 was running when the kernel died"),
])
def test_the_runner_names_the_failing_cell(name, expected, tiny_notebooks, tmp_path):
    from mtlat_edu.course import runner
    results, lines = [], []
    runner._execute_all([tiny_notebooks / name], tmp_path, {"profile": "smoke"}, runner.KERNEL_NAME, tiny_notebooks,
                        120, results, lines.append)
    assert results[0].status == "failed" and expected in results[0].error, results[0].error
    assert "--- cell source ---" in results[0].error and expected in "\n".join(lines)


def test_the_runner_kernels_need_no_tcp(tiny_notebooks, tmp_path, capfd):
    """Kernels talk over private Unix sockets: no "running over TCP without encryption" per notebook,
    and the socket folder is gone afterwards."""
    import tempfile
    from mtlat_edu.course import runner
    before = set(Path(tempfile.gettempdir()).glob("mtlat-kernel-*"))
    results = []
    runner._execute_all([tiny_notebooks / "raises.ipynb"], tmp_path, {"profile": "smoke"}, runner.KERNEL_NAME,
                        tiny_notebooks, 120, results, lambda s: None)
    assert results[0].status == "failed" and "ValueError: boom" in results[0].error   # the kernel did run
    assert "without encryption" not in capfd.readouterr().err
    assert set(Path(tempfile.gettempdir()).glob("mtlat-kernel-*")) == before


def test_reproduce_summary_table(tmp_path):
    from mtlat_edu.course import runner
    (tmp_path / "reproduce.json").write_text(json.dumps({"notebooks": [
        {"notebook": "01_introduction.ipynb", "status": "ok", "seconds": 4.94},
        {"notebook": "02_mixup.ipynb", "status": "failed", "seconds": 1.0}], "total_seconds": 5.9}))
    assert runner.summary_table(tmp_path).splitlines() == [
        "01_introduction.ipynb        ok           4.9 s",
        "02_mixup.ipynb               failed       1.0 s",
        "total                                     5.9 s"]
    with pytest.raises(FileNotFoundError, match="reproduce.json does not exist"):
        runner.summary_table(tmp_path / "nothing")
