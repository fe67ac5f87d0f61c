"""The training loop: recipe, determinism, exact resume, bad input, checkpoints, CLI."""
import json

import pytest
import torch

from mtlat_edu.cli import main as cli_main
from mtlat_edu.training import TrainConfig, fit, load_checkpoint, lr_factor

SMALL = dict(model="small_cnn", dataset="synthetic", epochs=3, batch_size=64, train_limit=384, test_limit=100)


def test_lr_schedule_is_the_papers_at_90_epochs():
    steps_per_epoch = 10
    total = 90 * steps_per_epoch
    lrs = [0.002 * lr_factor(e * steps_per_epoch, total) for e in range(90)]
    # divided by 10 at the end of epochs 30, 60 and 80
    assert lrs[29] == pytest.approx(0.002) and lrs[30] == pytest.approx(0.0002)
    assert lrs[59] == pytest.approx(0.0002) and lrs[60] == pytest.approx(0.00002)
    assert lrs[79] == pytest.approx(0.00002) and lrs[80] == pytest.approx(0.000002)


def test_same_seed_same_weights():
    cfg = TrainConfig(method="mtlat", **SMALL, seed=3)
    a = fit(cfg, progress=False).model.state_dict()
    b = fit(cfg, progress=False).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_reaches_the_uninterrupted_result(tmp_path):
    cfg = TrainConfig(method="mtlat", **SMALL)
    straight = fit(cfg, progress=False)
    fit(cfg, tmp_path, progress=False, stop_after=1)           # "killed" after epoch 1
    assert json.loads((tmp_path / "history.json").read_text())[-1]["epoch"] == 1
    assert not (tmp_path / "model.pt").exists()
    resumed = fit(cfg, tmp_path, progress=False)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["test_acc"] for h in straight.history] == [h["test_acc"] for h in resumed.history]
    # a finished run is reused, not retrained
    again = fit(cfg, tmp_path, progress=False)
    assert again.history == resumed.history


def test_resume_refuses_a_different_run(tmp_path):
    fit(TrainConfig(method="standard", **SMALL), tmp_path, progress=False, stop_after=1)
    with pytest.raises(ValueError, match="out_dir: .* different run"):
        fit(TrainConfig(method="mixup", **SMALL), tmp_path, progress=False)


def test_checkpoint_round_trip(tmp_path):
    cfg = TrainConfig(method="tlat", **{**SMALL, "epochs": 1})
    res = fit(cfg, tmp_path, progress=False)
    model, info = load_checkpoint(tmp_path)
    assert info["method"] == "tlat" and info["num_classes"] == 10 and not model.training
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), res.model.eval()(x))
    assert info["test_acc"] == res.test_acc


@pytest.mark.parametrize("field, value, message", [
    ("method", "nope", "method: unknown name 'nope'; valid names: standard"),
    ("model", "nope", "model: unknown name"),
    ("dataset", "nope", "dataset: unknown name"),
    ("alpha", 0.0, "alpha: must be > 0"),
    ("alpha", -1.0, "alpha: must be > 0"),
    ("eps_max", 1.5, r"eps_max: must lie in \[0.0, 1.0\]"),
    ("eps_max", -0.1, r"eps_max: must lie in \[0.0, 1.0\]"),
    ("epochs", 0, "epochs: must be an integer >= 1"),
    ("augment", "cutout", "augment: unknown name"),
])
def test_bad_config(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value}).validate()


def test_batch_the_method_cannot_split():
    with pytest.raises(ValueError, match="batch_size: method 'mtlat' splits each batch"):
        TrainConfig(method="mtlat", batch_size=255).validate()
    TrainConfig(method="standard", batch_size=255).validate()   # standard needs no split


def test_cli_train_and_errors(tmp_path, capsys):
    rc = cli_main(["train", "--method", "standard", "mtlat", "--model", "small_cnn", "--dataset", "synthetic",
                   "--epochs", "1", "--batch-size", "64", "--train-limit", "256", "--test-limit", "64",
                   "--runs", str(tmp_path)])
    assert rc == 0
    assert (tmp_path / "synthetic-small_cnn" / "mtlat" / "model.pt").exists()
    assert "mtlat" in capsys.readouterr().out
    assert cli_main(["train", "--method", "tlat", "--dataset", "synthetic", "--model", "small_cnn",
                     "--batch-size", "63", "--runs", str(tmp_path)]) == 2
    assert "even" in capsys.readouterr().err
    assert cli_main(["train", "--dataset", "cifar10", "--data-root", str(tmp_path / "none"), "--model",
                     "small_cnn", "--epochs", "1", "--runs", str(tmp_path), "--method", "standard"]) == 2
    assert "--data-root" in capsys.readouterr().err
