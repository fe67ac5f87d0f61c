"""Exercises of the course: the learner writes a formula of the paper, a checker runs it.

Every exercise of :data:`EXERCISES` (name -> :class:`Exercise`, kind = the notebook) runs the
learner's function on fixed inputs, compares the result with the package's own function and
answers in one sentence (:class:`Result`): right, not done yet (a stub that raises
``NotImplementedError`` or returns None: the notebook run goes on), or *which part is off*: the
shape, the range (clamping to [0, 1]), the sign of the step, lambda on the wrong image, the label
mass, targets ignored, ... Each diagnosis is a typical wrong answer computed on the same inputs
(or a property the output breaks); the first that matches is the answer. ``hint()`` gives a hint,
``solution()`` prints a reference solution (hidden until asked).

In a notebook::

    ex = exercises.get("mixup")
    def my_mixup(x, y_soft, lam, perm):
        raise NotImplementedError   # your code
    ex.check(my_mixup)              # "not done yet ..." until written; then right, or what is off
    ex.hint(); ex.solution()

Notebooks 06-10 ask to predict a measured number before it is shown: :func:`reveal`.
"""
from __future__ import annotations

import inspect
import math
import textwrap
from dataclasses import dataclass, field
from typing import Callable

import torch

from mtlat_edu.core.registry import Registry
from mtlat_edu.course.solutions import (
    solution_algorithm1_step, solution_fgsm, solution_linf, solution_lr_factor, solution_mixup,
    solution_mtlat_labels, solution_one_hot, solution_smooth_labels, solution_soft_cross_entropy,
    solution_targeted_fgsm, solution_tlat_labels)
from mtlat_edu.paper import labels as L
from mtlat_edu.paper.adversarial import fgsm, input_gradient, targeted_fgsm
from mtlat_edu.paper.methods import two_part_loss
from mtlat_edu.paper.mixup import mixup
from mtlat_edu.training.config import lr_factor

NOTEBOOKS = ("02", "03", "04", "05")
EXERCISES = Registry("exercise", kinds=NOTEBOOKS)  # name -> Exercise; kind: the notebook it belongs to
ATOL = 1e-5


@dataclass(frozen=True)
class Result:
    """The checker's answer: ``ok`` (right), ``done`` (False: a stub), ``message`` (one sentence)."""

    ok: bool
    done: bool
    message: str

    def __repr__(self) -> str:  # a notebook cell that ends with ex.check(...) shows the sentence
        return self.message

    __str__ = __repr__


@dataclass(frozen=True)
class Mistake:
    """A typical wrong answer: ``matches(fn, inputs, output)`` -> True when the learner made it."""

    message: str
    matches: Callable


@dataclass(frozen=True)
class Exercise:
    name: str
    title: str                       # what to write, with the equation
    signature: str                   # the learner's function, e.g. "my_mixup(x, y_soft, lam, perm)"
    inputs: Callable[[], dict]       # fixed inputs (keyword arguments), rebuilt for every call
    reference: Callable              # the package's own function on the same arguments
    solution_fn: Callable            # a reference solution in plain torch (printed by solution())
    hint_text: str
    mistakes: tuple[Mistake, ...] = ()
    checks: tuple[Mistake, ...] = field(default=())  # properties of the output, tried after the mistakes

    def run(self, fn, **changes):
        """``fn`` on the fixed inputs (positional, so the learner may name the arguments freely)."""
        return fn(*{**self.inputs(), **changes}.values())

    def check(self, fn) -> Result:
        """Run ``fn`` on the fixed inputs and say, in one sentence, whether it is right or what is off."""
        if fn is None or not callable(fn):
            return Result(False, False, f"{self.name}: not done yet: define {self.signature} and pass it to check().")
        try:
            out = self.run(fn)
        except NotImplementedError:
            return Result(False, False, f"{self.name}: not done yet: replace `raise NotImplementedError` in "
                                        f"{self.signature} with your code.")
        except Exception as exc:  # noqa: BLE001  (the learner's error, reported in one line)
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            return Result(False, True, f"{self.name}: your function raised {type(exc).__name__}: {first}")
        if out is None:
            return Result(False, False, f"{self.name}: not done yet: your function returns None.")
        expected = self.reference(**self.inputs())
        shape = _shape_problem(out, expected)
        if shape:
            return Result(False, True, f"{self.name}: shape: {shape}.")
        if _close(out, expected):
            return Result(True, True, f"{self.name}: right: {self.title} matches the package's function.")
        for m in (*self.mistakes, *self.checks):
            if m.matches(fn, self.inputs(), out):
                return Result(False, True, f"{self.name}: {m.message}")
        return Result(False, True, f"{self.name}: not the package's values (largest difference "
                                   f"{_max_diff(out, expected):.3g}); check {self.title} term by term, or ask hint().")

    def hint(self) -> str:
        print(self.hint_text)
        return self.hint_text

    def solution(self) -> str:
        """The reference solution's source (printed): only when asked."""
        src = textwrap.dedent(inspect.getsource(self.solution_fn))
        print(src)
        return src


# ---------------------------------------------------------------------------------------------
# comparing outputs

def _parts(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _tensor(v):
    return v if isinstance(v, torch.Tensor) else torch.as_tensor(v, dtype=torch.float32)


def _shape_problem(out, expected) -> str | None:
    got, exp = _parts(out), _parts(expected)
    if len(got) != len(exp):
        return f"expected {len(exp)} value(s), got {len(got)}"
    for i, (g, e) in enumerate(zip(got, exp)):
        try:
            g = _tensor(g)
        except (TypeError, ValueError, RuntimeError):
            return f"value {i + 1} is a {type(g).__name__}, not a tensor or a number"
        if tuple(g.shape) != tuple(_tensor(e).shape):
            which = f"value {i + 1}: " if len(exp) > 1 else ""
            return f"{which}expected {tuple(_tensor(e).shape)}, got {tuple(g.shape)}"
    return None


def _close(a, b) -> bool:
    try:
        return all(torch.allclose(_tensor(x).double(), _tensor(y).double(), atol=ATOL)
                   for x, y in zip(_parts(a), _parts(b), strict=True))
    except (TypeError, ValueError, RuntimeError):
        return False


def _max_diff(a, b) -> float:
    return max(float((_tensor(x).double() - _tensor(y).double()).abs().max()) for x, y in zip(_parts(a), _parts(b)))


def same_as(variant: Callable, part: int | None = None) -> Callable:
    """A mistake test: the output (or its ``part``) equals ``variant`` on the same inputs."""
    def test(fn, inputs, out):
        got, exp = _parts(out), _parts(variant(**inputs))
        if part is not None:
            got, exp = got[part:part + 1], exp[part:part + 1]
        return len(got) == len(exp) and _close(got, exp)
    return test


def label_mass_off(part: int = 0) -> Callable:
    """A check: the labels (rows of ``part``) do not sum to one."""
    return lambda fn, inputs, out: not torch.allclose(_tensor(_parts(out)[part]).double().sum(-1),
                                                      torch.ones(()).double(), atol=1e-4)


def out_of_range(part: int = 0) -> Callable:
    """A check: images outside [0, 1]."""
    return lambda fn, inputs, out: bool((_tensor(_parts(out)[part]) < -ATOL).any()
                                        or (_tensor(_parts(out)[part]) > 1 + ATOL).any())


def ignores(arg: str, other: Callable) -> Callable:
    """A mistake test: the output does not change when ``arg`` changes to ``other(inputs)``."""
    def test(fn, inputs, out):
        try:
            return _close(fn(*{**inputs, arg: other(inputs)}.values()), out)
        except Exception:  # noqa: BLE001
            return False
    return test


# ---------------------------------------------------------------------------------------------
# fixed inputs

def _images(n=4, size=4, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def tiny_model(classes: int = 5, size: int = 4) -> torch.nn.Module:
    """A fixed linear classifier of 3 x size x size images (the gradient exercises' model)."""
    g = torch.Generator().manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * size * size, classes))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(classes, 3 * size * size, generator=g))
        model[1].bias.copy_(torch.randn(classes, generator=g))
    return model.eval()


def _labels(n=4, classes=5, seed=2):
    return torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed))


def _onehot_inputs():
    return {"y": torch.tensor([3, 0, 4, 1]), "num_classes": 5}


def _mixup_inputs():
    return {"x": _images(), "y_soft": L.one_hot(_labels(), 5), "lam": torch.tensor([0.9, 0.3, 0.6, 0.05]),
            "perm": torch.tensor([2, 3, 0, 1])}


def _attack_inputs(target_name="y"):
    return {"model": tiny_model(), "x": _images(), target_name: _labels(), "eps": torch.tensor([0.1, 0.2, 0.05, 0.3])}


def _tlat_inputs():
    return {"y_soft": L.one_hot(torch.tensor([1, 0, 4, 2]), 5), "y_target": torch.tensor([3, 0, 2, 2]),
            "eps": torch.tensor([0.1, 0.2, 0.05, 0.3])}


def _ls_inputs():
    return {"y": torch.tensor([1, 0, 4, 2]), "num_classes": 5, "eps": torch.tensor([0.1, 0.2, 0.05, 0.3])}


def _mtlat_label_inputs():
    return {"y_i": torch.tensor([1, 0, 4, 2]), "y_j": torch.tensor([3, 3, 1, 2]), "lam": torch.tensor([0.9, 0.3, 0.6, 0.5]),
            "y_target": torch.tensor([0, 3, 2, 1]), "eps": torch.tensor([0.1, 0.2, 0.05, 0.3]), "num_classes": 5}


def _step_inputs():
    return {"model": tiny_model(), "x": _images(8), "y": _labels(8, seed=3), "lam1": torch.tensor([0.9, 0.3, 0.6, 0.2]),
            "perm1": torch.tensor([1, 0, 3, 2]), "lam2": torch.tensor([0.7, 0.4, 0.95, 0.1]),
            "perm2": torch.tensor([2, 3, 0, 1]), "eps": torch.tensor([0.01, 0.025, 0.005, 0.02]),
            "y_target": torch.tensor([4, 0, 2, 1]), "num_classes": 5}


def _ce_inputs():
    g = torch.Generator().manual_seed(4)
    return {"logits": 3 * torch.randn(4, 5, generator=g), "y_soft": torch.softmax(torch.randn(4, 5, generator=g), 1)}


def _lr_inputs():
    return {"steps": list(range(0, 900, 7)), "total_steps": 900}


# ---------------------------------------------------------------------------------------------
# the package's own functions, with the exercises' signatures

def _ref_mtlat_labels(y_i, y_j, lam, y_target, eps, num_classes):
    n = len(y_i)  # eq. (1) by the package's mixup on the stacked [y_i; y_j], each paired with the other
    _, y_mix = mixup(torch.zeros(2 * n, 1, 1, 1), L.one_hot(torch.cat([y_i, y_j]), num_classes),
                     torch.cat([lam, 1 - lam]), torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))
    return L.tlat_labels(y_mix[:n], y_target, eps)


def _ref_algorithm1_step(model, x, y, lam1, perm1, lam2, perm2, eps, y_target, num_classes, *, order="mix_first",
                         tlat=True, total="sum", sign=-1.0):
    h = len(x) // 2
    hot = L.one_hot(y, num_classes)
    x_mix1, y_mix1 = mixup(x[:h], hot[:h], lam1, perm1)
    if order == "mix_first":
        x_mix2, y_mix2 = mixup(x[h:], hot[h:], lam2, perm2)
        x_adv = targeted_fgsm(model, x_mix2, y_target, eps) if sign < 0 else fgsm(model, x_mix2, y_target, eps)
    else:  # IAT's order: perturb, then mix
        x_adv, y_mix2 = mixup(targeted_fgsm(model, x[h:], y_target, eps), hot[h:], lam2, perm2)
    y_adv = L.tlat_labels(y_mix2, y_target, eps) if tlat else y_mix2
    loss = two_part_loss(model, x_mix1, y_mix1, x_adv, y_adv)
    return loss / 2 if total == "mean" else loss


def _package_linf(x, x_adv):
    return (x_adv - x).abs().flatten(1).amax(1)


def _ref_lr(steps, total_steps, milestones=(30, 60, 80), epochs_ref=90, base=0.1):
    drops = [round(-math.log10(lr_factor(s, total_steps, epochs_ref, milestones))) for s in steps]
    return torch.tensor([base ** d for d in drops])


def _unclamped(attack_sign):
    def variant(model, x, eps, **kw):
        t = kw.get("y", kw.get("y_target"))
        return (x + attack_sign * eps.view(-1, 1, 1, 1) * input_gradient(model, x, t).sign()).detach()
    return variant


# ---------------------------------------------------------------------------------------------
# the exercises

def _add(ex: Exercise, notebook: str) -> None:
    EXERCISES.add(ex.name, ex, label=ex.title, kind=notebook)


_add(Exercise(
    "one_hot", "one-hot labels", "my_one_hot(y, num_classes)", _onehot_inputs,
    L.one_hot, solution_one_hot,
    "Start from torch.zeros(len(y), num_classes) and put a 1 in row i, column y[i].",
    mistakes=(Mistake("the ones are in the wrong places: row i needs its 1 in column y[i].",
                      lambda fn, inp, out: torch.allclose(_tensor(out).sum(1), torch.ones(len(inp["y"])))),),
    checks=(Mistake("label mass: each row of a one-hot label sums to one.", label_mass_off()),)), "02")

_add(Exercise(
    "mixup", "Mixup, eq. (1)", "my_mixup(x, y_soft, lam, perm) -> (x_mix, y_mix)", _mixup_inputs,
    mixup, solution_mixup,
    "x_mix[i] = lam[i] * x[i] + (1 - lam[i]) * x[perm[i]]; reshape lam to (B, 1, 1, 1) for images and (B, 1) "
    "for labels, and mix the labels with the same lam.",
    mistakes=(
        Mistake("lambda on the wrong image: eq. (1) gives lambda to x_i itself and 1 - lambda to its partner "
                "x[perm[i]].", same_as(lambda x, y_soft, lam, perm: mixup(x, y_soft, 1 - lam, perm))),
        Mistake("lambda on the wrong image for the images only: x_i gets lambda, its partner 1 - lambda.",
                same_as(lambda x, y_soft, lam, perm: mixup(x, y_soft, 1 - lam, perm), part=0)),
        Mistake("the images are right but the labels are not mixed: y_mix = lambda y_i + (1 - lambda) y_perm[i], "
                "with the same lambda.", lambda fn, inp, out: _close(_parts(out)[1], inp["y_soft"])),
        Mistake("label mass: each mixed label must sum to one (lambda + (1 - lambda) = 1).", label_mass_off(1)),
        Mistake("the labels are mixed with another lambda than the images, or with the wrong partner.",
                same_as(lambda x, y_soft, lam, perm: mixup(x, y_soft, lam, perm), part=0)),
    )), "02")

_add(Exercise(
    "fgsm", "untargeted FGSM, eq. (2)", "my_fgsm(model, x, y, eps) -> x_adv", _attack_inputs,
    fgsm, solution_fgsm,
    "Take the gradient of cross_entropy(model(x), y, reduction='sum') with respect to x, step eps * sign(grad) "
    "*up* the loss (one eps per image: eps.view(-1, 1, 1, 1)), then clamp to [0, 1].",
    mistakes=(
        Mistake("sign of the step: untargeted FGSM *increases* the loss of the true class (x + eps * sign(grad)).",
                same_as(lambda model, x, y, eps: targeted_fgsm(model, x, y, eps))),
        Mistake("range: clamp x_adv to [0, 1] (the step leaves the image box where pixels are near 0 or 1).",
                same_as(_unclamped(+1.0))),
        Mistake("step size: every pixel moves by exactly eps * sign(grad), not by eps * grad.",
                lambda fn, inp, out: not torch.allclose(
                    ((_tensor(out) - inp["x"]).abs() - inp["eps"].view(-1, 1, 1, 1)).clamp(max=0)
                    * ((_tensor(out) > ATOL) & (_tensor(out) < 1 - ATOL)), torch.zeros(()), atol=1e-4)),
    ),
    checks=(Mistake("range: images must stay in [0, 1].", out_of_range()),)), "03")

_add(Exercise(
    "targeted_fgsm", "targeted FGSM, eq. (5)", "my_targeted_fgsm(model, x, y_target, eps) -> x_adv",
    lambda: _attack_inputs("y_target"),
    targeted_fgsm, solution_targeted_fgsm,
    "Eq. (5): x - eps * sign(grad_x L(x, y_target)): the gradient of the loss *towards the target*, and a step "
    "*down* that loss; one eps per image (eps.view(-1, 1, 1, 1)); clamp to [0, 1].",
    mistakes=(
        Mistake("sign of the step: a targeted step *decreases* the loss towards y_target (x - eps * sign(grad)).",
                same_as(lambda model, x, y_target, eps: fgsm(model, x, y_target, eps))),
        Mistake("range: eps not clamped: clamp x_adv to [0, 1] after the step.", same_as(_unclamped(-1.0))),
        Mistake("targets ignored: the result does not change when y_target changes.",
                ignores("y_target", lambda inp: (inp["y_target"] + 1) % 5)),
        Mistake("eps: each image has its own eps (a (B,) tensor): reshape it to (B, 1, 1, 1) before the step.",
                same_as(lambda model, x, y_target, eps: targeted_fgsm(model, x, y_target, eps.max()))),
    ),
    checks=(Mistake("range: images must stay in [0, 1].", out_of_range()),)), "03")

_add(Exercise(
    "linf", "the L-inf size of a perturbation", "my_linf(x, x_adv) -> (B,)",
    lambda: {"x": _images(), "x_adv": (_images() + 0.1 * torch.randn(4, 3, 4, 4, generator=torch.Generator()
                                                                       .manual_seed(5))).clamp(0, 1)},
    _package_linf, solution_linf,
    "One number per image: the largest absolute pixel change, (x_adv - x).abs() maximised over C, H, W.",
    mistakes=(Mistake("take the absolute value: a pixel moved by -0.1 counts as much as one moved by +0.1.",
                      same_as(lambda x, x_adv: (x_adv - x).flatten(1).amax(1))),)), "03")

_add(Exercise(
    "tlat_labels", "the TLAT label, eq. (4)", "my_tlat_labels(y_soft, y_target, eps) -> (B, N)", _tlat_inputs,
    L.tlat_labels, solution_tlat_labels,
    "y_adv = (1 - eps) * y_clean + eps * one_hot(y_target): both terms weighted, eps of shape (B, 1).",
    mistakes=(
        Mistake("the weights are swapped: the target gets eps and the clean label 1 - eps (eq. 4).",
                same_as(lambda y_soft, y_target, eps: L.tlat_labels(y_soft, y_target, 1 - eps))),
        Mistake("label mass: the clean label must be scaled by (1 - eps) so that the label sums to one.",
                same_as(lambda y_soft, y_target, eps: y_soft + eps.view(-1, 1) * L.one_hot(y_target, 5))),
        Mistake("targets ignored: the result does not change when y_target changes.",
                ignores("y_target", lambda inp: (inp["y_target"] + 1) % 5)),
    ),
    checks=(Mistake("label mass: every label must sum to one.", label_mass_off()),)), "04")

_add(Exercise(
    "smooth_labels", "the LS labels of section 5.4", "my_smooth_labels(y, num_classes, eps) -> (B, N)", _ls_inputs,
    L.smooth_labels, solution_smooth_labels,
    "Section 5.4: the one becomes 1 - eps, each zero becomes eps / N (N = num_classes, the true class included).",
    mistakes=(
        Mistake("the zeros get eps / N in the paper, not eps / (N - 1) (its labels then sum to 1 - eps/N, kept as "
                "the paper wrote them).",
                same_as(lambda y, num_classes, eps: L.one_hot(y, num_classes) * (1 - eps.view(-1, 1)) +
                        (1 - L.one_hot(y, num_classes)) * eps.view(-1, 1) / (num_classes - 1))),
        Mistake("the true class keeps 1 - eps + eps / N: that is torch's label_smoothing, not the paper's "
                "(ones -> 1 - eps).",
                same_as(lambda y, num_classes, eps: L.one_hot(y, num_classes) * (1 - eps.view(-1, 1)) +
                        eps.view(-1, 1) / num_classes)),
    )), "04")

_add(Exercise(
    "mtlat_labels", "the M-TLAT label, eq. (6)", "my_mtlat_labels(y_i, y_j, lam, y_target, eps, num_classes)",
    _mtlat_label_inputs, _ref_mtlat_labels, solution_mtlat_labels,
    "First Mixup's label lam * y_i + (1 - lam) * y_j (eq. 1), then TLAT's (1 - eps) * y_mix + eps * y_target.",
    mistakes=(
        Mistake("lambda on the wrong image: y_i gets lambda, y_j gets 1 - lambda.",
                same_as(lambda y_i, y_j, lam, y_target, eps, num_classes:
                        _ref_mtlat_labels(y_i, y_j, 1 - lam, y_target, eps, num_classes))),
        Mistake("the weights of eq. (6) are swapped: the target gets eps, the mixed label 1 - eps.",
                same_as(lambda y_i, y_j, lam, y_target, eps, num_classes:
                        _ref_mtlat_labels(y_i, y_j, lam, y_target, 1 - eps, num_classes))),
        Mistake("targets ignored: the result does not change when y_target changes.",
                ignores("y_target", lambda inp: (inp["y_target"] + 1) % 5)),
        Mistake("label mass: the three weights lambda (1 - eps), (1 - lambda)(1 - eps) and eps must sum to one.",
                label_mass_off()),
    )), "04")

_add(Exercise(
    "algorithm1_step", "the loss of one Algorithm 1 step",
    "my_algorithm1_step(model, x, y, lam1, perm1, lam2, perm2, eps, y_target, num_classes) -> loss",
    _step_inputs, _ref_algorithm1_step, solution_algorithm1_step,
    "Split the batch in halves; mix each half (lines 1-4); perturb the *mixed* second half towards y_target "
    "(line 5, eq. 5) and give it the TLAT label (line 6); return loss_1 + loss_2 with soft-label cross-entropy.",
    mistakes=(
        Mistake("order: M-TLAT perturbs the *mixed* couples (mix, then targeted FGSM); perturbing first and mixing "
                "after is IAT.", same_as(lambda **kw: _ref_algorithm1_step(**kw, order="perturb_first"))),
        Mistake("the adversarial half lacks the target's eps share: label it (1 - eps) y_mix2 + eps y_target (line 6).",
                same_as(lambda **kw: _ref_algorithm1_step(**kw, tlat=False))),
        Mistake("loss = loss_1 + loss_2 (their sum, as Algorithm 1 writes it), not their mean.",
                same_as(lambda **kw: _ref_algorithm1_step(**kw, total="mean"))),
        Mistake("sign of the step: line 5 moves *down* the loss towards y_target (x_mix2 - eps * sign(grad)).",
                same_as(lambda **kw: _ref_algorithm1_step(**kw, sign=+1.0))),
    )), "04")

_add(Exercise(
    "soft_cross_entropy", "the soft-label cross-entropy", "my_soft_cross_entropy(logits, y_soft) -> loss",
    _ce_inputs, lambda logits, y_soft: L.soft_cross_entropy(logits, y_soft), solution_soft_cross_entropy,
    "-(y_soft * log_softmax(logits, dim=1)).sum(dim=1), then the mean over the batch.",
    mistakes=(
        Mistake("sign: a cross-entropy is minus the sum of y * log p (it is >= 0).",
                same_as(lambda logits, y_soft: -L.soft_cross_entropy(logits, y_soft))),
        Mistake("mean over the batch, not the sum (the loss must not grow with the batch size).",
                same_as(lambda logits, y_soft: len(logits) * L.soft_cross_entropy(logits, y_soft))),
        Mistake("use log_softmax of the logits: the log of the probabilities, not the raw logits.",
                same_as(lambda logits, y_soft: -(y_soft * logits).sum(1).mean())),
        Mistake("the mean is over the batch only: sum over the classes first (a mean over all entries divides by N).",
                same_as(lambda logits, y_soft: L.soft_cross_entropy(logits, y_soft) / logits.shape[1])),
    )), "05")

_add(Exercise(
    "lr_factor", "the learning-rate schedule of section 4.2", "my_lr_factor(steps, total_steps) -> tensor",
    _lr_inputs, _ref_lr, solution_lr_factor,
    "Section 4.2: lr / 10 after epochs 30, 60 and 80 of 90; for a run of total_steps the drops keep their place as "
    "fractions of the run: step round(30 / 90 * total_steps), and so on. Return one factor per step.",
    mistakes=(
        Mistake("three drops: after 30/90, 60/90 *and* 80/90 of the run.",
                same_as(lambda steps, total_steps: _ref_lr(steps, total_steps, (30, 60)))),
        Mistake("each drop divides the rate by 10, not by 2.",
                same_as(lambda steps, total_steps: _ref_lr(steps, total_steps, base=0.5))),
        Mistake("the drops are fractions of the run (30/90 of total_steps), not step 30, 60 and 80.",
                same_as(lambda steps, total_steps: _ref_lr(steps, total_steps, epochs_ref=total_steps))),
    )), "05")


def get(name: str) -> Exercise:
    """The exercise ``name`` of :data:`EXERCISES` (an unknown name lists the valid ones)."""
    return EXERCISES.lookup(name, "exercise")


def reveal(prediction, measured, question: str, detail: str = "") -> str:
    """Predict-then-check (notebooks 06-10): print the learner's ``prediction`` beside the
    ``measured`` answer of ``question`` (``detail``: where it comes from, e.g. "(seed 0, 500 images)")."""
    guess = "no prediction written (set `prediction` above first, then run this cell)" if prediction is None \
        else f"you predicted {prediction!r}"
    text = f"{question}\n  {guess}\n  measured: {measured}" + (f" {detail}" if detail else "")
    print(text)
    return text
