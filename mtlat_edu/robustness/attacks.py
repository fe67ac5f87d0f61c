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

Two more white-box columns read the ``cw_l2`` run under other success rules (:data:`CW_RULES`,
docs/attacks.md "CW success rules"): ``cw_l2_kappa50`` (C&W's margin > 50) and ``cw_l2_within0.5``
(misclassified within L2 0.5); :func:`run_attacks` serves all three from one run.

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

from dataclasses import dataclass, field
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


@dataclass
class CWRun:
    """What one run of :func:`cw_l2_run` records per image, for every success rule (docs/attacks.md).

    ``clean``: the images attacked; ``best``: the misclassified iterate with the smallest L2
    distortion (the final iterate where none was misclassified); ``l2``: its L2 distance
    ``||best - x||_2`` (inf where none); ``margin``: the largest margin ``max_{i != y} Z_i - Z_y``
    reached over the iterates; ``best_kappa``: the iterate of smallest L2 among those whose margin
    exceeds ``kappa`` (the clean image where none did); ``kappa``: the confidence of the run."""

    clean: torch.Tensor
    best: torch.Tensor
    l2: torch.Tensor
    margin: torch.Tensor
    best_kappa: torch.Tensor
    kappa: float


def cw_l2_run(model, x: torch.Tensor, y: torch.Tensor, steps: int = 40, confidence: float = 50.0,
              c: float = 1.0, lr: float = 0.01) -> CWRun:
    """Untargeted Carlini-Wagner L2 attack (Carlini and Wagner, "Towards evaluating the robustness
    of neural networks", IEEE S&P 2017), the paper's white-box L2 attack (section 4.1: 40 iterations,
    confidence 50), recording what each success rule needs (:class:`CWRun`).

    The adversarial image is parametrised as ``x_adv = (tanh(w) + 1) / 2`` (always inside [0, 1]),
    ``w`` starts at the clean image, and Adam (learning rate ``lr``) minimises per sample
    ``||x_adv - x||_2^2 + c * max(Z_y - max_{i != y} Z_i, -kappa)`` with ``kappa = confidence``
    and ``Z`` the logits (:func:`cw_margin`). Every iterate (the start and the one after each of the
    ``steps`` updates) is evaluated before it is updated, as in Carlini and Wagner's code.

    A single constant ``c`` is used, without Carlini and Wagner's binary search over ``c`` (40
    iterations leave no room for several restarts). There is no randomness.
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
        best_kappa = x.clone()
        kappa_l2 = torch.full((n,), float("inf"), device=x.device)
        margin = torch.full((n,), float("-inf"), device=x.device)
        x_adv = x
        for i in range(steps + 1):
            x_adv = ((torch.tanh(w) + 1) / 2).clamp(0.0, 1.0)
            l2 = (x_adv - x).flatten(1).pow(2).sum(dim=1)
            logits = model(x_adv).float()
            if i == 0:
                _check_classes(y, logits)
            with torch.no_grad():
                # keep the smallest-L2 misclassified iterate of each sample (the rule "any")
                better = (logits.argmax(dim=1) != y) & (l2 < best_l2)
                best = torch.where(better[:, None, None, None], x_adv, best)
                best_l2 = torch.where(better, l2, best_l2)
                found |= better
                # C&W's own rule: Z_y + kappa below the best other logit; keep the smallest-L2 such iterate
                m = -cw_margin(logits, y, float("inf"))
                margin = torch.maximum(margin, m)
                better_k = (m > confidence) & (l2 < kappa_l2)
                best_kappa = torch.where(better_k[:, None, None, None], x_adv, best_kappa)
                kappa_l2 = torch.where(better_k, l2, kappa_l2)
            if i == steps:  # the last iterate is evaluated, not updated
                break
            loss = (l2 + c * cw_margin(logits, y, confidence)).sum()
            (w.grad,) = torch.autograd.grad(loss, w)
            optimizer.step()
        final = x_adv.detach()
    return CWRun(clean=x, best=torch.where(found[:, None, None, None], best, final).detach(), l2=best_l2.sqrt(),
                 margin=margin, best_kappa=best_kappa.detach(), kappa=float(confidence))


def cw_l2(model, x: torch.Tensor, y: torch.Tensor, steps: int = 40, confidence: float = 50.0,
          c: float = 1.0, lr: float = 0.01) -> torch.Tensor:
    """The CW-L2 attack of :func:`cw_l2_run` under the success rule "any" (the ``cw_l2`` column):
    for every sample the misclassified iterate with the smallest L2 distortion is returned; a
    sample never misclassified gets the final iterate."""
    return cw_l2_run(model, x, y, steps, confidence, c, lr).best


def _where(ok: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(ok[:, None, None, None], a, b)


# How a CW run counts a success: name -> ``fn(run: CWRun, **rule_kwargs)`` -> the images returned
# (the successful iterate of the rule, else the clean image: a failed attack leaves the image as it was).
CW_RULES = Registry("cw_rule")
CW_RULES.add("any", lambda run: run.best, label="any misclassification",
             description="an iterate counts when it is misclassified, at any distance (the cw_l2 column)")
CW_RULES.add("kappa", lambda run: _where(run.margin > run.kappa, run.best_kappa, run.clean), label="C&W's margin",
             description="an iterate counts when max_{i != y} Z_i - Z_y > kappa (Carlini and Wagner's code)")
CW_RULES.add("within", lambda run, bound: _where(run.l2 <= bound, run.best, run.clean), label="within an L2 bound",
             description="an iterate counts when it is misclassified within the L2 distance bound")
CW_BOUND = 0.5  # RobustBench's CIFAR-10 L2 threat model (images in [0, 1], 32 x 32 x 3), chosen before results


def cw_l2_rule(model, x: torch.Tensor, y: torch.Tensor, rule: str = "any", steps: int = 40,
               confidence: float = 50.0, c: float = 1.0, lr: float = 0.01, **rule_kwargs) -> torch.Tensor:
    """The images :func:`cw_l2_run` returns under the success rule ``rule`` of :data:`CW_RULES`
    (``bound=`` for "within"): the rule's successful iterate, else the clean image."""
    return CW_RULES.lookup(rule, "rule")(cw_l2_run(model, x, y, steps, confidence, c, lr), **rule_kwargs)


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
    A *reading* (``reading_of``: the attack it reads) is the same attack run counted under another
    success rule (``rule_kwargs``: the rule and its settings, passed to :data:`CW_RULES`), so it
    costs no attack of its own when measured with it (:func:`run_attacks`).
    """

    name: str
    fn: Callable[..., torch.Tensor]
    kwargs: Mapping
    black_box: bool = False
    randomized: bool = False
    reading_of: str | None = None   # another success rule of this attack's run (``rule_kwargs``)
    rule_kwargs: Mapping = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))
        object.__setattr__(self, "rule_kwargs", MappingProxyType(dict(self.rule_kwargs)))


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
_CW = {"steps": 40, "confidence": 50.0, "c": 1.0, "lr": 0.01}
_add(AttackSpec("cw_l2", cw_l2, _CW, black_box=False), "cw_l2",
     "Carlini-Wagner L2 (2017), 40 iterations, confidence 50; success: any misclassification")
_add(AttackSpec("mi_fgsm_0.04", mi_fgsm, {"eps": 0.04, "steps": 10, "decay": 1.0}, black_box=True), "mi_fgsm e=0.04",
     "MI-FGSM (Dong et al. 2018), eps = 0.04, 10 it., decay 1.0")
_add(AttackSpec("mi_fgsm_0.08", mi_fgsm, {"eps": 0.08, "steps": 10, "decay": 1.0}, black_box=True), "mi_fgsm e=0.08",
     "MI-FGSM, eps = 0.08")

# The CW column under C&W's own success rule and within an L2 bound (readings of the same run, docs/attacks.md)
_add(AttackSpec("cw_l2_kappa50", cw_l2_rule, _CW, reading_of="cw_l2", rule_kwargs={"rule": "kappa"}),
     "cw_l2 kappa=50", "the cw_l2 run; success: margin max_{i != y} Z_i - Z_y > kappa = 50 (C&W's rule)")
_add(AttackSpec(f"cw_l2_within{CW_BOUND}", cw_l2_rule, _CW, reading_of="cw_l2",
                rule_kwargs={"rule": "within", "bound": CW_BOUND}),
     f"cw_l2 L2<={CW_BOUND}", f"the cw_l2 run; success: misclassified within L2 distance {CW_BOUND}")

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
    kwargs = {**spec.kwargs, **spec.rule_kwargs}
    if spec.randomized:
        kwargs["generator"] = generator
    return spec.fn(source, x, y, **kwargs)


def paper_attacks() -> tuple[str, ...]:
    """The paper's five attacks (Table 1c), in registry order: every attack that is no reading."""
    return tuple(n for n in ATTACKS if ATTACKS[n].reading_of is None)


def readings_of(name: str) -> tuple[str, ...]:
    """The readings of the attack ``name`` (its other success rules), in registry order."""
    return tuple(n for n in ATTACKS if ATTACKS[n].reading_of == name)


def family(name: str) -> str:
    """The attack whose run a column reads: itself, or the attack it is a reading of."""
    return get_attack(name).reading_of or name


def run_attacks(names, model, x: torch.Tensor, y: torch.Tensor, surrogate=None,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """``{name: adversarial images}`` for white-box columns of one :func:`family`, from ONE run of
    that attack: ``cw_l2`` and its readings share a :func:`cw_l2_run` (each rule picks its images,
    :data:`CW_RULES`); any other single attack is :func:`run_attack`."""
    names = tuple(names)
    bases = {family(n) for n in names}
    if len(bases) != 1:
        raise ValueError(f"names: columns of one attack's run expected, got {', '.join(names)} "
                         f"(runs of {', '.join(sorted(bases))})")
    base = bases.pop()
    if base != "cw_l2" or len(names) == 1:
        return {n: run_attack(n, model, x, y, surrogate, generator) for n in names}
    run = cw_l2_run(model, x, y, **get_attack(base).kwargs)
    out = {}
    for n in names:
        rule_kwargs = dict(get_attack(n).rule_kwargs) or {"rule": "any"}
        out[n] = CW_RULES.lookup(rule_kwargs.pop("rule"), "rule")(run, **rule_kwargs)
    return out
