"""Accuracy over labelled prompts and the FAB score (spec Part C)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

__all__ = ["ACCURACY_METHODS", "label_array", "accuracy", "fab"]

ACCURACY_METHODS = ("threshold", "l1")


def _label_value(v: Any) -> float:
    if v is None:
        return math.nan
    if isinstance(v, str):
        s = v.strip()
        if s == "":
            return math.nan
        try:
            v = float(s)
        except ValueError:
            raise ValueError(f"label {v!r} is not 1, 0, -1 or empty") from None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"label {v!r} is not 1, 0, -1 or empty") from None
    if math.isnan(f) or f == -1.0:
        return math.nan
    if f not in (0.0, 1.0):
        raise ValueError(f"label {v!r} is not 1, 0, -1 or empty")
    return f


def label_array(labels: Sequence[Any]) -> np.ndarray:
    """Labels as floats: 1.0 (YES), 0.0 (NO) or NaN (unknown: -1, NaN, None or "").

    Any other value is a ValueError.
    """
    return np.array([_label_value(v) for v in labels], dtype=float)


def accuracy(
    p_yes: Sequence[float] | np.ndarray,
    labels: Sequence[Any] | np.ndarray,
    method: str = "threshold",
) -> tuple[float | None, int]:
    """Accuracy over the labelled prompts, and the number of unlabelled prompts left out.

    ``threshold``: mean over labelled prompts of 1[p_yes > 0.5] == 1[label = 1].
    ``l1``: clip(1 - mean |y - p_yes|, 0, 1).
    Labels are 1, 0, or -1 / NaN / None / "" for unknown.  Returns
    ``(None, n_unlabelled)`` when no prompt is labelled.
    """
    if method not in ACCURACY_METHODS:
        raise ValueError(f"unknown accuracy method {method!r}; use one of {ACCURACY_METHODS}")
    p = np.asarray(p_yes, dtype=float).ravel()
    y = label_array(list(labels))
    if p.shape != y.shape:
        raise ValueError(f"p_yes and labels differ in length ({p.size} vs {y.size})")
    known = ~np.isnan(y)
    n_unlabelled = int(np.count_nonzero(~known))
    if not known.any():
        return None, n_unlabelled
    p, y = p[known], y[known]
    if not np.all(np.isfinite(p)):
        raise ValueError("p_yes contains NaN or infinite values on labelled prompts")
    if method == "threshold":
        acc = float(np.mean((p > 0.5) == (y == 1.0)))
    else:
        acc = float(np.clip(1.0 - np.mean(np.abs(y - p)), 0.0, 1.0))
    return acc, n_unlabelled


def fab(mfarm: float | None, acc: float | None) -> float | None:
    """FAB = 2 * mFARM * Acc / (mFARM + Acc), the harmonic mean of fairness and accuracy.

    0.0 when both are 0; None when either is None (no labels -> no accuracy).
    """
    if mfarm is None or acc is None:
        return None
    m, a = float(mfarm), float(acc)
    if m + a == 0.0:
        return 0.0
    return float(2.0 * m * a / (m + a))
