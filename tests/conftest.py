"""Shared fixtures: the real CIFAR-10 copy (skipped where absent) and small generated data."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtlat_edu.data import SHARED_CIFAR  # the one place that knows where the shared copy lives


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    if not (SHARED_CIFAR / "train").is_dir() or not (SHARED_CIFAR / "test").is_dir():
        pytest.skip(f"real-data test: the CIFAR-10 JPEG copy is not at {SHARED_CIFAR}")
    return SHARED_CIFAR


@pytest.fixture(scope="session")
def synthetic_small():
    from mtlat_edu.data import load_dataset
    return load_dataset("synthetic", "train", limit=64)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: on a small shared CPU, two spinning threads per process
    cost far more than they gain (restored afterwards). Use with ``pytestmark``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def trained_small_cnn():
    """A small CNN trained for 2 epochs on the generated data: (model in eval mode, test data)."""
    from mtlat_edu.data import load_dataset
    from mtlat_edu.training import TrainConfig, fit
    cfg = TrainConfig(method="standard", model="small_cnn", dataset="synthetic", epochs=2, batch_size=64)
    test = load_dataset("synthetic", "test")
    res = fit(cfg, test_data=test, progress=False)
    assert res.test_acc > 0.3, f"the fixture model did not learn (test acc {res.test_acc})"
    return res.model.eval(), test
