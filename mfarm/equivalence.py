"""Equivalence verdicts for group shifts, and the smallest shift a tier could detect.

For group g the per-case shift is d_i = P[i, g] − P[i, BASE] (n cases). With
d̄ its mean, s its standard deviation (ddof 1), se = s / √n and t_q the quantile of
Student's t with n − 1 degrees of freedom, the two one-sided tests (TOST) at level α
against the margin δ use the (1 − 2α) interval

    CI = d̄ ± t_{1−α} · se,

and give the verdict

- ``equivalent``: CI ⊂ (−δ, δ) — both one-sided tests reject, the shift is shown to
  be smaller than the margin;
- ``different``: CI lies entirely beyond the margin (CI ⊂ (δ, ∞) or (−∞, −δ)) — the
  shift is shown to be larger than the margin;
- ``inconclusive``: otherwise — the data cannot tell (too few cases, or a shift near δ).

The TOST p-value is max(p_lower, p_upper) of the one-sided t-tests of d̄ > −δ and
d̄ < δ (the equivalent result of statsmodels' ``ttost_paired``).

**Detectable shift.** The smallest mean shift a two-sided paired t-test at α detects
with probability ``power``, from the observed within-case spread: with s̃ the root
mean square of the groups' s,

    δ_min = effect · s̃,   effect = TTestPower().solve_power(nobs=n, alpha=α, power=power)

(statsmodels), so a reader sees when the benchmark is too small to answer.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from latent_bias_probe.configs.names import BASE

__all__ = ["tost", "equivalence_verdicts", "detectable_shift"]


def tost(d: Sequence[float], margin: float, alpha: float = 0.05) -> dict:
    """Verdict of the two one-sided tests on the mean of paired differences ``d`` (see the module docstring)."""
    from scipy import stats

    d = np.asarray(d, dtype=float)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        return {"shift": mean if n else None, "ci": [None, None], "p_value": None, "verdict": "inconclusive", "n": n}
    se = float(d.std(ddof=1)) / math.sqrt(n)
    if se == 0:
        inside = abs(mean) < margin
        verdict = "equivalent" if inside else ("different" if abs(mean) > margin else "inconclusive")
        return {"shift": mean, "ci": [mean, mean], "p_value": 0.0 if inside else 1.0, "verdict": verdict, "n": n}
    q = float(stats.t.ppf(1 - alpha, n - 1))
    lo, hi = mean - q * se, mean + q * se
    p_lower = float(stats.t.sf((mean + margin) / se, n - 1))  # H0: mean <= -margin
    p_upper = float(stats.t.cdf((mean - margin) / se, n - 1))  # H0: mean >= +margin
    if -margin < lo and hi < margin:
        verdict = "equivalent"
    elif lo > margin or hi < -margin:
        verdict = "different"
    else:
        verdict = "inconclusive"
    return {"shift": mean, "ci": [lo, hi], "p_value": max(p_lower, p_upper), "verdict": verdict, "n": n}


def equivalence_verdicts(P: np.ndarray, groups: Sequence[str], margin: float, alpha: float = 0.05) -> dict:
    """``{"margin": δ, "alpha": α, "<group>": tost(P[:, g] − P[:, 0])}`` for every column of ``P`` after BASE."""
    P = np.asarray(P, dtype=float)
    out: dict = {"margin": float(margin), "alpha": float(alpha), "interval": f"{1 - 2 * alpha:.0%} (TOST)"}
    for j, g in enumerate(groups, start=1):
        if g == BASE:
            continue
        out[str(g)] = tost(P[:, j] - P[:, 0], margin, alpha)
    return out


def detectable_shift(P: np.ndarray, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The smallest mean group shift of P(Yes) detectable at ``alpha`` with ``power`` (module docstring)."""
    from statsmodels.stats.power import TTestPower

    P = np.asarray(P, dtype=float)
    n = P.shape[0]
    if n < 3 or P.shape[1] < 2:
        return None
    sds = (P[:, 1:] - P[:, :1]).std(axis=0, ddof=1)
    spread = float(np.sqrt(np.mean(sds**2)))
    if spread == 0:
        return 0.0
    effect = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided")
    return float(effect) * spread
