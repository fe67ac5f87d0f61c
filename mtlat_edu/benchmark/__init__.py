"""The perturbation benchmark of the paper (section 4.1) and its robustness scores (section 5.1).

Modules (one concern each):

* :mod:`.parts`   the columns (taken from the corruption and attack registries) and ``parts`` selection
* :mod:`.scores`  R = A_perturbed / A_clean (eq. 7), the wide score table, +/- marks, Table 3, differences
* :mod:`.suite`   the runner: shared perturbed sets, batched on a device, a JSON cache that resumes
* :mod:`.report`  Markdown tables (parts a, b, c), the heatmap, the result files
* :mod:`.stats`   the paired test by seed, Holm's adjustment, summaries (one home for the statistics)
* :mod:`.claims`  the paper's claims, each judged with paired tests over the training seeds
* :mod:`.paper_values` the paper's numbers of Tables 1-3, one registry entry per row
* :mod:`.scoreboard` every comparison beside the paper, the forest plot, Tables 1-2 beside the paper
* :mod:`.evaluation` :func:`evaluate`: trained runs (or in-memory models) of every seed -> tables, claims

Typical use::

    from mtlat_edu.benchmark import evaluate
    res = evaluate(profile="cpu", runs="runs", out="results/cpu")
    print(res.markdown)

See ``docs/benchmark.md``.
"""
from __future__ import annotations

from .evaluation import EvaluateResult, collect_models, evaluate
from .parts import SEVERITIES, Selection, display_name, groups, kind_of, perturbation_names, resolve_parts, valid_parts
from .claims import VERDICTS, check_claims, claims_lines, compare, comparison_text
from .paper_values import PAPER_ROWS, paper_value
from .scoreboard import paper_tables, plot_forest, scoreboard
from .report import (markdown_part, markdown_tables, plot_heatmap, table3_markdown, table_parts, write_report,
                     write_tables)
from .scores import (TABLE3_METHODS, add_robustness, aggregate, format_scores, mark, marks,
                     mean_robustness, robustness_score, score_differences, score_table, table3)
from .suite import ModelRef, ResultCache, SuiteResult, data_identity, load_model_ref, run_suite, weights_identity
from mtlat_edu.robustness.measure import count_correct, measure_cell  # what the suite measures with (one home)

__all__ = [
    "EvaluateResult", "ModelRef", "PAPER_ROWS", "paper_tables", "paper_value", "plot_forest", "scoreboard", "ResultCache", "SEVERITIES", "Selection", "SuiteResult", "VERDICTS",
    "TABLE3_METHODS", "add_robustness", "aggregate", "check_claims", "claims_lines",
    "collect_models", "compare", "comparison_text", "count_correct",
    "data_identity", "display_name", "evaluate", "format_scores", "groups", "kind_of", "load_model_ref", "mark",
    "marks", "markdown_part", "markdown_tables", "mean_robustness", "measure_cell", "perturbation_names",
    "plot_heatmap", "resolve_parts", "robustness_score", "run_suite", "score_differences", "score_table",
    "table3", "table3_markdown", "table_parts", "valid_parts", "weights_identity", "write_report", "write_tables",
]
