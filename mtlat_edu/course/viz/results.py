"""Figures of measured results (notebooks 05-10): training curves, accuracy bars, corruption
galleries and severity curves, attack examples, the spread of methods over seeds."""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from .base import CLEAN_COLOR, GOOD_COLOR, _figure, _imshow, class_name, delta_map

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
