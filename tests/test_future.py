"""Beyond the paper (section 6's future work): ``mtlat_pgd`` and ``manifold_mtlat``, their defining properties."""
import pytest
import torch
from torch import nn

from mtlat_edu.paper.adversarial import targeted_fgsm, targeted_pgd
from mtlat_edu.paper.labels import one_hot, tlat_labels
from mtlat_edu.paper.methods import (MANIFOLD_LAYERS, METHODS, MethodConfig, draw_layer, manifold_couples, mtlat_couples,
                               pgd_attack)
from mtlat_edu.paper.mixup import mixup
from mtlat_edu.models import MIX_POINTS, build_model, mix_layer_count
from mtlat_edu.paper.mixup import manifold_forward
from mtlat_edu.training.profiles import FUTURE_METHODS, TABLE_METHODS
from mtlat_edu.training import TrainConfig, fit

pytestmark = pytest.mark.usefixtures("one_thread")


def TinyNoBN():
    """A linear model of 8x8 images (no batch norm: a sample's gradient ignores the batch)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))


def _batch(n=16, size=8):
    g = torch.Generator().manual_seed(5)
    return torch.rand(n, 3, size, size, generator=g), torch.arange(n) % 10


def test_registered_but_not_in_the_paper_tables():
    assert set(FUTURE_METHODS) == {"mtlat_pgd", "manifold_mtlat"} and set(FUTURE_METHODS) <= set(METHODS)
    assert not set(FUTURE_METHODS) & set(TABLE_METHODS)


# ---------------------------------------------------------------------------------------------
# targeted PGD


@pytest.mark.parametrize("factor", [1.0, 2.5])
def test_pgd_with_one_step_and_no_random_start_is_targeted_fgsm(factor):
    model = TinyNoBN()
    x, _ = _batch()
    x[0, 0, 0, :3] = torch.tensor([0.0, 1.0, 0.01])  # pixels at the box edges: clipping must agree too
    t = torch.arange(16) % 7
    eps = torch.linspace(0, 0.03, 16)
    assert torch.equal(targeted_pgd(model, x, t, eps, steps=1, step_factor=factor), targeted_fgsm(model, x, t, eps))


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_stays_in_the_eps_ball_and_the_image_box(random_start):
    model = TinyNoBN()
    x, _ = _batch()
    eps = torch.linspace(0, 0.05, 16)
    x_adv = targeted_pgd(model, x, torch.zeros(16, dtype=torch.long), eps, steps=4, random_start=random_start,
                         generator=torch.Generator().manual_seed(0))
    assert x_adv.shape == x.shape and x_adv.min() >= 0 and x_adv.max() <= 1
    dist = (x_adv - x).abs().flatten(1).amax(1)
    assert torch.all(dist <= eps + 1e-6)
    assert dist[0] == 0  # eps = 0 leaves the image alone
    assert torch.allclose(dist[1:], eps[1:], atol=1e-6)  # 4 steps of 2.5 eps / 4 reach the ball's surface


def test_pgd_moves_towards_the_target_more_than_fgsm():
    """Several projected steps lower the targeted loss at least as much as one step (on a fixed model)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 32), nn.Tanh(), nn.Linear(32, 10))
    x, _ = _batch(64)
    t = torch.full((64,), 3)
    loss = lambda z: nn.functional.cross_entropy(model(z), t).item()
    one, ten = targeted_fgsm(model, x, t, 0.03), targeted_pgd(model, x, t, 0.03, steps=10)
    assert loss(ten) < loss(one) < loss(x)


def test_pgd_random_start_is_seeded():
    model = TinyNoBN()
    x, _ = _batch()
    t = torch.ones(16, dtype=torch.long)
    run = lambda s: targeted_pgd(model, x, t, 0.03, steps=2, random_start=True, generator=torch.Generator().manual_seed(s))
    assert torch.equal(run(1), run(1)) and not torch.equal(run(1), run(2))


def test_pgd_refuses_bad_options():
    model, (x, _) = TinyNoBN(), _batch()
    t = torch.zeros(16, dtype=torch.long)
    with pytest.raises(ValueError, match="pgd_steps"):
        targeted_pgd(model, x, t, 0.01, steps=0)
    with pytest.raises(ValueError, match="pgd_step_factor"):
        targeted_pgd(model, x, t, 0.01, step_factor=float("nan"))
    with pytest.raises(ValueError, match="eps"):
        targeted_pgd(model, x, t, 1.5)


# ---------------------------------------------------------------------------------------------
# mtlat_pgd


def test_mtlat_pgd_with_one_step_is_mtlat():
    x, y = _batch()
    losses = {}
    for name, cfg in (("mtlat", MethodConfig()), ("mtlat_pgd", MethodConfig(pgd_steps=1))):
        torch.manual_seed(0)
        losses[name] = METHODS[name](TinyNoBN(), x, y, cfg, torch.Generator().manual_seed(4))
    assert torch.equal(losses["mtlat"], losses["mtlat_pgd"])


def test_mtlat_pgd_couples_bounds_and_eq6_labels():
    x, y = _batch()
    cfg = MethodConfig(pgd_steps=3, pgd_random_start=True)
    g = torch.Generator().manual_seed(1)
    x_mix1, y_mix1, x_adv, y_adv, ex = mtlat_couples(TinyNoBN(), x, y, cfg, g, attack=pgd_attack(cfg, g))
    assert x_adv.shape == (8, 3, 8, 8) and y_adv.shape == (8, 10)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert torch.all((x_adv - ex["x_mix2"]).abs().flatten(1).amax(1) <= ex["eps"] + 1e-6)
    assert torch.allclose(y_adv.sum(1), torch.ones(8))
    # eq. (6) with the drawn (final) eps of each couple, written out
    want = (1 - ex["eps"][:, None]) * ex["y_mix2"] + ex["eps"][:, None] * one_hot(ex["y_target"], 10)
    assert torch.allclose(y_adv, want)


def test_eq6_label_by_hand():
    """A couple mixed 0.7 / 0.3 from classes 2 and 5, eps = 0.02, target 7."""
    y_mix = torch.zeros(1, 10)
    y_mix[0, 2], y_mix[0, 5] = 0.7, 0.3
    y = tlat_labels(y_mix, torch.tensor([7]), torch.tensor([0.02]))
    want = torch.zeros(1, 10)
    want[0, 2], want[0, 5], want[0, 7] = 0.686, 0.294, 0.02
    assert torch.allclose(y, want) and y.sum().item() == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# manifold mixing in the models


@pytest.mark.parametrize("name", sorted(MIX_POINTS))
def test_every_layer_of_every_model_mixes_its_couples(name):
    """In eval mode (no batch coupling), lam = 1 gives the first image's logits and lam = 0 the second's."""
    torch.manual_seed(0)
    model = build_model(name).eval()
    size = 64 if name in ("resnet50", "resnext50") else 32
    x_a, x_b = torch.rand(2, 3, size, size), torch.rand(2, 3, size, size)
    with torch.no_grad():
        ref_a, ref_b = model(x_a), model(x_b)
        assert mix_layer_count(name) == 3
        for layer in range(mix_layer_count(name)):
            assert torch.allclose(manifold_forward(model, x_a, x_b, torch.ones(2), layer), ref_a, atol=1e-5)
            assert torch.allclose(manifold_forward(model, x_a, x_b, torch.zeros(2), layer), ref_b, atol=1e-5)


def test_hidden_mixing_runs_up_to_the_layer_mixes_and_continues():
    """small_cnn at layer 2 (after the second max-pool), computed by hand from its submodules."""
    torch.manual_seed(0)
    model = build_model("small_cnn").eval()
    x_a, x_b, lam = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32), torch.tensor([0.2, 0.5, 0.9])
    net, f = model.net, model.net.features
    with torch.no_grad():
        h_a, h_b = f[:8](model.normalize(x_a)), f[:8](model.normalize(x_b))
        h = lam.view(-1, 1, 1, 1) * h_a + (1 - lam.view(-1, 1, 1, 1)) * h_b
        want = net.classifier(torch.flatten(net.pool(f[8:](h)), 1))
        assert torch.allclose(manifold_forward(model, x_a, x_b, lam, 2), want, atol=1e-5)


def test_mixing_at_layer_0_is_input_mixup():
    torch.manual_seed(0)
    model = build_model("small_cnn")  # training mode: batch norm sees the mixed batch in both
    x, y = _batch(8, 32)
    lam, perm = torch.rand(8), torch.randperm(8)
    x_mix, _ = mixup(x, one_hot(y, 10), lam, perm)
    assert torch.allclose(manifold_forward(model, x, x[perm], lam, 0), model(x_mix), atol=1e-6)


def test_manifold_forward_refuses_bad_layers_and_foreign_models():
    model = build_model("small_cnn")
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match="layer: .*0 \\(the input\\) to 2"):
        manifold_forward(model, x, x, torch.ones(2), 3)
    with pytest.raises(ValueError, match="models.build_model"):
        manifold_forward(TinyNoBN(), x, x, torch.ones(2), 1)
    with pytest.raises(ValueError, match="x_b"):
        manifold_forward(model, x, x[:1], torch.ones(2), 1)


# ---------------------------------------------------------------------------------------------
# manifold_mtlat


def test_the_mixing_layer_is_drawn_from_the_allowed_set_and_each_is_reachable():
    g = torch.Generator().manual_seed(0)
    assert {draw_layer((0, 2), g) for _ in range(200)} == {0, 2}
    assert {draw_layer(MANIFOLD_LAYERS, g) for _ in range(200)} == {0, 1, 2}
    counts = torch.bincount(torch.tensor([draw_layer(MANIFOLD_LAYERS, g) for _ in range(3000)]))
    assert torch.all((counts - 1000).abs() < 120)  # uniform: 1000 +- 4 sd of a binomial(3000, 1/3)


@pytest.mark.parametrize("layers", [(0,), (1,), (2,), (0, 1, 2)])
def test_manifold_couples_bounds_labels_and_layer(layers):
    torch.manual_seed(0)
    model = build_model("small_cnn")
    x, y = _batch(16, 32)
    cfg = MethodConfig(manifold_layers=layers)
    x_a, x_b, lam, y_mix1, y_adv, layer, ex = manifold_couples(model, x, y, cfg, torch.Generator().manual_seed(3))
    assert layer in layers
    assert x_a.shape == x_b.shape == (16, 3, 32, 32) and lam.shape == (16,) and y_adv.shape == (8, 10)
    assert torch.equal(x_a[:8], x[:8])                         # the clean couples are not perturbed
    xa = x[8:]
    assert torch.all((ex["x_adv_a"] - xa).abs().flatten(1).amax(1) <= ex["eps"] + 1e-6)  # pixel space, eps
    for adv in (ex["x_adv_a"], ex["x_adv_b"]):
        assert adv.min() >= 0 and adv.max() <= 1
    assert torch.allclose(y_mix1.sum(1), torch.ones(8)) and torch.allclose(y_adv.sum(1), torch.ones(8))
    want = (1 - ex["eps"][:, None]) * ex["y_mix2"] + ex["eps"][:, None] * one_hot(ex["y_target"], 10)
    assert torch.allclose(y_adv, want)
    assert torch.all((ex["x_adv_b"] - xa[ex["perm"]]).abs().flatten(1).amax(1) <= ex["eps"] + 1e-6)


def test_manifold_mtlat_at_layer_0_moves_the_mixed_image_like_mtlat():
    """At layer 0 both images of a couple move by -eps * sign(grad at x_mix2), so the mixed input is
    M-TLAT's ``x_mix2 - eps * sign(grad)`` (away from the [0, 1] box, where clipping could differ)."""
    torch.manual_seed(0)
    model = build_model("small_cnn").eval()  # eval: the gradient does not depend on the batch layout
    x, y = _batch(16, 32)
    x = 0.1 + 0.8 * x
    cfg = MethodConfig(manifold_layers=(0,))
    _, _, lam, _, _, layer, ex = manifold_couples(model, x, y, cfg, torch.Generator().manual_seed(3))
    l2, xa = lam[8:].view(-1, 1, 1, 1), x[8:]
    x_mix2 = l2 * xa + (1 - l2) * xa[ex["perm"]]
    want = targeted_fgsm(model, x_mix2, ex["y_target"], ex["eps"])
    assert layer == 0
    assert torch.allclose(l2 * ex["x_adv_a"] + (1 - l2) * ex["x_adv_b"], want, atol=1e-5)


@pytest.mark.parametrize("name", FUTURE_METHODS)
def test_future_methods_are_deterministic_and_differentiable(name):
    x, y = _batch(16, 32)
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model("small_cnn")
        loss = METHODS[name](model, x, y, MethodConfig(), torch.Generator().manual_seed(2))
        loss.backward()
        assert torch.isfinite(loss) and model.net.classifier.weight.grad is not None
        losses.append(loss.item())
    assert losses[0] == losses[1]


# ---------------------------------------------------------------------------------------------
# options: validated once, from the command line through TrainConfig to MethodConfig


@pytest.mark.parametrize("kwargs, name", [
    ({"pgd_steps": 0}, "pgd_steps"), ({"pgd_steps": 2.0}, "pgd_steps"), ({"pgd_step_factor": 0}, "pgd_step_factor"),
    ({"pgd_step_factor": float("inf")}, "pgd_step_factor"), ({"pgd_random_start": "yes"}, "pgd_random_start"),
    ({"manifold_layers": ()}, "manifold_layers"), ({"manifold_layers": (0, 0)}, "manifold_layers"),
    ({"manifold_layers": (-1,)}, "manifold_layers"), ({"manifold_layers": (True,)}, "manifold_layers"),
])
def test_bad_options_are_refused(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MethodConfig(**kwargs)
    with pytest.raises(ValueError, match=name):
        TrainConfig(method="mtlat_pgd", **kwargs).validate()


def test_a_layer_the_model_lacks_is_refused():
    with pytest.raises(ValueError, match="manifold_layers: model 'small_cnn' mixes at layers 0 .* to 2"):
        TrainConfig(method="manifold_mtlat", model="small_cnn", manifold_layers=(0, 3)).validate()


def test_cli_options_reach_the_method_config(tmp_path, capsys):
    from mtlat_edu.cli import main
    assert main(["train", "--method", "mtlat_pgd", "--pgd-steps", "0", "--dataset", "synthetic"]) == 2
    assert "--pgd-steps: must be an integer >= 1" in capsys.readouterr().err
    assert main(["train", "--method", "manifold_mtlat", "--manifold-layers", "0", "5", "--model", "small_cnn",
                 "--dataset", "synthetic"]) == 2
    assert "--manifold-layers: model 'small_cnn' mixes at layers 0" in capsys.readouterr().err
    assert main(["train", "--method", "mtlat_pgd", "--pgd-steps", "2", "--pgd-step-factor", "1.5", "--pgd-random-start",
                 "--manifold-layers", "1", "2", "--model", "small_cnn", "--dataset", "synthetic", "--epochs", "1",
                 "--train-limit", "128", "--test-limit", "64", "--batch-size", "64", "--runs", str(tmp_path)]) == 0
    import json
    saved = json.loads(next(tmp_path.rglob("config.json")).read_text())
    assert (saved["pgd_steps"], saved["pgd_step_factor"], saved["pgd_random_start"], saved["manifold_layers"]) == \
        (2, 1.5, True, [1, 2])
    cfg = TrainConfig(pgd_steps=2, pgd_step_factor=1.5, pgd_random_start=True, manifold_layers=[1, 2]).validate()
    m = cfg.method_config(10)
    assert (m.pgd_steps, m.pgd_step_factor, m.pgd_random_start, m.manifold_layers) == (2, 1.5, True, (1, 2))


def test_a_checkpoint_saved_before_the_new_options_still_resumes(tmp_path):
    """Runs trained before these options existed resume: a missing field counts as its default."""
    from mtlat_edu.core import io as mio
    cfg = TrainConfig(method="mtlat", model="small_cnn", dataset="synthetic", epochs=2, batch_size=64,
                      train_limit=128, test_limit=64)
    fit(cfg, tmp_path, progress=False, stop_after=1)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    for k in ("pgd_steps", "pgd_step_factor", "pgd_random_start", "manifold_layers"):
        del state["config"][k]
    mio.save_torch(tmp_path / "checkpoint.pt", state)
    assert len(fit(cfg, tmp_path, progress=False).history) == 2
    with pytest.raises(ValueError, match="different run"):
        fit(TrainConfig(**{**cfg.__dict__, "epochs": 2, "pgd_steps": 5}), tmp_path, progress=False)


@pytest.mark.parametrize("name", FUTURE_METHODS)
def test_future_methods_learn_the_generated_dataset(name):
    """The same check as the paper's rows (tests/test_methods.py), on the two new methods."""
    import test_methods
    test_methods.test_each_method_learns_the_generated_dataset(name)


# ---------------------------------------------------------------------------------------------
# notebook 10: the panels and the comparison over seeds


def test_pgd_steps_panel_starts_from_fgsm_and_counts_steps():
    pytest.importorskip("ipywidgets")
    from mtlat_edu.course import widgets
    torch.manual_seed(0)
    model = build_model("small_cnn").eval()
    x = torch.rand(3, 32, 32)
    panel = widgets.pgd_steps_panel(model, x, 1, [str(k) for k in range(10)], eps=0.03, steps=3, max_steps=4)
    r = panel.set(steps=1)
    assert torch.equal(r["x_adv"], targeted_fgsm(model, x[None], torch.tensor([r["target"]]), 0.03)[0])
    r = panel.set(steps=4)
    assert r["ks"] == [1, 2, 3, 4] and r["p_target"].shape == (4,)
    assert float(r["delta"].abs().max()) <= 0.03 + 1e-6


def test_manifold_panel_mixes_at_the_chosen_layer():
    pytest.importorskip("ipywidgets")
    from mtlat_edu.course import widgets
    torch.manual_seed(0)
    model = build_model("small_cnn").eval()
    x1, x2 = torch.rand(3, 32, 32), torch.rand(3, 32, 32)
    panel = widgets.manifold_panel(model, x1, 1, x2, 2, [str(k) for k in range(10)])
    assert panel.controls["layer"].max == 2
    r = panel.set(layer=2, lam=1.0)
    assert torch.allclose(r["probs"], widgets.predict(model, x1[None])[0], atol=1e-5)
    want = torch.softmax(manifold_forward(model, x1[None], x2[None], torch.tensor([0.3]), 1), 1)[0]
    assert torch.allclose(panel.set(layer=1, lam=0.3)["probs"], want, atol=1e-6)
    assert set(r["curves"]) == {0, 1, 2} and r["curves"][0].shape == (21, 10)


def test_comparison_over_seeds_by_hand(tmp_path):
    import pandas as pd
    from mtlat_edu.benchmark.comparison import load_comparison, read_bench_step, write_comparison
    for k, (a, b) in enumerate([(0.8, 0.6), (0.9, 0.7), (1.0, 0.8)]):
        t = pd.DataFrame({"clean": [70.0 + k, 60.0], "fog": [a, b], "snow": [a, b + 0.1], "pgd": [0.2, 0.1]},
                         index=pd.Index(["mtlat", "new"], name="model"))
        (tmp_path / f"seed{k}").mkdir()
        t.to_csv(tmp_path / f"seed{k}" / "scores.csv")
    (tmp_path / "bench_step_small_cnn.txt").write_text(
        "model small_cnn, batch 128\nmethod          s/step     img/s   ratio\nstandard        0.5000     256.0   1.00x\n"
        "mtlat_pgd       1.0000     128.0   2.00x\n")
    assert read_bench_step(tmp_path / "bench_step_small_cnn.txt")["methods"]["mtlat_pgd"]["ratio"] == 2.0
    rep = write_comparison(tmp_path, reference="mtlat")
    assert rep["columns"] == ["clean", "corruptions_R", "white_box_R"]
    assert rep["values"]["mtlat"]["corruptions_R"] == pytest.approx([0.8, 0.9, 1.0])
    assert rep["values"]["new"]["corruptions_R"] == pytest.approx([0.65, 0.75, 0.85])  # (0.6 + 0.7) / 2, ...
    assert rep["stats"]["mtlat"]["clean"]["mean"] == pytest.approx(71.0)
    assert rep["stats"]["mtlat"]["clean"]["std"] == pytest.approx(1.0)
    d = rep["vs_reference"]["new"]["corruptions_R"]
    assert d["diff"] == pytest.approx(-0.15) and d["se"] == pytest.approx((2 * 0.01 / 3) ** 0.5)
    assert d["verdict"] == "within_noise"  # |diff| 0.15 < 2 SE = 0.163
    c = rep["vs_reference"]["new"]["clean"]
    assert c["diff"] == pytest.approx(-11.0) and c["verdict"] == "fails"  # 2 SE = 2 sqrt(1/3) = 1.15
    assert load_comparison(tmp_path)["bench_step"][0]["methods"]["standard"]["seconds_per_step"] == 0.5
    md = (tmp_path / "comparison.md").read_text()
    assert "| new − mtlat | -11.00 (2 SE 1.15) worse |" in md and "2.00x" in md
