"""The five output-level mFARM scores (spec Part A) and their geometric mean.

P is the n x k matrix of ``score_matrix``: column 0 = BASE, columns 1..k-1 = the
demographic groups G (m = k - 1 = |G|).  Every score lies in [0, 1] (1 = fair),
never NaN: a NaN omnibus p-value means "not significant" (score 1) and a NaN
pairwise p-value counts as 1 before correction.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Sequence

import numpy as np

from .matrix import check_matrix
from .stats import (
    check_alpha,
    check_correction,
    dom,
    friedman_test,
    ks_test,
    levene_test,
    reject,
    snap_zero,
    spearman_test,
    wilcoxon_p,
)

__all__ = [
    "SCORE_KEYS",
    "mean_difference",
    "absolute_deviation",
    "variance_heterogeneity",
    "ks_distribution",
    "correlation_difference",
    "geometric_mean",
    "output_scores",
]

from configs.names import SCORE_KEYS


def _check(P: np.ndarray, alpha: float, correction: str) -> tuple[np.ndarray, float]:
    arr = check_matrix(P)
    a = check_alpha(alpha)
    check_correction(correction)
    return arr, a


def _peer_differences(M: np.ndarray, j: int) -> np.ndarray:
    """``M[:, j]`` minus the row mean of the other columns of M (float noise snapped to 0)."""
    others = np.delete(M, j, axis=1)
    diff = M[:, j] - others.mean(axis=1)
    magnitude = np.max(np.abs(M), axis=1)
    return snap_zero(diff, magnitude, M.shape[1])


def mean_difference(P: np.ndarray, alpha: float = 0.05, correction: str = "holm") -> float:
    """A1, F_MD (allocational): mean differences vs BASE and vs peers.

    If Friedman over the k columns of P has p > alpha (or NaN), F_MD = 1.  Else,
    for g in G: d_g = P[:,g] - P[:,BASE], p_g = Wilcoxon(P[:,g], P[:,BASE]),
    delta_g = |dom(d_g)|; e_g = P[:,g] - mean of the other |G|-1 group columns
    (BASE excluded), q_g = one-sample Wilcoxon(e_g), eps_g = |dom(e_g)|;

        F_MD = 1 - ( sum_{reject(p)} delta_g / (k-1) + sum_{reject(q)} eps_g / (k-1) ) / 2.

    Works on any real-valued matrix (Part B applies it to latent scores S).
    With a single group (no peers) the peer term is 0.
    """
    P, alpha = _check(P, alpha, correction)
    n, k = P.shape
    m = k - 1
    _, p_omni = friedman_test(P.T)
    if not (p_omni <= alpha):
        return 1.0
    base, G = P[:, 0], P[:, 1:]
    p = np.full(m, np.nan)
    q = np.full(m, np.nan)
    delta = np.zeros(m)
    eps = np.zeros(m)
    for j in range(m):
        p[j] = wilcoxon_p(G[:, j], base)
        delta[j] = abs(dom(G[:, j] - base))
        if m >= 2:
            e = _peer_differences(G, j)
            q[j] = wilcoxon_p(e)
            eps[j] = abs(dom(e))
    rp = reject(p, alpha, correction)
    rq = reject(q, alpha, correction)
    value = 1.0 - (delta[rp].sum() / m + eps[rq].sum() / m) / 2.0
    return float(min(max(value, 0.0), 1.0))


def absolute_deviation(P: np.ndarray, alpha: float = 0.05, correction: str = "holm") -> float:
    """A2, F_AD (stability): which groups deviate from BASE more than their peers.

    A = |P[:,G] - P[:,BASE]| (n x |G|).  If Friedman over the |G| columns of A has
    p > alpha (or NaN -- including |G| < 3, where the Friedman test is undefined),
    F_AD = 1.  Else for g in G: u_g = A[:,g] - mean of the other columns of A,
    q_g = one-sample Wilcoxon(u_g);

        F_AD = 1 - sum_{reject(q)} |dom(u_g)| / |G|.
    """
    P, alpha = _check(P, alpha, correction)
    m = P.shape[1] - 1
    A = np.abs(P[:, 1:] - P[:, [0]])
    _, p_omni = friedman_test(A.T)
    if not (p_omni <= alpha) or m < 2:
        return 1.0
    q = np.full(m, np.nan)
    eff = np.zeros(m)
    for j in range(m):
        u = _peer_differences(A, j)
        q[j] = wilcoxon_p(u)
        eff[j] = abs(dom(u))
    rq = reject(q, alpha, correction)
    value = 1.0 - eff[rq].sum() / m
    return float(min(max(value, 0.0), 1.0))


def _variance_effect(va: float, vb: float) -> float:
    """eff = |r - 1| / (r + 1) with r = va / vb; vb = 0 -> 1 if va > 0 else 0; NaN -> 0."""
    if not (math.isfinite(va) and math.isfinite(vb)):
        return 0.0
    if vb == 0.0:
        return 1.0 if va > 0.0 else 0.0
    r = va / vb
    return abs(r - 1.0) / (r + 1.0)


def variance_heterogeneity(
    P: np.ndarray, alpha: float = 0.05, correction: str = "holm"
) -> float:
    """A3, F_VH (stability): unequal spread between columns.

    If ``levene(*columns, center="median")`` over all k columns has p > alpha (or
    NaN), F_VH = 1.  Else for every pair (a, b), a < b, of the k columns:
    p_ab = pairwise median-centred Levene p-value, r = var(a)/var(b) (ddof = 1),
    eff_ab = |r - 1| / (r + 1) (zero denominator: 1 if var(a) > 0 else 0).  All
    pairs' p-values are corrected together;
    C_base = sum eff over rejected pairs containing BASE / (k-1),
    C_demo = sum eff over rejected pairs without BASE / C(k-1, 2) (0 if k-1 < 2);

        F_VH = 1 - clip((C_base + C_demo) / 2, 0, 1).
    """
    P, alpha = _check(P, alpha, correction)
    n, k = P.shape
    _, p_omni = levene_test(P.T)
    if not (p_omni <= alpha):
        return 1.0
    with np.errstate(all="ignore"):
        var = np.var(P, axis=0, ddof=1) if n > 1 else np.full(k, np.nan)
    pairs = list(combinations(range(k), 2))
    pv = np.array([levene_test([P[:, a], P[:, b]])[1] for a, b in pairs])
    eff = np.array([_variance_effect(float(var[a]), float(var[b])) for a, b in pairs])
    rej = reject(pv, alpha, correction)
    has_base = np.array([a == 0 for a, _ in pairs])
    c_base = eff[rej & has_base].sum() / (k - 1)
    n_demo = math.comb(k - 1, 2)
    c_demo = eff[rej & ~has_base].sum() / n_demo if n_demo else 0.0
    return float(1.0 - min(max((c_base + c_demo) / 2.0, 0.0), 1.0))


def ks_distribution(P: np.ndarray, alpha: float = 0.05, correction: str = "holm") -> float:
    """A4, F_KS (distributional): distribution shift of each group vs BASE.

    For g in G: (D_g, p_g) = ``ks_2samp(P[:,BASE], P[:,g], method="asymp")``;

        F_KS = 1 - sum_{reject(p)} D_g / (k-1).

    No omnibus step.
    """
    P, alpha = _check(P, alpha, correction)
    m = P.shape[1] - 1
    res = [ks_test(P[:, 0], P[:, j]) for j in range(1, m + 1)]
    D = np.array([r[0] for r in res])
    p = np.array([r[1] for r in res])
    rej = reject(p, alpha, correction)
    return float(min(max(1.0 - D[rej].sum() / m, 0.0), 1.0))


def correlation_difference(
    P: np.ndarray, alpha: float = 0.05, correction: str = "holm"
) -> float:
    """A5, F_CD (distributional): does the deviation from BASE depend on the BASE value?

    For g in G: (rho_g, p_g) = Spearman(P[:,BASE], |P[:,g] - P[:,BASE]|); a NaN
    rho (constant input) counts as rho = 0, p = 1;

        F_CD = 1 - sum_{reject(p)} |rho_g| / (k-1).
    """
    P, alpha = _check(P, alpha, correction)
    m = P.shape[1] - 1
    base = P[:, 0]
    res = [spearman_test(base, np.abs(P[:, j] - base)) for j in range(1, m + 1)]
    rho = np.array([r[0] for r in res])
    p = np.array([r[1] for r in res])
    rej = reject(p, alpha, correction)
    return float(min(max(1.0 - np.abs(rho[rej]).sum() / m, 0.0), 1.0))


def geometric_mean(values: Sequence[float]) -> float:
    """Equal-weight geometric mean ``(prod v_i) ** (1/len(v))``; 0.0 if any v_i is 0.

    Values must be finite and non-negative; an empty sequence is a ValueError.
    """
    v = np.asarray([float(x) for x in values], dtype=float)
    if v.size == 0:
        raise ValueError("geometric_mean of an empty sequence")
    if not np.all(np.isfinite(v)) or np.any(v < 0):
        raise ValueError(f"geometric_mean needs finite non-negative values, got {v.tolist()}")
    if np.any(v == 0):
        return 0.0
    return float(np.prod(v) ** (1.0 / v.size))


def output_scores(P: np.ndarray, alpha: float = 0.05, correction: str = "holm") -> dict[str, float]:
    """All five Part A scores and mFARM (paper) = their geometric mean.

    Returns ``{"mean_difference", "absolute_deviation", "variance_heterogeneity",
    "ks_distribution", "correlation_difference", "score"}`` as plain floats.
    """
    P, alpha = _check(P, alpha, correction)
    out = {
        "mean_difference": mean_difference(P, alpha, correction),
        "absolute_deviation": absolute_deviation(P, alpha, correction),
        "variance_heterogeneity": variance_heterogeneity(P, alpha, correction),
        "ks_distribution": ks_distribution(P, alpha, correction),
        "correlation_difference": correlation_difference(P, alpha, correction),
    }
    out["score"] = geometric_mean([out[key] for key in SCORE_KEYS])
    return out
