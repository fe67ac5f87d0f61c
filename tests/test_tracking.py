"""Robustness tracked during training (issue 12, part 4): ``TrainConfig.track_robustness``."""
import pytest
import torch

from mtlat_edu.benchmark.suite import run_suite
from mtlat_edu.data import load_dataset
from mtlat_edu.training import TrainConfig, fit, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
CFG = dict(method="fgsm", model="small_cnn", dataset="synthetic", train_limit=256, test_limit=80, batch_size=32,
           epochs=2, eval_batch_size=16, seed=1, device="cpu")
TRACKED = ("tracked_clean_acc", "tracked_pgd_acc", "tracked_pgd_ll_acc", "tracked_corruption_acc")


def test_tracked_values_equal_the_benchmark_of_the_saved_model_and_survive_resume(tmp_path):
    cfg = TrainConfig(**CFG, track_robustness=24, track_attacks=("pgd", "pgd_ll"), track_corruption="gaussian_noise")
    fit(cfg, tmp_path, progress=False, stop_after=1)
    model, info = load_checkpoint(tmp_path / "checkpoint.pt")  # the weights at the end of epoch 1
    first = info["history"][0]
    assert first["tracked_images"] == 24 and set(TRACKED) <= set(first)

    # an independent evaluation of those weights: the benchmark on the same 24 test images
    test = load_dataset("synthetic", "test", limit=CFG["test_limit"], seed=CFG["seed"])
    res = run_suite({"m": model}, test, parts=["pgd", "pgd_ll", "gaussian_noise"], eval_limit=24, attack_limit=24,
                    severities=(3,), seed=CFG["seed"], batch_size=16, device="cpu", progress=False).results
    acc = dict(zip(res["perturbation"], res["accuracy"]))
    assert first["tracked_clean_acc"] == acc["clean"]
    assert first["tracked_pgd_acc"] == acc["pgd"] and first["tracked_pgd_ll_acc"] == acc["pgd_ll"]
    assert first["tracked_corruption_acc"] == acc["gaussian_noise"]
    assert all(round(first[k] * 24) == pytest.approx(first[k] * 24) for k in TRACKED)  # counts of 24 images

    resumed = fit(cfg, tmp_path, progress=False).history
    straight = fit(cfg, progress=False)
    assert [h["epoch"] for h in resumed] == [1, 2]
    assert [[h[k] for k in TRACKED] for h in resumed] == [[h[k] for k in TRACKED] for h in straight.history]
    # tracking draws from its own generators: the weights are those of a run without it
    plain = fit(TrainConfig(**CFG), progress=False).model.state_dict()
    tracked = straight.model.state_dict()
    assert all(torch.equal(plain[k], tracked[k]) for k in plain)
    assert "tracked_pgd_acc" not in fit(TrainConfig(**{**CFG, "epochs": 1}), progress=False).history[0]


def test_tracking_options_are_validated():
    with pytest.raises(ValueError, match="track_corruption: needs track_robustness > 0"):
        TrainConfig(track_corruption="fog").validate()
    with pytest.raises(ValueError, match="track_corruption: .*fog"):
        TrainConfig(track_robustness=10, track_corruption="smog").validate()
    with pytest.raises(ValueError, match="track_attacks: .*pgd_ll"):
        TrainConfig(track_robustness=10, track_attacks=("mi_fgsm_0.04",)).validate()
    with pytest.raises(ValueError, match="track_robustness"):
        TrainConfig(track_robustness=-1).validate()
