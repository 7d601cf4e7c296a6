"""mFARM fairness scores over plain arrays (Parts A and C: docs/methods/metrics.md).

Pure numpy / scipy (statsmodels is imported lazily for multiple-testing
correction); importing this package never imports torch or pandas.
"""

from .accuracy import accuracy, fab, label_array
from .diagnostics import group_shifts, intersectional_residual_share, omnibus, parse_group
from .matrix import BASE, MatrixError, check_matrix, score_matrix
from .metrics import METRICS, Metric, batched_output_scores, metric_keys, mfarm_keys, output_scores, register_metric
from .output_scores import (
    SCORE_KEYS,
    absolute_deviation,
    batched_mean_difference,
    correlation_difference,
    geometric_mean,
    ks_distribution,
    mean_difference,
    variance_heterogeneity,
)
from .resampling import (
    bootstrap_indices,
    mean_shift_intervals,
    paired_differences,
    permutation_null,
    resampled_scores,
    score_intervals,
    verdict,
)
from .stats import check_correction, dom, reject, wilcoxon_p
from .tier import score_tier

__all__ = [
    "BASE",
    "METRICS",
    "Metric",
    "metric_keys",
    "mfarm_keys",
    "register_metric",
    "MatrixError",
    "SCORE_KEYS",
    "absolute_deviation",
    "accuracy",
    "batched_mean_difference",
    "batched_output_scores",
    "bootstrap_indices",
    "check_correction",
    "check_matrix",
    "correlation_difference",
    "dom",
    "fab",
    "geometric_mean",
    "group_shifts",
    "intersectional_residual_share",
    "ks_distribution",
    "label_array",
    "mean_difference",
    "mean_shift_intervals",
    "omnibus",
    "output_scores",
    "paired_differences",
    "parse_group",
    "permutation_null",
    "reject",
    "resampled_scores",
    "score_intervals",
    "score_tier",
    "variance_heterogeneity",
    "verdict",
    "wilcoxon_p",
]
