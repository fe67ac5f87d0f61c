"""The paper's numbers, one registry entry per row of its Tables 1, 2 and 3 (ResNet-50 rows).

:data:`PAPER_ROWS`: name ``"<table>:<method>"`` (``"table1:mtlat"``), label the paper's row title,
kind the table, value ``{column: number}`` (clean accuracy in %, R of eq. 7 elsewhere). Only the
cells the paper's text shows unambiguously are held: in our copy of Table 1a (``../shared/paper``)
several columns show one value for the three rows standard, IAT and M-TLAT, and those cells are
left out. The claims (:mod:`.claims`), the scoreboard (:mod:`.scoreboard`) and the course read the
paper's numbers here, never from a copy.
"""
from __future__ import annotations

import math
from typing import Sequence

from mtlat_edu.core.registry import Registry
from mtlat_edu.paper.methods import METHODS
from .scores import CLEAN_COLUMN

# the paper's column order of Tables 1-2 (a, b, c), as our column names
_T_A = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
        "snow", "fog", "frost", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression")
_T_B = ("occlusion", "color_distortion", "translation", "rotation")
_T_C = ("pgd", "pgd_ll", "cw_l2", "mi_fgsm_0.04", "mi_fgsm_0.08")
_NA = float("nan")


def _row(columns: Sequence[str], values: Sequence[float]) -> dict[str, float]:
    return {c: v for c, v in zip(columns, values) if not math.isnan(v)}


# ResNet-50 rows. Table 1a: standard / IAT / M-TLAT are legible on Motion, Fog, Frost, Bright, Elastic, Jpeg only.
_A_STD = (_NA,) * 5 + (0.41, _NA, _NA, 0.48, 0.34, 0.78, _NA, 0.73, _NA, 0.80)
_A_IAT = (_NA,) * 5 + (0.58, _NA, _NA, 0.78, 0.66, 0.79, _NA, 0.84, _NA, 0.63)
_A_MTLAT = (_NA,) * 5 + (0.58, _NA, _NA, 0.59, 0.61, 0.82, _NA, 0.85, _NA, 0.95)
PAPER_ROWS = Registry("paper_row", kinds=("table1", "table2", "table3"))


def _add(table: str, method: str, values: dict[str, float]) -> None:
    """Table ``table``'s row of ``method``: named ``"<table>:<method>"``, labelled as the method is."""
    PAPER_ROWS.add(f"{table}:{method}", values, label=METHODS.label(method), kind=table,
                   description=f"the paper's {table.replace('table', 'Table ')} row {METHODS.label(method)} (ResNet-50)")


_add("table1", "standard", {**_row(_T_A, _A_STD), **_row(_T_B, (0.74, 0.76, 0.78, 0.68)),
                            **_row(_T_C, (0.00, 0.00, 0.00, 0.58, 0.34))})
_add("table1", "iat", {**_row(_T_A, _A_IAT), **_row(_T_B, (0.71, 0.89, 0.75, 0.72)),
                       **_row(_T_C, (0.01, 0.08, 0.84, 0.87, 0.78))})
_add("table1", "mtlat", {**_row(_T_A, _A_MTLAT), **_row(_T_B, (0.75, 0.86, 0.79, 0.74)),
                         **_row(_T_C, (0.08, 0.45, 1.00, 0.96, 0.87))})
_add("table2", "standard", {**_row(_T_B, (0.74, 0.76, 0.78, 0.68)), **_row(_T_C, (0.00, 0.00, 0.00, 0.58, 0.34))})
_add("table2", "mixup", {**_row(_T_B, (0.75, 0.88, 0.79, 0.71)), **_row(_T_C, (0.00, 0.00, 0.20, 0.61, 0.22))})
_add("table2", "tlat", {CLEAN_COLUMN: 69.4, **_row(_T_A, (0.57, 0.54, 0.51, 0.43, 0.60, 0.56, 0.60, 0.41, 0.15, 0.41,
                                                          0.78, 0.13, 0.84, 0.94, 0.97)),
                        **_row(_T_B, (0.69, 0.76, 0.67, 0.66)), **_row(_T_C, (0.10, 0.74, 0.97, 0.98, 0.93))})
# Table 3 (section 5.4): the clean accuracy of the methods registered with table3=True
_add("table3", "standard", {CLEAN_COLUMN: 73.3})
_add("table3", "fgsm", {CLEAN_COLUMN: 65.8})
_add("table3", "target_fgsm", {CLEAN_COLUMN: 68.3})
_add("table3", "ls", {CLEAN_COLUMN: 67.1})
_add("table3", "tlat", {CLEAN_COLUMN: 69.4})


def paper_value(table: str, method: str, column: str) -> float:
    """The paper's number for ``method`` in ``column`` of ``table`` (NaN where it shows none)."""
    key = f"{table}:{method}"
    return float(PAPER_ROWS[key].get(column, _NA)) if key in PAPER_ROWS else _NA


def paper_row_value(method: str, column: str) -> float:
    """The paper's number for ``method`` in ``column``, from the first table holding it (Table 1, 2, 3)."""
    for table in PAPER_ROWS.kinds:
        v = paper_value(table, method, column)
        if not math.isnan(v):
            return v
    return _NA
