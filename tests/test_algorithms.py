"""Hand-computed expectations for the paper's formulas: eq. (1), (4), (5), section 5.4's LS."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtlat_edu.paper.adversarial import (fgsm, least_likely_targets, random_targets, sample_eps,
                                   targeted_fgsm)
from mtlat_edu.paper.labels import one_hot, smooth_labels, soft_cross_entropy, tlat_labels
from mtlat_edu.paper.mixup import mixup, random_mixup, sample_lambda


def test_mixup_of_known_tensors():
    x = torch.stack([torch.zeros(3, 2, 2), torch.ones(3, 2, 2)])
    y = one_hot(torch.tensor([0, 2]), 3)
    x_mix, y_mix = mixup(x, y, torch.tensor([0.3, 0.8]), torch.tensor([1, 0]))
    # eq. (1): sample 0 = 0.3 * x0 + 0.7 * x1 = 0.7; sample 1 = 0.8 * x1 + 0.2 * x0 = 0.8
    assert torch.allclose(x_mix[0], torch.full((3, 2, 2), 0.7))
    assert torch.allclose(x_mix[1], torch.full((3, 2, 2), 0.8))
    assert torch.allclose(y_mix, torch.tensor([[0.3, 0.0, 0.7], [0.2, 0.0, 0.8]]))


def test_mixup_scalar_lambda_and_identity_perm():
    x = torch.rand(4, 3, 5, 5)
    y = one_hot(torch.tensor([0, 1, 2, 3]), 4)
    x_mix, y_mix = mixup(x, y, 0.25, torch.arange(4))
    assert torch.allclose(x_mix, x) and torch.allclose(y_mix, y)


def test_sample_lambda_is_beta_alpha_alpha():
    g = torch.Generator().manual_seed(0)
    lam = sample_lambda(40000, 0.4, generator=g)
    # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)) = 0.1389 for a = 0.4
    assert lam.min() >= 0 and lam.max() <= 1
    assert abs(lam.mean().item() - 0.5) < 0.01
    assert abs(lam.var().item() - 1 / (4 * 1.8)) < 0.005
    # with a large alpha the ratios concentrate around 1/2: variance 1 / (4 * 41) for a = 20
    assert abs(sample_lambda(40000, 20.0, generator=g).var().item() - 1 / 164) < 0.001


def test_sample_lambda_per_batch_and_determinism():
    a = sample_lambda(8, 0.4, per_batch=True, generator=torch.Generator().manual_seed(1))
    assert torch.all(a == a[0])
    b1 = sample_lambda(8, 0.4, generator=torch.Generator().manual_seed(3))
    b2 = sample_lambda(8, 0.4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(b1, b2)


def test_random_mixup_keeps_range_and_label_mass():
    x = torch.rand(16, 3, 8, 8)
    y = one_hot(torch.randint(0, 10, (16,)), 10)
    x_mix, y_mix, lam = random_mixup(x, y, 0.4, generator=torch.Generator().manual_seed(0))
    assert x_mix.min() >= 0 and x_mix.max() <= 1
    assert torch.allclose(y_mix.sum(1), torch.ones(16))
    assert lam.shape == (16,)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_alpha_must_be_positive(bad):
    with pytest.raises(ValueError, match="alpha"):
        sample_lambda(4, bad)


def test_mixup_rejects_bad_images_and_lambda():
    y = one_hot(torch.tensor([0, 1]), 2)
    with pytest.raises(ValueError, match=r"x: values must lie in \[0, 1\]"):
        mixup(torch.full((2, 3, 4, 4), 2.0), y, 0.5, torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="4-d NCHW"):
        mixup(torch.rand(3, 4, 4), y, 0.5, torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="lam"):
        mixup(torch.rand(2, 3, 4, 4), y, 1.5, torch.tensor([1, 0]))


def test_tlat_labels_eq4():
    y = one_hot(torch.tensor([0, 1]), 3)
    out = tlat_labels(y, torch.tensor([2, 1]), torch.tensor([0.1, 0.02]))
    # (1 - eps) * y + eps * y_target: eps on the target, 1 - eps on the truth; same class keeps 1
    assert torch.allclose(out, torch.tensor([[0.9, 0.0, 0.1], [0.0, 1.0, 0.0]]))
    assert torch.allclose(out.sum(1), torch.ones(2))


def test_tlat_labels_on_mixup_labels_eq6():
    y_mix = torch.tensor([[0.7, 0.3, 0.0]])
    out = tlat_labels(y_mix, torch.tensor([2]), 0.02)
    assert torch.allclose(out, torch.tensor([[0.7 * 0.98, 0.3 * 0.98, 0.02]]))


def test_label_smoothing_section_5_4():
    out = smooth_labels(torch.tensor([1]), 4, 0.2)
    # ones -> 1 - eps = 0.8, zeros -> eps / N = 0.05
    assert torch.allclose(out, torch.tensor([[0.05, 0.8, 0.05, 0.05]]))


@pytest.mark.parametrize("fn", [lambda e: tlat_labels(one_hot(torch.tensor([0]), 2), torch.tensor([1]), e),
                                lambda e: smooth_labels(torch.tensor([0]), 2, e)])
def test_label_eps_out_of_range(fn):
    with pytest.raises(ValueError, match=r"eps: must lie in \[0.0, 1.0\]"):
        fn(1.5)


def test_soft_cross_entropy_hand_computed():
    logits = torch.tensor([[0.0, math.log(3.0)]])
    target = torch.tensor([[0.5, 0.5]])
    # softmax = (1/4, 3/4): CE = -(0.5 ln 1/4 + 0.5 ln 3/4)
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert soft_cross_entropy(logits, target).item() == pytest.approx(expected, rel=1e-6)
    logits = torch.randn(5, 7)
    y = torch.randint(0, 7, (5,))
    assert torch.allclose(soft_cross_entropy(logits, one_hot(y, 7)), F.cross_entropy(logits, y))


class TwoClassLinear(nn.Module):
    """logit_0 = sum(x), logit_1 = -sum(x): the input gradient's sign is known by hand."""

    def forward(self, x):
        s = x.flatten(1).sum(1)
        return torch.stack([s, -s], 1)


def test_targeted_fgsm_eq5_by_hand():
    x = torch.full((1, 1, 2, 2), 0.5)
    eps = 0.03
    # d/dx CE(x, target 0) = -(1 - p0) * 2 < 0 for every pixel, so x - eps * sign(grad) = x + eps
    x_adv = targeted_fgsm(TwoClassLinear(), x, torch.tensor([0]), eps)
    assert torch.allclose(x_adv, torch.full_like(x, 0.5 + eps))
    x_adv = targeted_fgsm(TwoClassLinear(), x, torch.tensor([1]), eps)
    assert torch.allclose(x_adv, torch.full_like(x, 0.5 - eps))
    # untargeted FGSM on true class 0 moves away from class 0: x - eps
    assert torch.allclose(fgsm(TwoClassLinear(), x, torch.tensor([0]), eps), torch.full_like(x, 0.5 - eps))


def test_fgsm_clips_to_unit_range_and_per_sample_eps():
    x = torch.tensor([0.99, 0.5]).view(2, 1, 1, 1).expand(2, 1, 2, 2).contiguous()
    x_adv = targeted_fgsm(TwoClassLinear(), x, torch.tensor([0, 0]), torch.tensor([0.05, 0.1]))
    assert torch.allclose(x_adv[0], torch.ones(1, 2, 2))            # 0.99 + 0.05 clipped to 1
    assert torch.allclose(x_adv[1], torch.full((1, 2, 2), 0.6))      # per-sample eps 0.1


def test_targeted_fgsm_lowers_target_loss_and_stays_in_ball(trained_small_cnn):
    model, data = trained_small_cnn
    x, y = data.float_images(slice(0, 64)), data.labels[:64]
    t = random_targets(y, 10, exclude_true=True, generator=torch.Generator().manual_seed(0))
    eps = 0.02
    x_adv = targeted_fgsm(model, x, t, eps)
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        before = F.cross_entropy(model(x), t, reduction="none")
        after = F.cross_entropy(model(x_adv), t, reduction="none")
        # untargeted FGSM raises the loss of the true class
        up = F.cross_entropy(model(fgsm(model, x, y, eps)), y) > F.cross_entropy(model(x), y)
    assert (after < before).float().mean() > 0.9
    assert up


def test_fgsm_rejects_bad_input():
    m = TwoClassLinear()
    with pytest.raises(ValueError, match="eps"):
        targeted_fgsm(m, torch.rand(1, 1, 2, 2), torch.tensor([0]), 1.5)
    with pytest.raises(ValueError, match=r"x: values must lie in \[0, 1\]"):
        fgsm(m, torch.rand(1, 1, 2, 2) + 1, torch.tensor([0]), 0.1)
    with pytest.raises(ValueError, match="y: expected 2 integer class indices"):
        fgsm(m, torch.rand(2, 1, 2, 2), torch.tensor([0]), 0.1)


def test_targets_and_eps_sampling():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (5000,), generator=g)
    t = random_targets(y, 10, generator=g)
    counts = torch.bincount(t, minlength=10).float() / 5000
    assert torch.all((counts - 0.1).abs() < 0.02)                     # uniform over all N classes
    assert (random_targets(y, 10, exclude_true=True, generator=g) != y).all()
    e = sample_eps(5000, 0.025, generator=g)
    assert e.min() >= 0 and e.max() <= 0.025 and abs(e.mean().item() - 0.0125) < 0.001
    assert sample_eps(4, 0.025, per_batch=True, generator=g).unique().numel() == 1
    with pytest.raises(ValueError, match="eps_max"):
        sample_eps(3, 2.0)


def test_least_likely_target():
    logits_model = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        logits_model.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]]))
    model = nn.Sequential(nn.Flatten(), logits_model)
    x = torch.tensor([[0.5, 0.1, 0.9, 0.0]]).view(1, 1, 2, 2)
    assert least_likely_targets(model, x).tolist() == [1]


def test_nan_images_are_out_of_range():
    y = one_hot(torch.tensor([0, 1]), 2)
    with pytest.raises(ValueError, match=r"x: values must lie in \[0, 1\]"):
        mixup(torch.full((2, 3, 4, 4), float("nan")), y, 0.5, torch.tensor([1, 0]))
