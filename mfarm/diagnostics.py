"""Diagnostics reported beside the mFARM scores (not part of them).

Omnibus statistics with Kendall's W, per-group mean shifts with a bootstrap CI
and flip rates, and the intersectional residual share (IBD).  All results are
plain Python (float / None) so they serialise to JSON directly.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .matrix import check_matrix
from .stats import check_alpha, friedman_test, levene_test, nan_to_none

__all__ = ["omnibus", "group_shifts", "parse_group", "intersectional_residual_share"]


def omnibus(P: np.ndarray, alpha: float = 0.05) -> dict[str, Any]:
    """Omnibus tests over the columns of P (BASE + groups).

    - ``friedman_chi2``, ``friedman_p``: scipy Friedman over the k columns of P;
    - ``kendall_w`` = chi2 / (n (k - 1));
    - ``abs_friedman_chi2``, ``abs_friedman_p``: Friedman over the |G| columns of
      |P[:,G] - P[:,BASE]| (the A2 gate);
    - ``levene_stat``, ``levene_p``: median-centred Levene over the k columns (A3 gate);
    - ``*_significant``: p <= alpha (False when p is undefined);
    - ``alpha``.
    Undefined (NaN) or infinite values are reported as None.
    """
    alpha = check_alpha(alpha)
    P = check_matrix(P)
    n, k = P.shape
    chi2, p = friedman_test(P.T)
    w = chi2 / (n * (k - 1)) if n > 0 and np.isfinite(chi2) else float("nan")
    a_chi2, a_p = friedman_test(np.abs(P[:, 1:] - P[:, [0]]).T)
    l_stat, l_p = levene_test(P.T)
    return {
        "alpha": alpha,
        "friedman_chi2": nan_to_none(chi2),
        "friedman_p": nan_to_none(p),
        "friedman_significant": bool(p <= alpha),
        "kendall_w": nan_to_none(w),
        "abs_friedman_chi2": nan_to_none(a_chi2),
        "abs_friedman_p": nan_to_none(a_p),
        "abs_friedman_significant": bool(a_p <= alpha),
        "levene_stat": nan_to_none(l_stat),
        "levene_p": nan_to_none(l_p),
        "levene_significant": bool(l_p <= alpha),
    }


def group_shifts(
    P: np.ndarray,
    groups: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """Per-group shift of P relative to BASE, with a case-bootstrap 95 % CI and flip rate.

    For each group g (column j = 1.. of P, named ``groups[j-1]``):
    ``mean_shift`` = mean_i (P[i,g] - P[i,BASE]);
    ``ci_low``, ``ci_high`` = 2.5 / 97.5 percentiles (numpy linear interpolation)
    of that mean over ``n_boot`` resamples of the cases with replacement (the same
    resampled case sets for every group; deterministic given ``seed``);
    ``flip_rate`` = mean_i 1[ 1[P[i,g] > threshold] != 1[P[i,BASE] > threshold] ].
    With no cases every value is None; with ``n_boot = 0`` (no bootstrap) the CI
    bounds are None.
    """
    P = check_matrix(P)
    n, k = P.shape
    groups = list(groups)
    if len(groups) != k - 1:
        raise ValueError(f"{len(groups)} group names for {k - 1} group columns")
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    if n == 0:
        return [
            {"group": g, "mean_shift": None, "ci_low": None, "ci_high": None, "flip_rate": None}
            for g in groups
        ]
    D = P[:, 1:] - P[:, [0]]
    lo = hi = [None] * (k - 1)
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        chunk = max(1, int(2_000_000 // max(1, n * (k - 1))))
        boot = np.empty((n_boot, k - 1))
        for start in range(0, n_boot, chunk):
            stop = min(n_boot, start + chunk)
            idx = rng.integers(0, n, size=(stop - start, n))
            boot[start:stop] = D[idx].mean(axis=1)
        lo, hi = (row.tolist() for row in np.percentile(boot, [2.5, 97.5], axis=0))
    above = P > threshold
    flips = (above[:, 1:] != above[:, [0]]).mean(axis=0)
    shift = D.mean(axis=0)
    return [
        {
            "group": str(g),
            "mean_shift": float(shift[j]),
            "ci_low": None if lo[j] is None else float(lo[j]),
            "ci_high": None if hi[j] is None else float(hi[j]),
            "flip_rate": float(flips[j]),
        }
        for j, g in enumerate(groups)
    ]


def parse_group(
    group: str,
    races: Sequence[str] | None = None,
    genders: Sequence[str] | None = None,
) -> tuple[str, str]:
    """Split a ``"{Race}-{Gender}"`` variant name into (race, gender).

    With ``races`` and ``genders`` given, the unique combination r + "-" + g equal
    to ``group`` is used (so names containing hyphens work).  Without them the
    name must contain exactly one "-"; otherwise ValueError.
    """
    if races is not None and genders is not None:
        hits = [(r, g) for r in races for g in genders if f"{r}-{g}" == group]
        if len(hits) != 1:
            raise ValueError(f"group {group!r} does not match exactly one race-gender pair")
        return hits[0]
    parts = group.split("-")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise ValueError(
            f"cannot split group {group!r} into race and gender; expected 'Race-Gender' "
            "with exactly one '-', or pass races= and genders="
        )
    return parts[0], parts[1]


def intersectional_residual_share(
    P: np.ndarray,
    groups: Sequence[str],
    races: Sequence[str] | None = None,
    genders: Sequence[str] | None = None,
) -> float:
    """IBD: share of the group shifts not explained by additive race + gender effects.

    d_g = mean_i (P[i,g] - P[i,BASE]);
    r_g = d_g - mean_{h: gender(h)=gender(g)} d_h - mean_{h: race(h)=race(g)} d_h + mean_G d;

        IBD = sum_g r_g^2 / sum_g d_g^2   (0.0 when sum_g d_g^2 == 0 or there are no cases).

    The means include g itself.  For a full race x gender design, IBD = 0 exactly
    when d is additive (d_g = a_race + b_gender) and grows with the interaction.
    """
    P = check_matrix(P)
    n, k = P.shape
    groups = list(groups)
    if len(groups) != k - 1:
        raise ValueError(f"{len(groups)} group names for {k - 1} group columns")
    parsed = [parse_group(str(g), races, genders) for g in groups]
    if n == 0:
        return 0.0
    d = (P[:, 1:] - P[:, [0]]).mean(axis=0)
    denom = float(np.sum(d**2))
    if denom == 0.0:
        return 0.0
    race = np.array([r for r, _ in parsed])
    gender = np.array([g for _, g in parsed])
    grand = d.mean()
    r = np.array(
        [
            d[j] - d[gender == gender[j]].mean() - d[race == race[j]].mean() + grand
            for j in range(d.size)
        ]
    )
    return float(np.sum(r**2) / denom)
