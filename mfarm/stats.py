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

from latent_bias_probe.configs.corrections import check_correction
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


# --------------------------------------------------------------------------- batched variants
# Row-wise versions of the wrappers above, for many samples at once (bootstrap and
# permutation resamples).  Each mirrors the scipy computation its 1-d wrapper calls
# operation for operation, so that every value equals the wrapper's on the same row
# (ranks, rank sums and tie counts are exact half-integers; the remaining float
# operations are the same ones in the same order).  Wherever scipy would take a path
# that is not re-implemented here the row goes through the 1-d wrapper itself.

__all__ += [
    "rank_rows",
    "reject_rows",
    "wilcoxon_p_rows",
    "friedman_rows",
    "levene_parts",
    "levene_from_parts",
    "levene_rows",
    "levene_pairs",
    "ks_rows",
    "spearman_rows",
]


def _sorted_ranks(
    x: np.ndarray, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of x (2-d) sorted: (order, average rank of each sorted position, tie term per row).

    See ``rank_rows``; excluded entries sort last with rank 0 and no tie term.
    """
    R, n = x.shape
    X = x
    if exclude is not None:
        X = np.where(exclude, np.inf, x)  # excluded entries sort last (inputs are finite)
    order = np.argsort(X, axis=-1)  # not stable: tied entries share one rank, so their order is moot
    s = np.take_along_axis(X, order, axis=-1)
    new = np.ones((R, n), dtype=bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    flat_new = new.ravel()
    starts = np.flatnonzero(flat_new)
    counts = np.diff(starts, append=R * n)
    avg = (starts % n + 1).astype(float) + (counts.astype(float) - 1.0) / 2.0
    t = counts.astype(float)
    tie = t**3 - t
    if exclude is not None:
        dropped = np.isinf(s.ravel()[starts])
        avg[dropped] = 0.0
        tie[dropped] = 0.0
    ranks_sorted = np.repeat(avg, counts).reshape(R, n)
    T = np.bincount(starts // n, weights=tie, minlength=R)
    return order, ranks_sorted, T


#: rows at most this long are ranked by all pairwise comparisons instead of sorting
_SHORT_ROW = 16


def rank_rows(x: np.ndarray, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks along the last axis, and the tie term of each row.

    For every 1-d slice x_r (last axis) returns ``rank(x_r)`` = scipy ``rankdata(x_r,
    "average")`` (1-based; a run of t equal values shares the mean of its ordinal
    ranks) and ``T_r = sum over runs of (t**3 - t)``.  Entries flagged in ``exclude``
    (same shape, or broadcastable) are left out: they get rank 0, do not shift the
    ranks of the others and do not enter T (Wilcoxon's "wilcox" treatment of zeros).
    ``x`` must be finite.  Shapes: ranks as x, T as x.shape[:-1].
    """
    x = np.asarray(x, dtype=float)
    shape = x.shape
    n = shape[-1]
    X = x.reshape(-1, n)
    R = X.shape[0]
    if R == 0 or n == 0:
        return np.zeros(shape), np.zeros(shape[:-1])
    E = None if exclude is None else np.broadcast_to(np.asarray(exclude, dtype=bool), shape).reshape(-1, n)
    if n <= _SHORT_ROW:
        # short rows (Friedman's k columns): rank_i = 1 + #{x_j < x_i} + (#{x_j = x_i} - 1) / 2
        # and sum over runs of t^3 - t = sum_i (t_i^2 - 1), from all n^2 comparisons at once
        Xi, Xj = X[:, :, None], X[:, None, :]
        if E is None:
            less = np.count_nonzero(Xj < Xi, axis=2)
            eq = np.count_nonzero(Xj == Xi, axis=2)
        else:
            keep = ~E[:, None, :]
            less = np.count_nonzero((Xj < Xi) & keep, axis=2)
            eq = np.count_nonzero((Xj == Xi) & keep, axis=2)
        ranks = 1.0 + less + (eq - 1) / 2.0
        t2 = eq.astype(float) ** 2 - 1.0
        if E is not None:
            ranks[E] = 0.0
            t2[E] = 0.0
        return ranks.reshape(shape), t2.sum(axis=1).reshape(shape[:-1])
    order, ranks_sorted, T = _sorted_ranks(X, E)
    ranks = np.empty((R, n))
    np.put_along_axis(ranks, order, ranks_sorted, axis=-1)
    return ranks.reshape(shape), T.reshape(shape[:-1])


_HOLM = ("h", "holm")
_BONFERRONI = ("b", "bonf", "bonferroni")
_FDR_BH = ("fdr_bh", "fdr_i", "fdr_p", "fdri", "fdrp")


def reject_rows(pvals: np.ndarray, alpha: float = 0.05, method: str = "holm") -> np.ndarray:
    """``reject`` applied to every row of a 2-d array of p-values (rows corrected separately).

    Row r of the result equals ``reject(pvals[r], alpha, method)``.  ``none``,
    Holm, Bonferroni and Benjamini-Hochberg (``fdr_bh`` and its aliases) are
    evaluated for all rows at once with the comparisons statsmodels makes (NaN -> 1,
    clipped to [0, 1]; Holm: sorted p_(i) > alpha/(m-i) stops the rejections;
    Bonferroni: p <= alpha/m; BH: sorted p_(i) <= (i+1)/m * alpha, reject up to the
    largest such i).  Ties between p-values never split these decisions, so the
    order among tied values does not matter.  Any other method loops over ``reject``.
    """
    alpha = check_alpha(alpha)
    check_correction(method)
    p = np.array(pvals, dtype=float, copy=True)
    if p.ndim != 2:
        raise ValueError(f"reject_rows needs a 2-d array, got shape {p.shape}")
    R, m = p.shape
    if m == 0 or R == 0:
        return np.zeros((R, m), dtype=bool)
    p[~np.isfinite(p)] = 1.0
    p = np.clip(p, 0.0, 1.0)
    low = method.lower()
    if low == "none":
        return p <= alpha
    if low in _BONFERRONI:
        return p <= alpha / float(m)
    if low in _HOLM or low in _FDR_BH:
        order = np.argsort(p, axis=1, kind="stable")
        ps = np.take_along_axis(p, order, axis=1)
        rows = np.arange(R)
        if low in _HOLM:
            notreject = ps > alpha / np.arange(m, 0, -1)
            first = np.where(notreject.any(axis=1), np.argmax(notreject, axis=1), m)
            keep_sorted = np.arange(m)[None, :] < first[:, None]
        else:
            ok = ps <= (np.arange(1, m + 1) / float(m)) * alpha
            last = np.where(ok.any(axis=1), m - 1 - np.argmax(ok[:, ::-1], axis=1), -1)
            keep_sorted = np.arange(m)[None, :] <= last[:, None]
        out = np.zeros((R, m), dtype=bool)
        out[rows[:, None], order] = keep_sorted
        return out
    return np.array([reject(row, alpha, method) for row in p], dtype=bool).reshape(R, m)


def _wilcoxon_asymptotic_rows(n: int, has_ties: np.ndarray, n_zero: np.ndarray) -> np.ndarray:
    """Which rows (length n) scipy's ``method="auto"`` (and ``wilcoxon_p``) test asymptotically.

    scipy 1.17: n > 50 -> asymptotic; n <= 50 without ties or zeros -> exact; with
    ties or zeros: n <= 13 -> permutation (``wilcoxon_p`` runs the same test
    vectorised), otherwise asymptotic.
    """
    if n <= _PERMUTATION_MAX_N or not _asymptotic_rule_ok():
        return np.zeros(has_ties.shape, dtype=bool)
    if n > 50:
        return np.ones(has_ties.shape, dtype=bool)
    return has_ties | (n_zero > 0)


@functools.lru_cache(maxsize=1)
def _asymptotic_rule_ok() -> bool:
    """Check once that this scipy's wilcoxon uses the normal approximation where assumed above.

    Probes n = 20 with ties and a zero, and n = 60 without ties, against the
    normal-approximation formula of ``wilcoxon_p_rows``.  If scipy decides
    otherwise (another version's ``method="auto"`` rule), every row goes through
    ``wilcoxon_p`` itself.
    """
    from scipy import special

    def normal_p(d: np.ndarray) -> float:
        nz = d[d != 0]
        c = float(nz.size)
        r = _st.rankdata(np.abs(nz))
        _, t = np.unique(np.abs(nz), return_counts=True)
        se = math.sqrt((c * (c + 1.0) * (2.0 * c + 1.0) - np.sum(t.astype(float) ** 3 - t) / 2) / 24)
        z = (np.sum(r[nz > 0]) - c * (c + 1.0) * 0.25) / se
        return float(2 * special.ndtr(-abs(z)))

    rng = np.random.default_rng(0)
    probes = [np.round(rng.normal(0.3, 1.0, 20), 1), rng.normal(0.3, 1.0, 60)]
    probes[0][0] = 0.0
    try:
        with quiet():
            for d in probes:
                ref = _st.wilcoxon(d, zero_method="wilcox", correction=False).pvalue
                if not np.isclose(ref, normal_p(d), rtol=1e-10, atol=0):
                    return False
    except Exception:  # noqa: BLE001
        return False
    return True


def wilcoxon_p_rows(D: np.ndarray) -> np.ndarray:
    """``wilcoxon_p`` of every row of D (one-sample signed-rank test on each row's differences).

    Element r equals ``wilcoxon_p(D[r])`` (for a paired test pass D = x - y).  Rows
    that scipy tests with the normal approximation are evaluated here for all rows
    at once, as scipy does: zeros dropped ("wilcox"), c = number of non-zero d,
    R+ = sum of the average ranks of |d| over the positive d,

        mn = c (c + 1) / 4,   se^2 = (c (c + 1) (2c + 1) - sum_ties (t^3 - t) / 2) / 24,
        z = (R+ - mn) / se,   p = 2 * Phi(-|z|)      (no continuity correction).

    All-zero rows give NaN.  Rows scipy would test exactly (n <= 50, no ties, no
    zeros) or by exhaustive sign flips (n <= 13 with ties or zeros) go through
    ``wilcoxon_p`` one by one, so the decision logic is exactly the 1-d one.
    """
    from scipy import special

    D = np.asarray(D, dtype=float)
    if D.ndim != 2:
        raise ValueError(f"wilcoxon_p_rows needs a 2-d array, got shape {D.shape}")
    R, n = D.shape
    out = np.full(R, math.nan)
    if R == 0 or n == 0:
        return out
    zero = D == 0
    n_zero = np.count_nonzero(zero, axis=1)
    live = n_zero < n
    order, ranks_sorted, tie = _sorted_ranks(np.abs(D), zero)
    asym = live & _wilcoxon_asymptotic_rows(n, tie > 0, n_zero)
    if asym.any():
        cnt = (n - n_zero[asym]).astype(float)
        positive = np.take_along_axis(D[asym] > 0, order[asym], axis=-1)
        r_plus = np.sum(positive.astype(float) * ranks_sorted[asym], axis=-1)
        mn = cnt * (cnt + 1.0) * 0.25
        se = cnt * (cnt + 1.0) * (2.0 * cnt + 1.0)
        with quiet():
            se = np.sqrt((se - tie[asym] / 2) / 24)
            z = (r_plus - mn) / se
            p = 2 * special.ndtr(-np.abs(z))
        out[asym] = np.where(np.isfinite(p), p, math.nan)
    rest = np.flatnonzero(live & ~asym)
    if rest.size and n <= _PERMUTATION_MAX_N and _fast_permutation_ok():
        perm = np.array([_uses_exhaustive_permutation(D[r]) for r in rest], dtype=bool)
        if perm.any():
            out[rest[perm]] = _sign_flip_p_rows(D[rest[perm]])
        rest = rest[~perm]
    for r in rest:
        out[r] = wilcoxon_p(D[r])
    return out


@functools.lru_cache(maxsize=16)
def _flip_patterns(n: int) -> np.ndarray:
    """Every sign flip of n values as a (2**n, n) 0/1 float matrix (the identity included)."""
    codes = np.arange(2**n, dtype=np.int64)[:, None]
    return ((codes >> np.arange(n)) & 1).astype(float)


def _sign_flip_p_rows(D: np.ndarray) -> np.ndarray:
    """:func:`_wilcoxon_permutation_p` of every row of D at once (n <= 13).

    With ranks r (average ranks of the non-zero |d|, 0 for zeros), positives
    q = 1[d > 0] and a flip pattern f ∈ {0, 1}^n, the flipped statistic is

        R+(f) = Σ_i r_i · (q_i XOR f_i) = R+ + f·r − 2 f·(q r),

    sums of half-integers, so exact in float64. As ``scipy.stats.permutation_test``
    does for an exhaustive two-sided test: with γ = 100 ε |R+|,
    p = min(1, 2 min(mean[R+(f) ≥ R+ − γ], mean[R+(f) ≤ R+ + γ])).
    """
    D = np.asarray(D, dtype=float)
    R, n = D.shape
    nz = D != 0
    # zeros are the smallest |d|: the non-zero values' average ranks among themselves are
    # their ranks among all n minus the number of zeros
    ranks = np.where(nz, _st.rankdata(np.abs(D), method="average", axis=1) - (n - nz.sum(axis=1))[:, None], 0.0)
    q = (D > 0).astype(float)
    observed = np.sum(q * ranks, axis=1)
    F = _flip_patterns(n)
    null = observed[None, :] + F @ ranks.T - 2.0 * (F @ (q * ranks).T)  # (2**n, R)
    gamma = np.abs(np.finfo(float).eps * 100 * observed)
    greater = np.mean(null >= observed - gamma, axis=0)
    less = np.mean(null <= observed + gamma, axis=0)
    return np.minimum(1.0, 2.0 * np.minimum(greater, less))


def friedman_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``friedman_test`` of every matrix X[b] (rows = blocks/cases, columns = the k treatments).

    X has shape (B, n, k); element b equals ``friedman_test(X[b].T)``.  With r_ij the
    within-row average ranks, T = sum over rows and runs of t (t^2 - 1),

        c = 1 - T / (k (k^2 - 1) n),
        chi2 = (12 / (k n (k + 1)) * sum_j R_j^2 - 3 n (k + 1)) / c,   R_j = sum_i r_ij,
        p = chi2 survival function with k - 1 degrees of freedom.

    Non-finite values -> NaN, as in the 1-d wrapper; k < 3 or n = 0 -> NaN.
    """
    from scipy import special

    X = np.asarray(X, dtype=float)
    B, n, k = X.shape
    if k < 3 or n == 0:
        return np.full(B, math.nan), np.full(B, math.nan)
    ranks, tie = rank_rows(X)
    ties = np.sum(tie, axis=1)
    with quiet():
        c = 1 - ties / (k * (k * k - 1) * n)
        ssbn = np.sum(np.sum(ranks, axis=1) ** 2, axis=-1)
        stat = (12.0 / (k * n * (k + 1)) * ssbn - 3 * n * (k + 1)) / c
        p = special.chdtrc(float(k - 1), stat)
    stat = np.where(np.isfinite(stat), stat, math.nan)
    p = np.where(np.isfinite(p), p, math.nan)
    return stat, p


def levene_parts(C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample pieces of the median-centred Levene test.

    C has shape (..., k, n): k samples of n values each.  Returns Zbar_i = mean_j
    Z_ij and SS_i = sum_j (Z_ij - Zbar_i)^2 with Z_ij = |C_ij - median_j C_ij| (both
    shape (..., k)), the quantities scipy's ``levene`` forms for each sample.
    """
    C = np.ascontiguousarray(C, dtype=float)
    med = np.median(C, axis=-1, keepdims=True)
    Z = np.abs(C - med)
    zbar = np.mean(Z, axis=-1, keepdims=True)
    ss = np.sum((Z - zbar) ** 2, axis=-1)
    return zbar[..., 0], ss


def _levene_from_parts(zbars: list, sss: list, n: int) -> tuple[np.ndarray, np.ndarray]:
    """scipy's Levene W and p from the per-sample pieces, with its operations in its order.

    k samples of n:  Zbar = sum_i n Zbar_i / (k n),
    W = (k n - k) sum_i n (Zbar_i - Zbar)^2 / ((k - 1) sum_i SS_i),  p = F_{k-1, kn-k} sf(W).
    """
    from scipy import special

    k = len(zbars)
    ntot = n * k
    with quiet():
        zbar = sum(n * z for z in zbars) / ntot
        dfd = ntot - k
        numer = dfd * sum(n * (z - zbar) ** 2 for z in zbars)
        dfn = k - 1.0
        denom = dfn * sum(s for s in sss)
        W = numer / denom
        p = special.fdtrc(dfn, float(dfd), W)
    W = np.where(np.isnan(W), math.nan, W)
    p = np.where(np.isfinite(p), p, math.nan)
    return W, p


def levene_rows(C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``levene_test`` over the k samples of every C[b] (C shape (B, k, n)) -> (W, p), each (B,).

    Element b equals ``levene_test(C[b])``: the statistic as-is (+inf when every
    within-sample spread is zero), a NaN or non-finite p -> NaN.
    """
    C = np.asarray(C, dtype=float)
    B, k, n = C.shape
    if k < 2 or n == 0:
        return np.full(B, math.nan), np.full(B, math.nan)
    zbar, ss = levene_parts(C)
    return levene_from_parts(zbar, ss, n)


def levene_from_parts(zbar: np.ndarray, ss: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Levene (W, p) over all k samples from ``levene_parts`` output (shape (B, k)) -> each (B,)."""
    k = zbar.shape[1]
    if k < 2 or n == 0:
        return np.full(zbar.shape[0], math.nan), np.full(zbar.shape[0], math.nan)
    return _levene_from_parts([zbar[:, i] for i in range(k)], [ss[:, i] for i in range(k)], n)


def levene_pairs(
    zbar: np.ndarray, ss: np.ndarray, n: int, a: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """Two-sample median-centred Levene p-values for the column pairs (a[j], b[j]).

    ``zbar``, ``ss`` from ``levene_parts`` (shape (B, k)); the medians and spreads
    of a column do not depend on the pair, so every pair costs a few array
    operations.  Element [r, j] equals ``levene_test([col a[j], col b[j]])[1]``.
    """
    _, p = _levene_from_parts([zbar[:, a], zbar[:, b]], [ss[:, a], ss[:, b]], n)
    return p


#: kstwo.sf(D, en) by (D, en): the same few hundred D values recur across resamples
_KSTWO_SF: dict[tuple[float, float], float] = {}


def ks_rows(A: np.ndarray, Bm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``ks_test(A[r], Bm[r])`` for every row r -> (D, p), each of shape (R,).

    Two-sided two-sample KS with scipy's ``method="asymp"``: F1, F2 the empirical
    CDFs (counts / n1, n2) evaluated at every pooled value (ties included, i.e.
    searchsorted ``side="right"``), D = max(max(F1 - F2), clip(-min(F1 - F2), 0, 1)),
    p = kstwo.sf(D, round(n1 n2 / (n1 + n2))) clipped to [0, 1].  kstwo is evaluated
    once per distinct (D, n) pair and remembered (the same scalar function, so the
    same values; D takes few distinct values, multiples of 1/n1 - 1/n2 steps).
    """
    from scipy.stats import kstwo

    A = np.asarray(A, dtype=float)
    Bm = np.asarray(Bm, dtype=float)
    R, n1 = A.shape
    n2 = Bm.shape[1]
    if R == 0 or n1 == 0 or n2 == 0:
        return np.zeros(R), np.full(R, math.nan)
    V = np.concatenate([A, Bm], axis=1)
    order = np.argsort(V, axis=1)  # ties: only the last of a run of equal values is evaluated
    v = np.take_along_axis(V, order, axis=1)
    is1 = order < n1
    c1 = np.cumsum(is1, axis=1)
    c2 = np.cumsum(~is1, axis=1)
    last = np.ones(v.shape, dtype=bool)
    last[:, :-1] = v[:, :-1] != v[:, 1:]
    diff = c1 / n1 - c2 / n2
    max_s = np.max(np.where(last, diff, -np.inf), axis=1)
    min_s = np.clip(-np.min(np.where(last, diff, np.inf), axis=1), 0, 1)
    d = np.where(min_s > max_s, min_s, max_s)
    m, nn = sorted([float(n1), float(n2)], reverse=True)
    en = np.round(m * nn / (m + nn))
    uniq, inv = np.unique(d, return_inverse=True)
    prob_u = np.array([_KSTWO_SF.get((float(u), float(en)), math.nan) for u in uniq])
    todo = np.isnan(prob_u) & ~np.isnan(uniq)
    if todo.any():
        with quiet():
            prob_u[todo] = np.clip(np.asarray(kstwo.sf(uniq[todo], en), dtype=float), 0, 1)
        if len(_KSTWO_SF) > 200_000:
            _KSTWO_SF.clear()
        _KSTWO_SF.update({(float(u), float(en)): float(v) for u, v in zip(uniq[todo], prob_u[todo])})
    prob = prob_u[inv.ravel()]
    d = np.where(np.isfinite(d), d, 0.0)
    return d, np.where(np.isfinite(prob), prob, math.nan)


def spearman_rows(A: np.ndarray, Bm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``spearman_test(A[r], Bm[r])`` for every row r -> (rho, p), each of shape (R,).

    rho = Pearson correlation of the average ranks (numpy ``corrcoef``'s operations:
    cov / sd_b / sd_a, clipped to [-1, 1]); with dof = n - 2,
    t = rho * sqrt(clip(dof / ((rho + 1)(1 - rho)), 0)) and p = 2 * T_dof sf(|t|).
    A constant row (either input) or a NaN rho -> (0, 1); a NaN p -> NaN.
    """
    from scipy import special

    A = np.asarray(A, dtype=float)
    Bm = np.asarray(Bm, dtype=float)
    R, n = A.shape
    rho = np.zeros(R)
    p = np.ones(R)
    if R == 0 or n <= 1:
        return rho, p
    const = np.all(A == A[:, :1], axis=1) | np.all(Bm == Bm[:, :1], axis=1)
    ra, _ = rank_rows(A)
    rb, _ = rank_rows(Bm)
    with quiet():
        xa = ra - ra.mean(axis=1, keepdims=True)
        xb = rb - rb.mean(axis=1, keepdims=True)
        inv = np.true_divide(1, n - 1)
        caa = np.sum(xa * xa, axis=1) * inv
        cbb = np.sum(xb * xb, axis=1) * inv
        cab = np.sum(xb * xa, axis=1) * inv
        r = np.clip(cab / np.sqrt(cbb) / np.sqrt(caa), -1, 1)
        dof = n - 2
        t = r * np.sqrt((dof / ((r + 1.0) * (1.0 - r))).clip(0))
        pv = 2 * special.stdtr(dof, -np.abs(t))
    bad = const | ~np.isfinite(r)
    rho = np.where(bad, 0.0, r)
    p = np.where(bad, 1.0, np.where(np.isfinite(pv), pv, math.nan))
    return rho, p
