"""The adversarial attacks of the paper's benchmark (section 4.1, "Adversarial Examples", Table 1c).

Section 4.1 evaluates every model under five attacks, all computed in pixel space [0, 1]:

===================  ===========================================================  ===========
registry key         attack                                                       setting
===================  ===========================================================  ===========
``pgd``              untargeted L-inf PGD (Madry et al. 2018), eps = 0.04, 10 it.  white-box
``pgd_ll``           targeted PGD to the least-likely class (Kurakin et al. 2017)  white-box
``cw_l2``            Carlini-Wagner L2 (2017), 40 iterations, confidence 50        white-box
``mi_fgsm_0.04``     MI-FGSM (Dong et al. 2018), eps = 0.04, 10 it., decay 1.0     black-box
``mi_fgsm_0.08``     MI-FGSM, eps = 0.08                                           black-box
===================  ===========================================================  ===========

The black-box attacks are crafted on a *surrogate* (the paper: "A VGG network trained on the same
training set") and then evaluated on the attacked model.

Every attack takes float NCHW images in [0, 1] (the models normalize inside, see
:mod:`mtlat_edu.models`) and returns a tensor of the same shape in [0, 1]. During an attack the
model is put in eval mode and each submodule's previous mode is restored afterwards
(:func:`mtlat_edu.core.modes.eval_mode`); gradients are taken with respect to the input only
(:func:`mtlat_edu.paper.adversarial.input_gradient`), so no parameter ``.grad`` is touched and
``requires_grad`` flags are left as they are. Randomness (PGD's random start) comes from an
optional ``torch.Generator``: the same seed gives the same adversarial images. The accuracy under
an attack is measured in :mod:`mtlat_edu.robustness.measure` (``attack_accuracy``).

Imports: the evaluation attacks build on the paper's primitives (the input gradient and the
least-likely target of :mod:`mtlat_edu.paper.adversarial`); ``robustness`` may import ``paper``,
never the reverse.

The choices the paper leaves open (step sizes, random start, the CW constant and learning rate,
what CW returns where it fails) are explained in ``docs/attacks.md``.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

import torch
import torch.nn.functional as F

from mtlat_edu.core.checks import check_int, check_labels, check_model_input, check_positive, check_range
from mtlat_edu.core.modes import eval_mode
from mtlat_edu.core.registry import Registry
from mtlat_edu.paper.adversarial import input_gradient, least_likely_targets

# ---------------------------------------------------------------------------------------------
# shared helpers


def _check_steps(steps, name: str = "steps") -> None:
    check_int(steps, name)


def _check_eps(eps) -> float:
    """One eps for the batch, a number in [0, 1]; returned as a float."""
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"eps: must be a number in [0.0, 1.0], got {eps!r}") from None
    check_range(value, "eps", 0.0, 1.0)
    return value


def _check_batch(model, x: torch.Tensor, y: torch.Tensor | None, name_x: str = "x") -> None:
    """Images: float32/16/bf16 NCHW in [0, 1] with the model's channels; labels: an integer vector,
    one per image (class range checked later, once the number of classes is known from the logits)."""
    check_model_input(x, model, name_x)
    if y is not None:
        check_labels(y, None, x.shape[0], "y")
        if y.device != x.device:
            raise ValueError(f"y: must be on the images' device {x.device}, got {y.device}")


def _check_classes(y: torch.Tensor, logits: torch.Tensor) -> None:
    check_labels(y, num_classes=logits.shape[1], batch=logits.shape[0], name="y")


def _uniform(x: torch.Tensor, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    """``U[low, high]`` noise shaped like ``x``, drawn on the generator's device (so a CPU generator
    gives the same noise whatever device the images are on)."""
    device = generator.device if generator is not None else x.device
    u = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
    return low + (high - low) * u


def _project_linf(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Project onto the L-inf ball of radius ``eps`` around ``x``, then onto the image box [0, 1]."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# PGD and PGD_LL (L-inf, white-box)


def _pgd(model, x, y, eps, steps, step_size, random_start, generator, sign: float):
    _check_batch(model, x, y)
    eps = _check_eps(eps)
    _check_steps(steps)
    if step_size is None:
        step_size = 2.5 * eps / steps
    else:
        check_range(step_size, "step_size", 0.0, 1.0, low_open=True)
    x = x.detach().clone()
    if eps == 0:
        return x
    with eval_mode(model):
        x_adv = x.clone()
        if random_start:
            x_adv = _project_linf(x_adv + _uniform(x, -eps, eps, generator), x, eps)
        for i in range(steps):
            grad = input_gradient(model, x_adv, y, check_classes=i == 0)
            x_adv = _project_linf(x_adv + sign * step_size * grad.sign(), x, eps)
    return x_adv.detach()


def pgd(model, x: torch.Tensor, y: torch.Tensor, eps: float = 0.04, steps: int = 10,
        step_size: float | None = None, random_start: bool = True,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """Untargeted L-inf PGD (Madry et al., "Towards deep learning models resistant to adversarial
    attacks", ICLR 2018), the paper's white-box L-inf attack (section 4.1: eps = 0.04, ten iterations).

    ``x_{k+1} = Proj_{B_inf(x, eps) & [0,1]}(x_k + step_size * sign(grad_x CE(model(x_k), y)))``,
    starting from a uniform random point of the eps-ball (``random_start``, Madry et al.) drawn
    from ``generator``. The final iterate is returned.

    ``step_size`` defaults to ``2.5 * eps / steps`` (Madry et al.'s rule: the steps can cover the
    ball's diameter from any start); for the paper's ten iterations this equals ``eps / 4`` = 0.01.
    """
    return _pgd(model, x, y, eps, steps, step_size, random_start, generator, +1.0)


def pgd_ll(model, x: torch.Tensor, y: torch.Tensor | None = None, eps: float = 0.04, steps: int = 10,
           step_size: float | None = None, random_start: bool = True,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Targeted L-inf PGD towards the least-likely class ("PGD_LL", section 4.1 of the paper,
    after Kurakin et al., "Adversarial examples in the physical world", ICLR 2017 workshop /
    "Adversarial machine learning at scale", ICLR 2017).

    The target ``y_LL = argmin_c model(x)_c`` is computed once, on the clean images and in eval mode
    (:func:`mtlat_edu.paper.adversarial.least_likely_targets`), and the attack *descends*
    ``CE(model(x_k), y_LL)``:
    ``x_{k+1} = Proj(x_k - step_size * sign(grad_x CE(model(x_k), y_LL)))``.
    Random start and step size as :func:`pgd`. ``y`` (the true labels) is not needed; it is accepted
    so that every attack has the same ``(model, x, y)`` call and, when given, only validated.
    """
    _check_batch(model, x, y)
    with eval_mode(model):
        target = least_likely_targets(model, x)
        if y is not None and x.shape[0]:  # the labels' range, against the classes the model outputs
            with torch.no_grad():
                _check_classes(y, model(x[:1]).expand(x.shape[0], -1))
    return _pgd(model, x, target, eps, steps, step_size, random_start, generator, -1.0)


# ---------------------------------------------------------------------------------------------
# Carlini-Wagner L2 (white-box)


def cw_margin(logits: torch.Tensor, y: torch.Tensor, confidence: float) -> torch.Tensor:
    """Carlini and Wagner's untargeted ``f`` (their objective f6): ``max(Z_y - max_{i != y} Z_i, -kappa)``.

    ``f`` is ``-kappa`` once the best other class beats the true class by at least ``kappa``. The
    best *other* logit is taken with the true class masked by ``-inf``; multiplying by
    ``(1 - onehot)`` instead (as torchattacks does) turns the true class's logit into 0, which is
    the maximum whenever every other logit is negative, and then ``f`` is wrong (and flat).
    """
    onehot = F.one_hot(y, logits.shape[1]).bool()
    real = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(onehot, float("-inf")).amax(dim=1)
    return torch.clamp(real - other, min=-confidence)


def _atanh_space(x: torch.Tensor) -> torch.Tensor:
    """``w`` with ``(tanh(w) + 1) / 2 == x`` (up to 5e-7): the pixels at 0 and 1 are pulled in by a
    factor 1 - 1e-6, as in Carlini and Wagner's code, so that ``w`` is finite with a nonzero gradient."""
    return torch.atanh((2 * x - 1) * (1 - 1e-6))


def cw_l2(model, x: torch.Tensor, y: torch.Tensor, steps: int = 40, confidence: float = 50.0,
          c: float = 1.0, lr: float = 0.01) -> torch.Tensor:
    """Untargeted Carlini-Wagner L2 attack (Carlini and Wagner, "Towards evaluating the robustness
    of neural networks", IEEE S&P 2017), the paper's white-box L2 attack (section 4.1: 40 iterations,
    confidence 50).

    The adversarial image is parametrised as ``x_adv = (tanh(w) + 1) / 2`` (always inside [0, 1]),
    ``w`` starts at the clean image, and Adam (learning rate ``lr``) minimises per sample
    ``||x_adv - x||_2^2 + c * max(Z_y - max_{i != y} Z_i, -kappa)`` with ``kappa = confidence``
    and ``Z`` the logits (:func:`cw_margin`).

    A single constant ``c`` is used, without Carlini and Wagner's binary search over ``c`` (40
    iterations leave no room for several restarts). For every sample the misclassified iterate with
    the smallest L2 distortion is returned; a sample never misclassified gets the final iterate.
    There is no randomness.
    """
    _check_batch(model, x, y)
    _check_steps(steps)
    check_range(confidence, "confidence", 0.0, float("inf"))
    check_positive(c, "c")
    check_positive(lr, "lr")
    x = x.detach().clone()
    n = x.shape[0]
    with eval_mode(model), torch.enable_grad():  # gradients also when called under torch.no_grad()
        w = _atanh_space(x).requires_grad_(True)
        optimizer = torch.optim.Adam([w], lr=lr)
        best = x.clone()
        best_l2 = torch.full((n,), float("inf"), device=x.device)
        found = torch.zeros(n, dtype=torch.bool, device=x.device)
        x_adv = x
        for i in range(steps + 1):
            x_adv = ((torch.tanh(w) + 1) / 2).clamp(0.0, 1.0)
            l2 = (x_adv - x).flatten(1).pow(2).sum(dim=1)
            logits = model(x_adv).float()
            if i == 0:
                _check_classes(y, logits)
            # keep the smallest-L2 misclassified iterate of each sample
            with torch.no_grad():
                better = (logits.argmax(dim=1) != y) & (l2 < best_l2)
                best = torch.where(better[:, None, None, None], x_adv, best)
                best_l2 = torch.where(better, l2, best_l2)
                found |= better
            if i == steps:  # the last iterate is evaluated, not updated
                break
            loss = (l2 + c * cw_margin(logits, y, confidence)).sum()
            (w.grad,) = torch.autograd.grad(loss, w)
            optimizer.step()
        final = x_adv.detach()
    return torch.where(found[:, None, None, None], best, final).detach()


# ---------------------------------------------------------------------------------------------
# MI-FGSM (L-inf, used black-box)


def mi_fgsm(model, x: torch.Tensor, y: torch.Tensor, eps: float = 0.04, steps: int = 10,
            decay: float = 1.0) -> torch.Tensor:
    """Momentum iterative FGSM (Dong et al., "Boosting adversarial attacks with momentum", CVPR 2018),
    the paper's black-box attack (section 4.1: eps = 0.04 and 0.08, ten iterations, crafted on a
    surrogate model).

    ``g_{k+1} = decay * g_k + grad_k / ||grad_k||_1`` and
    ``x_{k+1} = clip_{[0,1]}(x_k + (eps / steps) * sign(g_{k+1}))``, starting from the clean image,
    with ``grad_k = grad_x CE(model(x_k), y)``. The per-sample L1 norm is taken as a mean over the
    pixels (it differs from the sum by a constant factor, which leaves ``sign(g)`` unchanged).
    ``steps`` steps of ``eps / steps`` stay in the eps-ball; the projection is kept for safety.
    """
    _check_batch(model, x, y)
    eps = _check_eps(eps)
    _check_steps(steps)
    check_range(decay, "decay", 0.0, float("inf"))
    x = x.detach().clone()
    if eps == 0:
        return x
    alpha = eps / steps
    with eval_mode(model):
        x_adv = x.clone()
        g = torch.zeros_like(x)
        for i in range(steps):
            grad = input_gradient(model, x_adv, y, check_classes=i == 0)
            l1 = grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
            g = decay * g + grad / l1
            x_adv = _project_linf(x_adv + alpha * g.sign(), x, eps)
    return x_adv.detach()


# ---------------------------------------------------------------------------------------------
# registry and runner


@dataclass(frozen=True)
class AttackSpec:
    """One column of the paper's Table 1c: an attack function and its settings.

    ``kwargs`` are passed to ``fn(model, x, y, **kwargs)`` (read-only); ``black_box`` attacks are
    crafted on a surrogate model; ``randomized`` attacks take a ``generator`` for their random start.
    """

    name: str
    fn: Callable[..., torch.Tensor]
    kwargs: Mapping
    black_box: bool = False
    randomized: bool = False

    def __post_init__(self):
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))


# kind: "white-box" (crafted on the model attacked) or "black-box" (crafted on a surrogate, section 4.1)
ATTACKS = Registry("attack", kinds=("white-box", "black-box"))


def _add(spec: AttackSpec, label: str, description: str) -> None:
    """Register ``spec`` under its name, shown as ``label`` (its column of Table 1c)."""
    ATTACKS.add(spec.name, spec, label=label, kind="black-box" if spec.black_box else "white-box",
                description=description)


_add(AttackSpec("pgd", pgd, {"eps": 0.04, "steps": 10}, black_box=False, randomized=True), "pgd e=0.04",
     "untargeted L-inf PGD (Madry et al. 2018), eps = 0.04, 10 it.")
_add(AttackSpec("pgd_ll", pgd_ll, {"eps": 0.04, "steps": 10}, black_box=False, randomized=True), "pgd_ll e=0.04",
     "targeted PGD to the least-likely class (Kurakin et al. 2017)")
_add(AttackSpec("cw_l2", cw_l2, {"steps": 40, "confidence": 50.0, "c": 1.0, "lr": 0.01}, black_box=False), "cw_l2",
     "Carlini-Wagner L2 (2017), 40 iterations, confidence 50")
_add(AttackSpec("mi_fgsm_0.04", mi_fgsm, {"eps": 0.04, "steps": 10, "decay": 1.0}, black_box=True), "mi_fgsm e=0.04",
     "MI-FGSM (Dong et al. 2018), eps = 0.04, 10 it., decay 1.0")
_add(AttackSpec("mi_fgsm_0.08", mi_fgsm, {"eps": 0.08, "steps": 10, "decay": 1.0}, black_box=True), "mi_fgsm e=0.08",
     "MI-FGSM, eps = 0.08")

# the column titles of Table 1c
DISPLAY: dict[str, str] = ATTACKS.labels()


def get_attack(name: str) -> AttackSpec:
    return ATTACKS.lookup(name)


def run_attack(name: str, model, x: torch.Tensor, y: torch.Tensor, surrogate=None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Adversarial images for the registered attack ``name`` with the paper's settings.

    White-box attacks are computed on ``model`` (``surrogate`` is ignored, so a benchmark can pass
    the same arguments to every column). Black-box attacks are crafted on ``surrogate`` (required:
    the paper uses a VGG trained on the same training set) and are meant to be evaluated on ``model``.
    """
    spec = get_attack(name)
    source = model
    if spec.black_box:
        if surrogate is None:
            raise ValueError(f"surrogate: the black-box attack {name!r} is crafted on a surrogate model "
                             "(the paper: a VGG trained on the same training set); pass surrogate=...")
        source = surrogate
    kwargs = dict(spec.kwargs)
    if spec.randomized:
        kwargs["generator"] = generator
    return spec.fn(source, x, y, **kwargs)
