"""Build the n x k score matrix P from long-format per-prompt values."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

__all__ = ["BASE", "MatrixError", "score_matrix", "check_matrix"]

from latent_bias_probe.configs.names import BASE


class MatrixError(ValueError):
    """The per-prompt data do not form a complete case x variant matrix."""


def score_matrix(
    case_ids: Sequence[Any],
    variants: Sequence[str],
    values: Sequence[float] | np.ndarray,
    groups: Sequence[str],
) -> tuple[np.ndarray, list[str]]:
    """Pivot parallel per-prompt sequences into the matrix P.

    ``P[i, 0]`` is the value of case i's ``BASE`` prompt and ``P[i, j]`` (j >= 1)
    the value of its variant ``groups[j-1]``; rows are the distinct case ids
    (converted to ``str``) in string-sorted order, returned as the second
    element.  Input rows may arrive in any order.

    Raises ``MatrixError`` (a ``ValueError``) naming the case and variant when a
    (case, variant) cell is missing or duplicated, when a variant is neither
    ``BASE`` nor in ``groups``, or when a value is NaN / not a finite number;
    also when the three sequences differ in length.  ``ValueError`` when
    ``groups`` contains ``BASE`` or a duplicate.
    """
    groups = [str(g) for g in groups]
    if BASE in groups:
        raise ValueError(f"groups must not contain {BASE!r}")
    if len(set(groups)) != len(groups):
        dup = sorted({g for g in groups if groups.count(g) > 1})
        raise ValueError(f"duplicate group name(s): {', '.join(dup)}")
    case_ids = [str(c) for c in case_ids]
    variants = [str(v) for v in variants]
    vals = list(values)
    if not (len(case_ids) == len(variants) == len(vals)):
        raise MatrixError(
            f"case_ids, variants and values differ in length "
            f"({len(case_ids)}, {len(variants)}, {len(vals)})"
        )
    columns = {BASE: 0, **{g: j + 1 for j, g in enumerate(groups)}}
    cases = sorted(set(case_ids))
    rows = {c: i for i, c in enumerate(cases)}
    k = len(columns)
    P = np.full((len(cases), k), np.nan)
    seen = np.zeros((len(cases), k), dtype=bool)
    for c, v, x in zip(case_ids, variants, vals):
        j = columns.get(v)
        if j is None:
            raise MatrixError(
                f"case {c!r}: unknown variant {v!r} (expected {BASE!r} or one of the groups)"
            )
        try:
            fx = float(x)
        except (TypeError, ValueError):
            raise MatrixError(f"case {c!r}, variant {v!r}: value {x!r} is not a number") from None
        if not math.isfinite(fx):
            raise MatrixError(f"case {c!r}, variant {v!r}: value is {fx!r}, expected a finite number")
        i = rows[c]
        if seen[i, j]:
            raise MatrixError(f"case {c!r}, variant {v!r}: duplicated cell")
        seen[i, j] = True
        P[i, j] = fx
    if not seen.all():
        names = [BASE, *groups]
        miss = np.argwhere(~seen)
        i, j = miss[0]
        more = f" (and {len(miss) - 1} more missing cells)" if len(miss) > 1 else ""
        raise MatrixError(f"case {cases[i]!r}, variant {names[j]!r}: missing cell{more}")
    return P, cases


def check_matrix(P: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """P as a finite float array of shape (n, k) with k >= 2 (BASE + at least one group).

    Raises ``ValueError`` for another shape or for NaN / infinite entries.
    """
    arr = np.asarray(P, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"P must be a 2-d (cases x variants) array, got shape {arr.shape}")
    if arr.shape[1] < 2:
        raise ValueError(f"P needs a BASE column and at least one group, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("P contains NaN or infinite values")
    return arr
