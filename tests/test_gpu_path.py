"""The GPU fast path of the training loop, run on the CPU (``fast_path="on"``): bf16 autocast,
channels_last, the step generator on the training device, no host synchronisation in the epoch,
and ``torch.compile`` (skipped where no C compiler exists). The same code a CUDA run takes."""
from __future__ import annotations

import math
import shutil

import pytest
import torch

from mtlat_edu.paper.methods import METHODS
from mtlat_edu.training import TrainConfig, fit

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = dict(model="small_cnn", dataset="synthetic", train_limit=64, test_limit=32, batch_size=16, epochs=1,
            device="cpu")
# the CPU always; a CUDA device too where one exists (the path these tests stand in for)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _first_conv(model):
    return model.net.features[0]


class _Seen:
    """What the first convolution of the model saw during training: input memory format, output dtype."""

    def __init__(self, monkeypatch):
        self.dtypes, self.channels_last = set(), set()
        real = torch.nn.Conv2d.forward

        def spy(conv, x):
            out = real(conv, x)
            if conv.in_channels == 3 and torch.is_grad_enabled():
                self.dtypes.add(out.dtype)
                self.channels_last.add(x.is_contiguous(memory_format=torch.channels_last))
            return out
        monkeypatch.setattr(torch.nn.Conv2d, "forward", spy)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_on_the_fast_path(method, device, monkeypatch):
    seen = _Seen(monkeypatch)
    res = fit(TrainConfig(method=method, fast_path="on", **{**TINY, "device": device}), progress=False)
    assert seen.dtypes == {torch.bfloat16}, seen.dtypes            # bf16 autocast on every training forward
    assert seen.channels_last == {True}                            # channels_last inputs
    assert _first_conv(res.model).weight.is_contiguous(memory_format=torch.channels_last)
    assert math.isfinite(res.history[0]["train_loss"]) and 0 <= res.history[0]["test_acc"] <= 1


def test_the_fast_path_changes_the_numerics_and_off_is_the_float32_path(monkeypatch):
    seen = _Seen(monkeypatch)
    off = fit(TrainConfig(method="mtlat", fast_path="auto", **TINY), progress=False)  # auto on a CPU: off
    assert seen.dtypes == {torch.float32} and seen.channels_last == {False}
    on = fit(TrainConfig(method="mtlat", fast_path="on", **TINY), progress=False)
    assert off.history[0]["train_loss"] != on.history[0]["train_loss"]
    # the fast path is not part of a run's identity (like the device): a checkpoint resumes either way
    assert TrainConfig(fast_path="on").identity() == TrainConfig(fast_path="off").identity()


@pytest.mark.parametrize("device", DEVICES)
def test_fast_path_repeats_with_the_same_seed(device):
    cfg = TrainConfig(method="tlat", fast_path="on", **{**TINY, "device": device})
    a, b = fit(cfg, progress=False).model.state_dict(), fit(cfg, progress=False).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # about a minute: inductor compiles the forward and backward graphs with g++
@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile (inductor) needs a C++ compiler on the CPU; none on PATH")
@pytest.mark.parametrize("device", DEVICES)
def test_compiled_fast_path_trains_mtlat(device, monkeypatch):
    compiled = []
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, *a, **k: compiled.append(m) or real(m, *a, **k))
    cfg = TrainConfig(method="mtlat", fast_path="on", compile=True, **{**TINY, "train_limit": 32, "device": device})
    res = fit(cfg, progress=False)
    assert len(compiled) == 1 and compiled[0] is res.model
    assert math.isfinite(res.history[0]["train_loss"])
