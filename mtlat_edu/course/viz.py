"""Figures for the course notebooks: images, soft labels, Beta densities, curves, galleries.

Every function *returns* a :class:`matplotlib.figure.Figure` built without ``pyplot`` (so nothing
is shown twice, nothing leaks, and the same call works headless, in pytest and in JupyterLab,
where a returned figure is rendered by the inline backend). Save one with
``mtlat_edu.core.io.save_figure(path, fig)``.

Images are float tensors in [0, 1], CHW (one image) or NCHW (a batch), as everywhere in the
package; labels are hard class indices or probability vectors of length N.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

CLEAN_COLOR = "#4C72B0"
MIX_COLOR = "#DD8452"
ADV_COLOR = "#C44E52"
GOOD_COLOR = "#55A868"


# ---------------------------------------------------------------------------------------------
# basic helpers

def to_hwc(x) -> np.ndarray:
    """One image (CHW tensor, HWC array, or a 1-image batch) as an HWC float array in [0, 1]."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu()
        if x.dim() == 4:
            if x.shape[0] != 1:
                raise ValueError(f"x: expected one image, got a batch of {x.shape[0]}")
            x = x[0]
        if x.dim() != 3:
            raise ValueError(f"x: expected a CHW image, got shape {tuple(x.shape)}")
        x = x.permute(1, 2, 0).numpy()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    return np.clip(x, 0.0, 1.0)


def amplify(delta: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """A perturbation made visible: ``0.5 + delta / (2 * max|delta|)`` (grey = no change)."""
    delta = delta.detach().float()
    scale = float(eps) if eps else float(delta.abs().max())
    if scale <= 0:
        return torch.full_like(delta, 0.5)
    return (0.5 + delta / (2 * scale)).clamp(0, 1)


def delta_map(ax, delta, scale: float | None = None, title: str | None = None, colorbar: bool = True,
              fontsize: int = 8) -> float:
    """A perturbation as one diverging map: the mean over the colour channels, red = brighter, blue =
    darker, white = unchanged, on the symmetric scale ``+-scale`` (default: its largest change),
    with a colour bar in pixel units so the map has a scale. Returns the scale used."""
    d = torch.as_tensor(delta).detach().float().cpu()
    d = d.mean(0) if d.dim() == 3 else d
    scale = float(scale) if scale else max(float(d.abs().max()), 1e-12)
    im = ax.imshow(d.numpy(), cmap="RdBu_r", vmin=-scale, vmax=scale)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        cb.ax.tick_params(labelsize=6)
    return scale


def _as_list(images) -> list:
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return list(images)
    if isinstance(images, torch.Tensor) and images.dim() == 3:
        return [images]
    return list(images)


def _figure(w: float, h: float) -> Figure:
    return Figure(figsize=(w, h), layout="constrained")


def _imshow(ax, img, title: str | None = None, fontsize: int = 8) -> None:
    ax.imshow(to_hwc(img), interpolation="nearest" if to_hwc(img).shape[0] <= 64 else "antialiased")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def class_name(classes: Sequence[str] | None, k: int) -> str:
    return classes[k] if classes is not None and 0 <= k < len(classes) else str(k)


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
# training

def learning_curves(histories: Mapping[str, Sequence[Mapping]]) -> Figure:
    """Clean test accuracy and training loss per epoch for each run (``{name: history}``)."""
    fig = _figure(10, 3.4)
    ax_acc, ax_loss = fig.subplots(1, 2)
    for name, hist in histories.items():
        if not hist:
            continue
        ep = [h["epoch"] for h in hist]
        marker = "o" if len(ep) <= 12 else None
        ax_acc.plot(ep, [100 * h["test_acc"] for h in hist], marker=marker, ms=3, label=name)
        ax_loss.plot(ep, [h["train_loss"] for h in hist], marker=marker, ms=3, label=name)
    from matplotlib.ticker import MaxNLocator
    for ax in (ax_acc, ax_loss):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("clean test accuracy (%)")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (its own labels)")
    ax_acc.legend(fontsize=7)
    ax_acc.set_title("clean accuracy", fontsize=9)
    ax_loss.set_title("training loss", fontsize=9)
    return fig


def regime_curves(regimes: Mapping[str, Mapping[str, Sequence[Mapping]]]) -> Figure:
    """Notebook 05: clean test accuracy per epoch of each method, one panel per training regime
    (``{regime: {method: history}}``), on a shared accuracy axis so the panels compare."""
    fig = _figure(5.0 * len(regimes), 3.4)
    axes = np.atleast_1d(fig.subplots(1, len(regimes), sharey=True))
    for ax, (regime, histories) in zip(axes, regimes.items()):
        for name, hist in histories.items():
            if hist:
                ax.plot([h["epoch"] for h in hist], [100 * h["test_acc"] for h in hist], label=name,
                        marker="o" if len(hist) <= 12 else None, ms=3)
                last = hist[-1]
                ax.annotate(f"{100 * last['test_acc']:.1f}", (last["epoch"], 100 * last["test_acc"]),
                            fontsize=7, xytext=(3, 0), textcoords="offset points", va="center")
        ax.set_title(regime, fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("clean test accuracy (%)")
    return fig


def robustness_curves(histories: Mapping[str, Sequence[Mapping]], title: str = "") -> Figure:
    """Notebook 05: what ``track_robustness`` recorded (``{method: history}``; epochs without a record,
    with ``track_every`` > 1, are left out), one panel per measure (clean, each tracked attack, the
    tracked corruption) on a shared axis."""
    from matplotlib.ticker import MaxNLocator
    histories = {m: [h for h in hist if "tracked_images" in h] for m, hist in histories.items()}
    keys = [k for k in next((h[0] for h in histories.values() if h), {}) if k.startswith("tracked_")
            and k.endswith("_acc")]
    names = {"tracked_clean_acc": "clean", "tracked_corruption_acc": "corruption (severity 3)"}
    fig = _figure(3.4 * max(1, len(keys)), 3.2)
    axes = np.atleast_1d(fig.subplots(1, max(1, len(keys)), sharey=True))
    for ax, key in zip(axes, keys):
        for method, hist in histories.items():
            ax.plot([h["epoch"] for h in hist], [100 * h[key] for h in hist], label=method,
                    marker="o" if len(hist) <= 12 else None, ms=3)
        ax.set_title(names.get(key, key[len("tracked_"):-len("_acc")]), fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("accuracy on the tracked images (%)")
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def accuracy_bars(values: Mapping[str, float], title: str = "", ylabel: str = "accuracy (%)",
                  reference: float | None = None, errors: Mapping[str, float] | None = None) -> Figure:
    """A bar per entry (e.g. clean accuracy per method), with an optional reference line and
    error bars (``errors``: e.g. the standard deviation over seeds; NaN draws none)."""
    fig = _figure(max(4.0, 0.7 * len(values) + 1.5), 3.0)
    ax = fig.subplots()
    names, vals = list(values), [float(v) for v in values.values()]
    err = None if errors is None else [0.0 if np.isnan(float(errors.get(n, np.nan))) else float(errors[n])
                                       for n in names]
    ax.bar(names, vals, yerr=err, capsize=3, color=[GOOD_COLOR if n == "standard" else CLEAN_COLOR for n in names])
    tops = [v + (e if err else 0.0) for v, e in zip(vals, err or [0.0] * len(vals))]
    span = max(max(tops) - min(vals), 1.0)
    for i, (v, top) in enumerate(zip(vals, tops)):  # the value above its error bar, not on it
        ax.text(i, top + 0.04 * span, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
    # a zoomed axis: differences of 1-3 points are the point of the figure (the axis does not start at 0)
    ax.set_ylim(min(vals) - 0.5 * span, max(tops) + 0.3 * span)
    if reference is not None:
        ax.axhline(reference, color="grey", ls="--", lw=1)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=30, labelsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------------
# corruptions and attacks

def corruption_gallery(x, names: Sequence[str], corrupt: Callable, severities=(1, 2, 3, 4, 5),
                       display: Mapping[str, str] | None = None, seed: int = 0, size: float = 1.25,
                       **kwargs) -> Figure:
    """Rows: corruptions; columns: the clean image then each severity.

    ``corrupt(x, name, severity, generator=...)`` is :func:`mtlat_edu.robustness.corruptions.corrupt`
    (passed in so that this module stays a pure drawing module); ``x`` is one CHW image.
    """
    x = torch.as_tensor(x)
    xb = x.unsqueeze(0) if x.dim() == 3 else x
    ncols = 1 + len(severities)
    fig = _figure(size * ncols, size * len(names))
    axes = fig.subplots(len(names), ncols, squeeze=False)
    for r, name in enumerate(names):
        label = (display or {}).get(name, name)
        _imshow(axes[r, 0], xb[0], "clean" if r == 0 else None)
        axes[r, 0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
        for c, s in enumerate(severities, start=1):
            g = torch.Generator().manual_seed(seed)
            _imshow(axes[r, c], corrupt(xb, name, s, generator=g, **kwargs)[0], f"severity {s:g}" if r == 0 else None)
    return fig


def corruption_pair(images: Mapping[str, tuple], title: str | None = None) -> Figure:
    """``{label: (clean, corrupted)}`` as columns of clean-over-corrupted pairs."""
    fig = _figure(2.6 * len(images), 5.0)
    axes = fig.subplots(2, len(images), squeeze=False)
    for c, (label, (clean, bad)) in enumerate(images.items()):
        _imshow(axes[0, c], clean, f"{label}: clean", 9)
        _imshow(axes[1, c], bad, f"{label}: corrupted", 9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def severity_curves(curves: Mapping[str, Mapping[float, float]], clean: float | None = None,
                    title: str = "accuracy as the severity grows", compare: Mapping[str, Mapping[float, float]] | None = None,
                    compare_clean: float | None = None, labels: tuple[str, str] = ("", "")) -> Figure:
    """Accuracy (in %) against severity, one line per corruption: ``{name: {severity: acc}}``. With
    ``compare`` (a second model's curves), both models share the axes: ``labels[0]`` solid, ``labels[1]``
    dashed, one colour per corruption, so their differences read directly."""
    fig = _figure(6.2 if compare else 5.5, 3.6)
    ax = fig.subplots()
    colours = {}
    for style, (data, ref, label) in zip(("-", "--"), ((curves, clean, labels[0]), (compare, compare_clean, labels[1]))):
        if data is None:
            continue
        for name, pts in data.items():
            s = sorted(pts)
            line, = ax.plot(s, [100 * pts[k] for k in s], ls=style, marker="o", ms=3, color=colours.get(name),
                            label=f"{name} {label}".strip())
            colours.setdefault(name, line.get_color())
        if ref is not None:
            ax.axhline(100 * ref, color="black", ls=style, lw=1, label=f"clean {label}".strip())
    ax.set_xlabel("severity")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, ncol=2 if compare else 1)
    return fig


def attack_examples(x, adversarials: Mapping[str, object], predictions: Mapping[str, Sequence[str]] | None = None,
                    n: int = 4, clean_predictions: Sequence[str] | None = None) -> Figure:
    """Rows: clean images then each attack's adversarial images and amplified perturbations."""
    x = torch.as_tensor(x)[:n]
    n = x.shape[0]
    rows = 1 + 2 * len(adversarials)
    fig = _figure(1.5 * n + 1.2, 1.45 * rows)
    axes = fig.subplots(rows, n, squeeze=False)
    for i in range(n):
        _imshow(axes[0, i], x[i], clean_predictions[i] if clean_predictions else None, 7)
    axes[0, 0].set_ylabel("clean", fontsize=8)
    for r, (name, adv) in enumerate(adversarials.items()):
        adv = torch.as_tensor(adv)[:n]
        scale = max(float((adv - x).abs().max()), 1e-12)  # one scale per attack, written beside its row
        for i in range(n):
            title = predictions[name][i] if predictions and name in predictions else None
            _imshow(axes[1 + 2 * r, i], adv[i], title, 7)
            delta_map(axes[2 + 2 * r, i], adv[i] - x[i], scale, colorbar=i == n - 1)
        axes[1 + 2 * r, 0].set_ylabel(name, fontsize=8)
        axes[2 + 2 * r, 0].set_ylabel(f"delta\n(+-{scale:.3f})", fontsize=7)
    return fig


def soft_label_title(y, classes: Sequence[str] | None = None, k: int = 2, target: int | None = None,
                     width: int = 10) -> str:
    """The ``k`` largest entries of a soft label as a short title, ``"cat 0.58 | dog 0.39"``, class
    names shortened to ``width`` characters with a visible cut (``"automobil."``); with ``target``,
    the target class's share is added when it is not among them (``"| tgt frog 0.02"``): the eps of eq. (4)."""
    y = torch.as_tensor(y).detach().float().cpu().flatten()
    vals, idx = y.topk(min(k, y.numel()))

    def name(i):
        n = class_name(classes, int(i))
        return n if len(n) <= width else n[:width - 1] + "."
    parts = [f"{name(i)} {v:.2f}" for v, i in zip(vals, idx) if v > 0]
    if target is not None and int(target) not in idx.tolist():
        parts.append(f"tgt {name(target)} {float(y[int(target)]):.3f}")
    return " | ".join(parts)


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


def method_spread(values: Mapping[str, Mapping[str, Sequence[float]]], columns: Mapping[str, str],
                  title: str = "") -> Figure:
    """Per-seed values (dots) and their mean ± std (bar) of each method, one panel per column:
    ``values[method][column]`` lists the seeds' values; ``columns`` maps a column to its axis label."""
    cols = [c for c in columns if any(values[m].get(c) for m in values)]
    fig = _figure(3.1 * len(cols), 3.0)
    axes = np.atleast_1d(fig.subplots(1, len(cols)))
    methods = list(values)
    for ax, c in zip(axes, cols):
        for i, m in enumerate(methods):
            v = np.asarray(values[m].get(c, []), dtype=float)
            if not len(v):
                continue
            sd = v.std(ddof=1) if len(v) > 1 else 0.0
            ax.errorbar([i], [v.mean()], yerr=[sd], fmt="s", color="black", ms=5, capsize=4)
            ax.plot(np.full(len(v), i) + np.linspace(-0.12, 0.12, len(v)), v, "o", ms=4, alpha=0.7)
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels(methods, rotation=30, ha="right", fontsize=7)
        ax.set_title(columns[c], fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
