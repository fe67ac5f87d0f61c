"""Figures of the paper's algorithms (notebooks 01-04, 10): images and labels, Mixup (eq. 1), FGSM and
targeted FGSM (eq. 2-5), the TLAT and M-TLAT labels (eq. 4, 6), and section 6's targeted PGD and
Manifold Mixup."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from .base import ADV_COLOR, CLEAN_COLOR, GOOD_COLOR, MIX_COLOR, _as_list, _figure, _imshow, class_name, delta_map

# ---------------------------------------------------------------------------------------------
# images and labels

def image_grid(images, titles: Sequence[str] | None = None, ncols: int | None = None, size: float = 1.6,
               suptitle: str | None = None) -> Figure:
    """A grid of images (NCHW tensor or a list of CHW images) with optional titles."""
    imgs = _as_list(images)
    if not imgs:
        raise ValueError("images: nothing to show")
    n = len(imgs)
    ncols = ncols or min(n, 8)
    nrows = -(-n // ncols)
    fig = _figure(size * ncols, size * nrows + (0.3 if suptitle else 0))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        if i < n:
            _imshow(ax, imgs[i], titles[i] if titles is not None else None)
        else:
            ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def labelled_grid(data, n: int = 16, ncols: int = 8, seed: int = 0, suptitle: str | None = None) -> Figure:
    """``n`` random images of an :class:`~mtlat_edu.data.ImageData` titled with their class names."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data), generator=g)[:n]
    titles = [class_name(data.classes, int(data.labels[i])) for i in idx]
    return image_grid(data.float_images(idx), titles, ncols=ncols, suptitle=suptitle)


def label_bar(ax, y, classes: Sequence[str] | None = None, title: str | None = None,
              highlight: Mapping[int, str] | None = None, ylim: float = 1.0, annotate: bool = True) -> None:
    """A probability vector (or a soft label) as a bar chart on ``ax``; ``highlight`` colours bars."""
    y = torch.as_tensor(y).detach().float().cpu().flatten().numpy()
    n = len(y)
    colors = [CLEAN_COLOR] * n
    for k, c in (highlight or {}).items():
        colors[k] = c
    ax.bar(np.arange(n), y, color=colors)
    ax.set_ylim(0, ylim)
    ax.set_xticks(np.arange(n))
    ax.set_xticklabels([class_name(classes, k) for k in range(n)], rotation=60, ha="right", fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    if annotate:
        for k, v in enumerate(y):
            if v >= 0.005:
                ax.text(k, v + 0.02 * ylim, f"{v:.3f}".rstrip("0").rstrip("."), ha="center", fontsize=6)
    if title:
        ax.set_title(title, fontsize=9)


def label_bars(labels: Mapping[str, object], classes: Sequence[str] | None = None,
               highlight: Mapping[int, str] | None = None) -> Figure:
    """One bar chart per labelled vector: ``{"y_mix": tensor, ...}``."""
    fig = _figure(3.2 * len(labels), 2.6)
    axes = np.atleast_1d(fig.subplots(1, len(labels), squeeze=False)).ravel()
    for ax, (title, y) in zip(axes, labels.items()):
        label_bar(ax, y, classes, title, highlight)
    return fig


# ---------------------------------------------------------------------------------------------
# mixup (eq. 1)

def beta_pdf(alpha: float, grid: np.ndarray) -> np.ndarray:
    """The density of Beta(alpha, alpha) on ``grid`` (points strictly inside (0, 1))."""
    d = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha)))
    return d.log_prob(torch.as_tensor(grid, dtype=torch.float32)).exp().numpy()


def beta_densities(alphas: Sequence[float] = (0.1, 0.4, 1.0, 2.0), lam: float | None = None,
                   samples=None, ax=None) -> Figure | None:
    """Densities of ``lam ~ Beta(alpha, alpha)`` for several ``alpha`` (Mixup, eq. 1).

    ``samples`` (a tensor of drawn lambdas) adds a normalised histogram; ``lam`` a vertical line.
    """
    fig = None
    if ax is None:
        fig = _figure(4.8, 3.0)
        ax = fig.subplots()
    grid = np.linspace(0.002, 0.998, 400)
    for a in alphas:
        ax.plot(grid, beta_pdf(a, grid), label=f"alpha = {a:g}", lw=1.6)
    if samples is not None:
        ax.hist(torch.as_tensor(samples).cpu().numpy(), bins=25, range=(0, 1), density=True, alpha=0.3,
                color="grey", label=f"{len(samples)} draws")
    if lam is not None:
        ax.axvline(lam, color="black", ls="--", lw=1, label=f"lambda = {lam:.2f}")
    ax.set_ylim(0, 4)
    ax.set_xlabel("lambda")
    ax.set_ylabel("density")
    ax.set_title("lambda ~ Beta(alpha, alpha)", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def mixup_figure(x1, x2, x_mix, y_mix, classes: Sequence[str] | None, lam: float, alpha: float,
                 y1: int, y2: int, samples=None) -> Figure:
    """Eq. (1) on one couple: the two images, their mix, the soft label and Beta(alpha, alpha)."""
    fig = _figure(11.5, 2.8)
    axes = fig.subplots(1, 5, width_ratios=[1, 1, 1, 1.6, 1.6])
    _imshow(axes[0], x1, f"x_i: {class_name(classes, y1)}\nweight lambda = {lam:.2f}", 8)
    _imshow(axes[1], x2, f"x_j: {class_name(classes, y2)}\nweight 1 - lambda = {1 - lam:.2f}", 8)
    _imshow(axes[2], x_mix, "x_mix (eq. 1)", 8)
    label_bar(axes[3], y_mix, classes, "y_mix (eq. 1)", {y1: CLEAN_COLOR, y2: MIX_COLOR})
    beta_densities((alpha,), lam=lam, samples=samples, ax=axes[4])
    return fig


# ---------------------------------------------------------------------------------------------
# adversarial examples (eq. 2-6)

def fgsm_figure(x, x_adv, probs_clean, probs_adv, classes: Sequence[str] | None, eps: float,
                y_true: int, target: int | None = None, title: str | None = None) -> Figure:
    """Image, amplified perturbation, adversarial image and the predictions before and after."""
    fig = _figure(13, 2.9)
    axes = fig.subplots(1, 5, width_ratios=[1, 1, 1, 1.7, 1.7])
    delta = torch.as_tensor(x_adv) - torch.as_tensor(x)
    p0, p1 = torch.as_tensor(probs_clean).flatten(), torch.as_tensor(probs_adv).flatten()
    _imshow(axes[0], x, f"clean: {class_name(classes, y_true)}")
    delta_map(axes[1], delta, eps or None, f"perturbation, channel mean\nmax |delta| = {float(delta.abs().max()):.3f}"
              if eps else "perturbation (eps = 0)")
    _imshow(axes[2], x_adv, f"adversarial (eps = {eps:.3f})")
    hl = {y_true: GOOD_COLOR}
    if target is not None:
        hl[target] = ADV_COLOR
    label_bar(axes[3], p0, classes, f"before: predicts {class_name(classes, int(p0.argmax()))}", hl, annotate=False)
    label_bar(axes[4], p1, classes, f"after: predicts {class_name(classes, int(p1.argmax()))}", hl, annotate=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def tlat_label_figure(y_soft, classes: Sequence[str] | None, y_true: int, target: int, eps: float,
                      y_clean=None) -> Figure:
    """Eq. (4): the clean label and ``(1 - eps) * y_clean + eps * y_target`` side by side."""
    labels = {}
    if y_clean is not None:
        labels["y_clean"] = y_clean
    labels[f"y_adv, eps = {eps:.3f} (eq. 4)"] = y_soft
    return label_bars(labels, classes, {y_true: GOOD_COLOR, target: ADV_COLOR})


def mtlat_figure(x3, x4, delta, x_mtlat, y_mtlat, classes: Sequence[str] | None, y3: int, y4: int,
                 target: int, lam: float, eps: float) -> Figure:
    """Figure 1 of the paper for one couple: three sources of features and their weights (eq. 6)."""
    fig = _figure(13.5, 3.0)
    axes = fig.subplots(1, 5, width_ratios=[1, 1, 1, 1, 2])
    w = (lam * (1 - eps), (1 - lam) * (1 - eps), eps)
    _imshow(axes[0], x3, f"clean x_3: {class_name(classes, y3)}\nweight lambda(1-eps) = {w[0]:.3f}")
    _imshow(axes[1], x4, f"clean x_4: {class_name(classes, y4)}\nweight (1-lambda)(1-eps) = {w[1]:.3f}")
    delta_map(axes[2], delta, eps or None, f"perturbation to {class_name(classes, target)}\n"
            f"weight eps = {w[2]:.3f} (channel mean)")
    _imshow(axes[3], x_mtlat, "x_mtlat (eq. 6)")
    hl = {y3: CLEAN_COLOR, y4: MIX_COLOR, target: ADV_COLOR}
    label_bar(axes[4], y_mtlat, classes, "y_mtlat = (1-eps) y_mix + eps y_target", hl)
    return fig


# ---------------------------------------------------------------------------------------------
# notebook 10: beyond the paper

def pgd_steps_figure(x, x_adv, probs_clean, probs_adv, ks: Sequence[int], p_target, classes: Sequence[str] | None,
                     eps: float, y_true: int, target: int, steps: int) -> Figure:
    """Targeted PGD on one image: image, amplified perturbation, result, predictions, p(target) vs k."""
    fig = _figure(15, 2.9)
    axes = fig.subplots(1, 6, width_ratios=[1, 1, 1, 1.6, 1.6, 1.6])
    delta = torch.as_tensor(x_adv) - torch.as_tensor(x)
    _imshow(axes[0], x, f"clean: {class_name(classes, y_true)}")
    delta_map(axes[1], delta, eps or None, f"perturbation, k = {steps}\nmax |delta| = {float(delta.abs().max()):.3f}"
            if eps else "perturbation (eps = 0)")
    _imshow(axes[2], x_adv, f"targeted PGD (eps = {eps:.3f})")
    hl = {y_true: GOOD_COLOR, target: ADV_COLOR}
    p0, p1 = torch.as_tensor(probs_clean).flatten(), torch.as_tensor(probs_adv).flatten()
    label_bar(axes[3], p0, classes, f"before: predicts {class_name(classes, int(p0.argmax()))}", hl, annotate=False)
    label_bar(axes[4], p1, classes, f"after k = {steps}: predicts {class_name(classes, int(p1.argmax()))}", hl,
              annotate=False)
    ax = axes[5]
    pt = torch.as_tensor(p_target).numpy()
    ax.plot(list(ks), pt, "o-", color=ADV_COLOR, ms=3)
    ax.plot([steps], [pt[list(ks).index(steps)]], "o", color="black", ms=6)
    ax.axhline(float(p0[target]), color="grey", lw=0.8, ls="--")
    ax.set_xlabel("k (1 = FGSM)", fontsize=8)
    ax.set_title(f"p({class_name(classes, target)}) after k steps", fontsize=9)
    ax.set_ylim(0, 1)
    ax.tick_params(labelsize=7)
    return fig


def manifold_figure(x1, x2, probs, lams, curves: Mapping[int, object], classes: Sequence[str] | None, y1: int,
                    y2: int, layer: int, lam: float) -> Figure:
    """A couple mixed at ``layer``: the two images, the prediction at ``lam``, and p(y1) vs lambda per layer."""
    fig = _figure(13, 2.9)
    axes = fig.subplots(1, 4, width_ratios=[1, 1, 1.8, 1.8])
    _imshow(axes[0], x1, f"x_1: {class_name(classes, y1)}")
    _imshow(axes[1], x2, f"x_2: {class_name(classes, y2)}")
    where = "the input (Mixup)" if layer == 0 else f"hidden layer {layer}"
    label_bar(axes[2], probs, classes, f"mixed at {where}, lambda = {lam:.2f}", {y1: CLEAN_COLOR, y2: MIX_COLOR},
              annotate=False)
    axes[2].patches[y1].set_color(GOOD_COLOR)
    ax = axes[3]
    lams = torch.as_tensor(lams).numpy()
    for l, c in curves.items():
        ax.plot(lams, torch.as_tensor(c)[:, y1].numpy(), lw=2.5 if l == layer else 1,
                alpha=1 if l == layer else 0.6, label=f"layer {l}" + (" (input)" if l == 0 else ""))
    ax.plot(lams, lams, color="grey", lw=0.8, ls="--", label="the label's lambda")
    ax.axvline(lam, color="black", lw=0.8)
    ax.set_xlabel("lambda (weight of x_1)", fontsize=8)
    ax.set_title(f"p({class_name(classes, y1)}) of the mixed couple", fontsize=9)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    return fig
