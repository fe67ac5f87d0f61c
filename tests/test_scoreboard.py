"""The scoreboard of notebook 08: the paper's numbers (a registry), every comparison of the claims
beside them, the forest plot and Tables 1-2 beside the paper, on hand-made score tables."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from mtlat_edu.benchmark import claims as C
from mtlat_edu.benchmark.paper_values import PAPER_ROWS, paper_row_value, paper_value
from mtlat_edu.benchmark.scoreboard import paper_tables, plot_forest, scoreboard

MODELS = ("standard", "mixup", "tlat", "iat", "iat_targeted", "mtlat")


def _tables():
    """Three seeds; clean and pgd per model: base + a per-seed term; mtlat's clean is 60 + k^2 / 10
    (so mtlat - standard on clean is 2.0, 2.1, 2.4 over the seeds 0, 1, 2)."""
    out = {}
    for k in range(3):
        clean = {"standard": 58.0, "mixup": 59.0, "tlat": 57.0, "iat": 56.0, "iat_targeted": 57.5,
                 "mtlat": 60.0 + k * k / 10}
        pgd = {"standard": 0.0, "mixup": 0.01, "tlat": 0.1, "iat": 0.05, "iat_targeted": 0.2, "mtlat": 0.2 + 0.01 * k}
        out[k] = pd.DataFrame({"clean": [clean[m] + k for m in MODELS], "pgd": [pgd[m] for m in MODELS]},
                              index=pd.Index(MODELS, name="model"))
    return out


def test_paper_rows_registry():
    assert PAPER_ROWS.kinds == ("table1", "table2", "table3")
    assert PAPER_ROWS.label("table1:mtlat") == "M-TLAT" and PAPER_ROWS.kind("table2:tlat") == "table2"
    assert paper_value("table1", "iat", "cw_l2") == 0.84 and paper_value("table2", "tlat", "fog") == 0.15
    assert math.isnan(paper_value("table1", "mtlat", "gaussian_noise"))   # an ambiguous cell of our copy: left out
    assert paper_row_value("standard", "clean") == 73.3 and paper_row_value("tlat", "clean") == 69.4
    assert C.check_claims(_tables())["claims"][2]["paper"]["fgsm"] == 65.8   # claim (c) reads the registry


def test_scoreboard_rows_by_hand():
    board = scoreboard(C.check_claims(_tables()))
    a = board[board["claim"] == "a"].iloc[0]
    # per-seed differences 2.0, 2.1, 2.4: d = 2.1667, s_d = 0.2082
    assert a["comparison"] == "mtlat - standard" and a["column"] == "clean" and a["paper_sign"] == "+"
    assert a["d"] == pytest.approx(6.5 / 3) and a["n"] == 3 and a["verdict"] == "holds"
    assert a["ours_a"] == "61.17 ± 1.20" and a["ours_b"] == "59.00 ± 1.00"   # 60, 61.1, 62.4 / 58, 59, 60
    assert math.isnan(a["paper_d"])                                         # no M-TLAT clean accuracy in our copy
    d = board[(board["claim"] == "d") & (board["column"] == "pgd")]
    assert list(d["reading"]) == ["iat", "iat_targeted"]                    # both readings, no headline duplicate
    assert d.iloc[0]["paper_d"] == pytest.approx(0.08 - 0.01)               # Table 1c: M-TLAT 0.08, IAT 0.01
    assert d.iloc[0]["verdict"] == "holds" and d.iloc[1]["verdict"] == "within_noise"  # 0.2 + 0.01k vs 0.2
    assert set(board["claim"]) == {"a", "b", "d", "e"}                      # (c) misses fgsm, ls, target_fgsm


def test_forest_plot_puts_the_paper_side_right():
    board = scoreboard(C.check_claims(_tables()))
    fig = plot_forest(board)
    assert len(fig.axes) == 2                                                 # clean (points) and R
    clean_ax = fig.axes[0]
    rows = board[board["column"] == "clean"].iloc[::-1].reset_index(drop=True)
    for i, r in rows.iterrows():
        point = [ln for ln in clean_ax.lines if list(ln.get_ydata()) == [i] and ln.get_marker() == "o"][0]
        sign = 1 if r["paper_sign"] == "+" else -1
        assert point.get_xdata()[0] == pytest.approx(sign * r["d"])
    with pytest.raises(ValueError, match="board"):
        plot_forest(board.iloc[:0])


def test_paper_tables_beside_ours():
    mean = pd.DataFrame({"clean": [59.0, 61.5], "pgd": [0.0, 0.21]}, index=pd.Index(["standard", "mtlat"]))
    std = pd.DataFrame({"clean": [1.0, 1.15], "pgd": [0.0, 0.01]}, index=mean.index)
    t = paper_tables(mean, std)
    assert list(t.index) == [("table1", "standard"), ("table1", "M-TLAT"), ("table2", "standard")]
    assert t.loc[("table1", "M-TLAT"), ("pgd", "paper")] == "0.08"
    assert t.loc[("table1", "M-TLAT"), ("pgd", "ours")] == "0.21 ± 0.01"
    assert t.loc[("table1", "M-TLAT"), ("clean", "paper")] == ""            # not in our copy of Table 1a
    assert t.loc[("table1", "standard"), ("clean", "ours")] == "59.0 ± 1.0"
