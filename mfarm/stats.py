"""Small statistical helpers shared by the mFARM scores (spec notation).

Every wrapper around a scipy test returns plain floats and turns a failure or a
degenerate input into ``nan`` (callers treat a NaN p-value as 1, i.e. "not
significant"), with scipy's / numpy's warnings silenced locally so that nothing
leaks to stderr.  ``statsmodels`` is imported lazily (it imports pandas, which
importing ``mfarm`` must not do).
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from typing import Iterator, Sequence

import numpy as np

from configs.corrections import check_correction
from scipy import stats as _st

__all__ = [
    "dom",
    "reject",
    "check_correction",
    "check_alpha",
    "wilcoxon_p",
    "friedman_test",
    "levene_test",
    "ks_test",
    "spearman_test",
    "snap_zero",
    "nan_to_none",
]

@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence warnings and floating-point complaints for one degenerate-prone call."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            yield


def dom(x: Sequence[float] | np.ndarray) -> float:
    """Dominance of a difference vector.

    ``dom(x) = (#{x_i > 0} - #{x_i < 0}) / n``, where n = len(x) counts ties
    (zeros).  Returns 0.0 for an empty vector.
    """
    x = np.asarray(x, dtype=float).ravel()
    n = x.size
    if n == 0:
        return 0.0
    return float((np.count_nonzero(x > 0) - np.count_nonzero(x < 0)) / n)


def check_alpha(alpha: float) -> float:
    """Validate a significance level: a finite float with 0 < alpha < 1."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}") from None
    if not (0.0 < a < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return a


def reject(
    pvals: Sequence[float] | np.ndarray, alpha: float = 0.05, method: str = "holm"
) -> np.ndarray:
    """Which hypotheses are rejected after multiple-testing correction.

    ``reject(p, alpha, method) = statsmodels multipletests(p, alpha, method)[0]``;
    ``method="none"`` means ``p <= alpha``.  NaN p-values count as 1 before the
    correction.  Returns a boolean array of the same length as ``pvals``.
    """
    alpha = check_alpha(alpha)
    check_correction(method)
    p = np.asarray(pvals, dtype=float).ravel().copy()
    p[~np.isfinite(p)] = 1.0
    p = np.clip(p, 0.0, 1.0)
    if p.size == 0:
        return np.zeros(0, dtype=bool)
    if method.lower() == "none":
        return p <= alpha
    if method.lower() in ("h", "holm"):
        return _holm(p, alpha)
    from statsmodels.stats.multitest import multipletests  # lazy: imports pandas

    with quiet():
        out = multipletests(p, alpha=alpha, method=method)[0]
    return np.asarray(out, dtype=bool)


def _holm(p: np.ndarray, alpha: float) -> np.ndarray:
    """Holm step-down rejections, the same comparisons as statsmodels' ``holm``.

    Sorted ascending, p_(i) (i = 0..m-1) is compared with alpha / (m - i); every
    hypothesis before the first p_(i) > alpha / (m - i) is rejected.  (statsmodels'
    own ``holm`` branch calls ``gc.collect()`` on every call, which costs tens of
    milliseconds; the result is identical, which the tests check.)
    """
    m = p.size
    order = np.argsort(p)
    notreject = p[order] > alpha / np.arange(m, 0, -1)
    first = int(np.argmax(notreject)) if notreject.any() else m
    out = np.zeros(m, dtype=bool)
    out[order[:first]] = True
    return out


def _finite_or_nan(v: object) -> float:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


def wilcoxon_p(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray | None = None
) -> float:
    """Wilcoxon signed-rank p-value (two-sided).

    ``scipy.stats.wilcoxon(x[, y], zero_method="wilcox", correction=False).pvalue``
    on the differences d = x - y (or d = x for the one-sample test).  When every
    difference is zero (nothing left after dropping zeros), when scipy fails, or
    when the p-value is not finite, returns NaN (callers count it as p = 1).
    Note: scipy itself returns p = 1 for all-zero d with n <= 50 and NaN above
    (with a RuntimeWarning); this helper returns NaN in both cases, silently.
    Where scipy would run its exhaustive sign-flip permutation test (n <= 13 with
    ties or zeros) the same test is evaluated vectorised, with identical p-values.
    """
    x = np.asarray(x, dtype=float).ravel()
    d = x if y is None else x - np.asarray(y, dtype=float).ravel()
    if d.size == 0 or not np.any(d != 0):
        return math.nan
    if _uses_exhaustive_permutation(d) and _fast_permutation_ok():
        return _wilcoxon_permutation_p(d)
    try:
        with quiet():
            if y is None:
                res = _st.wilcoxon(x, zero_method="wilcox", correction=False)
            else:
                res = _st.wilcoxon(
                    x, np.asarray(y, dtype=float).ravel(), zero_method="wilcox", correction=False
                )
    except Exception:  # noqa: BLE001 - any scipy failure means "no evidence"
        return math.nan
    return _finite_or_nan(res.pvalue)


_PERMUTATION_MAX_N = 13  # scipy: ties/zeros and n <= 13 -> exhaustive sign-flip test


def _uses_exhaustive_permutation(d: np.ndarray) -> bool:
    """Whether scipy's ``method="auto"`` runs its exhaustive permutation test on d.

    Recent scipy (1.17 here) does so when n <= 13 and d has zeros or tied |d| (otherwise
    exact for n <= 50, asymptotic above).
    """
    if d.size > _PERMUTATION_MAX_N:
        return False
    nz = np.abs(d[d != 0])
    return nz.size < d.size or np.unique(nz).size < nz.size


def _wilcoxon_permutation_p(d: np.ndarray) -> float:
    """The exhaustive sign-flip permutation p-value scipy's wilcoxon computes, vectorised.

    Same ``scipy.stats.permutation_test`` call (one sample, ``permutation_type=
    "samples"``, 9999 resamples -> all 2**n sign flips for n <= 13, two-sided) on
    the same statistic r_plus = sum of the average ranks of the non-zero |d| whose
    sign is positive (zeros dropped, "wilcox").  Sign flips leave |d| and so the
    ranks unchanged, which lets the statistic be evaluated for all flips at once
    instead of one Python call per flip (~1 s per test at n = 13 otherwise).
    """
    nz = d != 0
    ranks = np.zeros(d.size)
    ranks[nz] = _st.rankdata(np.abs(d[nz]), method="average")

    def r_plus(v: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.sum((v > 0).astype(float) * ranks, axis=axis)

    try:
        with quiet():
            res = _st.permutation_test(
                (d,),
                r_plus,
                permutation_type="samples",
                vectorized=True,
                n_resamples=9999,
                alternative="two-sided",
                axis=-1,
            )
    except Exception:  # noqa: BLE001
        return math.nan
    return _finite_or_nan(res.pvalue)


@functools.lru_cache(maxsize=1)
def _fast_permutation_ok() -> bool:
    """Check once that this scipy's wilcoxon agrees with ``_wilcoxon_permutation_p``.

    Guards against a scipy version whose ``method="auto"`` rule differs; if it
    does, every call goes through scipy's own wilcoxon.
    """
    probe = np.array([0.3, -0.1, 0.3, 0.0, 0.5, 0.2, -0.2])  # ties and a zero, n = 7
    try:
        with quiet():
            ref = _st.wilcoxon(probe, zero_method="wilcox", correction=False).pvalue
    except Exception:  # noqa: BLE001
        return False
    return bool(np.isclose(ref, _wilcoxon_permutation_p(probe), rtol=1e-12, atol=0))


def friedman_test(columns: Sequence[np.ndarray] | np.ndarray) -> tuple[float, float]:
    """Friedman chi-square test over related samples (one sample per column).

    ``scipy.stats.friedmanchisquare(*columns)`` -> (chi2, p).  Fewer than three
    columns, ties everywhere (all columns identical), or any failure -> (nan, nan).
    ``columns`` is a sequence of equal-length 1-d arrays, or a 2-d array whose
    *rows* are the samples (pass ``P.T`` for the columns of P).
    """
    cols = [np.asarray(c, dtype=float).ravel() for c in columns]
    if len(cols) < 3 or cols[0].size == 0:
        return math.nan, math.nan
    try:
        with quiet():
            res = _st.friedmanchisquare(*cols)
    except Exception:  # noqa: BLE001
        return math.nan, math.nan
    return _finite_or_nan(res.statistic), _finite_or_nan(res.pvalue)


def levene_test(columns: Sequence[np.ndarray] | np.ndarray) -> tuple[float, float]:
    """Median-centred Levene (Brown-Forsythe) test for equal variances.

    ``scipy.stats.levene(*columns, center="median")`` -> (W, p).  The statistic is
    returned as-is (it may be +inf when every within-sample spread is zero, with
    p = 0); a NaN statistic or p-value or any failure gives NaN.
    """
    cols = [np.asarray(c, dtype=float).ravel() for c in columns]
    if len(cols) < 2 or any(c.size == 0 for c in cols):
        return math.nan, math.nan
    try:
        with quiet():
            res = _st.levene(*cols, center="median")
    except Exception:  # noqa: BLE001
        return math.nan, math.nan
    stat = float(res.statistic)
    return (stat if not math.isnan(stat) else math.nan), _finite_or_nan(res.pvalue)


def ks_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test, ``ks_2samp(a, b, method="asymp")`` -> (D, p).

    A failure gives (0.0, nan): no distance, p counted as 1.
    """
    try:
        with quiet():
            res = _st.ks_2samp(np.asarray(a, float), np.asarray(b, float), method="asymp")
    except Exception:  # noqa: BLE001
        return 0.0, math.nan
    d = _finite_or_nan(res.statistic)
    return (0.0 if math.isnan(d) else d), _finite_or_nan(res.pvalue)


def spearman_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Spearman rank correlation ``scipy.stats.spearmanr(a, b)`` -> (rho, p).

    A NaN rho (constant input) gives (0.0, 1.0); a NaN p with a finite rho gives
    p = nan (counted as 1 by ``reject``).
    """
    try:
        with quiet():
            res = _st.spearmanr(np.asarray(a, float), np.asarray(b, float))
    except Exception:  # noqa: BLE001
        return 0.0, 1.0
    rho = _finite_or_nan(res.statistic)
    if math.isnan(rho):
        return 0.0, 1.0
    return rho, _finite_or_nan(res.pvalue)


def snap_zero(diff: np.ndarray, magnitude: np.ndarray, n_terms: int) -> np.ndarray:
    """Set floating-point noise in a difference-from-a-mean to exactly zero.

    ``diff`` = x - mean(others) is computed in floating point; when all the
    values are equal the mean is not always bit-identical to x, which would turn
    exact ties into tiny non-zero differences of consistent sign (and so into a
    spurious Wilcoxon rejection).  Entries with
    ``|diff| <= 8 * n_terms * eps * magnitude`` are set to 0 (``magnitude`` is
    the per-row largest absolute value entering the difference).
    """
    tol = 8.0 * max(n_terms, 1) * np.finfo(float).eps * np.asarray(magnitude, dtype=float)
    out = np.array(diff, dtype=float, copy=True)
    out[np.abs(out) <= tol] = 0.0
    return out


def nan_to_none(v: float | None) -> float | None:
    """A plain float for JSON, or None when the value is missing or not finite."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None
