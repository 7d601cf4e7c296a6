"""The output-level metric registry: one :class:`Metric` record per score.

Every per-tier score the toolkit reports is a record here: its key in results.json
(``tiers.<tier>.mfarm.<key>``), its short name and label for tables, the function
that scores one tier's matrix P (n cases x k columns, column 0 = BASE, values in
[0, 1], 1 = fair) and, optionally, the same function vectorised over a stack of
resampled matrices. From the registry follow the tier's ``mfarm`` mapping, the
bootstrap intervals and the permutation null, the results.json schema, the
report's score table and chart, the terminal table and the sweep columns: adding a
metric is one :func:`register_metric` call.

The five scores of the mFARM paper are registered with ``in_mfarm=True``; mFARM
(``score``) is their equal-weight geometric mean and stays so: further metrics are
reported beside it, never folded into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from latent_bias_probe.configs.names import SCORE_KEYS

from .output_scores import (
    _CHUNK,
    _MIN_BATCH_N,
    _ad_rows,
    _cd_rows,
    _check,
    _check_batch,
    _ks_rows_scores,
    _md_rows,
    _vh_rows,
    absolute_deviation,
    correlation_difference,
    geometric_mean,
    geometric_mean_rows,
    ks_distribution,
    mean_difference,
    variance_heterogeneity,
)

#: ``score(P, alpha, correction) -> float in [0, 1]``
TierScore = Callable[[np.ndarray, float, str], float]
#: ``rows(Ps, alpha, correction) -> (B,)``: ``score`` of every Ps[b], vectorised
RowScore = Callable[[np.ndarray, float, str], np.ndarray]


@dataclass(frozen=True)
class Metric:
    """One per-tier output score."""

    key: str  # results.json key under tiers.<tier>.mfarm
    short: str  # column head in tables ("F_MD")
    label: str  # what it measures, for tooltips and the docs
    score: TierScore
    rows: RowScore | None = None  # None: ``score`` is looped over the resamples
    in_mfarm: bool = False  # one of the paper's five (mFARM is their geometric mean)


#: The registered metrics, in report order.
METRICS: dict[str, Metric] = {}
#: keys that name something else in a tier's ``mfarm`` mapping or its intervals
RESERVED = frozenset({"score", "accuracy", "fab", "value_axis_fairness", "mfarm_full", "fab_full", "level", "n_boot"})


def register_metric(metric: Metric) -> Metric:
    """Add ``metric`` to the registry (after the others); returns it.

    Refuses a key already taken, a reserved key, or a new metric claiming to be one
    of the paper's five (mFARM's definition does not change)."""
    if not isinstance(metric, Metric):
        raise TypeError(f"register_metric: expected a Metric, got {type(metric).__name__}")
    if not metric.key.isidentifier() or metric.key in RESERVED or metric.key in METRICS:
        raise ValueError(f"register_metric: key {metric.key!r} is taken, reserved or not an identifier")
    if metric.in_mfarm and metric.key not in SCORE_KEYS:
        raise ValueError(f"register_metric: {metric.key!r}: mFARM is the geometric mean of the five paper scores only")
    METRICS[metric.key] = metric
    return metric


def metric_keys() -> tuple[str, ...]:
    """Every registered metric's key, in report order."""
    return tuple(METRICS)


def mfarm_keys() -> tuple[str, ...]:
    """The keys whose geometric mean is mFARM (the paper's five)."""
    return tuple(k for k, m in METRICS.items() if m.in_mfarm)


for _key, _short, _label, _score, _rows in (
    ("mean_difference", "F_MD", "Mean difference (allocational)", mean_difference, _md_rows),
    ("absolute_deviation", "F_AD", "Absolute deviation (stability)", absolute_deviation, _ad_rows),
    ("variance_heterogeneity", "F_VH", "Variance heterogeneity (stability)", variance_heterogeneity, _vh_rows),
    ("ks_distribution", "F_KS", "KS distribution (distributional)", ks_distribution, _ks_rows_scores),
    ("correlation_difference", "F_CD", "Correlation difference (distributional)", correlation_difference, _cd_rows),
):
    register_metric(Metric(_key, _short, _label, _score, _rows, in_mfarm=True))
assert mfarm_keys() == SCORE_KEYS


def output_scores(P: np.ndarray, alpha: float = 0.05, correction: str = "holm") -> dict[str, float]:
    """Every registered metric of one tier's P, and ``score`` = mFARM (paper), as floats.

    ``score`` is the geometric mean of the five paper scores (:func:`mfarm_keys`)."""
    P, alpha = _check(P, alpha, correction)
    out = {key: float(m.score(P, alpha, correction)) for key, m in METRICS.items()}
    out["score"] = geometric_mean([out[key] for key in mfarm_keys()])
    return out


def batched_output_scores(Ps: np.ndarray, alpha: float = 0.05, correction: str = "holm") -> dict[str, np.ndarray]:
    """``output_scores`` of every matrix Ps[b] (shape (B, n, k)), each key an array (B,).

    Metrics with a ``rows`` function are evaluated for all b at once (the same test
    decisions and floating-point operations as the scalar function; agreement to
    1e-12 is the contract); the others, and every metric with fewer than 3 cases,
    loop over the distinct matrices among the resamples."""
    Ps, alpha = _check_batch(Ps, alpha, correction)
    B, n, _ = Ps.shape
    out = {key: np.empty(B) for key in METRICS}
    for key, metric in METRICS.items():
        if metric.rows is None or n < _MIN_BATCH_N:
            seen: dict[bytes, float] = {}  # a resample of few cases repeats (2 cases: 4 distinct of any B): score each once
            for b in range(B):
                seen_key = Ps[b].tobytes()
                if seen_key not in seen:
                    seen[seen_key] = metric.score(Ps[b], alpha, correction)
                out[key][b] = seen[seen_key]
            continue
        for start in range(0, B, _CHUNK):
            X = Ps[start : start + _CHUNK]
            out[key][start : start + X.shape[0]] = metric.rows(X, alpha, correction)
    out["score"] = geometric_mean_rows(np.stack([out[key] for key in mfarm_keys()], axis=1)) if B else np.empty(0)
    return out


__all__ = [
    "METRICS", "Metric", "RESERVED", "batched_output_scores", "metric_keys", "mfarm_keys", "output_scores",
    "register_metric",
]
