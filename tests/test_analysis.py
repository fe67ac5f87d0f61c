"""Tests of mtlat_edu.course.analysis, the helpers notebooks 03, 06, 08 and 09 compute with: the FGSM
sweep, accuracy by severity, the accuracy table, and the complementarity of Mixup and TLAT
(section 5.3), each on small inputs whose answer is worked out by hand."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from mtlat_edu.benchmark import report
from mtlat_edu.course import analysis
from mtlat_edu.data import ImageData

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# complementarity (section 5.3)

# R of four methods on five corruptions (and the clean and pgd columns, which are not corruptions).
# Against standard: on gaussian_noise Mixup hurts (-0.05) and TLAT helps (+0.10); on fog the reverse
# (+0.10, -0.05); on contrast both help (+0.10, +0.10) but M-TLAT hurts (-0.10); on snow both hurt
# (-0.10, -0.20); on rotation Mixup's +0.002 rounds to 0.00 (neither helps nor hurts), TLAT -0.01.
SCORES = pd.DataFrame(
    {"clean": [90.0, 91.0, 89.0, 90.0], "gaussian_noise": [0.50, 0.45, 0.60, 0.62], "snow": [0.50, 0.40, 0.30, 0.45],
     "fog": [0.70, 0.80, 0.65, 0.75], "contrast": [0.60, 0.70, 0.70, 0.50], "rotation": [0.80, 0.802, 0.79, 0.81],
     "pgd": [0.10, 0.05, 0.30, 0.35]},
    index=["standard", "mixup", "tlat", "mtlat"])
CORRUPTIONS = ["gaussian_noise", "snow", "fog", "contrast", "rotation"]  # the registry's order


def test_complementarity_is_the_difference_with_the_reference_per_corruption():
    diff = analysis.complementarity(SCORES)
    assert list(diff.index) == CORRUPTIONS and diff.index.name == "corruption"
    assert list(diff.columns) == ["mixup", "tlat", "mtlat"]
    expected = pd.DataFrame({"mixup": [-0.05, -0.10, 0.10, 0.10, 0.002],
                             "tlat": [0.10, -0.20, -0.05, 0.10, -0.01],
                             "mtlat": [0.12, -0.05, 0.05, -0.10, 0.01]},
                            index=pd.Index(CORRUPTIONS, name="corruption"))
    pd.testing.assert_frame_equal(diff, expected, atol=1e-12, rtol=0)
    # another reference, methods missing from the scores left out
    other = analysis.complementarity(SCORES, methods=("tlat", "iat"), reference="mixup")
    assert list(other.columns) == ["tlat"]
    assert other.loc["snow", "tlat"] == pytest.approx(-0.10)


def test_complementarity_needs_the_reference_methods_and_corruptions():
    with pytest.raises(ValueError, match="need the 'standard' row"):
        analysis.complementarity(SCORES.drop(index="standard"))
    with pytest.raises(ValueError, match="scores: need"):
        analysis.complementarity(SCORES, methods=("iat",))
    with pytest.raises(ValueError, match="corruption columns"):
        analysis.complementarity(SCORES[["clean", "pgd"]])


def test_complementarity_summary_sorts_the_corruptions_by_hand():
    summary = analysis.complementarity_summary(analysis.complementarity(SCORES))
    assert summary == {
        "mixup_hurts_tlat_helps": ["gaussian_noise"],
        "tlat_hurts_mixup_helps": ["fog"],
        "both_help": ["contrast"],
        "both_hurt": ["snow"],
        "mtlat_helps": ["gaussian_noise", "fog", "rotation"],
        "mtlat_hurts": ["snow", "contrast"],
        # M-TLAT at least as robust as the worse of its two parts everywhere except on contrast
        "mtlat_at_least_the_worse_part": ["gaussian_noise", "snow", "fog", "rotation"],
        "corruptions": 5,
    }
    # without an M-TLAT column only the Mixup / TLAT lists; without TLAT only the M-TLAT ones
    only_two = analysis.complementarity_summary(analysis.complementarity(SCORES, ("mixup", "tlat")))
    assert set(only_two) == {"mixup_hurts_tlat_helps", "tlat_hurts_mixup_helps", "both_help", "both_hurt",
                             "corruptions"}
    only_mtlat = analysis.complementarity_summary(analysis.complementarity(SCORES, ("mixup", "mtlat")))
    assert only_mtlat == {"mtlat_helps": ["gaussian_noise", "fog", "rotation"], "mtlat_hurts": ["snow", "contrast"],
                          "corruptions": 5}


def test_the_complementarity_heatmap_shows_signed_differences():
    diff = analysis.complementarity(SCORES)
    ax = report.plot_heatmap(diff, differences=True).axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts[:3] == ["-0.05", "+0.10", "+0.12"]  # row by row: gaussian_noise's mixup, tlat, mtlat
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Gauss", "Snow", "Fog", "Contr", "Rot"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["mixup", "tlat", "mtlat"]
    assert ax.collections[0].get_clim() == pytest.approx((-0.20, 0.20))  # centred on 0, the largest |difference|
    assert ax.get_title() == "R(method) - R(standard)"


# ---------------------------------------------------------------------------------------------
# tables of the benchmark's long results

RESULTS = pd.DataFrame(
    [("a", "clean", "clean", 0, 0.90), ("a", "imagenet_c", "fog", 1, 0.80), ("a", "imagenet_c", "fog", 2, 0.60),
     ("b", "clean", "clean", 0, 0.85), ("b", "imagenet_c", "fog", 1, 0.70), ("a", "imagenet_c", "snow", 3, 0.50),
     ("a", "white_box", "pgd", 0, 0.10)],
    columns=["model", "kind", "perturbation", "severity", "accuracy"])


def test_accuracy_by_severity_keeps_the_corruptions_of_one_model():
    assert analysis.accuracy_by_severity(RESULTS, "a") == {"fog": {1: 0.80, 2: 0.60}, "snow": {3: 0.50}}
    assert analysis.accuracy_by_severity(RESULTS, "b") == {"fog": {1: 0.70}}
    assert analysis.accuracy_by_severity(RESULTS, "nobody") == {}


def test_accuracy_table_averages_the_severities_in_percent():
    table = analysis.accuracy_table(RESULTS)
    assert list(table.index) == ["a", "b"] and list(table.columns) == ["clean", "fog", "snow", "pgd"]
    assert table.loc["a"].tolist() == pytest.approx([90.0, 70.0, 50.0, 10.0])
    assert table.loc["b", "clean"] == pytest.approx(85.0) and table.loc["b", "fog"] == pytest.approx(70.0)
    assert math.isnan(table.loc["b", "snow"]) and math.isnan(table.loc["b", "pgd"])
    corr = analysis.accuracy_table(RESULTS, kind_prefix="imagenet")
    assert list(corr.columns) == ["fog", "snow"] and corr.loc["a", "fog"] == pytest.approx(70.0)


def test_accuracy_table_never_averages_clean_accuracies_of_different_image_sets():
    # a suite with attacks measures clean accuracy on the evaluation images (1000) and on the attacked
    # ones (500): the clean column is the one of the images the other columns were measured on
    rows = [("a", "clean", "clean", 0, 0.60, 1000), ("a", "clean", "clean", 0, 0.70, 500),
            ("a", "white_box", "pgd", 0, 0.10, 500), ("a", "white_box", "cw_l2", 0, 0.20, 500)]
    results = pd.DataFrame(rows, columns=["model", "kind", "perturbation", "severity", "accuracy", "n_images"])
    table = analysis.accuracy_table(results)
    assert list(table.columns) == ["clean", "pgd", "cw_l2"] and table.loc["a", "clean"] == pytest.approx(70.0)
    # columns measured on different image sets: one clean column per set, named by its count
    mixed = pd.concat([results, pd.DataFrame([("a", "imagenet_c", "fog", 1, 0.40, 1000)], columns=results.columns)])
    table = analysis.accuracy_table(mixed)
    assert list(table.columns) == ["clean (1000 images)", "clean (500 images)", "pgd", "cw_l2", "fog"]
    assert table.loc["a", "clean (1000 images)"] == pytest.approx(60.0)
    assert table.loc["a", "clean (500 images)"] == pytest.approx(70.0)


# ---------------------------------------------------------------------------------------------
# the FGSM sweep of notebook 03


class Brightness(nn.Module):
    """Class 1 iff the image's mean pixel value exceeds 0.5 (logits ``10 * (m - 0.5) * [-1, 1]``).

    On a constant grey image the input gradient has one sign on every pixel, so FGSM moves the mean
    by exactly eps towards the threshold; the module records the mode of each forward pass."""

    def __init__(self):
        super().__init__()
        self.seen: list[bool] = []

    def forward(self, x):
        self.seen.append(self.training)
        m = x.mean(dim=(1, 2, 3))
        return 10.0 * (m - 0.5)[:, None] * torch.tensor([-1.0, 1.0])


def test_fgsm_sweep_known_by_hand():
    # grey levels 76 115 125 | 131 148 204 (means 0.298 0.451 0.490 | 0.514 0.580 0.800), classes 0 0 0 | 1 1 1:
    # eps 0.02 flips 125 and 131, eps 0.06 also 115, eps 0.10 also 148, eps 0.25 also 76.
    levels = torch.tensor([76, 115, 125, 131, 148, 204], dtype=torch.uint8)
    data = ImageData(levels.view(-1, 1, 1, 1).expand(-1, 3, 4, 4).contiguous(), torch.tensor([0, 0, 0, 1, 1, 1]),
                     ["dark", "bright"], "grey")
    model = Brightness()
    model.train()
    rows = analysis.fgsm_sweep(model, data, eps_values=(0.0, 0.02, 0.06, 0.10, 0.25), batch_size=4)
    assert model.training and model.seen and not any(model.seen)  # eval mode inside, train mode restored
    expected = [1.0, 4 / 6, 3 / 6, 2 / 6, 1 / 6]
    assert [r["eps"] for r in rows] == [0.0, 0.02, 0.06, 0.10, 0.25]
    assert [r["acc_untargeted"] for r in rows] == pytest.approx(expected)
    # two classes: the "random other" target is the other class, so the targeted step is the same
    # move, and every image it misclassifies lands on its target
    assert [r["acc_targeted"] for r in rows] == pytest.approx(expected)
    assert [r["target_hit"] for r in rows] == pytest.approx([1 - a for a in expected])
