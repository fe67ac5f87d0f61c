"""Tests of mtlat_edu.benchmark: scores (eq. 7), marks, Markdown layout, the cache, outputs, the CLI."""
from __future__ import annotations

import json
import math
import warnings

import pandas as pd
import pytest
import torch

from mtlat_edu.robustness import attacks as A
from mtlat_edu import cli
from mtlat_edu.robustness import corruptions as C
from mtlat_edu.robustness import measure
from mtlat_edu.benchmark import parts as P
from mtlat_edu.benchmark import report, scores, suite
from mtlat_edu.data import make_synthetic
from mtlat_edu.models import build_model
from mtlat_edu.training.profiles import SURROGATE, get_profile, train_profile

# ---------------------------------------------------------------------------------------------
# scores by hand


def test_robustness_score_by_hand():
    assert scores.robustness_score(0.3, 0.6) == pytest.approx(0.5)
    assert scores.robustness_score(0.6, 0.6) == 1.0
    assert math.isnan(scores.robustness_score(0.0, 0.0))  # undefined without clean accuracy
    # severities 1..3: R = 0.6/0.6, 0.3/0.6, 0/0.6 -> mean (1 + 0.5 + 0) / 3
    assert scores.mean_robustness([0.6, 0.3, 0.0], 0.6) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="clean_accuracy"):
        scores.robustness_score(0.5, 73.2)  # a percentage, not a fraction
    with pytest.raises(ValueError, match="perturbed_accuracies"):
        scores.mean_robustness([], 0.5)


def _long(rows):
    return pd.DataFrame(rows, columns=list(scores.LONG_COLUMNS))


def test_score_table_by_hand():
    # corruptions on 10 images (clean 0.8), attacks on 5 other images (clean 0.6)
    df = _long([
        ("standard", "clean", "clean", 0, 0.8, 10),
        ("standard", "clean", "clean", 0, 0.6, 5),
        ("standard", "imagenet_c", "gaussian_noise", 1, 0.4, 10),
        ("standard", "imagenet_c", "gaussian_noise", 2, 0.2, 10),
        ("standard", "white_box", "pgd", 0, 0.3, 5),
        ("standard", "extra", "rotation", 1, 0.8, 10),
        ("mtlat", "clean", "clean", 0, 0.5, 10),
        ("mtlat", "clean", "clean", 0, 0.5, 5),
        ("mtlat", "imagenet_c", "gaussian_noise", 1, 0.5, 10),
        ("mtlat", "imagenet_c", "gaussian_noise", 2, 0.4, 10),
        ("mtlat", "white_box", "pgd", 0, 0.1, 5),
        ("mtlat", "extra", "rotation", 1, 0.25, 10),
    ])
    t = scores.score_table(df)
    # table order, not row order: ImageNet-C, extra, attacks
    assert list(t.columns) == ["clean", "gaussian_noise", "rotation", "pgd"]
    assert list(t.index) == ["standard", "mtlat"]
    assert t.loc["standard", "clean"] == pytest.approx(80.0)  # the larger (corruption) set, in %
    assert t.loc["standard", "gaussian_noise"] == pytest.approx((0.4 / 0.8 + 0.2 / 0.8) / 2)  # 0.375
    assert t.loc["standard", "pgd"] == pytest.approx(0.3 / 0.6)  # divided by the attack set's clean accuracy
    assert t.loc["mtlat", "gaussian_noise"] == pytest.approx((1.0 + 0.8) / 2)
    assert t.loc["mtlat", "rotation"] == pytest.approx(0.5)
    assert t.loc["mtlat", "pgd"] == pytest.approx(0.2)
    long = scores.add_robustness(df)
    assert long.loc[4, "clean_accuracy"] == 0.6 and long.loc[4, "robustness"] == pytest.approx(0.5)


def test_marks_by_hand():
    t = pd.DataFrame({"clean": [73.2, 74.0, 70.0], "fog": [0.48, 0.59, 0.30], "pgd": [0.50, 0.499, 0.504],
                      "cw_l2": [0.10, float("nan"), 0.05]},
                     index=pd.Index(["standard", "mtlat", "iat"], name="model"))
    m = scores.marks(t)
    assert list(m.loc["standard"]) == ["", "", "", ""]  # no mark on the reference row
    assert m.loc["mtlat", "clean"] == "" and m.loc["iat", "clean"] == ""  # nor on clean accuracy
    assert m.loc["mtlat", "fog"] == "+" and m.loc["iat", "fog"] == "-"
    assert m.loc["mtlat", "pgd"] == "" and m.loc["iat", "pgd"] == ""  # 0.50 == 0.50 at two decimals
    assert m.loc["mtlat", "cw_l2"] == "" and m.loc["iat", "cw_l2"] == "-"
    f = scores.format_scores(t)
    assert f.loc["standard", "fog"] == "0.48" and f.loc["mtlat", "fog"] == "0.59+"
    assert f.loc["iat", "fog"] == "0.30-" and f.loc["mtlat", "clean"] == "74.0"
    assert f.loc["mtlat", "cw_l2"] == "n/a"
    assert (scores.marks(t, reference="nobody") == "").all().all()

    d = scores.score_differences(t, "mtlat", "standard")
    assert d["differences"]["fog"] == pytest.approx(0.11) and d["differences"]["clean"] == pytest.approx(0.8)
    assert d["better"] == ["fog"] and d["worse"] == [] and d["equal"] == ["pgd"]
    assert scores.table3(t) == {"standard": 73.2, "fgsm": None, "target_fgsm": None, "ls": None, "tlat": None}
    std = pd.DataFrame({"clean": [0.44, float("nan"), 1.0], "fog": [0.013, 0.02, 0.0], "pgd": [0.0] * 3,
                        "cw_l2": [0.01] * 3}, index=t.index)
    fs = scores.format_scores(t, std=std)
    assert fs.loc["standard", "clean"] == "73.2 ± 0.4" and fs.loc["mtlat", "clean"] == "74.0"  # NaN: no spread
    assert fs.loc["mtlat", "fog"] == "0.59 ± 0.02+" and fs.loc["iat", "fog"] == "0.30 ± 0.00-"
    with pytest.raises(ValueError, match="row"):
        scores.score_differences(t, "tlat", "standard")


def _full_table():
    cols = ["clean"] + list(P.perturbation_names())
    t = pd.DataFrame([[70.0] + [0.5] * (len(cols) - 1), [71.0] + [0.6] * (len(cols) - 1)],
                     columns=cols, index=pd.Index(["standard", "mtlat"], name="model"))
    return t


def test_markdown_layout():
    md = report.markdown_tables(_full_table())
    lines = md.splitlines()
    heads = [i for i, ln in enumerate(lines) if ln.startswith("### ")]
    assert [lines[i][4:7] for i in heads] == ["(a)", "(b)", "(c)"]
    header_a, header_b, header_c = (lines[i + 2] for i in heads)
    assert header_a == ("| model | Clean | Gauss | Shot | Impul | Defocus | Glass | Motion | Zoom | Snow | Frost | "
                        "Fog | Bright | Contr | Elastic | Pixelate | Jpeg |")
    assert header_b == "| model | Obstru | Color | Trans | Rot |"
    assert header_c == "| model | " + " | ".join(A.DISPLAY[a] for a in A.ATTACKS) + " |"
    assert lines[heads[0] + 4] == "| standard | 70.0 | " + " | ".join(["0.50"] * 15) + " |"
    assert lines[heads[0] + 5] == "| mtlat | 71.0 | " + " | ".join(["0.60+"] * 15) + " |"
    assert lines[heads[2] + 5] == "| mtlat | " + " | ".join(["0.60+"] * len(A.ATTACKS)) + " |"
    # only the measured parts; the clean column moves to the first part shown
    t = _full_table()[["clean", "pgd"]]
    md = report.markdown_tables(t)
    assert "### (a)" not in md and "### (b)" not in md
    assert "| model | Clean | pgd e=0.04 |" in md
    t3 = report.table3_markdown(_full_table()).splitlines()
    assert t3[0] == "|  | standard | FGSM | target-FGSM | LS | TLAT |"
    assert t3[2] == "| clean accuracy | 70.0 | n/a | n/a | n/a | n/a |"


def test_tables_name_the_seeds_of_rows_measured_on_fewer():
    t = _full_table()
    std = t * 0 + 0.01
    md = report.markdown_tables(t, std=std, seeds={"standard": [0, 1, 2], "mtlat": [0, 1]})
    assert "Mean ± standard deviation over 3 training seed(s) (0, 1, 2)." in md
    assert "Rows measured on fewer seeds name theirs: mtlat (0, 1)." in md
    assert "| mtlat (seeds 0, 1) | 71.0 ± 0.0 | 0.60 ± 0.01+ |" in md  # the +/- marks still read standard
    # the reference row itself on fewer seeds keeps its marks
    md = report.markdown_tables(t, std=std, seeds={"standard": [0], "mtlat": [0, 1]})
    assert "| standard (seeds 0) | 70.0 ± 0.0 | 0.50 ± 0.01 |" in md and "| mtlat | 71.0 ± 0.0 | 0.60 ± 0.01+ |" in md
    # one list: every row on all of them, no names changed
    md = report.markdown_tables(t, std=std, seeds=[0, 1])
    assert "fewer" not in md and "| mtlat | 71.0" in md
    t3 = t.rename(index={"mtlat": "fgsm"})
    row = report.table3_markdown(t3, std=t3 * 0 + 0.04, seeds={"standard": [0, 1, 2], "fgsm": [0, 1]}).splitlines()[2]
    assert row == "| clean accuracy | 70.0 ± 0.0 | 71.0 ± 0.0 (seeds 0, 1) | n/a | n/a | n/a |"


def test_heatmap_both_colourings():
    t = _full_table()
    fig = report.plot_heatmap(t)  # coloured by R - R(standard)
    assert fig.axes[0].get_title().endswith("difference with standard)")
    fig = report.plot_heatmap(t.rename(index={"standard": "baseline"}))  # no reference row: R itself
    assert fig.axes[0].get_title() == "Robustness scores R"
    assert [x.get_text() for x in fig.axes[0].get_xticklabels()][:2] == ["Gauss", "Shot"]
    with pytest.raises(ValueError, match="no perturbation column"):
        report.plot_heatmap(t[["clean"]])


def test_parts_selection_and_errors():
    sel = P.resolve_parts(None)
    assert sel.perturbations == tuple(C.IMAGENET_C) + tuple(C.EXTRA) + tuple(A.ATTACKS)
    assert P.resolve_parts(["extra"]).corruptions == tuple(C.EXTRA)
    assert P.resolve_parts(["pgd", "fog"]).perturbations == ("fog", "pgd")  # table order
    assert P.resolve_parts("clean").perturbations == ()
    with pytest.raises(ValueError, match=r"parts: unknown name 'fogg'.*imagenet_c.*gaussian_noise"):
        P.resolve_parts(["fogg"])
    with pytest.warns(UserWarning, match="skipping the black-box"):
        sel = P.resolve_parts(["attacks"], have_surrogate=False)
    assert sel.attacks == tuple(a for a in A.ATTACKS if not A.ATTACKS[a].black_box)
    assert set(sel.skipped) == {a for a in A.ATTACKS if A.ATTACKS[a].black_box}
    with pytest.raises(ValueError, match="surrogate"):
        P.resolve_parts(["mi_fgsm_0.04"], have_surrogate=False)


# ---------------------------------------------------------------------------------------------
# the suite runner on tiny in-memory models


@pytest.fixture(scope="module")
def tiny():
    data = make_synthetic(40, seed=3, image_size=16)  # 16 px: the smallest size the corruptions take
    torch.manual_seed(0)
    models = {"standard": build_model("small_cnn", 10), "mtlat": build_model("small_cnn", 10)}
    surrogate = build_model("small_cnn", 10)
    return data, models, surrogate


PARTS = ["brightness", "color_distortion", "pgd", "mi_fgsm_0.04"]


class _Spy:
    """Count the calls of the functions that compute something."""

    def __init__(self, monkeypatch):
        self.calls = {"corrupt": 0, "run_attack": 0, "attack_accuracy": 0, "count_correct": 0}
        for mod, name in ((C, "corrupt"), (A, "run_attack"), (measure, "attack_accuracy"), (measure, "count_correct")):
            monkeypatch.setattr(mod, name, self._wrap(name, getattr(mod, name)))

    def _wrap(self, name, fn):
        def spy(*args, **kwargs):
            self.calls[name] += 1
            return fn(*args, **kwargs)
        return spy


def test_suite_cache_outputs_and_resume(tiny, tmp_path, monkeypatch):
    data, models, surrogate = tiny
    kw = dict(parts=PARTS, surrogate=surrogate, eval_limit=20, attack_limit=6, severities=(1, 2),
              batch_size=64, device="cpu", progress=False)
    out = tmp_path / "res"
    spy = _Spy(monkeypatch)
    first = suite.run_suite(models, data, out, **kw)
    # clean on 2 image sets + 2 corruptions x 2 severities + 2 attacks, for 2 models
    assert first.computed == 2 * (2 + 4 + 2) and first.reused == 0
    # each (corruption, severity) is generated once (one batch) and shared by both models
    assert spy.calls["corrupt"] == 4
    assert spy.calls["run_attack"] == 1 + 2  # MI-FGSM once on the surrogate + PGD once per model
    res = first.results
    assert set(res["n_images"]) == {20, 6}
    assert list(res.columns[:6]) == list(scores.LONG_COLUMNS)
    for f in first.files.values():
        assert f.exists()
    assert not list(out.glob(".*.tmp"))
    assert json.loads((out / suite.RESULTS_JSON).read_text())[0]["model"] == "standard"

    # a second run computes nothing and gives the same numbers
    spy2 = _Spy(monkeypatch)
    second = suite.run_suite(models, data, out, **kw)
    assert second.computed == 0 and second.reused == first.computed
    assert all(v == 0 for v in spy2.calls.values()), spy2.calls
    pd.testing.assert_frame_equal(second.results, first.results)

    # a new model (and a moved copy of an old one) only computes the new model's cells
    torch.manual_seed(123)  # (the autouse seed fixture reset the global RNG: another init)
    more = dict(models, copy_of_mtlat=models["mtlat"], other=build_model("small_cnn", 10))
    third = suite.run_suite(more, data, out, **kw)
    assert third.computed == 8 and third.reused == 3 * 8
    old = third.results[third.results["model"].isin(["standard", "mtlat"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(old, first.results)


def test_suite_resumes_after_interruption(tiny, tmp_path, monkeypatch):
    data, models, surrogate = tiny
    kw = dict(parts=["brightness"], surrogate=surrogate, eval_limit=12, severities=(1, 2, 3),
              batch_size=4, device="cpu", progress=False)
    real, seen = suite._measure, []

    def flaky(group, *args, **kwargs):  # a group of cells measured together (one cell here)
        if len(seen) == 2:
            raise KeyboardInterrupt
        seen.append(group[0].perturbation)
        return real(group, *args, **kwargs)

    monkeypatch.setattr(suite, "_measure", flaky)
    with pytest.raises(KeyboardInterrupt):
        suite.run_suite(models, data, tmp_path, **kw)
    assert len(json.loads((tmp_path / suite.CACHE_FILE).read_text())["entries"]) == 2 * 2
    monkeypatch.setattr(suite, "_measure", real)
    resumed = suite.run_suite(models, data, tmp_path, **kw)
    assert resumed.computed == 2 * 2 and resumed.reused == 2 * 2
    fresh = suite.run_suite(models, data, tmp_path / "fresh", **kw)
    pd.testing.assert_frame_equal(resumed.results, fresh.results)


def test_write_report_files(tiny, tmp_path):
    data, models, surrogate = tiny
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no surrogate: the black-box columns are skipped with a warning
        s = suite.run_suite(models, data, tmp_path, parts=["brightness", "black_box", "pgd_ll"], eval_limit=10,
                            attack_limit=4, severities=(1,), device="cpu", progress=False)
    assert set(s.skipped) == {a for a in A.ATTACKS if A.ATTACKS[a].black_box}
    files = report.write_report(s.results, tmp_path, meta=s.meta)
    for key in ("scores_csv", "scores_json", "tables_md", "table3_md", "heatmap_png"):
        assert files[key].exists() and files[key].stat().st_size > 0, key
    table = pd.read_csv(files["scores_csv"], index_col="model")
    assert list(table.columns) == ["clean", "brightness", "pgd_ll"]
    assert "Skipped mi_fgsm_0.04" in files["tables_md"].read_text()
    assert not list(tmp_path.glob(".*.tmp"))


def test_suite_argument_errors(tiny):
    data, models, _ = tiny
    with pytest.raises(ValueError, match="severities"):
        suite.run_suite(models, data, parts="clean", severities=(0, 6), progress=False)
    with pytest.raises(ValueError, match="eval_limit"):
        suite.run_suite(models, data, parts="clean", eval_limit=0, progress=False)
    with pytest.raises(ValueError, match="models: no model"):
        suite.run_suite({}, data, parts="clean", progress=False)
    with pytest.raises(ValueError, match="3 classes"):
        three = suite.ModelRef("three", build_model("small_cnn", 3), "id", {"num_classes": 3})
        suite.run_suite({"three": three}, data, parts="clean", progress=False)


# ---------------------------------------------------------------------------------------------
# end to end: train the smoke profile (small), then ``mtlat-edu evaluate``


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    profile = get_profile("smoke", train_limit=128, test_limit=64)
    train_profile(profile, root, methods=("standard", "mtlat"), surrogate=True, device="cpu", progress=False)
    return root


# (the black-box columns are covered above with a small surrogate: MI-FGSM on the VGG is slow on a CPU)
E2E = ["--parts", "clean", "brightness", "rotation", "pgd", "--severities", "1", "2",
       "--eval-limit", "20", "--attack-limit", "6", "--device", "cpu", "--no-progress"]


def test_cli_evaluate_profile(smoke_runs, tmp_path, capsys):
    out = tmp_path / "results"
    rc = cli.main(["evaluate", "--profile", "smoke", "--runs", str(smoke_runs), "--out", str(out)] + E2E)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "not trained yet" in captured.err and "fgsm" in captured.err  # the missing methods are named
    assert "### (a)" in captured.out and "| model | Clean | Bright |" in captured.out
    assert "| model | pgd e=0.04 |" in captured.out
    assert f"Files in {out}" in captured.out
    table = pd.read_csv(out / report.SCORES_CSV, index_col="model")
    assert list(table.index) == ["standard", "mtlat"]
    assert list(table.columns) == ["clean", "brightness", "rotation", "pgd"]
    meta = json.loads((out / "seed0" / suite.META_JSON).read_text())
    assert meta["surrogate"]["path"].endswith(f"{SURROGATE}/seed0/model.pt")
    assert meta["data"]["eval_images"] == 20 and meta["data"]["attack_images"] == 6
    assert meta["data"]["clean_images"] == meta["data"]["test_images"]  # the clean column: the whole test set
    claims = json.loads((out / "claims.json").read_text())
    assert claims["seeds"] == [0] and {c["verdict"] for c in claims["claims"]} == {"within_noise"}
    long = pd.read_csv(out / "seed0" / suite.RESULTS_CSV)
    assert set(long["perturbation"]) == {"clean", "brightness", "rotation", "pgd"}
    # the second run reuses everything
    rc = cli.main(["evaluate", "--profile", "smoke", "--runs", str(smoke_runs), "--out", str(out)] + E2E)
    assert rc == 0 and "0 cells computed" in capsys.readouterr().out


def test_cli_evaluate_paths_and_errors(smoke_runs, tmp_path, capsys):
    run = smoke_runs / "smoke"
    out = tmp_path / "res"
    base = ["evaluate", str(run / "standard" / "seed0"), str(run / "mtlat" / "seed0" / "model.pt"), "--out", str(out),
            "--eval-limit", "10", "--attack-limit", "4", "--device", "cpu", "--no-progress"]
    # black-box attacks through a group without --surrogate: skipped with a warning
    assert cli.main(base + ["--parts", "black_box", "pgd"]) == 0
    captured = capsys.readouterr()
    assert "skipping the black-box" in captured.err
    assert list(pd.read_csv(out / report.SCORES_CSV, index_col="model").columns) == ["clean", "pgd"]
    # named explicitly: an error
    assert cli.main(base + ["--parts", "mi_fgsm_0.08"]) == 2
    assert "--surrogate" in capsys.readouterr().err
    assert cli.main(base + ["--parts", "fogg"]) == 2
    err = capsys.readouterr().err
    assert "unknown name 'fogg'" in err and "imagenet_c" in err
    assert cli.main(["evaluate", str(tmp_path / "nowhere"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["evaluate", "--no-progress"]) == 2
    assert "--profile" in capsys.readouterr().err


def test_evaluate_takes_in_memory_models_and_data(tiny, tmp_path):
    """The session's models go through ``benchmark.evaluate`` without files: the same cells as
    ``run_suite`` on the same models and images, and a clear error without a test set."""
    from mtlat_edu.benchmark import evaluate
    data, models, surrogate = tiny
    kw = dict(parts=["brightness", "pgd", "mi_fgsm_0.04"], eval_limit=20, attack_limit=6, severities=(1,),
              device="cpu", progress=False)
    res = evaluate(dict(models), data=data, surrogate=surrogate, out=tmp_path / "ev", **kw)
    ref = suite.run_suite(dict(models), data, tmp_path / "ref", surrogate=surrogate, clean_all=True, **kw)
    cols = ["model", "perturbation", "severity", "accuracy"]
    got = res.suite.results[cols].sort_values(cols[:3]).reset_index(drop=True)
    want = ref.results[cols].sort_values(cols[:3]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    assert list(res.scores.index) == ["standard", "mtlat"] and (tmp_path / "ev" / "tables.md").exists()
    with pytest.raises(ValueError, match="data: in-memory models carry no dataset"):
        evaluate(dict(models), out=tmp_path / "none", **kw)
