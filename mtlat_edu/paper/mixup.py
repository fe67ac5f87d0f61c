"""Mixup, eq. (1) of the paper (Zhang et al., 2018).

``x_mix = lam * x_i + (1 - lam) * x_j`` and ``y_mix = lam * y_i + (1 - lam) * y_j`` with
``lam ~ Beta(alpha, alpha)``; the paper uses ``alpha = 0.4`` (section 4.2).

Pairs are formed inside a batch: image ``i`` is mixed with image ``perm[i]`` for a random
permutation ``perm`` (as timm does with a flipped batch), so a batch of B images gives B mixed
couples for the price of none extra. Algorithm 1 draws one ``lam`` per couple; ``per_batch=True``
draws a single ``lam`` for the whole batch (the original Mixup implementation).

Each public function checks its arguments, then calls a private implementation (``_mixup``,
``_random_mixup``, ...) that trusts them: the training methods call those on a batch checked once.
"""
from __future__ import annotations

import torch
from torch import nn

from mtlat_edu.core.checks import check_eps, check_images, check_int, check_labels, check_nchw, check_positive, check_soft_labels

DEFAULT_ALPHA = 0.4


def sample_lambda(n: int, alpha: float = DEFAULT_ALPHA, *, per_batch: bool = False,
                  generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Draw ``n`` mixing ratios ``lam ~ Beta(alpha, alpha)`` (all equal with ``per_batch``).

    Beta samples are drawn as ``G1 / (G1 + G2)`` with ``G1, G2 ~ Gamma(alpha, 1)`` so that a
    ``torch.Generator`` controls them (``torch.distributions`` takes no generator).
    """
    check_int(n, "n", 0)
    check_positive(alpha, "alpha")
    return _sample_lambda(n, alpha, per_batch=per_batch, generator=generator, device=device)


def _sample_lambda(n: int, alpha: float, *, per_batch: bool = False, generator: torch.Generator | None = None,
                   device=None) -> torch.Tensor:
    device = generator.device if generator is not None else (device or "cpu")
    m = 1 if per_batch else n
    conc = torch.full((2, m), float(alpha), device=device)
    g = torch._standard_gamma(conc, generator=generator) if generator is not None else torch._standard_gamma(conc)
    lam = g[0] / (g[0] + g[1]).clamp_min(1e-12)
    return lam.expand(n) if per_batch else lam


def mixup(x: torch.Tensor, y_soft: torch.Tensor, lam, perm: torch.Tensor):
    """Eq. (1) on a batch: mix sample ``i`` with sample ``perm[i]`` using ``lam[i]``.

    Args:
        x: (B, C, H, W) images in [0, 1].
        y_soft: (B, N) label vectors (one-hot or already soft).
        lam: (B,) mixing ratios in [0, 1] (or a float).
        perm: (B,) indices of the partners.

    Returns ``(x_mix, y_mix)``; convex combinations keep images in [0, 1] and labels summing to 1.
    """
    check_images(x, "x")
    check_eps(lam, "lam", x.shape[0])
    check_soft_labels(y_soft, "y_soft", x.shape[0])
    check_labels(perm, x.shape[0], x.shape[0], "perm")  # partner indices in [0, B)
    lam = torch.as_tensor(lam, dtype=x.dtype, device=x.device)
    if lam.dim() and lam.shape != (x.shape[0],):
        raise ValueError(f"lam: expected a float or shape ({x.shape[0]},), got {tuple(lam.shape)}")
    return _mixup(x, y_soft, lam, perm)


def _mixup(x: torch.Tensor, y_soft: torch.Tensor, lam, perm: torch.Tensor):
    lam = torch.as_tensor(lam, dtype=x.dtype, device=x.device)
    if lam.dim() == 0:
        lam = lam.expand(x.shape[0])
    return interpolate(x, x[perm], lam), interpolate(y_soft, y_soft[perm], lam)


def interpolate(a: torch.Tensor, b: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``lam * a + (1 - lam) * b`` with one ``lam`` per sample (a (B,) tensor) broadcast over the
    other dimensions: eq. (1) for images, labels, or hidden representations (Manifold Mixup)."""
    lam = lam.to(a.dtype).view(-1, *([1] * (a.dim() - 1)))
    return lam * a + (1 - lam) * b


def random_pairs(n: int, alpha: float = DEFAULT_ALPHA, *, per_batch: bool = False,
                 generator: torch.Generator | None = None, device=None):
    """Algorithm 1's couples for ``n`` images: ``(lam, perm)``, ``lam ~ Beta(alpha, alpha)`` per couple
    (one for all with ``per_batch``) and image ``i`` paired with image ``perm[i]``; on ``device``."""
    check_int(n, "n", 0)
    check_positive(alpha, "alpha")
    return _random_pairs(n, alpha, per_batch=per_batch, generator=generator, device=device)


def _random_pairs(n: int, alpha: float, *, per_batch: bool = False, generator: torch.Generator | None = None,
                  device=None):
    lam = _sample_lambda(n, alpha, per_batch=per_batch, generator=generator, device=device)
    perm = torch.randperm(n, generator=generator, device=lam.device)
    return lam.to(device), perm.to(device)


def random_mixup(x: torch.Tensor, y_soft: torch.Tensor, alpha: float = DEFAULT_ALPHA, *,
                 per_batch: bool = False, generator: torch.Generator | None = None):
    """Eq. (1) with fresh ``lam ~ Beta(alpha, alpha)`` and a random pairing; returns ``(x_mix, y_mix, lam)``."""
    check_nchw(x, "x")
    check_positive(alpha, "alpha")
    check_images(x, "x")
    check_soft_labels(y_soft, "y_soft", x.shape[0])
    return _random_mixup(x, y_soft, alpha, per_batch=per_batch, generator=generator)


def _random_mixup(x: torch.Tensor, y_soft: torch.Tensor, alpha: float, *, per_batch: bool = False,
                  generator: torch.Generator | None = None):
    lam, perm = _random_pairs(x.shape[0], alpha, per_batch=per_batch, generator=generator, device=x.device)
    x_mix, y_mix = _mixup(x, y_soft, lam, perm)
    return x_mix, y_mix, lam


def manifold_forward(model: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, lam: torch.Tensor,
                     layer: int) -> torch.Tensor:
    """Logits of the couples ``(x_a[i], x_b[i])`` mixed at ``layer`` (Manifold Mixup, Verma et al. 2019).

    ``h = lam * f_l(x_a) + (1 - lam) * f_l(x_b)`` where ``f_l`` is the model up to mixing point
    ``l``, then the rest of the model on ``h``. Layer 0 mixes the images (eq. 1, input Mixup);
    layer ``l >= 1`` runs ``x_a`` and ``x_b`` as one batch of 2B up to the ``l``-th entry of
    ``model.mix_points`` (a forward hook replaces its output by the mixture, B rows) and B rows
    after it. Batch norm before the mixing point sees ``x_a`` and ``x_b`` together (when ``x_b``
    is a permutation of ``x_a``, the same statistics as the reference code's single batch).

    ``lam`` is a (B,) tensor; gradients flow to both ``x_a`` and ``x_b``. Returns (B, classes) logits.
    """
    points = getattr(getattr(model, "_orig_mod", model), "mix_points", None)
    if points is None:
        raise ValueError("model: manifold mixing needs a model built by models.build_model (it carries mix_points, the hidden layers of models.MIX_POINTS)")
    check_int(layer, "layer", 0)
    if layer > len(points):
        raise ValueError(f"layer: this model mixes at layers 0 (the input) to {len(points)}, got {layer}")
    if x_a.shape != x_b.shape:
        raise ValueError(f"x_b: expected the shape of x_a {tuple(x_a.shape)}, got {tuple(x_b.shape)}")
    if layer == 0:
        return model(interpolate(x_a, x_b, lam))
    n = x_a.shape[0]
    handle = points[layer - 1].register_forward_hook(lambda mod, inp, out: interpolate(out[:n], out[n:], lam))
    try:
        return model(torch.cat([x_a, x_b]))
    finally:
        handle.remove()
