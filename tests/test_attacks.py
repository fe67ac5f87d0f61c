"""Tests of mtlat_edu.robustness.attacks: the five attacks of the paper's benchmark (section 4.1, Table 1c).

Behavioural tests run on a small CNN trained here for a few seconds on the generated dataset
(module-scoped fixture), plus a second one, trained from another seed, as black-box surrogate.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtlat_edu.robustness import attacks as A
from mtlat_edu.robustness import measure as M
from mtlat_edu.paper.adversarial import fgsm, least_likely_targets
from mtlat_edu.data import load_dataset
from mtlat_edu.models import NormalizedModel, SmallCNN

N_TEST = 100


def _train_small_cnn(seed: int, epochs: int = 6) -> torch.nn.Module:
    """A width-16 small CNN (the ``small_cnn`` architecture at half width), Adam, a few epochs."""
    torch.manual_seed(seed)
    train = load_dataset("synthetic", "train")
    model = NormalizedModel(SmallCNN(10, width=16))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(train), generator=g)
        for i in range(0, len(train), 64):
            idx = perm[i:i + 64]
            loss = F.cross_entropy(model(train.float_images(idx)), train.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return _train_small_cnn(0)


@pytest.fixture(scope="module")
def surrogate():
    return _train_small_cnn(1)


@pytest.fixture(scope="module")
def test_set():
    data = load_dataset("synthetic", "test", limit=N_TEST)
    return data.float_images(), data.labels


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(dim=1) == y).float().mean().item()


class Shifted(torch.nn.Module):
    """``model`` with every logit moved by ``shift``: same predictions and softmax, negative logits."""

    def __init__(self, model, shift: float):
        super().__init__()
        self.model, self.shift = model, shift

    def forward(self, x):
        return self.model(x) + self.shift


def test_fixture_model_learns(model, surrogate, test_set):
    x, y = test_set
    assert accuracy(model, x, y) > 0.8
    assert accuracy(surrogate, x, y) > 0.8


# ---------------------------------------------------------------------------------------------
# bounds


@pytest.mark.parametrize("name,fn,eps", [
    ("pgd", A.pgd, 0.04), ("pgd", A.pgd, 0.1), ("pgd_ll", A.pgd_ll, 0.04), ("mi_fgsm", A.mi_fgsm, 0.08),
])
def test_linf_attacks_stay_in_ball_and_box(model, test_set, name, fn, eps):
    x, y = test_set[0][:32], test_set[1][:32]
    assert x.min() == 0 and x.max() == 1  # the box constraint is active on these images
    g = torch.Generator().manual_seed(0)
    kw = {"generator": g} if name.startswith("pgd") else {}
    x_adv = fn(model, x, y, eps=eps, **kw)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert (x_adv - x).abs().max().item() <= eps + 1e-6
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0
    assert (x_adv - x).abs().max().item() > 0.5 * eps  # and it did move


def test_cw_output_in_box(model, test_set):
    x, y = test_set[0][:32], test_set[1][:32]
    x_adv = A.cw_l2(model, x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0


# ---------------------------------------------------------------------------------------------
# strength


@pytest.mark.parametrize("eps", [0.02, 0.04])
def test_pgd_at_least_as_strong_as_fgsm(model, test_set, eps):
    x, y = test_set
    g = torch.Generator().manual_seed(0)
    clean = accuracy(model, x, y)
    acc_fgsm = accuracy(model, fgsm(model, x, y, eps), y)
    acc_pgd = accuracy(model, A.pgd(model, x, y, eps=eps, generator=g), y)
    assert acc_fgsm < clean
    assert acc_pgd <= acc_fgsm


def test_pgd_accuracy_non_increasing_in_eps(model, test_set):
    x, y = test_set
    accs = [accuracy(model, A.pgd(model, x, y, eps=e, generator=torch.Generator().manual_seed(0)), y)
            for e in (0.0, 0.01, 0.03, 0.06)]
    assert accs[0] == accuracy(model, x, y)
    assert all(a >= b for a, b in zip(accs, accs[1:])), accs
    assert accs[-1] < accs[0] - 0.5


def test_pgd_ll_hits_least_likely_target(model, test_set):
    x, y = test_set
    target = least_likely_targets(model, x)
    x_adv = A.pgd_ll(model, x, eps=0.04, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        hit = (model(x_adv).argmax(dim=1) == target).float().mean().item()
    assert hit > 0.4  # chance is 1/10


def test_cw_lowers_accuracy(model, test_set):
    x, y = test_set[0][:50], test_set[1][:50]
    x_adv = A.cw_l2(model, x, y)
    assert accuracy(model, x_adv, y) < accuracy(model, x, y) - 0.5


def test_cw_margin_with_negative_logits():
    logits = torch.tensor([[-5.0, -3.0, -10.0], [-5.0, -3.0, -10.0], [2.0, -1.0, -4.0]])
    y = torch.tensor([0, 1, 0])
    # true max over the other classes: -3, -5, -1 (a (1 - onehot) product would give 0, 0, -1)
    assert A.cw_margin(logits, y, confidence=50.0).tolist() == [-2.0, 2.0, 3.0]
    assert A.cw_margin(logits, y, confidence=1.0).tolist() == [-1.0, 2.0, 3.0]


def test_cw_attacks_model_with_all_negative_logits(model, test_set):
    """Shifting every logit by -1000 changes neither the predictions nor C&W's objective; an
    implementation taking the "other" max as ``max((1 - onehot) * Z)`` sees 0 there, ``f`` stuck at
    -kappa, no gradient, and leaves the accuracy at its clean value."""
    x, y = test_set[0][:50], test_set[1][:50]
    shifted = Shifted(model, -1000.0)
    with torch.no_grad():
        assert shifted(x).max().item() < 0
    clean = accuracy(shifted, x, y)
    assert accuracy(shifted, A.cw_l2(shifted, x, y), y) < clean - 0.5


def test_mi_fgsm_transfers_black_box(model, surrogate, test_set):
    x, y = test_set
    clean = accuracy(model, x, y)
    x_adv = A.run_attack("mi_fgsm_0.08", model, x, y, surrogate=surrogate)
    assert (x_adv - x).abs().max().item() <= 0.08 + 1e-6
    assert accuracy(surrogate, x_adv, y) < 0.2          # white-box on the surrogate
    assert accuracy(model, x_adv, y) < clean - 0.3     # transferred to the attacked model


def test_one_step_limits_equal_fgsm(model, test_set):
    x, y = test_set[0][:16], test_set[1][:16]
    ref = fgsm(model, x, y, 0.03)
    assert torch.equal(A.pgd(model, x, y, eps=0.03, steps=1, step_size=0.03, random_start=False), ref)
    assert torch.equal(A.mi_fgsm(model, x, y, eps=0.03, steps=1), ref)


# ---------------------------------------------------------------------------------------------
# determinism, model state


def test_seeded_generator_is_deterministic(model, test_set):
    x, y = test_set[0][:16], test_set[1][:16]
    a = A.pgd(model, x, y, generator=torch.Generator().manual_seed(3))
    b = A.pgd(model, x, y, generator=torch.Generator().manual_seed(3))
    c = A.pgd(model, x, y, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    a = A.run_attack("pgd_ll", model, x, y, generator=torch.Generator().manual_seed(3))
    b = A.run_attack("pgd_ll", model, x, y, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.equal(A.cw_l2(model, x, y, steps=5), A.cw_l2(model, x, y, steps=5))


@pytest.mark.parametrize("name", list(A.ATTACKS))
def test_mode_restored_and_no_parameter_gradients(model, surrogate, test_set, name):
    x, y = test_set[0][:4], test_set[1][:4]
    frozen = model.normalize                 # a submodule left in eval mode keeps it
    model.train()
    frozen.eval()
    surrogate.train()
    flags = [p.requires_grad for p in model.parameters()]
    try:
        with torch.no_grad():                # attacks enable gradients themselves
            A.run_attack(name, model, x, y, surrogate=surrogate, generator=torch.Generator().manual_seed(0))
        assert model.training and model.net.training and not frozen.training
        assert surrogate.training
        assert [p.requires_grad for p in model.parameters()] == flags
        assert all(p.grad is None for p in model.parameters())
        assert all(p.grad is None for p in surrogate.parameters())
    finally:
        model.eval()
        surrogate.eval()


# ---------------------------------------------------------------------------------------------
# registry, runner, batched accuracy


def test_registry_matches_paper_columns():
    assert A.paper_attacks() == ("pgd", "pgd_ll", "cw_l2", "mi_fgsm_0.04", "mi_fgsm_0.08")
    assert list(A.ATTACKS) == [*A.paper_attacks(), "cw_l2_kappa50", "cw_l2_within0.5"]
    assert list(A.DISPLAY) == list(A.ATTACKS)
    assert [A.ATTACKS[k].black_box for k in A.ATTACKS] == [False, False, False, True, True, False, False]
    assert A.ATTACKS["cw_l2_within0.5"].rule_kwargs == {"rule": "within", "bound": 0.5}
    assert A.ATTACKS["cw_l2_kappa50"].kwargs == A.ATTACKS["cw_l2"].kwargs   # the same run
    assert A.ATTACKS["cw_l2"].kwargs["steps"] == 40 and A.ATTACKS["cw_l2"].kwargs["confidence"] == 50
    assert A.ATTACKS["mi_fgsm_0.08"].kwargs["eps"] == 0.08
    with pytest.raises(TypeError):
        A.ATTACKS["pgd"].kwargs["eps"] = 0.5  # read-only


def test_attack_accuracy_batched_uint8_and_float(model, surrogate):
    data = load_dataset("synthetic", "test", limit=40)
    x = data.float_images()
    whole = M.attack_accuracy("mi_fgsm_0.04", model, data.images, data.labels, surrogate=surrogate, batch_size=64)
    batched = M.attack_accuracy("mi_fgsm_0.04", model, x, data.labels, surrogate=surrogate, batch_size=16)
    direct = accuracy(model, A.mi_fgsm(surrogate, x, data.labels, eps=0.04), data.labels)
    assert abs(whole - direct) <= 1 / 40 and abs(batched - direct) <= 1 / 40
    assert 0.0 <= whole <= 1.0
    pgd_acc = M.attack_accuracy("pgd", model, data.images, data.labels, batch_size=16,
                                generator=torch.Generator().manual_seed(0))
    assert pgd_acc < accuracy(model, x, data.labels)


# ---------------------------------------------------------------------------------------------
# errors


def test_bad_inputs_raise(model, test_set):
    x, y = test_set[0][:2], test_set[1][:2]
    with pytest.raises(ValueError, match=r"eps.*\[0\.0, 1\.0\]"):
        A.pgd(model, x, y, eps=1.5)
    with pytest.raises(ValueError, match="eps"):
        A.mi_fgsm(model, x, y, eps=-0.01)
    with pytest.raises(ValueError, match="steps.*>= 1"):
        A.pgd(model, x, y, steps=0)
    with pytest.raises(ValueError, match="steps"):
        A.cw_l2(model, x, y, steps=0)
    with pytest.raises(ValueError, match="step_size"):
        A.pgd(model, x, y, step_size=0.0)
    with pytest.raises(ValueError, match="c: must be > 0"):
        A.cw_l2(model, x, y, c=0.0)
    with pytest.raises(ValueError, match=r"x: values must lie in \[0, 1\]"):
        A.pgd(model, x * 2.0 + 0.1, y)
    with pytest.raises(ValueError, match="NCHW"):
        A.pgd(model, x[0], y)
    with pytest.raises(TypeError, match="float"):           # the package's convention for dtypes
        A.pgd(model, (x * 255).to(torch.uint8), y)
    with pytest.raises(ValueError, match="y:"):
        A.pgd(model, x, y[:1])
    with pytest.raises(ValueError, match=r"y: class indices must lie in \[0, 9\]"):
        A.pgd(model, x, torch.tensor([0, 12]))
    with pytest.raises(ValueError, match="valid names: pgd, pgd_ll, cw_l2, mi_fgsm_0.04, mi_fgsm_0.08, cw_l2_kappa50"):
        A.run_attack("fgsm", model, x, y)
    with pytest.raises(ValueError, match="valid names"):
        M.attack_accuracy("nope", model, x, y)
    with pytest.raises(ValueError, match="batch_size"):
        M.attack_accuracy("pgd", model, x, y, batch_size=0)


@pytest.mark.parametrize("name", ["mi_fgsm_0.04", "mi_fgsm_0.08"])
def test_black_box_without_surrogate_raises(model, test_set, name):
    x, y = test_set[0][:2], test_set[1][:2]
    with pytest.raises(ValueError, match="surrogate"):
        A.run_attack(name, model, x, y)
    with pytest.raises(ValueError, match="surrogate"):
        M.attack_accuracy(name, model, x, y)


# ---------------------------------------------------------------------------------------------
# CW's success rules: one run, three columns (docs/attacks.md)


def test_cw_rules_on_a_hand_made_run():
    clean = torch.zeros(3, 1, 1, 1)
    best = torch.full((3, 1, 1, 1), 0.5)
    best_kappa = torch.full((3, 1, 1, 1), 0.9)
    run = A.CWRun(clean=clean, best=best, l2=torch.tensor([0.3, 0.7, float("inf")]),
                  margin=torch.tensor([60.0, 10.0, -5.0]), best_kappa=best_kappa, kappa=50.0)
    assert torch.equal(A.CW_RULES["any"](run), best)                                     # the cw_l2 column
    assert A.CW_RULES["kappa"](run).flatten().tolist() == pytest.approx([0.9, 0.0, 0.0])             # margin 60 > 50 only
    assert A.CW_RULES["within"](run, bound=0.5).flatten().tolist() == [0.5, 0.0, 0.0]   # L2 0.3 <= 0.5 only
    assert A.CW_RULES["within"](run, bound=1.0).flatten().tolist() == [0.5, 0.5, 0.0]   # inf: never misclassified
    run.margin = torch.tensor([50.0, 50.5, 0.0])                                          # C&W: strictly beyond kappa
    assert A.CW_RULES["kappa"](run).flatten().tolist() == pytest.approx([0.0, 0.9, 0.0])


def test_cw_run_records_what_the_rules_need(model, test_set):
    x, y = test_set[0][:16], test_set[1][:16]
    run = A.cw_l2_run(model, x, y, steps=8)
    assert torch.equal(run.best, A.cw_l2(model, x, y, steps=8))       # the cw_l2 column is unchanged
    with torch.no_grad():
        logits = model(run.best)
    wrong = logits.argmax(1) != y
    dist = (run.best - x).flatten(1).norm(dim=1)
    assert torch.allclose(run.l2[wrong], dist[wrong], atol=1e-5) and torch.isinf(run.l2[~wrong]).all()
    other = logits.masked_fill(F.one_hot(y, 10).bool(), float("-inf")).amax(1)
    assert (run.margin >= other - logits.gather(1, y[:, None]).squeeze(1) - 1e-5).all()  # the best iterate's margin
    # a model with logits scaled by 1000 reaches C&W's margin of 50 wherever it is misclassified
    scaled = torch.nn.Sequential(model, torch.nn.Identity())
    scaled[1].forward = lambda z: 1000 * z
    big = A.cw_l2_run(scaled, x, y, steps=8)
    kappa = A.CW_RULES["kappa"](big)
    hit = big.margin > 50
    assert hit.any()
    with torch.no_grad():
        assert (scaled(kappa[hit]).argmax(1) != y[hit]).all() and torch.equal(kappa[~hit], x[~hit])


def test_readings_cost_no_extra_attack(model, monkeypatch):
    data = load_dataset("synthetic", "test", limit=24)
    calls = []
    run = A.cw_l2_run
    monkeypatch.setattr(A, "cw_l2_run", lambda *a, **k: calls.append(1) or run(*a, **k))
    names = ("cw_l2", "cw_l2_kappa50", "cw_l2_within0.5")
    counts = M.measure_attack_columns([model], data, names, batch_size=12)
    assert len(calls) == 2                                                   # one run per batch, three columns
    x, y = data.float_images(), data.labels
    for name in names:                                                      # each column alone: the same count
        assert counts[name] == [M.count_correct(model, A.run_attack(name, model, x[:12], y[:12]), y[:12]).item()
                                + M.count_correct(model, A.run_attack(name, model, x[12:], y[12:]), y[12:]).item()]
    assert M.measure_models([model], data, "cw_l2", batch_size=12) == counts["cw_l2"]
    with pytest.raises(ValueError, match="one attack's run"):
        A.run_attacks(("cw_l2", "pgd"), model, x, y)


def test_logit_gap_by_hand():
    from mtlat_edu.data import ImageData

    class Fixed(torch.nn.Module):
        def forward(self, x):   # logits [3, 1, 0] then [0, 5, 4.5]: top-1 minus top-2 = 2 and 0.5
            return torch.tensor([[3.0, 1.0, 0.0], [0.0, 5.0, 4.5]])[: x.shape[0]]

    data = ImageData(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]), ["a", "b", "c"])
    assert M.logit_gap(Fixed(), data, batch_size=2) == pytest.approx(1.25)
