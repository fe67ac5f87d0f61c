"""Soft labels and the soft-label cross-entropy used by every training method.

Each public function checks its arguments, then calls a private implementation (``_one_hot``,
``_tlat_labels``, ``_smooth_labels``) that trusts them: the training methods call those, on a batch
checked once where it entered (a value check per step would synchronise the GPU).

* :func:`one_hot`            the paper's one-hot encodings ``y``
* :func:`tlat_labels`        TLAT labels, eq. (4): ``(1 - eps) * y + eps * y_target``
* :func:`smooth_labels`      the LS model of section 5.4: ones -> ``1 - eps``, zeros -> ``eps / N``
* :func:`soft_cross_entropy` ``L``, the cross-entropy against a probability vector (section 4.2)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mtlat_edu.core.checks import check_eps, check_labels, check_soft_labels


def one_hot(y: torch.Tensor, num_classes: int, dtype=torch.float32) -> torch.Tensor:
    """One-hot encodings, shape (B, num_classes), of integer class indices (float labels are refused,
    not truncated)."""
    check_labels(y, num_classes, name="y")
    return _one_hot(y, num_classes, dtype)


def _one_hot(y: torch.Tensor, num_classes: int, dtype=torch.float32) -> torch.Tensor:
    return F.one_hot(y.long(), num_classes).to(dtype)


def _per_sample(eps, ref: torch.Tensor) -> torch.Tensor:
    """Broadcast a float or a (B,) tensor of epsilons to a (B, 1) column on ``ref``'s device."""
    eps = torch.as_tensor(eps, dtype=ref.dtype, device=ref.device)
    return eps.reshape(-1, 1) if eps.dim() else eps


def tlat_labels(y_soft: torch.Tensor, y_target: torch.Tensor, eps) -> torch.Tensor:
    """Targeted Labeling, eq. (4) (and eq. (6) when ``y_soft`` is a Mixup label).

    ``y_adv = (1 - eps) * y_clean + eps * y_target``: the ground-truth (or Mixup) label keeps
    weight ``1 - eps`` and the target class of the adversarial perturbation receives ``eps``.

    Args:
        y_soft: (B, N) probability vectors (one-hot or Mixup labels).
        y_target: (B,) target class indices used to craft the adversarial examples.
        eps: the perturbation amount of each sample, a float or a (B,) tensor in [0, 1].
    """
    check_soft_labels(y_soft, "y_soft")
    check_labels(y_target, y_soft.shape[1], y_soft.shape[0], "y_target")
    check_eps(eps, "eps", y_soft.shape[0])
    return _tlat_labels(y_soft, y_target, eps)


def _tlat_labels(y_soft: torch.Tensor, y_target: torch.Tensor, eps) -> torch.Tensor:
    e = _per_sample(eps, y_soft)
    return (1 - e) * y_soft + e * _one_hot(y_target, y_soft.shape[1], y_soft.dtype)


def smooth_labels(y: torch.Tensor, num_classes: int, eps) -> torch.Tensor:
    """Label smoothing as section 5.4 defines it for the LS model.

    "the one values of the one-hot encoding vectors are replaced by 1 - eps and the zeros are
    replaced by eps / N where N is the number of classes", with ``eps`` the FGSM amount of each
    sample. Taken literally these vectors sum to ``1 - eps / N``; we keep the paper's values.
    """
    check_labels(y, num_classes, name="y")
    check_eps(eps, "eps", y.shape[0])
    return _smooth_labels(y, num_classes, eps)


def _smooth_labels(y: torch.Tensor, num_classes: int, eps) -> torch.Tensor:
    hot = _one_hot(y, num_classes)
    e = _per_sample(eps, hot)
    return hot * (1 - e) + (1 - hot) * (e / num_classes)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_k target_k * log softmax(logits)_k``."""
    if target.shape != logits.shape:
        raise ValueError(f"target: expected shape {tuple(logits.shape)}, got {tuple(target.shape)}")
    return -(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()
