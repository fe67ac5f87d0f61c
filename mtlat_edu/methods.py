"""The training methods of Tables 1-3, as one registry: name -> loss function.

Each method maps a batch of B clean images ``x`` (float NCHW in [0, 1]) and hard labels ``y``
to the scalar loss of one training step; :mod:`mtlat_edu.train` does the rest.

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
``mtlat``       Algorithm 1 / eq. (6): Mixup, *then* targeted FGSM, labelled by TLAT
==============  ===========================================================================

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
  ``"least_likely"`` uses the model's least likely class).
* The perturbation is crafted with the model in its training mode, on the same weights
  (Algorithm 1 uses the current theta).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .adversarial import EPS_MAX, TARGET_SELECTION, fgsm, sample_eps, targeted_fgsm
from .checks import check_choice, check_int, check_labels, check_model_input, check_positive, check_range
from .labels import one_hot, smooth_labels, soft_cross_entropy, tlat_labels
from .mixup import DEFAULT_ALPHA, random_mixup


@dataclass(frozen=True)
class MethodConfig:
    """Hyper-parameters shared by the methods (defaults: the paper's, section 4.2)."""

    num_classes: int = 10
    alpha: float = DEFAULT_ALPHA
    eps_max: float = EPS_MAX
    per_batch: bool = False
    target: str = "random"

    def __post_init__(self):
        check_int(self.num_classes, "num_classes", 2)
        check_positive(self.alpha, "alpha")
        check_range(self.eps_max, "eps_max", 0.0, 1.0)
        if self.target not in TARGET_SELECTION:
            raise ValueError(f"target: unknown selection {self.target!r}; valid: {', '.join(TARGET_SELECTION)}")


LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, MethodConfig, "torch.Generator | None"], torch.Tensor]
METHODS: dict[str, LossFn] = {}

# Methods whose batches split into a clean and an adversarial half.
ADVERSARIAL = ("fgsm", "target_fgsm", "ls", "tlat", "iat", "mtlat")


def register(name: str):
    """Register a loss ``fn(model, x, y, cfg, g)``; the registered function takes ``validate=True``
    (check the batch: float NCHW images in [0, 1] with the model's channels, integer labels in
    range, a MethodConfig) and the training loop calls it with ``validate=False``."""
    def deco(fn: LossFn) -> LossFn:
        @functools.wraps(fn)
        def loss(model, x, y, cfg: MethodConfig, g=None, *, validate: bool = True):
            if validate:
                if not isinstance(cfg, MethodConfig):
                    raise ValueError(f"cfg: expected a MethodConfig, got {type(cfg).__name__}")
                check_model_input(x, model, "x")
                check_labels(y, cfg.num_classes, x.shape[0], "y")
            return fn(model, x, y, cfg, g)
        METHODS[name] = loss
        return loss
    return deco


def get_method(name: str) -> LossFn:
    check_choice(name, "method", METHODS)
    return METHODS[name]


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
    x_mix, y_mix, _ = random_mixup(x, y_soft, cfg.alpha, per_batch=cfg.per_batch, generator=g, validate=False)
    return x_mix, y_mix


def _eps(n, cfg: MethodConfig, g, device):
    return sample_eps(n, cfg.eps_max, per_batch=cfg.per_batch, generator=g, device=device, validate=False).to(device)


def _targets(model, x, y, cfg: MethodConfig, g):
    return TARGET_SELECTION[cfg.target](model, x, y, cfg.num_classes, g)


def two_part_loss(model, x_clean, t_clean, x_adv, t_adv) -> torch.Tensor:
    """``L(x_clean, t_clean) + L(x_adv, t_adv)`` (Algorithm 1's ``loss_1 + loss_2``) from one
    forward pass over both parts; targets are hard (B,) or soft (B, N)."""
    logits = model(torch.cat([x_clean, x_adv]))
    lc, la = logits[: x_clean.shape[0]], logits[x_clean.shape[0]:]
    return _ce(lc, t_clean) + _ce(la, t_adv)


def _ce(logits, t):
    return F.cross_entropy(logits.float(), t) if t.dim() == 1 else soft_cross_entropy(logits, t)


# ---------------------------------------------------------------------------------------------
# the registry

@register("standard")
def standard(model, x, y, cfg: MethodConfig, g=None):
    """Plain cross-entropy on the clean batch."""
    return F.cross_entropy(model(x).float(), y)


@register("mixup")
def mixup_method(model, x, y, cfg: MethodConfig, g=None):
    """Mixup, eq. (1), on the whole batch."""
    x_mix, y_mix = _mix(x, one_hot(y, cfg.num_classes, validate=False), cfg, g)
    return soft_cross_entropy(model(x_mix), y_mix)


@register("fgsm")
def fgsm_method(model, x, y, cfg: MethodConfig, g=None):
    """Untargeted FGSM adversarial training (eq. 2), adversarial samples labelled ``y_clean``."""
    xc, yc, xa, ya = split_batch(x, y)
    x_adv = fgsm(model, xa, ya, _eps(xa.shape[0], cfg, g, x.device), validate=False)
    return two_part_loss(model, xc, yc, x_adv, ya)


def _targeted_half(model, x, y, cfg, g):
    xc, yc, xa, ya = split_batch(x, y)
    eps = _eps(xa.shape[0], cfg, g, x.device)
    y_t = _targets(model, xa, ya, cfg, g)
    return xc, yc, targeted_fgsm(model, xa, y_t, eps, validate=False), ya, y_t, eps


@register("target_fgsm")
def target_fgsm_method(model, x, y, cfg: MethodConfig, g=None):
    """Targeted FGSM adversarial training, eq. (3): labelled with the ground truth."""
    xc, yc, x_adv, ya, _, _ = _targeted_half(model, x, y, cfg, g)
    return two_part_loss(model, xc, yc, x_adv, ya)


@register("ls")
def ls_method(model, x, y, cfg: MethodConfig, g=None):
    """The LS model of section 5.4: targeted FGSM, adversarial labels smoothed with parameter eps."""
    xc, yc, x_adv, ya, _, eps = _targeted_half(model, x, y, cfg, g)
    return two_part_loss(model, xc, yc, x_adv, smooth_labels(ya, cfg.num_classes, eps, validate=False))


@register("tlat")
def tlat_method(model, x, y, cfg: MethodConfig, g=None):
    """TLAT, eq. (4): targeted FGSM labelled ``(1 - eps) * y_clean + eps * y_target``."""
    xc, yc, x_adv, ya, y_t, eps = _targeted_half(model, x, y, cfg, g)
    y_adv = tlat_labels(one_hot(ya, cfg.num_classes, validate=False), y_t, eps, validate=False)
    return two_part_loss(model, xc, yc, x_adv, y_adv)


@register("iat")
def iat_method(model, x, y, cfg: MethodConfig, g=None):
    """Interpolated Adversarial Training (Lamb et al.): perturb (untargeted FGSM), then mix.

    Clean half: Mixup. Adversarial half: FGSM on the clean images, then Mixup of the perturbed
    images, labelled with the plain Mixup labels (no target information).
    """
    xc, yc, xa, ya = split_batch(x, y)
    n = cfg.num_classes
    x_mix1, y_mix1 = _mix(xc, one_hot(yc, n, validate=False), cfg, g)
    x_adv = fgsm(model, xa, ya, _eps(xa.shape[0], cfg, g, x.device), validate=False)
    x_mix2, y_mix2 = _mix(x_adv, one_hot(ya, n, validate=False), cfg, g)
    return two_part_loss(model, x_mix1, y_mix1, x_mix2, y_mix2)


def mtlat_couples(model, x, y, cfg: MethodConfig, g=None):
    """The two training batches of Algorithm 1 from B clean images.

    Returns ``(x_mix1, y_mix1, x_mtlat, y_mtlat, extras)`` where ``extras`` holds the
    intermediate ``x_mix2``, ``y_mix2``, ``y_target`` and ``eps`` (for teaching and tests).
    """
    xc, yc, xa, ya = split_batch(x, y)
    n = cfg.num_classes
    x_mix1, y_mix1 = _mix(xc, one_hot(yc, n, validate=False), cfg, g)             # Algorithm 1, lines 1-2
    x_mix2, y_mix2 = _mix(xa, one_hot(ya, n, validate=False), cfg, g)             # lines 3-4
    eps = _eps(xa.shape[0], cfg, g, x.device)
    y_t = _targets(model, x_mix2, ya, cfg, g)
    x_mtlat = targeted_fgsm(model, x_mix2, y_t, eps, validate=False)              # line 5, eq. (6)
    y_mtlat = tlat_labels(y_mix2, y_t, eps, validate=False)                     # line 6, eq. (6)
    extras = {"x_mix2": x_mix2, "y_mix2": y_mix2, "y_target": y_t, "eps": eps}
    return x_mix1, y_mix1, x_mtlat, y_mtlat, extras


@register("mtlat")
def mtlat_method(model, x, y, cfg: MethodConfig, g=None):
    """M-TLAT, Algorithm 1: ``loss = L(x_mix1, y_mix1) + L(x_mtlat, y_mtlat)``."""
    x_mix1, y_mix1, x_mtlat, y_mtlat, _ = mtlat_couples(model, x, y, cfg, g)
    return two_part_loss(model, x_mix1, y_mix1, x_mtlat, y_mtlat)
