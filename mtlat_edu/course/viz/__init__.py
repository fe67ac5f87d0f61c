"""Figures for the course notebooks: images, soft labels, Beta densities, curves, galleries.

Every function *returns* a :class:`matplotlib.figure.Figure` built without ``pyplot`` (so nothing
is shown twice, nothing leaks, and the same call works headless, in pytest and in JupyterLab,
where a returned figure is rendered by the inline backend). Save one with
``mtlat_edu.core.io.save_figure(path, fig)``.

Images are float tensors in [0, 1], CHW (one image) or NCHW (a batch), as everywhere in the
package; labels are hard class indices or probability vectors of length N.
"""
from __future__ import annotations

from .base import ADV_COLOR, CLEAN_COLOR, GOOD_COLOR, MIX_COLOR, amplify, class_name, delta_map, to_hwc
from .paper import (beta_densities, beta_pdf, fgsm_figure, image_grid, label_bar, label_bars, labelled_grid,
                    manifold_figure, mixup_figure, mtlat_figure, pgd_steps_figure, tlat_label_figure)
from .results import (accuracy_bars, attack_examples, corruption_gallery, corruption_pair, learning_curves,
                      method_spread, regime_curves, robustness_curves, severity_curves, soft_label_title)

__all__ = [
    "ADV_COLOR", "CLEAN_COLOR", "GOOD_COLOR", "MIX_COLOR", "amplify", "class_name", "delta_map", "to_hwc",
    "beta_densities", "beta_pdf", "fgsm_figure", "image_grid", "label_bar", "label_bars", "labelled_grid",
    "manifold_figure", "mixup_figure", "mtlat_figure", "pgd_steps_figure", "tlat_label_figure",
    "accuracy_bars", "attack_examples", "corruption_gallery", "corruption_pair", "learning_curves",
    "method_spread", "regime_curves", "robustness_curves", "severity_curves", "soft_label_title"
]
