"""Every widget callback of the course, driven from pytest: build the panel, set a control like a
learner does, check what the callback computed (and that its figure is drawn)."""
from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

pytest.importorskip("ipywidgets")

from mtlat_edu import course  # noqa: E402
from mtlat_edu.course import runner, viz, widgets  # noqa: E402
from mtlat_edu.data import make_synthetic  # noqa: E402
from mtlat_edu.paper.labels import one_hot  # noqa: E402
from mtlat_edu.models import build_model  # noqa: E402

CLASSES = [f"c{k}" for k in range(10)]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images():
    data = make_synthetic(20, seed=3)
    # two images of different classes
    i = 0
    j = next(k for k in range(1, len(data)) if data.labels[k] != data.labels[0])
    return data.float_images([i, j]), data.labels[[i, j]]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("small_cnn", 10).eval()


def _slider(panel, description):
    found = [c for c in panel.controls.values() if getattr(c, "description", None) == description]
    assert found, f"no control described {description!r}: {[c.description for c in panel.controls.values()]}"
    return found[0]


# ---------------------------------------------------------------------------------------------- 02

def test_mixup_panel_lambda_slider(images):
    (x, y) = images
    panel = widgets.mixup_panel(x[0], int(y[0]), x[1], int(y[1]), CLASSES, lam=0.5)
    lam_slider = _slider(panel, "lambda")
    assert lam_slider.continuous_update is False
    calls = panel.calls
    lam_slider.value = 0.3
    assert panel.calls > calls, "setting the slider did not run the callback"
    r = panel.last
    assert r["lam"] == pytest.approx(0.3)
    torch.testing.assert_close(r["x_mix"], 0.3 * x[0] + 0.7 * x[1])
    expected = 0.3 * one_hot(y[:1], 10)[0] + 0.7 * one_hot(y[1:], 10)[0]
    torch.testing.assert_close(r["y_mix"], expected)
    assert float(r["y_mix"].sum()) == pytest.approx(1.0)


def test_mixup_panel_alpha_changes_the_draws(images):
    (x, y) = images
    panel = widgets.mixup_panel(x[0], int(y[0]), x[1], int(y[1]), CLASSES, alpha=0.4)
    before = panel.update()["draws"]
    _slider(panel, "alpha").value = 2.0
    after = panel.last["draws"]
    assert panel.last["alpha"] == pytest.approx(2.0)
    # Beta(2, 2) concentrates in the middle, Beta(0.4, 0.4) at the ends
    assert ((after - 0.5).abs().mean() < (before - 0.5).abs().mean())
    assert isinstance(panel.figure(), Figure)


# ---------------------------------------------------------------------------------------------- 03

def test_fgsm_panel_eps_slider_sets_the_perturbation_size(images, model):
    (x, y) = images
    panel = widgets.fgsm_panel(model, x[0], int(y[0]), CLASSES, eps=0.03)
    eps = _slider(panel, "eps")
    assert (eps.min, eps.max, eps.continuous_update) == (0.0, 0.1, False)
    eps.value = 0.05
    r = panel.last
    assert r["eps"] == pytest.approx(0.05)
    assert float(r["delta"].abs().max()) == pytest.approx(0.05, abs=1e-6)
    assert float(r["x_adv"].min()) >= 0.0 and float(r["x_adv"].max()) <= 1.0
    assert r["probs_adv"].sum().item() == pytest.approx(1.0, abs=1e-5)
    assert isinstance(panel.figure(), Figure)


def test_fgsm_panel_target_and_mode(images, model):
    (x, y) = images
    panel = widgets.fgsm_panel(model, x[0], int(y[0]), CLASSES, eps=0.02)
    panel.controls["target"].value = 7
    assert panel.last["target"] == 7 and panel.last["mode"] == "targeted"
    targeted = panel.last["x_adv"]
    panel.controls["mode"].value = "untargeted"
    assert panel.last["target"] is None
    assert not torch.equal(panel.last["x_adv"], targeted)
    panel.controls["eps"].value = 0.0
    assert float(panel.last["delta"].abs().max()) == 0.0


# ---------------------------------------------------------------------------------------------- 04

def test_tlat_panel_puts_eps_on_the_target():
    panel = widgets.tlat_panel(3, CLASSES, target=7, eps=0.025)
    _slider(panel, "eps").value = 0.2
    y_adv = panel.last["y_adv"]
    assert y_adv[7].item() == pytest.approx(0.2)
    assert y_adv[3].item() == pytest.approx(0.8)
    assert y_adv.sum().item() == pytest.approx(1.0)
    panel.controls["target"].value = 5
    assert panel.last["y_adv"][5].item() == pytest.approx(0.2) and panel.last["y_adv"][7].item() == 0.0
    assert isinstance(panel.figure(), Figure)


def test_mtlat_panel_three_sources(images, model):
    (x, y) = images
    y3, y4 = int(y[0]), int(y[1])
    target = next(k for k in range(10) if k not in (y3, y4))
    panel = widgets.mtlat_panel(model, x[0], y3, x[1], y4, CLASSES, target=target)
    _slider(panel, "lambda").value = 0.7
    _slider(panel, "eps").value = 0.05
    r = panel.last
    assert r["weights"] == pytest.approx({"lambda*(1-eps)": 0.7 * 0.95, "(1-lambda)*(1-eps)": 0.3 * 0.95, "eps": 0.05})
    torch.testing.assert_close(r["x_mix"], 0.7 * x[0] + 0.3 * x[1])
    assert float((r["x_mtlat"] - r["x_mix"]).abs().max()) == pytest.approx(0.05, abs=1e-6)
    y_mt = r["y_mtlat"]
    assert y_mt[y3].item() == pytest.approx(0.7 * 0.95)
    assert y_mt[y4].item() == pytest.approx(0.3 * 0.95)
    assert y_mt[target].item() == pytest.approx(0.05)
    assert y_mt.sum().item() == pytest.approx(1.0)
    assert isinstance(panel.figure(), Figure)


# ---------------------------------------------------------------------------------------------- 06

def test_corruption_panel_severity_slider(images):
    pytest.importorskip("mtlat_edu.robustness.corruptions")
    (x, _) = images
    big = torch.nn.functional.interpolate(x[:1], size=(96, 96), mode="bilinear", align_corners=False)[0]
    panel = widgets.corruption_panel({"32 px": x[0], "96 px": big}, name="gaussian_noise", severity=1.0)
    options = panel.controls["name"].options  # (label, name): the registry's labels, the paper's columns
    assert len(options) == 19 and tuple(options[:2]) == (("Gauss (gaussian_noise)", "gaussian_noise"),
                                                          ("Shot (shot_noise)", "shot_noise"))
    assert tuple(options[-1]) == ("Rot (rotation)", "rotation")
    sev = _slider(panel, "severity")
    assert (sev.min, sev.max, sev.step, sev.continuous_update) == (1.0, 5.0, 0.1, False)
    low = {k: v.clone() for k, v in panel.update()["corrupted"].items()}
    sev.value = 5.0
    high = panel.last["corrupted"]
    for k in low:
        assert high[k].shape == low[k].shape
        assert not torch.allclose(low[k], high[k]), f"{k}: severity 1 and 5 give the same image"
    # the continuous severity lies between its neighbours
    d = {s: (panel.update(severity=s)["corrupted"]["32 px"] - x[0]).abs().mean().item() for s in (2.0, 2.5, 3.0)}
    assert d[2.0] < d[2.5] < d[3.0]
    panel.controls["name"].value = "fog"
    assert panel.last["name"] == "fog"
    assert isinstance(panel.figure(), Figure)


# ---------------------------------------------------------------------------------------------- 07

def test_attack_panel(images, model):
    pytest.importorskip("mtlat_edu.robustness.attacks")
    (x, y) = images
    torch.manual_seed(1)
    surrogate = build_model("small_cnn", 10).eval()
    panel = widgets.attack_panel({"a": model, "b": model}, x, y, CLASSES, surrogate=surrogate, name="pgd")
    assert [tuple(o) for o in panel.controls["name"].options] == [
        ("pgd e=0.04", "pgd"), ("pgd_ll e=0.04", "pgd_ll"), ("cw_l2", "cw_l2"), ("mi_fgsm e=0.04", "mi_fgsm_0.04"),
        ("mi_fgsm e=0.08", "mi_fgsm_0.08"), ("cw_l2 kappa=50", "cw_l2_kappa50"), ("cw_l2 L2<=0.5", "cw_l2_within0.5")]
    assert float(panel.last["linf"].max()) <= 0.04 + 1e-6
    panel.controls["name"].value = "mi_fgsm_0.08"
    r = panel.last
    assert r["name"] == "mi_fgsm_0.08" and float(r["linf"].max()) <= 0.08 + 1e-6
    assert r["x_adv"].shape == x.shape
    panel.controls["model"].value = "b"
    assert panel.last["model"] == "b"
    assert isinstance(panel.figure(), Figure)


# ---------------------------------------------------------------------------------------------- viz

def test_figures_are_returned_not_shown(images):
    (x, y) = images
    hist = [{"epoch": 1, "test_acc": 0.3, "train_loss": 2.0}, {"epoch": 2, "test_acc": 0.4, "train_loss": 1.5}]
    figs = [
        viz.beta_densities(),
        viz.image_grid(x, ["a", "b"]),
        viz.label_bars({"y": one_hot(y[:1], 10)[0]}, CLASSES),
        viz.learning_curves({"standard": hist, "mtlat": hist}),
        viz.accuracy_bars({"standard": 40.0, "mtlat": 42.0}, reference=40.0),
        viz.severity_curves({"fog": {1: 0.5, 2: 0.4}}, clean=0.6),
    ]
    assert all(isinstance(f, Figure) for f in figs)
    assert viz.soft_label_title(torch.tensor([0.0, 0.7, 0.3]), ["a", "b", "c"]) == "b 0.70 | c 0.30"


def test_course_helpers(tmp_path):
    assert [p.name[:2] for p in runner.select_notebooks(["02", "05"])] == ["02", "05"]
    with pytest.raises(ValueError, match="no notebook starts with"):
        runner.select_notebooks(["42"])
    S = course.setup("smoke", runs_root=tmp_path / "runs", output_dir=tmp_path / "out", notebook="t", verbose=False)
    assert S.synthetic and "GENERATED" in S.describe()
    assert S.out_dir == (tmp_path / "out" / "t").resolve() and S.out_dir.is_dir()
    assert S.eval_limit == course.session.SMOKE_NOTEBOOK_LIMITS["eval_limit"]
    x, y = S.images(4)
    assert x.shape == (4, 3, 32, 32) and len(set(y.tolist())) == 4
    S.save_json("a.json", {"k": 1})
    assert (S.out_dir / "a.json").exists()
