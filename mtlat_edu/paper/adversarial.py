"""FGSM, the one-step attack used *during training* (eq. 2, 3 and 5 of the paper).

* untargeted FGSM (Goodfellow et al.), the one-step solution of eq. (2):
  ``x_adv = clip(x + eps * sign(grad_x L(x, y)), 0, 1)``
* targeted FGSM (Kurakin et al.), eq. (5), the one-step solution of eq. (3)/(4):
  ``x_adv = clip(x - eps * sign(grad_x L(x, y_target)), 0, 1)``

* targeted PGD (beyond the paper, its section 6 "future work"): ``k`` steps of eq. (5), each
  of size ``step`` and projected back onto the L-inf ball of radius ``eps`` around the start
  (Madry et al. 2018); with ``k = 1`` and no random start it is targeted FGSM exactly.

``eps`` is a float or one value per sample (Algorithm 1 draws ``eps ~ U[0, eps_max]`` per
couple, ``eps_max = 0.025``, section 4.2). The attacks for *evaluation* (PGD, CW, MI-FGSM) live in
:mod:`mtlat_edu.robustness.attacks`.

Each public function checks its arguments, then calls a private implementation (``_sample_eps``,
``_fgsm``, ``_targeted_fgsm``, ``_targeted_pgd``) that trusts them; the training methods call those
on a batch checked once. ``check_classes`` is the one check left to the implementations: the labels'
range is known only once the forward pass has shown the number of classes.

Only the gradient with respect to the input is computed (``torch.autograd.grad``), so no weight
gradient is wasted: the cost is one forward and one backward-to-input pass.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mtlat_edu.core.checks import check_eps, check_int, check_labels, check_model_input, check_range
from mtlat_edu.core.registry import Registry

EPS_MAX = 0.025


def sample_eps(n: int, eps_max: float = EPS_MAX, *, per_batch: bool = False,
               generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Draw ``eps ~ U[0, eps_max]``: one per sample (Algorithm 1), or one for the batch."""
    check_int(n, "n", 0)
    check_range(eps_max, "eps_max", 0.0, 1.0)
    return _sample_eps(n, eps_max, per_batch=per_batch, generator=generator, device=device)


def _sample_eps(n: int, eps_max: float, *, per_batch: bool = False, generator: torch.Generator | None = None,
                device=None) -> torch.Tensor:
    device = generator.device if generator is not None else (device or "cpu")
    u = torch.rand(1 if per_batch else n, generator=generator, device=device)
    return (u * eps_max).expand(n) if per_batch else u * eps_max


def random_targets(y: torch.Tensor, num_classes: int, *, exclude_true: bool = False,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """``y_target ~ U{0..N-1}`` as in Algorithm 1; with ``exclude_true`` uniform over the N-1 other classes."""
    device = generator.device if generator is not None else y.device
    n = y.shape[0]
    if exclude_true:
        shift = torch.randint(1, num_classes, (n,), generator=generator, device=device).to(y.device)
        return (y + shift) % num_classes
    return torch.randint(0, num_classes, (n,), generator=generator, device=device).to(y.device)


@torch.no_grad()
def least_likely_targets(model, x: torch.Tensor) -> torch.Tensor:
    """The class the model finds least likely for each image (Kurakin et al.'s "LL" target):
    ``argmin_c model(x)_c``, without gradients, in the model's current mode (the training mode
    inside a training step; the benchmark's PGD_LL calls it in eval mode)."""
    return model(x).argmin(dim=1)


def random_allowed_targets(allowed: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """One class per row of the (B, N) bool mask ``allowed``, uniform over that row's allowed classes
    (each row must allow at least one): ``u ~ U[0, 1)``, the ``floor(u * k)``-th allowed class of
    the row's ``k``. One uniform draw per row from ``generator``."""
    device = generator.device if generator is not None else allowed.device
    k = allowed.sum(dim=1)
    u = torch.rand(allowed.shape[0], generator=generator, device=device).to(allowed.device)
    pick = torch.minimum((u * k).long(), k - 1)                       # the pick-th allowed class (0-based)
    return (allowed.long().cumsum(dim=1) > pick[:, None]).long().argmax(dim=1)


def unmixed_targets(y: torch.Tensor, num_classes: int, mixed: torch.Tensor | None = None, *,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """``y_target`` uniform over the classes that are *not* in the couple: the classes carrying
    label mass in the couple's Mixup label ``mixed`` (B, N) (both classes of a mixed couple, one
    when both images share it), or, for a method without Mixup (``mixed`` None), the true class
    ``y``. So every target pushes towards a class the label does not already hold."""
    if mixed is None:
        taken = torch.nn.functional.one_hot(y, num_classes).bool()
    else:
        taken = mixed > 0
    return random_allowed_targets(~taken, generator=generator)


# How the training attacks pick ``y_target``: name -> ``fn(model, x, y, num_classes, generator, mixed=None)``,
# ``mixed``: the couples' Mixup labels (B, N) where the method mixes before or after the attack (kind "couple":
# the rule reads them). The default, "random", is Algorithm 1's.
TARGET_SELECTION = Registry("target")
TARGET_SELECTION.add("random", lambda model, x, y, n, g, mixed=None: random_targets(y, n, generator=g),
                     description="y_target ~ U{0..N-1}, as Algorithm 1 draws it")
TARGET_SELECTION.add("random_other", lambda model, x, y, n, g, mixed=None:
                     random_targets(y, n, exclude_true=True, generator=g),
                     description="uniform over the N-1 classes other than the true one")
TARGET_SELECTION.add("least_likely", lambda model, x, y, n, g, mixed=None: least_likely_targets(model, x),
                     description="the class the model finds least likely (Kurakin et al.)")
TARGET_SELECTION.add("random_unmixed", lambda model, x, y, n, g, mixed=None:
                     unmixed_targets(y, n, mixed, generator=g), kind="couple",
                     description="uniform over the classes outside the mixed couple (the true class "
                                 "without Mixup)")


def input_gradient(model, x: torch.Tensor, target: torch.Tensor, *, check_classes: bool = False) -> torch.Tensor:
    """``grad_x L(x, target)`` for hard (B,) or soft (B, N) targets, with the loss summed over the
    batch so that each sample's gradient does not depend on the batch size. Works inside
    ``torch.no_grad()`` blocks too (gradients are enabled locally). Only the input gradient is
    computed (``torch.autograd.grad``): no parameter's ``.grad`` is touched.

    The one input gradient of the package: the training attacks here (eq. 2, 5) and the evaluation
    attacks of :mod:`mtlat_edu.robustness.attacks` (PGD, MI-FGSM) take their steps along it. With
    ``check_classes``, hard targets are first checked against the number of classes the logits
    show (the number is known only after the forward pass)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model(x)
        if check_classes and target.dim() == 1:
            check_labels(target, num_classes=logits.shape[1], batch=logits.shape[0], name="y")
        if target.dim() == 1:
            loss = F.cross_entropy(logits.float(), target, reduction="sum")
        else:
            loss = -(target * F.log_softmax(logits.float(), dim=1)).sum()
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def _per_image(eps, x: torch.Tensor) -> torch.Tensor:
    """A float or a (B,) tensor of amounts, broadcastable against the NCHW batch ``x``."""
    e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    return e.view(-1, 1, 1, 1) if e.dim() else e


def _step(x: torch.Tensor, grad: torch.Tensor, eps, sign: float) -> torch.Tensor:
    return (x + sign * _per_image(eps, x) * grad.sign()).clamp_(0, 1).detach()


def fgsm(model, x: torch.Tensor, y: torch.Tensor, eps) -> torch.Tensor:
    """Untargeted FGSM: a step of size ``eps`` that *increases* ``L(x, y)`` (eq. 2), clipped to [0, 1]."""
    _validate(model, x, y, eps)
    return _fgsm(model, x, y, eps, check_classes=True)


def _fgsm(model, x, y, eps, *, check_classes: bool = False) -> torch.Tensor:
    return _step(x, input_gradient(model, x, y, check_classes=check_classes), eps, +1.0)


def targeted_fgsm(model, x: torch.Tensor, y_target: torch.Tensor, eps) -> torch.Tensor:
    """Targeted FGSM, eq. (5): ``x - eps * sign(grad_x L(x, y_target))``, clipped to [0, 1].

    The step *decreases* the loss towards ``y_target``, pushing the image towards that class.
    """
    _validate(model, x, y_target, eps)
    return _targeted_fgsm(model, x, y_target, eps, check_classes=True)


def _targeted_fgsm(model, x, y_target, eps, *, check_classes: bool = False) -> torch.Tensor:
    return _step(x, input_gradient(model, x, y_target, check_classes=check_classes), eps, -1.0)


PGD_STEPS = 3
PGD_STEP_FACTOR = 2.5


def targeted_pgd(model, x: torch.Tensor, y_target: torch.Tensor, eps, steps: int = PGD_STEPS,
                 step_factor: float = PGD_STEP_FACTOR, random_start: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``steps`` iterations of targeted FGSM (eq. 5) projected onto the L-inf ball of radius ``eps``.

    ``x_{i+1} = Proj_{B_inf(x, eps) & [0,1]}(x_i - a * sign(grad_x L(x_i, y_target)))`` with the step
    ``a = step_factor * eps / steps`` per sample (Madry et al. 2018's rule ``2.5 * eps / k``: the
    ``k`` steps together can cross the ball, so the final iterate can reach any of its corners).
    ``random_start`` starts from ``x + U[-eps, eps]`` (drawn from ``generator``) instead of ``x``.

    The defining property: ``steps=1`` without random start equals :func:`targeted_fgsm` exactly
    when ``step_factor >= 1`` (a step of ``step_factor * eps >= eps`` projected onto the ball is
    the step of size ``eps``).
    The gradients are computed in the model's current mode (training mode inside a training step,
    as Algorithm 1 uses the current theta); ``eps`` is a float or one per sample.
    """
    _validate(model, x, y_target, eps)
    check_int(steps, "pgd_steps")
    check_range(step_factor, "pgd_step_factor", 0.0, 100.0, low_open=True)
    return _targeted_pgd(model, x, y_target, eps, steps, step_factor, random_start, generator, check_classes=True)


def _targeted_pgd(model, x, y_target, eps, steps: int = PGD_STEPS, step_factor: float = PGD_STEP_FACTOR,
                  random_start: bool = False, generator: torch.Generator | None = None, *,
                  check_classes: bool = False) -> torch.Tensor:
    x = x.detach()
    e = _per_image(eps, x)
    lo, hi = (x - e).clamp(0, 1), (x + e).clamp(0, 1)
    x_adv = x
    if random_start:
        device = generator.device if generator is not None else x.device
        u = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
        x_adv = torch.min(torch.max(x + (2 * u - 1) * e, lo), hi)
    step = e * (step_factor / steps)
    for i in range(steps):
        grad = input_gradient(model, x_adv, y_target, check_classes=check_classes and i == 0)
        x_adv = torch.min(torch.max(x_adv - step * grad.sign(), lo), hi).detach()
    return x_adv


def _validate(model, x, y, eps):
    """Images, eps and the labels' type and count (their range is checked against the logits,
    ``check_classes=True``, once the forward pass has shown the number of classes)."""
    check_model_input(x, model, "x")
    check_eps(eps, "eps", x.shape[0])
    check_labels(y, None, x.shape[0], "y")
