"""The training-method registry: Algorithm 1's structure, batch splitting, and each method learning."""
import pytest
import torch
from torch import nn

from mtlat_edu.paper.labels import one_hot, soft_cross_entropy
from mtlat_edu.paper.methods import ADVERSARIAL, METHODS, MethodConfig, get_method, mtlat_couples
from mtlat_edu.training import TrainConfig, fit

PAPER_ROWS = ("standard", "mixup", "fgsm", "target_fgsm", "ls", "tlat", "iat", "mtlat")


class TinyNoBN(nn.Module):
    """No batch norm, so a joint forward over two parts equals two separate forwards."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3 * 8 * 8, 10)

    def forward(self, x):
        return self.lin(x.flatten(1))


def test_registry_has_every_row_of_tables_1_to_3():
    assert set(PAPER_ROWS) <= set(METHODS)
    with pytest.raises(ValueError, match="valid names: standard"):
        get_method("nope")


def test_mtlat_step_follows_algorithm_1():
    torch.manual_seed(0)
    model = TinyNoBN()
    x = torch.rand(16, 3, 8, 8)
    y = torch.arange(16) % 10
    cfg = MethodConfig(num_classes=10)
    x_mix1, y_mix1, x_mtlat, y_mtlat, ex = mtlat_couples(model, x, y, cfg, torch.Generator().manual_seed(1))
    assert x_mix1.shape == x_mtlat.shape == (8, 3, 8, 8)
    # the clean couples mix only the first half, the adversarial ones only the second half
    first, second = set(y[:8].tolist()), set(y[8:].tolist())
    assert set(torch.nonzero(y_mix1)[:, 1].tolist()) <= first
    assert set(torch.nonzero(ex["y_mix2"])[:, 1].tolist()) <= second
    # eps ~ U[0, 0.025]; x_mtlat stays within eps of x_mix2 and in [0, 1]
    eps = ex["eps"]
    assert eps.min() >= 0 and eps.max() <= 0.025
    assert torch.all((x_mtlat - ex["x_mix2"]).abs().flatten(1).amax(1) <= eps + 1e-6)
    assert x_mtlat.min() >= 0 and x_mtlat.max() <= 1
    # eq. (6): y_mtlat = (1 - eps) * y_mix2 + eps * y_target
    expected = (1 - eps[:, None]) * ex["y_mix2"] + eps[:, None] * one_hot(ex["y_target"], 10)
    assert torch.allclose(y_mtlat, expected)
    assert torch.allclose(y_mtlat.sum(1), torch.ones(8))


def test_mtlat_loss_is_the_sum_of_its_two_terms():
    torch.manual_seed(0)
    model = TinyNoBN()
    x, y = torch.rand(16, 3, 8, 8), torch.arange(16) % 10
    cfg = MethodConfig(num_classes=10)
    loss = METHODS["mtlat"](model, x, y, cfg, torch.Generator().manual_seed(5))
    x_mix1, y_mix1, x_mtlat, y_mtlat, _ = mtlat_couples(model, x, y, cfg, torch.Generator().manual_seed(5))
    loss1 = soft_cross_entropy(model(x_mix1), y_mix1)
    loss2 = soft_cross_entropy(model(x_mtlat), y_mtlat)
    assert loss.item() == pytest.approx((loss1 + loss2).item(), rel=1e-5)


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_adversarial_methods_need_an_even_batch(name):
    model = TinyNoBN()
    with pytest.raises(ValueError, match="batch_size: .* even"):
        METHODS[name](model, torch.rand(5, 3, 8, 8), torch.arange(5), MethodConfig(), None)


@pytest.mark.parametrize("name", PAPER_ROWS)
def test_every_method_is_deterministic_and_differentiable(name):
    x, y = torch.rand(8, 3, 8, 8), torch.arange(8) % 10
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        model = TinyNoBN()
        loss = METHODS[name](model, x, y, MethodConfig(), torch.Generator().manual_seed(2))
        loss.backward()
        assert model.lin.weight.grad is not None and torch.isfinite(loss)
        losses.append(loss.item())
    assert losses[0] == losses[1]


def test_bad_method_config():
    with pytest.raises(ValueError, match="alpha"):
        MethodConfig(alpha=0)
    with pytest.raises(ValueError, match="eps_max"):
        MethodConfig(eps_max=1.5)
    with pytest.raises(ValueError, match="target"):
        MethodConfig(target="farthest")


@pytest.mark.parametrize("name", PAPER_ROWS)
def test_each_method_learns_the_generated_dataset(name):
    cfg = TrainConfig(method=name, model="small_cnn", dataset="synthetic", epochs=2, batch_size=64,
                      train_limit=1200, test_limit=300)
    res = fit(cfg, progress=False)
    assert res.test_acc > 0.25, f"{name}: test accuracy {res.test_acc} is near chance (0.10)"


def test_iat_targeted_is_iat_with_the_targeted_step_of_mtlat():
    """``iat_targeted`` = Mixup clean half + (targeted FGSM towards a random target, then Mixup with
    plain Mixup labels), drawn in that order from the generator: rebuilt here by hand, the loss is
    the same number, and the perturbed images moved towards the drawn targets."""
    from mtlat_edu.paper.adversarial import random_targets, sample_eps, targeted_fgsm
    from mtlat_edu.paper.methods import two_part_loss
    from mtlat_edu.paper.mixup import random_mixup
    torch.manual_seed(0)
    model = TinyNoBN()
    x, y = torch.rand(16, 3, 8, 8), torch.arange(16) % 10
    cfg = MethodConfig(num_classes=10)
    loss = get_method("iat_targeted")(model, x, y, cfg, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    x_mix1, y_mix1, _ = random_mixup(x[:8], one_hot(y[:8], 10), 0.4, generator=g)
    eps = sample_eps(8, 0.025, generator=g)
    y_t = random_targets(y[8:], 10, generator=g)
    x_adv = targeted_fgsm(model, x[8:], y_t, eps)
    x_mix2, y_mix2, _ = random_mixup(x_adv, one_hot(y[8:], 10), 0.4, generator=g)
    assert torch.allclose(loss, two_part_loss(model, x_mix1, y_mix1, x_mix2, y_mix2))
    ce = nn.functional.cross_entropy
    assert ce(model(x_adv), y_t, reduction="none").le(ce(model(x[8:]), y_t, reduction="none") + 1e-6).all()
    assert "iat_targeted" in ADVERSARIAL


# ---------------------------------------------------------------------------------------------
# the target rule that excludes the couple's classes (random_unmixed; docs/claims.md, "Target rule")


def test_random_allowed_targets_by_hand():
    from mtlat_edu.paper.adversarial import random_allowed_targets
    allowed = torch.tensor([[False, True, False, True, True], [True, False, False, False, False],
                            [True, True, True, True, True]])
    t = random_allowed_targets(allowed, generator=torch.Generator().manual_seed(5))
    u = torch.rand(3, generator=torch.Generator().manual_seed(5))   # the one uniform draw per row
    allowed_classes = [[1, 3, 4], [0], [0, 1, 2, 3, 4]]
    assert t.tolist() == [row[int(v * len(row))] for row, v in zip(allowed_classes, u.tolist())]


def test_unmixed_targets_never_hit_the_couple_and_are_uniform_over_the_rest():
    from mtlat_edu.paper.adversarial import TARGET_SELECTION
    n, b = 10, 9000
    y = torch.full((b,), 2)
    mixed = torch.zeros(b, n)
    mixed[:, 2], mixed[:, 7] = 0.3, 0.7                  # every couple: classes 2 and 7
    mixed[b // 2:, 7], mixed[b // 2:, 2] = 0.0, 1.0      # second half: both images of class 2
    rule = TARGET_SELECTION["random_unmixed"]
    t = rule(None, None, y, n, torch.Generator().manual_seed(0), mixed=mixed)
    first, second = torch.bincount(t[:b // 2], minlength=n), torch.bincount(t[b // 2:], minlength=n)
    assert first[2] == first[7] == 0 and second[2] == 0                        # never a class of the couple
    assert (first[[0, 1, 3, 4, 5, 6, 8, 9]] > 0).all() and (second[[0, 1, 3, 4, 5, 6, 7, 8, 9]] > 0).all()
    # uniform: 4500 / 8 = 562.5 and 4500 / 9 = 500 per allowed class, sd about 22: within 5 sd
    assert ((first[first > 0] - 562.5).abs() < 115).all() and ((second[second > 0] - 500).abs() < 110).all()
    # without Mixup (mixed None) the rule excludes the true class only
    t = rule(None, None, torch.arange(b) % n, n, torch.Generator().manual_seed(1))
    assert not (t == torch.arange(b) % n).any() and len(set(t.tolist())) == n


def test_default_random_targets_draw_as_before():
    """target="random" draws y_target ~ U{0..N-1} with one randint after Algorithm 1's lambda, pairing and
    eps draws: the very numbers of the rule before random_unmixed existed (the running runs stay comparable)."""
    from mtlat_edu.paper.adversarial import sample_eps
    from mtlat_edu.paper.mixup import random_pairs
    model, x, y = TinyNoBN(), torch.rand(16, 3, 8, 8), torch.arange(16) % 10
    cfg = MethodConfig(num_classes=10)
    ex = mtlat_couples(model, x, y, cfg, torch.Generator().manual_seed(4))[4]
    g = torch.Generator().manual_seed(4)
    random_pairs(8, cfg.alpha, generator=g), random_pairs(8, cfg.alpha, generator=g), sample_eps(8, generator=g)
    assert torch.equal(ex["y_target"], torch.randint(0, 10, (8,), generator=g))


@pytest.mark.parametrize("name", ["mtlat", "mtlat_pgd", "manifold_mtlat", "iat_targeted", "tlat"])
def test_unmixed_rule_in_the_methods(name):
    from mtlat_edu.paper import methods as Mth
    from mtlat_edu.models import build_model
    torch.manual_seed(0)
    model = build_model("small_cnn", 10)
    x, y = torch.rand(64, 3, 32, 32), torch.arange(64) % 10
    cfg = MethodConfig(num_classes=10, target="random_unmixed")
    seen = []
    rule = Mth.TARGET_SELECTION["random_unmixed"]
    Mth.TARGET_SELECTION["random_unmixed"] = lambda *a, **k: seen.append((a, k, rule(*a, **k))) or seen[-1][2]
    try:
        loss = get_method(name)(model, x, y, cfg, torch.Generator().manual_seed(2))
    finally:
        Mth.TARGET_SELECTION["random_unmixed"] = rule
    assert torch.isfinite(loss) and len(seen) == 1
    (args, kwargs, t) = seen[0]
    ya, mixed = args[2], kwargs["mixed"]
    if name == "tlat":   # no Mixup: the true class is the one excluded
        assert mixed is None and not (t == ya).any()
    else:                # the couple's Mixup labels: neither class of the couple is ever the target
        assert mixed.shape == (32, 10) and (mixed.gather(1, t[:, None]) == 0).all()
        assert (mixed > 0).sum(1).max() == 2


def test_target_rule_flows_through_config_and_cli():
    from mtlat_edu import cli
    assert TrainConfig(target="random_unmixed").validate().method_config(10).target == "random_unmixed"
    parser = cli.build_parser()
    assert parser.parse_args(["train", "--target", "random_unmixed"]).target == "random_unmixed"


def test_the_couples_are_named_tuples():
    """``mtlat_couples`` and ``manifold_couples`` unpack as before (notebooks 04 and 10) and name their fields."""
    from mtlat_edu.models import build_model
    from mtlat_edu.paper.methods import ManifoldCouples, MtlatCouples, manifold_couples
    torch.manual_seed(0)
    model = build_model("small_cnn")
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    cfg = MethodConfig(num_classes=10)
    c = mtlat_couples(model, x, y, cfg, torch.Generator().manual_seed(1))
    assert isinstance(c, MtlatCouples) and c._fields == ("x_mix1", "y_mix1", "x_mtlat", "y_mtlat", "extras")
    x_mix1, y_mix1, x_mtlat, y_mtlat, extras = c
    assert c.x_mtlat is x_mtlat and c.extras is extras and c[4] is extras
    m = manifold_couples(model.train(), x, y, cfg, torch.Generator().manual_seed(1))
    assert isinstance(m, ManifoldCouples) and len(m) == 7
    x_a, x_b, lam, y_mix1, y_adv, layer, ex = m
    assert m.layer == layer and m.y_mtlat is y_adv and m.lam is lam
