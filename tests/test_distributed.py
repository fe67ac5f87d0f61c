"""DDP under torchrun (gloo, 2 CPU processes), sharded evaluation, and the streaming data path.

The multi-process tests start ``torchrun --standalone --nproc_per_node=2`` in a subprocess with a
timeout, on small generated data; together they take well under two minutes on two cores.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import torch
from PIL import Image

from mtlat_edu import data as mdata
from mtlat_edu.core import distributed as D
from mtlat_edu import models
from mtlat_edu.cli import main as cli_main
from mtlat_edu.training import TrainConfig, fit, load_checkpoint

sys.path.insert(0, str(Path(__file__).parent))
from ddp_entry import NoBNCNN  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
TIMEOUT = 120
SMALL = ["--dataset", "synthetic", "--train-limit", "256", "--test-limit", "64", "--batch-size", "64",
         "--device", "cpu"]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def torchrun(args, cwd: Path, entry=("-m", "mtlat_edu")) -> subprocess.CompletedProcess:
    proc = subprocess.run([*TORCHRUN, *entry, *args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _weights(path) -> dict:
    return torch.load(Path(path) / "model.pt", weights_only=True)["model"]


# ---------------------------------------------------------------------------------------------
# the batch split (hand-computed)


def test_local_positions_split_each_half():
    # adversarial methods: rank r takes its quarter of the clean half and of the adversarial half
    assert D.local_positions(8, 0, 2, halves=True).tolist() == [0, 1, 4, 5]
    assert D.local_positions(8, 1, 2, halves=True).tolist() == [2, 3, 6, 7]
    assert D.local_positions(6, 1, 2, halves=False).tolist() == [3, 4, 5]
    with pytest.raises(ValueError, match="batch_size: the global batch 6 must be a multiple of 2 x 2"):
        D.local_positions(6, 0, 2, halves=True)
    assert D.rank_seed(5, 0) == 6 and D.rank_seed(5, 1) != D.rank_seed(5, 2)


# ---------------------------------------------------------------------------------------------
# training


def test_two_processes_reach_the_weights_of_one(tmp_path, monkeypatch):
    """No batch norm: 2 ranks x 32 images (DDP averages the gradients) = 1 process x 64 images."""
    monkeypatch.setitem(models.MODELS, "no_bn_cnn", NoBNCNN)
    one = fit(TrainConfig(method="standard", model="no_bn_cnn", dataset="synthetic", train_limit=256, test_limit=64,
                          batch_size=64, epochs=2, device="cpu", manifold_layers=(0,)), tmp_path / "one",
              progress=False)
    torchrun(["train", "--method", "standard", "--model", "no_bn_cnn", "--epochs", "2", "--manifold-layers", "0",
              *SMALL, "--runs", str(tmp_path / "two")], REPO, entry=["tests/ddp_entry.py"])
    two_dir = tmp_path / "two" / "synthetic-no_bn_cnn" / "standard"
    a, b = one.model.state_dict(), _weights(two_dir)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), (k, (a[k] - b[k]).abs().max())
    torch.manual_seed(0)  # fit's initialisation (seed 0): every weight moved away from it
    init = models.build_model("no_bn_cnn").state_dict()
    assert sorted(k for k in a if not torch.equal(a[k], init[k])) == sorted(n for n, _ in NoBNCNN().named_parameters()
                                                                          for n in [f"net.{n}"])
    _, info = load_checkpoint(two_dir)
    assert [h["test_acc"] for h in info["history"]] == pytest.approx([h["test_acc"] for h in one.history], abs=1 / 64)


def _worker(parent: psutil.Process, rank: int) -> psutil.Process:
    for child in parent.children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "mtlat_edu" in " ".join(child.cmdline()):
                return child
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    raise LookupError(f"no worker of rank {rank}")


def test_kill_one_rank_then_resume_under_torchrun(tmp_path):
    """M-TLAT (input gradients on the local replicas) in 2 processes: one rank killed mid-run stops the
    job; the resumed job ends with the weights of an uninterrupted one."""
    args = ["train", "--method", "mtlat", "--model", "small_cnn", "--epochs", "5", *SMALL]
    torchrun([*args, "--runs", str(tmp_path / "straight")], REPO)
    run = tmp_path / "killed" / "synthetic-small_cnn" / "mtlat"
    job = subprocess.Popen([*TORCHRUN, "-m", "mtlat_edu", *args, "--runs", str(tmp_path / "killed")], cwd=REPO,
                           env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + TIMEOUT
        while not (run / "checkpoint.pt").exists():  # the first epoch is saved: kill rank 1 in the second
            assert job.poll() is None and time.time() < deadline, "the job ended before it could be killed"
            time.sleep(0.02)
        victim = _worker(psutil.Process(job.pid), 1)
        others = [p for p in psutil.Process(job.pid).children(recursive=True) if p.pid != victim.pid]
        victim.send_signal(signal.SIGKILL)
        out, _ = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode != 0, out[-2000:]
    assert not (run / "model.pt").exists()
    psutil.wait_procs(others, timeout=10)
    assert not [p for p in others if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], "workers left running"
    assert not list(run.glob(".*.tmp"))
    stopped_at = torch.load(run / "checkpoint.pt", weights_only=True)["epoch"]
    assert 1 <= stopped_at < 5

    resumed = torchrun([*args, "--runs", str(tmp_path / "killed")], REPO)
    assert f"resuming from epoch {stopped_at} of 5" in resumed.stdout
    a, b = _weights(tmp_path / "straight" / "synthetic-small_cnn" / "mtlat"), _weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)
    _, info = load_checkpoint(run)
    assert len(info["history"]) == 5 and info["config"]["method"] == "mtlat"


def test_resume_refuses_another_number_of_processes(tmp_path):
    cfg = TrainConfig(method="standard", model="small_cnn", dataset="synthetic", train_limit=128, test_limit=32,
                      batch_size=32, epochs=2, device="cpu")
    fit(cfg, tmp_path, progress=False, stop_after=1)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["world_size"] == 1 and "ranks" not in state
    state["world_size"] = 2
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"run in 2 process\(es\), resumed in 1 .*--nproc_per_node=2"):
        fit(cfg, tmp_path, progress=False)


# ---------------------------------------------------------------------------------------------
# sharded evaluation


def test_sharded_evaluation_equals_one_process_cell_by_cell(tmp_path):
    runs = tmp_path / "runs"
    for method, model in (("standard", "small_cnn"), ("mixup", "small_cnn"), ("standard", "vgg_small")):
        cfg = TrainConfig(method=method, model=model, dataset="synthetic", train_limit=128, test_limit=32,
                          batch_size=32, epochs=1, device="cpu")
        fit(cfg, runs / f"{method}-{model}", progress=False)
    # 5 batches of 8 images for clean / corruptions, 3 for the attacks: unequal shares per rank
    args = ["evaluate", str(runs / "standard-small_cnn"), str(runs / "mixup-small_cnn"),
            "--surrogate", str(runs / "standard-vgg_small"), "--parts", "clean", "gaussian_noise", "fog", "pgd",
            "mi_fgsm_0.04", "--severities", "3", "--eval-limit", "40", "--attack-limit", "24", "--batch-size", "8",
            "--device", "cpu", "--no-progress"]
    assert cli_main([*args, "--out", str(tmp_path / "one")]) == 0
    torchrun([*args, "--out", str(tmp_path / "two")], REPO)
    one = pd.read_csv(tmp_path / "one" / "results_long.csv")
    two = pd.read_csv(tmp_path / "two" / "results_long.csv")
    assert len(one) == 2 * 7  # 2 models x (clean on 3 image sets + 2 corruptions + 2 attacks)
    pd.testing.assert_frame_equal(one, two)
    assert (tmp_path / "two" / "tables.md").read_text() == (tmp_path / "one" / "tables.md").read_text()


# ---------------------------------------------------------------------------------------------
# streaming


@pytest.fixture
def jpeg_tree(tmp_path):
    """A generated ImageFolder tree of JPEGs: 3 classes x 12 train / 4 test images of 16 px."""
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 12), ("test", 4)):
        for c in range(3):
            folder = tmp_path / "tree" / split / f"class_{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                img = (torch.rand(16, 16, 3, generator=g) * 255).to(torch.uint8).numpy()
                Image.fromarray(img).save(folder / f"{i}.jpg", quality=90)
    return tmp_path / "tree"


def test_streaming_yields_the_in_memory_batches(jpeg_tree, monkeypatch):
    monkeypatch.setenv("MTLAT_CACHE", str(jpeg_tree.parent / "cache"))
    mem = mdata.load_dataset("imagefolder", "train", jpeg_tree, limit=30, seed=1)
    files = mdata.load_dataset("imagefolder", "train", jpeg_tree, limit=30, seed=1, mode="stream")
    assert isinstance(mem, mdata.ImageData) and isinstance(files, mdata.FileImageData)
    assert torch.equal(files.labels, mem.labels) and files.classes == mem.classes and len(files) == 30
    pos = D.local_positions(12, 1, 2, halves=True)
    a = mdata.DeviceBatches(mem, 12, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(3),
                            positions=pos)
    b = mdata.StreamBatches(files, 12, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(3),
                            positions=pos, workers=2)
    for epoch in range(2):  # a new permutation per epoch, drawn the same way
        pairs = list(zip(a, b, strict=True))
        assert len(pairs) == 2
        for (xa, ya), (xb, yb) in pairs:
            assert xb.dtype == torch.float32 and xb.shape == (6, 3, 16, 16)
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # "auto" streams above the size threshold only
    monkeypatch.setattr(mdata.sources, "STREAM_BYTES", 30 * 3 * 16 * 16 - 1)
    assert isinstance(mdata.load_dataset("imagefolder", "train", jpeg_tree, limit=30, seed=1, mode="auto"),
                      mdata.FileImageData)
    monkeypatch.setattr(mdata.sources, "STREAM_BYTES", 30 * 3 * 16 * 16)
    assert isinstance(mdata.load_dataset("imagefolder", "train", jpeg_tree, limit=30, seed=1, mode="auto"),
                      mdata.ImageData)


def test_training_on_streamed_data_equals_in_memory(jpeg_tree, monkeypatch):
    monkeypatch.setenv("MTLAT_CACHE", str(jpeg_tree.parent / "cache"))
    kw = dict(method="tlat", model="small_cnn", dataset="imagefolder", data_root=str(jpeg_tree), batch_size=12,
              epochs=2, device="cpu", workers=1, track_robustness=6)
    a = fit(TrainConfig(**kw, data_mode="memory"), progress=False)
    b = fit(TrainConfig(**kw, data_mode="stream"), progress=False)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.history[-1]["test_acc"] == b.history[-1]["test_acc"]
    assert a.history[-1]["tracked_pgd_acc"] == b.history[-1]["tracked_pgd_acc"]


def test_every_method_trains_under_ddp(tmp_path):
    """Each method's attack passes (input gradients, least-likely targets, hidden-layer mixing) run
    on the local replica: no hang and no DDP reducer error, in one torchrun job."""
    from mtlat_edu.paper.methods import METHODS
    torchrun(["train", "--method", *METHODS, "--model", "small_cnn", "--epochs", "1", "--dataset", "synthetic",
              "--train-limit", "64", "--test-limit", "16", "--batch-size", "16", "--device", "cpu",
              "--target", "least_likely", "--runs", str(tmp_path)], REPO)
    for method in METHODS:
        _, info = load_checkpoint(tmp_path / "synthetic-small_cnn" / method)
        assert len(info["history"]) == 1 and info["history"][0]["train_loss"] == pytest.approx(
            info["history"][0]["train_loss"]), method  # finite (NaN != NaN)


def test_train_profile_command_trains_the_runs_reproduce_reuses(tmp_path):
    assert cli_main(["train-profile", "--profile", "smoke", "--methods", "standard", "--no-surrogate",
                     "--device", "cpu", "--runs", str(tmp_path)]) == 0
    _, info = load_checkpoint(tmp_path / "smoke" / "standard" / "seed0")
    assert info["method"] == "standard" and len(info["history"]) == 1
