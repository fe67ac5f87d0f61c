"""Robustness tracked during training (issue 12, part 4): ``TrainConfig.track_robustness``."""
import pytest
import torch

from mtlat_edu.benchmark.suite import run_suite
from mtlat_edu.data import load_dataset
from mtlat_edu.training import TrainConfig, fit, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
CFG = dict(method="fgsm", model="small_cnn", dataset="synthetic", train_limit=256, test_limit=80, batch_size=32,
           epochs=2, eval_batch_size=16, seed=1, device="cpu")
RECORD_KEYS = ("tracked_clean_acc", "tracked_pgd_acc", "tracked_pgd_ll_acc", "tracked_corruption_acc")


def test_tracked_values_equal_the_benchmark_of_the_saved_model_and_survive_resume(tmp_path):
    cfg = TrainConfig(**CFG, track_robustness=24, track_attacks=("pgd", "pgd_ll"), track_corruption="gaussian_noise")
    fit(cfg, tmp_path, progress=False, stop_after=1)
    model, info = load_checkpoint(tmp_path / "checkpoint.pt")  # the weights at the end of epoch 1
    first = info["history"][0]
    assert first["tracked_images"] == 24 and set(RECORD_KEYS) <= set(first)

    # an independent evaluation of those weights: the benchmark on the same 24 test images
    test = load_dataset("synthetic", "test", limit=CFG["test_limit"], seed=CFG["seed"])
    res = run_suite({"m": model}, test, parts=["pgd", "pgd_ll", "gaussian_noise"], eval_limit=24, attack_limit=24,
                    severities=(3,), seed=CFG["seed"], batch_size=16, device="cpu", progress=False).results
    acc = dict(zip(res["perturbation"], res["accuracy"]))
    assert first["tracked_clean_acc"] == acc["clean"]
    assert first["tracked_pgd_acc"] == acc["pgd"] and first["tracked_pgd_ll_acc"] == acc["pgd_ll"]
    assert first["tracked_corruption_acc"] == acc["gaussian_noise"]
    assert all(round(first[k] * 24) == pytest.approx(first[k] * 24) for k in RECORD_KEYS)  # counts of 24 images

    resumed = fit(cfg, tmp_path, progress=False).history
    straight = fit(cfg, progress=False)
    assert [h["epoch"] for h in resumed] == [1, 2]
    assert [[h[k] for k in RECORD_KEYS] for h in resumed] == [[h[k] for k in RECORD_KEYS] for h in straight.history]
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


def test_profiles_track_their_own_first_seed_runs():
    from mtlat_edu.training.profiles import SURROGATE, course_jobs, get_profile
    cpu = get_profile("cpu")
    assert cpu.tracked_methods == ("standard", "fgsm", "mtlat")
    cfg = cpu.train_config("fgsm")
    assert (cfg.track_robustness, cfg.track_attacks, cfg.track_corruption, cfg.track_every) == \
        (500, ("pgd", "pgd_ll"), "gaussian_noise", 3)
    # epoch 1, every third after it, and the last of 30
    assert [e for e in range(1, 31) if cfg.tracks(e)] == [1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 30]
    assert cpu.train_config("fgsm", seed=1).track_robustness == 0      # the first seed only
    assert cpu.train_config("mixup").track_robustness == 0             # the tracked methods only
    assert cpu.surrogate_config().track_robustness == 0
    assert [e for e in range(1, 4) if TrainConfig(track_robustness=5, epochs=3).tracks(e)] == [1, 2, 3]
    assert not TrainConfig(epochs=3).tracks(1)
    # the course's runs: every method and the surrogate, and the short profile's two regime runs
    jobs = course_jobs(cpu, "R", seeds=[0, 1])
    names = sorted((n, s, str(out)) for n, s, _, out in jobs)
    assert len(jobs) == 2 * (len(cpu.methods) + 1) + 2
    assert ("standard", 0, "R/cpu_short/standard/seed0") in names and ("mixup", 0, "R/cpu_short/mixup/seed0") in names
    assert (SURROGATE, 1, "R/cpu/vgg_surrogate/seed1") in names
    assert [n for n, s, _, _ in jobs[:2]] == ["fgsm", "mtlat"]  # the most expensive first (adversarial, tracked)


def test_a_finished_untracked_run_is_reused_and_the_course_tracks_a_copy(tmp_path, capsys):
    from mtlat_edu.course.session import has_record, setup
    from mtlat_edu.training.profiles import get_profile, run_dir
    smoke = get_profile("smoke")
    folder = run_dir(smoke, tmp_path, "standard", 0)
    plain = fit(smoke.train_config("standard", device="cpu", track_robustness=0, track_corruption=None), folder,
                progress=False)
    assert not has_record(plain.history)
    # asked again with the profile's tracking: the same run (tracking is not part of its identity), reused
    again = fit(smoke.train_config("standard", device="cpu"), folder, progress=False)
    assert again.history == plain.history and "already finished" in capsys.readouterr().out
    S = setup("smoke", device="cpu", runs_root=str(tmp_path), output_dir=str(tmp_path / "out"), reproduce=True,
              verbose=False)
    curves = S.tracked_histories(["standard"])
    copy = tmp_path / "tracked" / "smoke" / "standard" / "seed0"
    assert "(" + str(copy) + ")" in capsys.readouterr().out
    assert len(curves["standard"]) == 1 and curves["standard"][0]["tracked_images"] == smoke.tracked_images
    a, b = load_checkpoint(folder / "model.pt")[0].state_dict(), load_checkpoint(copy / "model.pt")[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the tracked copy is the same run
