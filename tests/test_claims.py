"""Seeds: the aggregation over training seeds, the claims verdicts (hand-computed cases), and the
per-seed run folders of ``train_seeds`` (trained in parallel processes, reused afterwards)."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from mtlat_edu.benchmark import claims as C
from mtlat_edu.benchmark import parts as P
from mtlat_edu.benchmark import stats as ST
from mtlat_edu.benchmark.scores import aggregate
from mtlat_edu.training.profiles import SURROGATE, check_seeds, get_profile, run_dir, train_seeds


# ---------------------------------------------------------------------------------------------
# one comparison


def test_compare_holds_by_hand():
    # means 2 and 0; s_a = 1, s_b = 0 -> se = sqrt(1/3) = 0.577; 2 se = 1.155 < 2
    r = C.compare([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert r["diff"] == pytest.approx(2.0) and r["se"] == pytest.approx(math.sqrt(1 / 3))
    assert r["verdict"] == "holds" and r["paper_sign"] == "+"


def test_compare_within_noise_by_hand():
    # diff = 2 - 1.5333 = 0.4667; se = sqrt(1/3 + (1/300)/3) = 0.5783: 2 se = 1.157 > 0.4667
    r = C.compare([1.0, 2.0, 3.0], [1.5, 1.5, 1.6])
    assert r["diff"] == pytest.approx(0.46667, abs=1e-4)
    assert r["se"] == pytest.approx(math.sqrt(1 / 3 + (1 / 300) / 3), rel=1e-6)
    assert r["verdict"] == "within_noise"


def test_compare_fails_and_the_paper_sign():
    # diff = -1, se = sqrt(0.01/3 + 0.01/3) = 0.0816: beyond 2 se, opposite to a "+" claim
    a, b = [0.0, 0.1, 0.2], [1.0, 1.1, 1.2]
    assert C.compare(a, b)["verdict"] == "fails"
    assert C.compare(a, b, sign=-1)["verdict"] == "holds"  # a claim that a is *lower* holds
    with pytest.raises(ValueError, match="sign"):
        C.compare(a, b, sign=0)


def test_compare_without_noise_estimate_is_within_noise():
    assert C.compare([90.0], [10.0])["verdict"] == "within_noise"      # one seed: the noise is unknown
    assert math.isnan(C.compare([90.0], [10.0])["se"])
    assert C.compare([0.5, 0.5], [0.5, 0.5])["verdict"] == "within_noise"  # d = 0, se = 0
    assert C.compare([0.6, 0.6], [0.5, 0.5])["verdict"] == "holds"         # d > 0 = 2 se
    assert C.compare([float("nan"), 1.0, 2.0], [0.0, 0.0])["n_a"] == 2      # NaN cells are left out


# ---------------------------------------------------------------------------------------------
# the paired rule (stats.paired), Holm, the unresolved case


def test_paired_holds_where_the_unpaired_rule_sees_noise():
    # per-seed differences 0.5, 0.4, 0.6: d = 0.5, s_d = 0.1, se = 0.1 / sqrt(3), t = 5 sqrt(3) (t^2 = 75)
    a, b = {0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.5, 1: 1.6, 2: 2.4}
    r = ST.paired(a, b)
    q = 0.95 / math.sqrt(2 * 0.975 * 0.025)     # Student's t quantile 0.975 with 2 df, closed form: 4.3027
    se = 0.1 / math.sqrt(3)
    assert r["d"] == pytest.approx(0.5) and r["sd_d"] == pytest.approx(0.1) and r["n"] == 3 and r["df"] == 2
    assert r["t"] == pytest.approx(5 * math.sqrt(3))
    assert r["ci_low"] == pytest.approx(0.5 - q * se) and r["ci_high"] == pytest.approx(0.5 + q * se)
    assert r["ci_low"] == pytest.approx(0.25159, abs=1e-4)
    assert r["p"] == pytest.approx(1 - math.sqrt(75 / 77))   # 2 df: p = 1 - t / sqrt(t^2 + 2) = 0.01307
    assert r["mean_a"] == pytest.approx(2.0) and r["mean_b"] == pytest.approx(1.5)
    assert r["verdict"] == "holds" and not r["unresolved"] and r["seeds"] == [0, 1, 2]
    assert ST.paired(a, b, sign=-1)["verdict"] == "fails"
    # unpaired: s_a = 1, s_b^2 = 0.91, 2 SE = 2 sqrt(1/3 + 0.91/3) = 1.596 > 0.5
    u = ST.two_se(list(a.values()), list(b.values()))
    assert u["se"] == pytest.approx(math.sqrt(1.91 / 3)) and u["verdict"] == "within_noise"


def test_paired_uses_only_common_seeds():
    r = ST.paired({0: 1.0, 1: 2.0, 2: 3.0, 5: 9.0}, {0: 0.5, 1: 1.6, 2: 2.4, 3: 0.0, 4: float("nan")})
    assert r["seeds"] == [0, 1, 2] and r["d"] == pytest.approx(0.5) and r["mean_a"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="b: expected a mapping seed -> value"):
        ST.paired({0: 1.0}, [1.0])
    with pytest.raises(ValueError, match="resolution"):
        ST.paired({0: 1.0}, {0: 1.0}, resolution=-1)


def test_paired_zero_spread_unresolved_or_decided_by_sign():
    a, b = {0: 0.5, 1: 0.75, 2: 0.25}, {0: 0.25, 1: 0.5, 2: 0.0}     # every seed: a - b = 0.25 exactly
    r = ST.paired(a, b, resolution=0.5)                                 # under one image: not resolved
    assert r["verdict"] == "within_noise" and r["unresolved"] is True and math.isnan(r["p"])
    assert r["sd_d"] == 0.0 and r["ci_low"] == r["ci_high"] == 0.25
    r = ST.paired(a, b, resolution=0.25)                                # exactly one image: not resolved either
    assert r["unresolved"] is True
    r = ST.paired(a, b, resolution=0.1)                                 # above one image: the sign decides
    assert r["verdict"] == "holds" and r["p"] == 0.0 and r["t"] == math.inf and not r["unresolved"]
    assert ST.paired(a, b, sign=-1, resolution=0.1)["verdict"] == "fails"
    same = ST.paired({0: 0.5, 1: 0.5}, {0: 0.5, 1: 0.5})                # d = 0: never decided
    assert same["verdict"] == "within_noise" and same["unresolved"] is True


def test_paired_one_seed_is_within_noise():
    r = ST.paired({0: 90.0}, {0: 10.0})
    assert r["n"] == 1 and r["d"] == pytest.approx(80.0) and r["verdict"] == "within_noise"
    assert math.isnan(r["p"]) and math.isnan(r["ci_low"]) and math.isnan(r["t"]) and not r["unresolved"]


def test_holm_on_three_p_values_by_hand():
    # sorted 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04, raised to the running max 0.06)
    adjusted, rejected = ST.holm([0.01, 0.04, 0.03])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06]) and rejected == [True, False, False]
    adjusted, rejected = ST.holm([0.01, float("nan"), 0.02])        # a missing p value does not count in m
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)
    assert rejected == [True, False, True]


def test_family_keeps_a_comparison_only_where_holm_rejects_it():
    comps = [{"p": 0.01, "verdict": "holds"}, {"p": 0.04, "verdict": "fails"}, {"p": 0.03, "verdict": "holds"}]
    C.family(comps)
    assert [c["verdict"] for c in comps] == ["holds", "within_noise", "within_noise"]
    assert [c["verdict_alone"] for c in comps] == ["holds", "fails", "holds"]
    assert [c["p_holm"] for c in comps] == pytest.approx([0.03, 0.06, 0.06])


def test_resolution_of_a_column_by_hand():
    t = pd.DataFrame({"clean": [80.0, 50.0], "pgd": [0.1, 0.2], "fog": [0.5, 0.4]},
                     index=pd.Index(["standard", "mtlat"], name="model"))
    s = C.SeedScores({0: t, 1: t}, {"clean_images": 2000, "eval_images": 1000, "attack_images": 500, "severities": 5})
    assert s.resolution("clean", "mtlat", "standard") == pytest.approx(0.05)           # 100 / 2000 points
    assert s.resolution("pgd", "mtlat", "standard") == pytest.approx(1 / (500 * 0.5))  # the lower clean accuracy
    assert s.resolution("fog", "mtlat", "standard") == pytest.approx(1 / (5 * 1000 * 0.5))
    assert C.SeedScores({0: t}).resolution("pgd", "mtlat") == 0.0                       # image counts unknown


def test_combine_and_count():
    assert C.combine(["holds", "holds"]) == "holds"
    assert C.combine(["holds", "within_noise"]) == "within_noise"
    assert C.combine(["holds", "fails", "within_noise"]) == "fails"
    assert C.combine([]) == "within_noise"
    assert C.count(["holds", "fails", "holds"]) == {"holds": 2, "within_noise": 0, "fails": 1}


# ---------------------------------------------------------------------------------------------
# the claims on score tables


def _tables(shift: dict[str, float], seeds=(0, 1, 2), wobble=0.01):
    """Per-seed score tables: every column of model m is base + shift[m] + a seed wobble."""
    cols = ["clean"] + list(P.perturbation_names())
    out = {}
    for k in seeds:
        rows = {m: [60.0 + 10 * d + wobble * k * 10] + [0.5 + d + wobble * k] * (len(cols) - 1)
                for m, d in shift.items()}
        out[k] = pd.DataFrame.from_dict(rows, orient="index", columns=cols).rename_axis("model")
    return out


def test_claims_that_hold_fail_and_are_not_measured():
    shift = {"standard": 0.0, "mtlat": 0.2, "iat": -0.3, "mixup": 0.1, "tlat": 0.05}
    report = C.check_claims(_tables(shift), {"name": "test"})
    v = {c["id"]: c for c in report["claims"]}
    assert report["seeds"] == [0, 1, 2] and report["profile"] == {"name": "test"}
    assert v["a"]["verdict"] == "holds"          # mtlat clean 62 vs 60, spread 0.1 per seed
    b = v["b"]["measured"]
    assert v["b"]["verdict"] == "holds"
    assert b["corruptions"]["counts"] == {"holds": 19, "within_noise": 0, "fails": 0}
    assert b["attacks"]["counts"] == {"holds": 5, "within_noise": 0, "fails": 0}
    assert v["c"]["verdict"] == "within_noise" and v["c"]["measured"] == {"missing_models": ["target_fgsm", "ls",
                                                                                           "fgsm"]}
    assert v["d"]["verdict"] == "holds"           # mtlat > iat on attacks, iat below standard
    e = v["e"]["measured"]
    # mixup > tlat everywhere: holds on fog and contrast, fails on the noises, jpeg and the attacks
    assert v["e"]["verdict"] == "fails" and e["counts"] == {"holds": 2, "within_noise": 0, "fails": 9}
    assert e["columns"]["fog"]["verdict"] == "holds" and e["columns"]["pgd"]["verdict"] == "fails"


def test_claim_d_under_both_readings_of_iat():
    # iat below mtlat everywhere (the paper's side); iat_targeted above mtlat on every column
    shift = {"standard": 0.0, "mtlat": 0.2, "iat": -0.3, "iat_targeted": 0.4}
    tables = _tables(shift)
    for k, t in tables.items():   # some seed noise on the differences, so the t intervals are finite
        t.loc["mtlat"] += 0.002 * k * k
    d = C.claim_d(C.SeedScores(tables))
    r = d["measured"]["readings"]
    assert list(r) == ["iat", "iat_targeted"]
    assert d["verdict"] == r["iat"]["verdict"] == "holds"        # the headline stays the iat reading
    assert d["measured"]["attacks"] is r["iat"]["attacks"]
    assert r["iat"]["counts"] == {"holds": 6, "within_noise": 0, "fails": 0}   # 5 attacks + the clean accuracy
    # iat_targeted: more robust than mtlat (fails on the 5 attacks), and more accurate than standard (fails)
    assert r["iat_targeted"]["verdict"] == "fails" and r["iat_targeted"]["counts"]["fails"] == 6
    assert set(r["iat"]["attacks"]["columns"]) == set(P.paper_attack_names())
    assert set(r["iat"]["cw_readings"]) == set(P.attack_readings())   # reported, not counted
    for c in r["iat"]["attacks"]["columns"].values():
        assert {"d", "ci_low", "ci_high", "p", "n", "t", "mean_a", "mean_b", "p_holm"} <= set(c)
    lines = C.claims_lines(C.check_claims(tables))
    assert any("reading iat_targeted: fails" in line for line in lines)
    # without the second reading trained, it is reported missing and the headline is unchanged
    no_t = C.claim_d(C.SeedScores(_tables({"standard": 0.0, "mtlat": 0.2, "iat": -0.3})))
    assert no_t["verdict"] == "holds" and no_t["measured"]["readings"]["iat_targeted"] == {
        "verdict": "within_noise", "missing_models": ["iat_targeted"]}


def test_claim_c_ordering_by_hand():
    shift = {"standard": 0.5, "tlat": 0.4, "target_fgsm": 0.3, "ls": 0.2, "fgsm": 0.1}
    c = C.claim_c(C.SeedScores(_tables(shift)))
    assert c["verdict"] == "holds" and c["measured"]["counts"]["holds"] == 7
    shift["ls"] = 0.3  # LS ties target-FGSM: that step is within noise, the rest holds
    c = C.claim_c(C.SeedScores(_tables(shift)))
    assert c["verdict"] == "within_noise"
    assert c["measured"]["comparisons"]["target_fgsm > ls"]["verdict"] == "within_noise"


def test_one_seed_judges_nothing():
    report = C.check_claims(_tables({"standard": 0.0, "mtlat": 0.2, "iat": -0.3, "mixup": 0.1, "tlat": 0.05},
                                    seeds=(0,)))
    assert {c["verdict"] for c in report["claims"]} == {"within_noise"}
    assert "one seed" in C.claims_lines(report)[0]


def test_aggregate_mean_and_std_by_hand():
    t0 = pd.DataFrame({"clean": [70.0, 60.0], "fog": [0.5, 0.4]}, index=pd.Index(["standard", "mtlat"], name="model"))
    t1 = pd.DataFrame({"clean": [72.0, 61.0], "fog": [0.7, float("nan")]},
                      index=pd.Index(["standard", "mtlat"], name="model"))
    mean, std = aggregate({0: t0, 1: t1})
    assert list(mean.index) == ["standard", "mtlat"] and list(mean.columns) == ["clean", "fog"]
    assert mean.loc["standard", "clean"] == pytest.approx(71.0)
    assert std.loc["standard", "clean"] == pytest.approx(math.sqrt(2.0))   # values 70, 72
    assert std.loc["standard", "fog"] == pytest.approx(math.sqrt(0.02))    # values 0.5, 0.7
    assert mean.loc["mtlat", "fog"] == pytest.approx(0.4) and math.isnan(std.loc["mtlat", "fog"])
    with pytest.raises(ValueError, match="tables"):
        aggregate({})


# ---------------------------------------------------------------------------------------------
# seeds: run folders, parallel training, reuse


def test_check_seeds():
    assert check_seeds([0, 2]) == (0, 2)
    seeds = check_seeds((0, 1, 2))
    assert check_seeds(seeds) is seeds and check_seeds(seeds[:1]) == (0,)   # checked once, where they enter
    assert isinstance(seeds[:1], type(seeds)) and seeds[0] == 0 and list(seeds) == [0, 1, 2]
    for bad in ([], [0, 0], [-1], [1.5], [True]):
        with pytest.raises(ValueError, match="seeds"):
            check_seeds(bad)


def test_train_seeds_parallel_folders_and_reuse(tmp_path):
    profile = get_profile("smoke", train_limit=128, test_limit=32, seeds=(0, 1))
    runs = train_seeds(profile, tmp_path, methods=("standard",), surrogate=True, device="cpu", progress=False,
                       workers=2)
    assert set(runs) == {0, 1} and set(runs[0]) == {"standard", SURROGATE}
    for k in (0, 1):
        assert (tmp_path / "smoke" / "standard" / f"seed{k}" / "model.pt").exists()
        assert run_dir(profile, tmp_path, "standard", k) == tmp_path / "smoke" / "standard" / f"seed{k}"
        assert runs[k]["standard"].config.seed == k and len(runs[k]["standard"].history) == 1
    w0 = runs[0]["standard"].model.state_dict()
    w1 = runs[1]["standard"].model.state_dict()
    assert any(not (w0[n] == w1[n]).all() for n in w0)  # different seeds, different weights
    mtime = (tmp_path / "smoke" / "standard" / "seed1" / "model.pt").stat().st_mtime_ns
    again = train_seeds(profile, tmp_path, methods=("standard",), surrogate=False, device="cpu", progress=False)
    assert (tmp_path / "smoke" / "standard" / "seed1" / "model.pt").stat().st_mtime_ns == mtime  # reused
    for n in w0:
        assert (again[0]["standard"].model.state_dict()[n] == w0[n]).all()


def test_a_seed_trains_the_same_sequentially_and_in_parallel(tmp_path, monkeypatch):
    """Seeds mean one thing: each seed trained in one process (workers=1; one thread, pinned by
    torch.set_num_threads(1) around the call) and in two worker processes (one thread each: the
    parent's os.cpu_count is pinned to 2, so each worker gets 2 // 2 threads) reaches the same weights
    on the CPU: its own training subset, initialisation, data order and step draws on both paths."""
    import torch
    from mtlat_edu.training import profiles
    profile = get_profile("smoke", train_limit=128, test_limit=32, seeds=(0, 1))
    kw = dict(methods=("standard", "mtlat"), surrogate=False, device="cpu", progress=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seq = train_seeds(profile, tmp_path / "seq", workers=1, **kw)
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(profiles.os, "cpu_count", lambda: 2)
    par = train_seeds(profile, tmp_path / "par", workers=2, **kw)
    for k in (0, 1):
        for m in ("standard", "mtlat"):
            a, b = seq[k][m].model.state_dict(), par[k][m].model.state_dict()
            assert all(torch.equal(a[n], b[n]) for n in a), (k, m)
    # and the seed-1 subset is seed 1's, not the first job's
    s0, s1 = profiles.job_data(seq[0]["standard"].config, {}), profiles.job_data(seq[1]["standard"].config, {})
    assert not torch.equal(s0[0].labels, s1[0].labels) or not torch.equal(s0[0].images, s1[0].images)


def test_cli_train_seeds(tmp_path, capsys):
    from mtlat_edu import cli
    base = ["train", "--method", "standard", "--model", "small_cnn", "--dataset", "synthetic", "--train-limit", "64",
            "--test-limit", "32", "--epochs", "1", "--batch-size", "32", "--device", "cpu", "--runs", str(tmp_path)]
    assert cli.main(base + ["--seeds", "3", "4"]) == 0
    out = capsys.readouterr().out
    for k in (3, 4):
        assert (tmp_path / "synthetic-small_cnn" / "standard" / f"seed{k}" / "model.pt").exists()
    assert "seed" in out and "/seed4" in out
    assert cli.main(base + ["--seeds", "1", "1"]) == 2
    assert "--seeds: must be distinct integers" in capsys.readouterr().err


def test_claims_lines_read_back_from_json(tmp_path):
    """claims.json stores NaN (one seed: no standard error) as null; the printed lines read it back."""
    from mtlat_edu.core import io as mio
    report = C.check_claims(_tables({"standard": 0.0, "mtlat": 0.2, "iat": -0.3, "mixup": 0.1, "tlat": 0.05},
                                    seeds=(0,)))
    back = mio.read_json(mio.write_json(tmp_path / "claims.json", mio.json_ready(report)))
    assert back["claims"][0]["measured"]["p"] is None
    lines = C.claims_lines(back)
    assert lines[1].startswith("(a) within_noise")
    assert lines[1].endswith("difference +2.00 [95% CI n/a, n/a], p = n/a (n = 1)")
    assert C.claims_lines(report) == lines  # NaN in memory prints the same
