"""The training methods of Tables 1-3, as one registry: name -> loss function.

Each method maps a batch of B clean images ``x`` (float NCHW in [0, 1]) and hard labels ``y``
to the scalar loss of one training step; :mod:`mtlat_edu.training.loop` does the rest.

==============  ===========================================================================
``standard``    cross-entropy on the clean batch (the paper's "standard" models)
``mixup``       eq. (1) on the whole batch, ``lam ~ Beta(alpha, alpha)``
``fgsm``        half clean, half untargeted FGSM (eq. 2) labelled with the ground truth
``target_fgsm`` half clean, half targeted FGSM (eq. 3, 5) labelled with the ground truth
``ls``          as ``target_fgsm``, adversarial half labelled by label smoothing with
                parameter eps (section 5.4)
``tlat``        half clean, half targeted FGSM labelled by TLAT, eq. (4)
``iat``         Interpolated Adversarial Training (Lamb et al.): untargeted FGSM on the clean
                images, *then* Mixup, labelled with plain Mixup labels; plus a Mixup clean half
``iat_targeted`` IAT read with M-TLAT's attack: *targeted* FGSM towards a target drawn by the
                same rule as M-TLAT's (``cfg.target``), then Mixup, plain Mixup labels
``mtlat``       Algorithm 1 / eq. (6): Mixup, *then* targeted FGSM, labelled by TLAT
==============  ===========================================================================

``iat`` and ``iat_targeted`` are the two readings of the paper's IAT (docs/claims.md, "Two readings
of IAT"): Lamb et al. perturb with an untargeted attack; the paper names as the differences between
IAT and M-TLAT only the labels and the order of mixing and perturbing, and trains every model "with
the same FGSM" (eps ~ U[0, 0.025]), which M-TLAT uses targeted. ``iat_targeted`` keeps those two
differences and nothing else.

Beyond the paper (its section 6 names both as future work; see docs/future.md), kept out of the
reproduction of Tables 1-3 (registered with ``future=True``: :data:`FUTURE_METHODS`):

==================  =======================================================================
``mtlat_pgd``       Algorithm 1 with line 5's targeted FGSM replaced by k-step targeted PGD
``manifold_mtlat``  Algorithm 1 with Mixup replaced by Manifold Mixup (Verma et al. 2019);
                    the targeted FGSM perturbs the two input images of each couple
==================  =======================================================================

How a batch is used (our reading of section 3.2 and Algorithm 1, documented in docs/design.md):

* The adversarial methods train "with minibatches that contain both clean samples and
  adversarial examples" (section 5.4): the B images split into a clean half (the first B/2)
  and an adversarial half (the last B/2), so B must be even. Both halves go through the model
  in one forward pass (batch norm sees the whole mixed mini-batch) and the loss is
  ``loss_1 + loss_2`` as Algorithm 1 writes it, each term the mean cross-entropy over its half.
* In ``mtlat`` the halves play the roles of Algorithm 1's ``(x_1, x_2)`` couples and
  ``(x_3, x_4)`` couples: each half is mixed with a random permutation of itself, so B images
  give B/2 couples for ``x_mix1`` and B/2 couples for ``x_mix2``. The number of images in the
  loss is B, exactly as for ``standard``; the only extra work is one forward and
  backward-to-input pass over the B/2 images being perturbed.
* ``lam`` and ``eps`` are drawn per couple, as Algorithm 1 draws them (``per_batch=True`` draws
  one of each per batch). ``eps ~ U[0, eps_max]`` with ``eps_max = 0.025`` (section 4.2).
* ``y_target ~ U{0..N-1}`` (Algorithm 1; ``target="random_other"`` excludes the true class,
  ``"least_likely"`` uses the model's least likely class, ``"random_unmixed"`` excludes both classes
  of the mixed couple, or the true class in a method without Mixup; docs/claims.md, "Target rule").
* The perturbation is crafted with the model in its training mode, on the same weights
  (Algorithm 1 uses the current theta).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from mtlat_edu.core.checks import (check_int, check_int_set, check_labels, check_model_input, check_positive,
                                   check_range)
from mtlat_edu.core.registry import Registry
from .adversarial import (EPS_MAX, PGD_STEP_FACTOR, PGD_STEPS, TARGET_SELECTION, _fgsm, _sample_eps, _targeted_fgsm,
                          _targeted_pgd)
from .labels import _one_hot, _smooth_labels, _tlat_labels, soft_cross_entropy
from .mixup import DEFAULT_ALPHA, _random_mixup, _random_pairs, interpolate, manifold_forward

# Manifold Mixup's mixing layers (Verma et al.'s reference code: ``layer_mix = randint(0, 2)``).
MANIFOLD_LAYERS = (0, 1, 2)


@dataclass(frozen=True)
class MethodConfig:
    """Hyper-parameters shared by the methods (defaults: the paper's, section 4.2)."""

    num_classes: int = 10
    alpha: float = DEFAULT_ALPHA
    eps_max: float = EPS_MAX
    per_batch: bool = False
    target: str = "random"
    pgd_steps: int = PGD_STEPS                      # mtlat_pgd: k
    pgd_step_factor: float = PGD_STEP_FACTOR        # mtlat_pgd: step = factor * eps / k
    pgd_random_start: bool = False                  # mtlat_pgd: start from x_mix2 + U[-eps, eps]
    manifold_layers: tuple[int, ...] = MANIFOLD_LAYERS  # manifold_mtlat: the layers drawn from

    def __post_init__(self):
        check_int(self.num_classes, "num_classes", 2)
        check_positive(self.alpha, "alpha")
        check_range(self.eps_max, "eps_max", 0.0, 1.0)
        check_int(self.pgd_steps, "pgd_steps")
        check_range(self.pgd_step_factor, "pgd_step_factor", 0.0, 100.0, low_open=True)
        if not isinstance(self.pgd_random_start, bool):
            raise ValueError(f"pgd_random_start: expected True or False, got {self.pgd_random_start!r}")
        object.__setattr__(self, "manifold_layers", check_int_set(self.manifold_layers, "manifold_layers"))
        TARGET_SELECTION.check(self.target, "target")


LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, MethodConfig, "torch.Generator | None"], torch.Tensor]
# kind "adversarial": the batch splits into a clean and an adversarial half; "clean": it does not.
# facts: "trusted", the loss without the input checks (:func:`trusted_method`); "table3", a row of
# Table 3 (section 5.4); "future", beyond the paper (its section 6), out of the reproduction of Tables 1-3.
METHODS = Registry("method", kinds=("clean", "adversarial"))


def register(name: str, label: str, kind: str, *, table3: bool = False, future: bool = False):
    """Register a loss ``fn(model, x, y, cfg, g)`` under ``name``, shown as ``label`` (the paper's
    row title), of ``kind`` "clean" or "adversarial", with its table membership (``table3``: a row of
    Table 3; ``future``: beyond the paper). The registered function checks the batch (float NCHW
    images in [0, 1] with the model's channels, integer labels in range, a MethodConfig), then calls
    ``fn``, which trusts it; ``fn`` itself is the entry's ``trusted`` fact (:func:`trusted_method`)."""
    def deco(fn: LossFn) -> LossFn:
        @functools.wraps(fn)
        def loss(model, x, y, cfg: MethodConfig, g=None):
            _check_batch(model, x, y, cfg, name)
            return fn(model, x, y, cfg, g)
        return METHODS.add(name, loss, label=label, kind=kind, description=(fn.__doc__ or "").split("\n")[0],
                           facts={"trusted": fn, "table3": table3, "future": future})
    return deco


def _check_batch(model, x, y, cfg: MethodConfig, method: str = "mtlat") -> None:
    """The input checks of a training method ``method``: ``cfg`` a MethodConfig, ``x`` images the
    model takes (at least one), ``y`` one class index in ``[0, cfg.num_classes)`` per image."""
    if not isinstance(cfg, MethodConfig):
        raise ValueError(f"cfg: expected a MethodConfig, got {type(cfg).__name__}")
    check_model_input(x, model, "x")
    if x.shape[0] == 0:
        raise ValueError(f"x: an empty batch (0 images); the training method {method!r} needs at least "
                         "one image (two for the adversarial methods)")
    check_labels(y, cfg.num_classes, x.shape[0], "y")


def get_method(name: str) -> LossFn:
    """The loss of method ``name``; it checks its inputs (:func:`_check_batch`)."""
    return METHODS.lookup(name)


def trusted_method(name: str) -> LossFn:
    """The loss of method ``name`` without the input checks: for a caller that checked its data
    where it entered (the training loop: the configuration once, the batches valid by construction),
    where a value check per step would synchronise the GPU. A method registered without a
    ``trusted`` fact (``METHODS[name] = fn``) is its own trusted form."""
    return METHODS.fact(name, "trusted", METHODS.lookup(name))


# ---------------------------------------------------------------------------------------------
# helpers

def split_batch(x: torch.Tensor, y: torch.Tensor):
    """First half clean, second half adversarial; B must be even and >= 2."""
    b = x.shape[0]
    if b < 2 or b % 2:
        raise ValueError(f"batch_size: adversarial methods split a batch into a clean and an "
                         f"adversarial half, so it must be even and >= 2, got {b}")
    h = b // 2
    return x[:h], y[:h], x[h:], y[h:]


def _mix(x, y_soft, cfg: MethodConfig, g):
    x_mix, y_mix, _ = _random_mixup(x, y_soft, cfg.alpha, per_batch=cfg.per_batch, generator=g)
    return x_mix, y_mix


def _eps(n, cfg: MethodConfig, g, device):
    return _sample_eps(n, cfg.eps_max, per_batch=cfg.per_batch, generator=g, device=device).to(device)


def _targets(model, x, y, cfg: MethodConfig, g, mixed=None):
    """``y_target`` by the rule ``cfg.target``; ``mixed``: the couples' Mixup labels (read by
    ``random_unmixed``, which never draws a class of the couple)."""
    return TARGET_SELECTION[cfg.target](model, x, y, cfg.num_classes, g, mixed=mixed)


def _needs_couples(cfg: MethodConfig) -> bool:
    """Whether the target rule reads the couples' labels (kind "couple": ``random_unmixed``)."""
    return TARGET_SELECTION.kind(cfg.target) == "couple"


def two_part_loss(model, x_clean, t_clean, x_adv, t_adv) -> torch.Tensor:
    """``L(x_clean, t_clean) + L(x_adv, t_adv)`` (Algorithm 1's ``loss_1 + loss_2``) from one
    forward pass over both parts; targets are hard (B,) or soft (B, N)."""
    return _two_part_ce(model(torch.cat([x_clean, x_adv])), t_clean, t_adv)


def _two_part_ce(logits, t_clean, t_adv) -> torch.Tensor:
    """``loss_1 + loss_2`` of logits whose first rows go with ``t_clean`` and the rest with ``t_adv``."""
    h = t_clean.shape[0]
    return _ce(logits[:h], t_clean) + _ce(logits[h:], t_adv)


def _ce(logits, t):
    return F.cross_entropy(logits.float(), t) if t.dim() == 1 else soft_cross_entropy(logits, t)


# ---------------------------------------------------------------------------------------------
# the registry

@register("standard", "standard", "clean", table3=True)
def standard(model, x, y, cfg: MethodConfig, g=None):
    """Plain cross-entropy on the clean batch."""
    return F.cross_entropy(model(x).float(), y)


@register("mixup", "Mixup", "clean")
def mixup_method(model, x, y, cfg: MethodConfig, g=None):
    """Mixup, eq. (1), on the whole batch."""
    x_mix, y_mix = _mix(x, _one_hot(y, cfg.num_classes), cfg, g)
    return soft_cross_entropy(model(x_mix), y_mix)


@register("fgsm", "FGSM", "adversarial", table3=True)
def fgsm_method(model, x, y, cfg: MethodConfig, g=None):
    """Untargeted FGSM adversarial training (eq. 2), adversarial samples labelled ``y_clean``."""
    xc, yc, xa, ya = split_batch(x, y)
    x_adv = _fgsm(model, xa, ya, _eps(xa.shape[0], cfg, g, x.device))
    return two_part_loss(model, xc, yc, x_adv, ya)


def _targeted_half(model, x, y, cfg, g):
    xc, yc, xa, ya = split_batch(x, y)
    eps = _eps(xa.shape[0], cfg, g, x.device)
    y_t = _targets(model, xa, ya, cfg, g)
    return xc, yc, _targeted_fgsm(model, xa, y_t, eps), ya, y_t, eps


@register("target_fgsm", "target-FGSM", "adversarial", table3=True)
def target_fgsm_method(model, x, y, cfg: MethodConfig, g=None):
    """Targeted FGSM adversarial training, eq. (3): labelled with the ground truth."""
    xc, yc, x_adv, ya, _, _ = _targeted_half(model, x, y, cfg, g)
    return two_part_loss(model, xc, yc, x_adv, ya)


@register("ls", "LS", "adversarial", table3=True)
def ls_method(model, x, y, cfg: MethodConfig, g=None):
    """The LS model of section 5.4: targeted FGSM, adversarial labels smoothed with parameter eps."""
    xc, yc, x_adv, ya, _, eps = _targeted_half(model, x, y, cfg, g)
    return two_part_loss(model, xc, yc, x_adv, _smooth_labels(ya, cfg.num_classes, eps))


@register("tlat", "TLAT", "adversarial", table3=True)
def tlat_method(model, x, y, cfg: MethodConfig, g=None):
    """TLAT, eq. (4): targeted FGSM labelled ``(1 - eps) * y_clean + eps * y_target``."""
    xc, yc, x_adv, ya, y_t, eps = _targeted_half(model, x, y, cfg, g)
    y_adv = _tlat_labels(_one_hot(ya, cfg.num_classes), y_t, eps)
    return two_part_loss(model, xc, yc, x_adv, y_adv)


@register("iat", "IAT", "adversarial")
def iat_method(model, x, y, cfg: MethodConfig, g=None):
    """Interpolated Adversarial Training (Lamb et al.): perturb (untargeted FGSM), then mix.

    Clean half: Mixup. Adversarial half: FGSM on the clean images, then Mixup of the perturbed
    images, labelled with the plain Mixup labels (no target information).
    """
    xc, yc, xa, ya = split_batch(x, y)
    n = cfg.num_classes
    x_mix1, y_mix1 = _mix(xc, _one_hot(yc, n), cfg, g)
    x_adv = _fgsm(model, xa, ya, _eps(xa.shape[0], cfg, g, x.device))
    x_mix2, y_mix2 = _mix(x_adv, _one_hot(ya, n), cfg, g)
    return two_part_loss(model, x_mix1, y_mix1, x_mix2, y_mix2)


@register("iat_targeted", "IAT (targeted)", "adversarial")
def iat_targeted_method(model, x, y, cfg: MethodConfig, g=None):
    """IAT with M-TLAT's attack: targeted FGSM (eq. 5, target by ``cfg.target``), then Mixup.

    Differs from ``mtlat`` only in the two ways the paper names (section 5.2): the adversarial
    images are perturbed *before* they are mixed, and they carry the plain Mixup labels (no target
    mass); differs from ``iat`` only in the direction of the FGSM step.
    """
    xc, yc, xa, ya = split_batch(x, y)
    n = cfg.num_classes
    x_mix1, y_mix1 = _mix(xc, _one_hot(yc, n), cfg, g)
    eps = _eps(xa.shape[0], cfg, g, x.device)
    if _needs_couples(cfg):  # the couples are drawn before the target, which avoids image i's couple's classes
        lam2, p2 = _random_pairs(xa.shape[0], cfg.alpha, per_batch=cfg.per_batch, generator=g, device=x.device)
        ya1 = _one_hot(ya, n)
        y_mix2 = interpolate(ya1, ya1[p2], lam2)
        x_adv = _targeted_fgsm(model, xa, _targets(model, xa, ya, cfg, g, mixed=y_mix2), eps)
        return two_part_loss(model, x_mix1, y_mix1, interpolate(x_adv, x_adv[p2], lam2), y_mix2)
    x_adv = _targeted_fgsm(model, xa, _targets(model, xa, ya, cfg, g), eps)
    x_mix2, y_mix2 = _mix(x_adv, _one_hot(ya, n), cfg, g)
    return two_part_loss(model, x_mix1, y_mix1, x_mix2, y_mix2)


class MtlatCouples(NamedTuple):
    """The two training batches of Algorithm 1 (:func:`mtlat_couples`), a tuple with named fields:
    ``x_mix1, y_mix1, x_mtlat, y_mtlat, extras = mtlat_couples(...)`` unpacks it as before (notebook
    04, section "Algorithm 1 on a batch"), ``couples.x_mtlat`` reads one field. Each batch holds
    B/2 couples of the B images given."""

    x_mix1: torch.Tensor
    """Mixup of the clean half (Algorithm 1, lines 1-2): the couples ``(x_1, x_2)`` mixed, no attack."""
    y_mix1: torch.Tensor
    """Their Mixup labels (soft, one row per couple)."""
    x_mtlat: torch.Tensor
    """The adversarial half mixed (lines 3-4), then perturbed towards ``y_target`` (line 5, eq. 6)."""
    y_mtlat: torch.Tensor
    """Their M-TLAT labels, eq. (6): ``(1 - eps) * y_mix2 + eps * one_hot(y_target)`` (line 6)."""
    extras: dict
    """The intermediates, for teaching and tests: ``x_mix2``, ``y_mix2``, ``y_target`` and ``eps``."""


def mtlat_couples(model, x, y, cfg: MethodConfig, g=None, attack=None) -> MtlatCouples:
    """The two training batches of Algorithm 1 from B clean images (notebook 04, ``mtlat`` and
    ``mtlat_pgd`` training).

    Returns :class:`MtlatCouples` ``(x_mix1, y_mix1, x_mtlat, y_mtlat, extras)`` where ``extras`` holds
    the intermediate ``x_mix2``, ``y_mix2``, ``y_target`` and ``eps`` (for teaching and tests).
    ``attack(model, x_mix2, y_target, eps)`` is line 5's perturbation (default: targeted FGSM, eq. 5).
    """
    _check_batch(model, x, y, cfg)
    return _mtlat_couples(model, x, y, cfg, g, attack)


def _mtlat_couples(model, x, y, cfg: MethodConfig, g=None, attack=None) -> MtlatCouples:
    attack = attack or _targeted_fgsm
    xc, yc, xa, ya = split_batch(x, y)
    n = cfg.num_classes
    x_mix1, y_mix1 = _mix(xc, _one_hot(yc, n), cfg, g)             # Algorithm 1, lines 1-2
    x_mix2, y_mix2 = _mix(xa, _one_hot(ya, n), cfg, g)             # lines 3-4
    eps = _eps(xa.shape[0], cfg, g, x.device)
    y_t = _targets(model, x_mix2, ya, cfg, g, mixed=y_mix2)
    x_mtlat = attack(model, x_mix2, y_t, eps)                      # line 5, eq. (6)
    y_mtlat = _tlat_labels(y_mix2, y_t, eps)                       # line 6, eq. (6)
    extras = {"x_mix2": x_mix2, "y_mix2": y_mix2, "y_target": y_t, "eps": eps}
    return MtlatCouples(x_mix1, y_mix1, x_mtlat, y_mtlat, extras)


@register("mtlat", "M-TLAT", "adversarial")
def mtlat_method(model, x, y, cfg: MethodConfig, g=None):
    """M-TLAT, Algorithm 1: ``loss = L(x_mix1, y_mix1) + L(x_mtlat, y_mtlat)``."""
    c = _mtlat_couples(model, x, y, cfg, g)
    return two_part_loss(model, c.x_mix1, c.y_mix1, c.x_mtlat, c.y_mtlat)


# ---------------------------------------------------------------------------------------------
# beyond the paper (section 6, future work): docs/future.md

def pgd_attack(cfg: MethodConfig, g=None):
    """Line 5 of Algorithm 1 for ``mtlat_pgd``: :func:`adversarial.targeted_pgd` with the config's
    ``pgd_steps``, ``pgd_step_factor`` and ``pgd_random_start`` (the random start drawn from ``g``), on
    inputs :func:`mtlat_couples` checked."""
    return functools.partial(_targeted_pgd, steps=cfg.pgd_steps, step_factor=cfg.pgd_step_factor,
                             random_start=cfg.pgd_random_start, generator=g)


@register("mtlat_pgd", "M-TLAT (PGD)", "adversarial", future=True)
def mtlat_pgd_method(model, x, y, cfg: MethodConfig, g=None):
    """M-TLAT with an iterative attack: Algorithm 1 with line 5's targeted FGSM replaced by
    ``k = cfg.pgd_steps`` steps of targeted PGD (step ``pgd_step_factor * eps / k``, projected onto
    the L-inf ball of radius ``eps`` around ``x_mix2``), ``eps ~ U[0, eps_max]`` per couple as in
    M-TLAT. The label is eq. (6), ``(1 - eps) * y_mix2 + eps * y_target``, with ``eps`` the radius of
    the ball the final iterate lies in (the drawn eps, as for FGSM). With ``pgd_steps=1`` and no
    random start this *is* ``mtlat`` (same draws, same images, same labels)."""
    c = _mtlat_couples(model, x, y, cfg, g, attack=pgd_attack(cfg, g))
    return two_part_loss(model, c.x_mix1, c.y_mix1, c.x_mtlat, c.y_mtlat)


def draw_layer(layers, g=None) -> int:
    """One mixing layer per batch, uniformly from ``layers`` (Verma et al.: ``randint(0, 2)`` per batch)."""
    device = g.device if g is not None else "cpu"
    return int(layers[int(torch.randint(len(layers), (1,), generator=g, device=device).item())])


class ManifoldCouples(NamedTuple):
    """One ``manifold_mtlat`` batch (:func:`manifold_couples`), a tuple with named fields:
    ``x_a, x_b, lam, y_mix1, y_mtlat, layer, extras = manifold_couples(...)`` unpacks it as before
    (notebook 10, "One manifold_mtlat batch"). ``manifold_forward(model, x_a, x_b, lam, layer)`` gives
    the logits of the step's B couples (clean half first, adversarial second)."""

    x_a: torch.Tensor
    """The first image of each couple: the clean half ``x_1``, then the perturbed adversarial half ``x_3 + d_3``."""
    x_b: torch.Tensor
    """The second image of each couple: ``x_1[perm1]``, then the perturbed partners ``x_3[perm] + d_4``."""
    lam: torch.Tensor
    """The couples' mixing weights, ``lam ~ Beta(alpha, alpha)``, clean couples first."""
    y_mix1: torch.Tensor
    """The clean couples' Mixup labels."""
    y_mtlat: torch.Tensor
    """The adversarial couples' labels, eq. (6): ``(1 - eps) * y_mix2 + eps * one_hot(y_target)``."""
    layer: int
    """The mixing layer drawn for the batch (0: the input; ``models.MIX_POINTS``)."""
    extras: dict
    """``x_adv_a``, ``x_adv_b`` (the perturbed adversarial couples), ``perm``, ``y_mix2``, ``y_target``, ``eps``."""


def manifold_couples(model, x, y, cfg: MethodConfig, g=None) -> ManifoldCouples:
    """Algorithm 1 with Manifold Mixup: the couples, their adversarial inputs and labels (notebook 10,
    ``manifold_mtlat`` training).

    One layer ``l`` is drawn for the batch from ``cfg.manifold_layers`` (:func:`draw_layer`); both
    halves are split into couples ``(x_i, x_perm[i])`` with ``lam ~ Beta(alpha, alpha)`` per couple.
    The adversarial step stays in pixel space: targeted FGSM (eq. 5) with the couple's ``eps``
    perturbs *both input images of each couple*, through the gradient of the loss of the couple
    mixed at layer ``l`` towards ``y_target``, so every image moves by at most ``eps`` in L-inf
    and ``eps`` means what it means in the benchmark. Each couple owns its own copy of the partner
    image (``x_b = x_a[perm]``), so a perturbation serves one target only. The label is eq. (6),
    ``(1 - eps) * y_mix + eps * y_target``. At layer 0 this is M-TLAT up to clipping (the sign of
    ``lam * g`` is the sign of ``g``, so the mixed input moves by ``eps * sign(g)``).

    Returns :class:`ManifoldCouples` ``(x_a, x_b, lam, y_mix1, y_mtlat, layer, extras)``: the B
    couples (clean half first, adversarial second) to pass to
    :func:`mtlat_edu.paper.mixup.manifold_forward` at ``layer``, their labels, and
    ``extras`` with ``x_adv_a``, ``x_adv_b`` (the perturbed couples of the adversarial half, whose
    clean images are ``x_3`` and ``x_3[perm]``), ``perm``, ``y_mix2``, ``y_target`` and ``eps``.
    """
    _check_batch(model, x, y, cfg, "manifold_mtlat")
    return _manifold_couples(model, x, y, cfg, g)


def _manifold_couples(model, x, y, cfg: MethodConfig, g=None) -> ManifoldCouples:
    xc, yc, xa, ya = split_batch(x, y)
    n = cfg.num_classes
    layer = draw_layer(cfg.manifold_layers, g)
    lam1, p1 = _random_pairs(xc.shape[0], cfg.alpha, per_batch=cfg.per_batch, generator=g, device=x.device)
    lam2, p2 = _random_pairs(xa.shape[0], cfg.alpha, per_batch=cfg.per_batch, generator=g, device=x.device)
    yc1, ya1 = _one_hot(yc, n), _one_hot(ya, n)
    y_mix1, y_mix2 = interpolate(yc1, yc1[p1], lam1), interpolate(ya1, ya1[p2], lam2)
    eps = _eps(xa.shape[0], cfg, g, x.device)
    h = xa.shape[0]

    def couples(z):  # the adversarial couples, stacked as one batch [x_a; x_b], mixed at `layer`
        return manifold_forward(model, z[:h], z[h:], lam2, layer)

    pairs = torch.cat([xa, xa[p2]])
    y_t = _targets(couples, pairs, ya, cfg, g, mixed=y_mix2)
    adv = _targeted_fgsm(couples, pairs, y_t, torch.cat([eps, eps]))
    y_mtlat = _tlat_labels(y_mix2, y_t, eps)
    x_a, x_b = torch.cat([xc, adv[:h]]), torch.cat([xc[p1], adv[h:]])
    extras = {"x_adv_a": adv[:h], "x_adv_b": adv[h:], "perm": p2, "y_mix2": y_mix2, "y_target": y_t, "eps": eps}
    return ManifoldCouples(x_a, x_b, torch.cat([lam1, lam2]), y_mix1, y_mtlat, layer, extras)


@register("manifold_mtlat", "Manifold M-TLAT", "adversarial", future=True)
def manifold_mtlat_method(model, x, y, cfg: MethodConfig, g=None):
    """M-TLAT with Manifold Mixup (:func:`manifold_couples`): ``L(mix_l(x_1, x_2), y_mix1) +
    L(mix_l(x_3 + d_3, x_4 + d_4), y_mtlat)`` in one forward pass mixed at the drawn layer ``l``."""
    c = _manifold_couples(model, x, y, cfg, g)
    return _two_part_ce(manifold_forward(model, c.x_a, c.x_b, c.lam, c.layer), c.y_mix1, c.y_mtlat)


# Methods whose batches split into a clean and an adversarial half (every registered one but
# standard and mixup), in registration order.
ADVERSARIAL: tuple[str, ...] = METHODS.names(kind="adversarial")
# Views of the table membership the entries carry, in registration order: the rows of Tables 1-3
# (both readings of IAT, docs/claims.md), Table 3's rows (section 5.4, the paper's order), and the
# paper's future work (section 6), implemented beyond it.
TABLE_METHODS: tuple[str, ...] = METHODS.names(future=False)
TABLE3_METHODS: tuple[str, ...] = METHODS.names(table3=True)
FUTURE_METHODS: tuple[str, ...] = METHODS.names(future=True)
