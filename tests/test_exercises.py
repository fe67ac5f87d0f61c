"""The course's exercise checker (course/exercises.py): the reference solutions pass, stubs are
"not done yet" (no error), and typical wrong answers, written here as a learner would, get the
sentence that names what is off."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtlat_edu.course import exercises as E


def _grad(model, x, y):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return g


def _hot(y, n):
    return torch.eye(n)[y]


@pytest.mark.parametrize("name", list(E.EXERCISES))
def test_reference_solution_passes_and_stub_is_not_done(name):
    ex = E.get(name)
    res = ex.check(ex.solution_fn)
    assert res.ok and res.done and "right" in res.message, res.message

    def stub(*args):
        raise NotImplementedError

    res = ex.check(stub)
    assert not res.ok and not res.done and "not done yet" in res.message
    assert not E.get(name).check(lambda *a: None).done
    assert not E.get(name).check(None).done


def test_at_least_ten_exercises_over_notebooks_02_to_05():
    assert len(E.EXERCISES) >= 10
    assert {E.EXERCISES.kind(n) for n in E.EXERCISES} == set(E.NOTEBOOKS)


def _says(name, fn, *words):
    res = E.get(name).check(fn)
    assert not res.ok and res.done, res.message
    assert "\n" not in res.message
    for w in words:
        assert w in res.message, res.message
    return res.message


def test_mixup_lambda_on_the_wrong_image():
    def my_mixup(x, y, lam, perm):
        l4, l2 = lam.view(-1, 1, 1, 1), lam.view(-1, 1)
        return (1 - l4) * x + l4 * x[perm], (1 - l2) * y + l2 * y[perm]
    _says("mixup", my_mixup, "lambda on the wrong image")


def test_mixup_labels_not_summing_to_one():
    def my_mixup(x, y, lam, perm):
        l4, l2 = lam.view(-1, 1, 1, 1), lam.view(-1, 1)
        return l4 * x + (1 - l4) * x[perm], l2 * y + y[perm]  # forgot (1 - lambda) on the labels
    _says("mixup", my_mixup, "label mass", "sum to one")


def test_mixup_shape():
    def my_mixup(x, y, lam, perm):
        return lam * x.flatten(1).T, y  # broadcast the wrong way
    _says("mixup", my_mixup, "shape")


def test_fgsm_sign_flipped():
    def my_fgsm(model, x, y, eps):
        return (x - eps.view(-1, 1, 1, 1) * _grad(model, x, y).sign()).clamp(0, 1)
    _says("fgsm", my_fgsm, "sign of the step", "increases")


def test_targeted_fgsm_sign_flipped():
    def my_targeted_fgsm(model, x, t, eps):
        return (x + eps.view(-1, 1, 1, 1) * _grad(model, x, t).sign()).clamp(0, 1)
    _says("targeted_fgsm", my_targeted_fgsm, "sign of the step", "decreases")


def test_targeted_fgsm_eps_not_clamped():
    def my_targeted_fgsm(model, x, t, eps):
        return x - eps.view(-1, 1, 1, 1) * _grad(model, x, t).sign()
    _says("targeted_fgsm", my_targeted_fgsm, "not clamped", "[0, 1]")


def test_targeted_fgsm_targets_ignored():
    def my_targeted_fgsm(model, x, t, eps):
        pred = model(x).argmax(1)  # the model's own class instead of the target
        return (x - eps.view(-1, 1, 1, 1) * _grad(model, x, pred).sign()).clamp(0, 1)
    _says("targeted_fgsm", my_targeted_fgsm, "targets ignored")


def test_tlat_labels_not_summing_to_one_and_swapped():
    _says("tlat_labels", lambda y, t, eps: y + eps.view(-1, 1) * _hot(t, 5), "label mass", "(1 - eps)")
    _says("tlat_labels", lambda y, t, eps: eps.view(-1, 1) * y + (1 - eps.view(-1, 1)) * _hot(t, 5), "swapped")


def test_mtlat_labels_lambda_on_the_wrong_image():
    def my_label(yi, yj, lam, t, eps, n):
        lam, e = lam.view(-1, 1), eps.view(-1, 1)
        return (1 - e) * ((1 - lam) * _hot(yi, n) + lam * _hot(yj, n)) + e * _hot(t, n)
    _says("mtlat_labels", my_label, "lambda on the wrong image")


def test_algorithm1_step_perturbing_before_mixing_is_iat():
    def my_step(model, x, y, lam1, perm1, lam2, perm2, eps, t, n):
        h, hot = len(x) // 2, _hot(y, n)
        def mix(a, b, lam, perm):
            return lam.view(-1, 1, 1, 1) * a + (1 - lam.view(-1, 1, 1, 1)) * a[perm], \
                lam.view(-1, 1) * b + (1 - lam.view(-1, 1)) * b[perm]
        x1, y1 = mix(x[:h], hot[:h], lam1, perm1)
        xa = (x[h:] - eps.view(-1, 1, 1, 1) * _grad(model, x[h:], t).sign()).clamp(0, 1)  # perturb first
        x2, y2 = mix(xa, hot[h:], lam2, perm2)
        y2 = (1 - eps.view(-1, 1)) * y2 + eps.view(-1, 1) * _hot(t, n)
        ce = lambda xx, yy: -(yy * F.log_softmax(model(xx), 1)).sum(1).mean()  # noqa: E731
        return ce(x1, y1) + ce(x2, y2)
    _says("algorithm1_step", my_step, "IAT")


def test_soft_cross_entropy_sign_and_smoothing_convention():
    _says("soft_cross_entropy", lambda z, y: (y * F.log_softmax(z, 1)).sum(1).mean(), "sign")
    _says("smooth_labels", lambda y, n, eps: _hot(y, n) * (1 - eps.view(-1, 1)) + eps.view(-1, 1) / n, "label_smoothing")


def test_lr_factor_with_two_drops():
    def my_lr(steps, total):
        return torch.tensor([0.1 ** sum(s >= round(f * total) for f in (1 / 3, 2 / 3)) for s in steps])
    _says("lr_factor", my_lr, "three drops")


def test_learner_errors_are_reported_in_one_line():
    msg = _says("one_hot", lambda y, n: torch.zeros(len(y), n)[y.float()], "raised IndexError")
    assert msg.startswith("one_hot: your function raised")


def test_hint_and_solution_only_when_asked(capsys):
    ex = E.get("targeted_fgsm")
    assert "y_target" in ex.hint()
    src = ex.solution()
    assert "def solution_targeted_fgsm" in src and "clamp(0, 1)" in src
    assert "clamp(0, 1)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="exercise: unknown name 'mixpu'"):
        E.get("mixpu")


def test_reveal_prints_prediction_and_measurement(capsys):
    E.reveal(None, "61.2 %", "Accuracy of fgsm on FGSM images?", "(seed 0, 500 images)")
    out = capsys.readouterr().out
    assert "no prediction written" in out and "measured: 61.2 % (seed 0, 500 images)" in out
