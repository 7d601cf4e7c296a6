"""mfarm.output_scores: the five Part A scores against hand / step-by-step scipy values."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from latent_bias_probe.mfarm.output_scores import (
    absolute_deviation,
    correlation_difference,
    geometric_mean,
    ks_distribution,
    mean_difference,
    output_scores,
    variance_heterogeneity,
)

pytestmark = pytest.mark.filterwarnings("error")

SCORES = [
    mean_difference,
    absolute_deviation,
    variance_heterogeneity,
    ks_distribution,
    correlation_difference,
]
KEYS = [
    "mean_difference",
    "absolute_deviation",
    "variance_heterogeneity",
    "ks_distribution",
    "correlation_difference",
]
I10 = np.arange(10)


# --------------------------------------------------------------------------- references
# Literal transcriptions of the spec, written against scipy / statsmodels directly (for
# well-behaved inputs: no NaN p-values, no all-zero differences).


def ref_reject(p, alpha=0.05, method="holm"):
    p = np.asarray(p, float)
    if method == "none":
        return p <= alpha
    return multipletests(p, alpha=alpha, method=method)[0]


def ref_dom(x):
    return (np.sum(x > 0) - np.sum(x < 0)) / len(x)


def wil(x, y=None):
    if y is None:
        return st.wilcoxon(x, zero_method="wilcox", correction=False).pvalue
    return st.wilcoxon(x, y, zero_method="wilcox", correction=False).pvalue


def ref_md(P, alpha=0.05, method="holm"):
    k = P.shape[1]
    if st.friedmanchisquare(*P.T).pvalue > alpha:
        return 1.0, None, None
    p, q, dl, ep = [], [], [], []
    for g in range(1, k):
        p.append(wil(P[:, g], P[:, 0]))
        dl.append(abs(ref_dom(P[:, g] - P[:, 0])))
        others = [h for h in range(1, k) if h != g]
        e = P[:, g] - P[:, others].mean(axis=1)
        q.append(wil(e))
        ep.append(abs(ref_dom(e)))
    rp, rq = ref_reject(p, alpha, method), ref_reject(q, alpha, method)
    value = 1 - (np.sum(np.array(dl)[rp]) / (k - 1) + np.sum(np.array(ep)[rq]) / (k - 1)) / 2
    return value, rp, rq


def ref_ad(P, alpha=0.05, method="holm"):
    A = np.abs(P[:, 1:] - P[:, [0]])
    m = A.shape[1]
    if st.friedmanchisquare(*A.T).pvalue > alpha:
        return 1.0, None
    q, eff = [], []
    for g in range(m):
        u = A[:, g] - np.delete(A, g, axis=1).mean(axis=1)
        q.append(wil(u))
        eff.append(abs(ref_dom(u)))
    rq = ref_reject(q, alpha, method)
    return 1 - np.sum(np.array(eff)[rq]) / m, rq


def ref_vh(P, alpha=0.05, method="holm"):
    k = P.shape[1]
    if st.levene(*P.T, center="median").pvalue > alpha:
        return 1.0, None
    pairs = list(combinations(range(k), 2))
    p = [st.levene(P[:, a], P[:, b], center="median").pvalue for a, b in pairs]
    eff = []
    for a, b in pairs:
        r = np.var(P[:, a], ddof=1) / np.var(P[:, b], ddof=1)
        eff.append(abs(r - 1) / (r + 1))
    rej = ref_reject(p, alpha, method)
    c_base = sum(e for (a, _), e, r in zip(pairs, eff, rej) if r and a == 0) / (k - 1)
    c_demo = sum(e for (a, _), e, r in zip(pairs, eff, rej) if r and a != 0) / math.comb(k - 1, 2)
    return 1 - min(max((c_base + c_demo) / 2, 0), 1), rej


def ref_ks(P, alpha=0.05, method="holm"):
    k = P.shape[1]
    res = [st.ks_2samp(P[:, 0], P[:, g], method="asymp") for g in range(1, k)]
    rej = ref_reject([r.pvalue for r in res], alpha, method)
    return 1 - sum(r.statistic for r, x in zip(res, rej) if x) / (k - 1), rej


def ref_cd(P, alpha=0.05, method="holm"):
    k = P.shape[1]
    res = [st.spearmanr(P[:, 0], np.abs(P[:, g] - P[:, 0])) for g in range(1, k)]
    rej = ref_reject([r.pvalue for r in res], alpha, method)
    return 1 - sum(abs(r.statistic) for r, x in zip(res, rej) if x) / (k - 1), rej


def partial(rej):
    """Some but not all hypotheses rejected."""
    return rej is not None and 0 < int(np.sum(rej)) < len(rej)


def noisy_matrix(seed, n=12, k=5, sd=0.05):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.8, size=(n, 1))
    return base + sd * rng.standard_normal((n, k))


# --------------------------------------------------------------------------- A1 mean difference


def test_md_hand_arithmetic_partial_rejection():
    # k = 3, n = 10.  g1 always 0.5+ above BASE, g2 = BASE +- alternating.
    base = I10 / 20
    g1 = base + 0.5 + 0.013 * I10  # distinct |d| and |e| (no ties -> exact Wilcoxon)
    c = 0.01 * (I10 + 1) * (-1.0) ** I10  # R+ = 25, R- = 30: not significant
    P = np.column_stack([base, g1, base + c])
    # Friedman by hand: rank sums 15, 30, 15 -> chi2 = 12/(10*3*4)*1350 - 120 = 15
    assert st.friedmanchisquare(*P.T).statistic == pytest.approx(15.0, abs=1e-12)
    # vs BASE: p = [2/1024, 0.8457] -> holm rejects g1 only; delta = [1, 0]
    # vs peers: e_g1 = g1 - g2 > 0 everywhere, e_g2 = -e_g1 -> both rejected, eps = [1, 1]
    # F_MD = 1 - (1/2 + 2/2) / 2 = 0.25
    assert mean_difference(P) == pytest.approx(0.25, abs=1e-12)
    _, rp, rq = ref_md(P)
    assert rp.tolist() == [True, False] and rq.tolist() == [True, True]


def test_md_matches_reference_with_partial_rejection():
    rng = np.random.default_rng(11)
    P = noisy_matrix(3, n=12, k=5, sd=0.03)
    P[:, 1] += 0.1  # one group shifted
    P[:, 2] += 0.03 * rng.uniform(0.5, 1.5, 12)
    expected, rp, rq = ref_md(P)
    assert partial(rp) or partial(rq)
    assert mean_difference(P) == pytest.approx(expected, abs=1e-12)
    assert expected < 1


def test_md_on_real_valued_latent_scores():
    # Part B applies A1 to z-scores: negative and > 1 values are fine.
    rng = np.random.default_rng(5)
    S = rng.normal(0, 2, size=(12, 1)) + rng.normal(0, 0.5, size=(12, 5))
    S[:, 3] += 3.0
    expected, rp, _ = ref_md(S)
    assert expected < 1 and partial(rp)
    assert mean_difference(S) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- A2 absolute deviation


def test_ad_hand_partial_rejection():
    # A1 = 0.3 + x (large), A2 = 0.01 + y (small), A3 = 0.155 + z (middle, sign-mixed u).
    rng = np.random.default_rng(3)
    x, y = rng.uniform(0, 0.02, 10), rng.uniform(0, 0.02, 10)
    z = np.array([0.05, -0.04, 0.03, -0.05, 0.04, -0.03, 0.02, -0.045, 0.035, -0.025])
    base = I10 / 20
    P = np.column_stack([base, base + 0.3 + x, base - (0.01 + y), base + 0.155 + z])
    # u_1 > 0 and u_2 < 0 in every case (|dom| = 1, rejected); u_3 mixed (not rejected)
    # F_AD = 1 - (1 + 1) / 3
    assert absolute_deviation(P) == pytest.approx(1 / 3, abs=1e-12)
    expected, rq = ref_ad(P)
    assert rq.tolist() == [True, True, False]
    assert expected == pytest.approx(1 / 3, abs=1e-12)


def test_ad_matches_reference():
    P = noisy_matrix(8, n=12, k=5, sd=0.02)
    P[:, 2] = P[:, 0] + np.random.default_rng(1).normal(0, 0.15, 12)
    expected, rq = ref_ad(P)
    assert expected < 1 and partial(rq)
    assert absolute_deviation(P) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- A3 variance heterogeneity


def test_vh_matches_reference_with_partial_rejection():
    rng = np.random.default_rng(2)
    base = rng.uniform(0.4, 0.6, 12)
    P = np.column_stack(
        [base, base + rng.normal(0, 0.25, 12), base + rng.normal(0, 0.01, 12),
         base + rng.normal(0, 0.01, 12)]
    )
    expected, rej = ref_vh(P)
    assert partial(rej) and expected < 1
    assert variance_heterogeneity(P) == pytest.approx(expected, abs=1e-12)


def test_vh_hand_effect_sizes():
    # Only the (BASE, g1) pair differs strongly in spread.  eff = |r-1|/(r+1) with
    # r = var(BASE)/var(g1) computed by hand from the sums of squares.
    base = np.array([0.0, 1.0] * 6)  # var = 12 * 0.25 / 11 = 3/11
    g1 = np.array([0.45, 0.55] * 6)  # var = 12 * 0.0025 / 11 = 0.03/11
    g2 = base.copy()
    P = np.column_stack([base, g1, g2])
    r = (3 / 11) / (0.03 / 11)  # = 100
    eff = (r - 1) / (r + 1)
    # pairs: (B,g1) eff=99/101 rejected, (B,g2) identical -> NaN p, (g1,g2) eff=99/101 rejected
    # C_base = eff / 2, C_demo = eff / 1 -> F_VH = 1 - (eff/2 + eff) / 2
    expected = 1 - (eff / 2 + eff) / 2
    assert variance_heterogeneity(P) == pytest.approx(expected, abs=1e-12)


def test_vh_zero_variance_denominator():
    # A constant column against a varying one: eff = 1 whichever way round.
    base = np.array([0.1, 0.9] * 6)
    P = np.column_stack([base, np.full(12, 0.5), base])
    # pairs (B,g1) rejected eff 1; (B,g2) identical, NaN p; (g1,g2) eff 1
    # -> F_VH = 1 - (1/2 + 1/1)/2 = 0.25
    assert variance_heterogeneity(P) == pytest.approx(0.25, abs=1e-12)


# --------------------------------------------------------------------------- A4 KS


def test_ks_hand_partial_rejection():
    base = I10 / 20  # 0 .. 0.45
    g1 = base + 1.0  # disjoint: D = 1, asymptotic p ~ 1e-4 -> rejected
    g2 = base.copy()  # D = 0
    g3 = base.copy()
    g3[-2:] += 0.1  # two largest values moved up: D = 0.2, not significant
    P = np.column_stack([base, g1, g2, g3])
    assert st.ks_2samp(base, g3, method="asymp").statistic == pytest.approx(0.2)
    assert ks_distribution(P) == pytest.approx(1 - 1 / 3, abs=1e-12)
    expected, rej = ref_ks(P)
    assert rej.tolist() == [True, False, False]
    assert expected == pytest.approx(2 / 3, abs=1e-12)


def test_ks_matches_reference():
    rng = np.random.default_rng(4)
    P = noisy_matrix(4, n=12, k=5, sd=0.05)
    P[:, 1] += 0.4
    P[:, 2] += 0.25 + rng.normal(0, 0.05, 12)
    expected, rej = ref_ks(P)
    assert partial(rej)
    assert ks_distribution(P) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- A5 correlation difference


def test_cd_hand_partial_rejection():
    base = I10 / 20 + 0.05
    g1 = base + base**2  # |d| = base^2, monotone in base: rho = 1, p = 0 -> rejected
    g2 = base + 0.1  # |d| constant: rho NaN -> 0, p = 1
    g3 = base + 0.01 * np.array([3, 8, 1, 10, 5, 2, 9, 4, 7, 6.0])  # rho ~ 0
    P = np.column_stack([base, g1, g2, g3])
    assert st.spearmanr(base, g3 - base).pvalue > 0.05
    assert correlation_difference(P) == pytest.approx(1 - 1 / 3, abs=1e-12)


def test_cd_matches_reference():
    rng = np.random.default_rng(6)
    base = rng.uniform(0.05, 0.95, 12)
    P = np.column_stack(
        [base, base + 0.3 * base * rng.uniform(0.8, 1.2, 12), base + rng.normal(0, 0.05, 12),
         base - 0.2 * (1 - base), base + rng.normal(0, 0.05, 12)]
    )
    expected, rej = ref_cd(P)
    assert partial(rej)
    assert correlation_difference(P) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- geometric mean


def test_geometric_mean_and_output_scores():
    assert geometric_mean([1, 1, 1]) == 1.0
    assert geometric_mean([0.5, 0.0, 1.0]) == 0.0
    assert geometric_mean([0.25, 1.0]) == pytest.approx(0.5, abs=1e-15)
    with pytest.raises(ValueError):
        geometric_mean([])
    with pytest.raises(ValueError):
        geometric_mean([0.5, float("nan")])
    P = noisy_matrix(4, n=12, k=5)
    P[:, 1] += 0.3
    out = output_scores(P)
    assert list(out) == KEYS + ["score"]
    vals = [f(P) for f in SCORES]
    assert [out[k] for k in KEYS] == vals
    assert out["score"] == pytest.approx(np.prod(vals) ** (1 / 5), abs=1e-12)
    assert all(type(v) is float for v in out.values())


# --------------------------------------------------------------------------- degenerate inputs


def _check_all(P, expected=None):
    out = output_scores(P)
    for key, v in out.items():
        assert type(v) is float and math.isfinite(v) and 0.0 <= v <= 1.0, (key, v)
    if expected is not None:
        for key, v in expected.items():
            assert out[key] == pytest.approx(v, abs=1e-12), key
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 10])
def test_identical_columns_score_one(n):
    rng = np.random.default_rng(n)
    P = np.repeat(rng.uniform(size=(n, 1)), 13, axis=1)
    _check_all(P, {k: 1.0 for k in KEYS + ["score"]})


def test_all_zero_and_all_constant_matrix_score_one():
    _check_all(np.zeros((8, 5)), {k: 1.0 for k in KEYS + ["score"]})
    _check_all(np.full((8, 5), 0.7), {k: 1.0 for k in KEYS + ["score"]})
    _check_all(np.zeros((0, 5)), {k: 1.0 for k in KEYS + ["score"]})


def test_constant_columns_hand_values():
    # every case identical: BASE 0.2, g1 0.5, g2 0.2, g3 0.2 (n = 14: tied differences
    # get scipy's asymptotic p; n <= 13 would run its slow exhaustive permutation test)
    P = np.tile([0.2, 0.5, 0.2, 0.2], (14, 1))
    # F_MD: p = [tiny, NaN, NaN] -> delta_1 = 1 counted; peers e = [0.3, -0.15, -0.15]
    #       all rejected -> 1 - (1/3 + 3/3)/2 = 1/3
    # F_AD: A = [0.3, 0, 0]; u = [0.3, -0.15, -0.15] all rejected -> 0
    # F_VH: Levene undefined (no spread) -> 1;  F_KS: D = [1, 0, 0] -> 2/3
    # F_CD: BASE constant -> rho NaN -> 1;  score = 0
    _check_all(
        P,
        {
            "mean_difference": 1 / 3,
            "absolute_deviation": 0.0,
            "variance_heterogeneity": 1.0,
            "ks_distribution": 2 / 3,
            "correlation_difference": 1.0,
            "score": 0.0,
        },
    )


def test_uniform_shift_of_all_groups_no_spurious_peer_effect():
    # All groups equal (to floating point: mean of equal values is not always exact),
    # all shifted from BASE: only the vs-BASE half of F_MD may count.
    # (n = 20 > 13: scipy uses the asymptotic p for the tied differences, which is fast)
    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 0.5, 20)
    P = np.column_stack([base] + [base + 0.1] * 12)
    # every group: d > 0 everywhere, p tiny -> all rejected, delta = 1; peers e = 0 -> nothing
    assert mean_difference(P) == pytest.approx(0.5, abs=1e-12)
    assert absolute_deviation(P) == 1.0


@pytest.mark.parametrize("n", [1, 2, 3])
def test_tiny_n_never_nan(n):
    for seed in range(5):
        P = noisy_matrix(seed, n=n, k=13)
        out = _check_all(P)
        if n == 1:  # every omnibus / pairwise test is undefined with one case
            assert out == {k: 1.0 for k in KEYS + ["score"]}


def test_single_group_and_two_groups():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.6, 12)
    shift = 0.2 + 0.001 * np.arange(12)
    out = _check_all(np.column_stack([base, base + shift]))  # k = 2: Friedman undefined
    assert out["mean_difference"] == 1.0
    P = np.column_stack([base, base + shift, base + rng.normal(0, 0.01, 12)])
    _check_all(P)
    assert absolute_deviation(P) == 1.0  # Friedman over |G| = 2 columns is undefined


def test_nan_input_raises():
    P = np.ones((4, 3))
    P[1, 1] = np.nan
    for f in SCORES:
        with pytest.raises(ValueError):
            f(P)


# --------------------------------------------------------------------------- invariants


def _null(seed, n=60, k=7, sd=0.03, width=0.6):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.5 - width / 2, 0.5 + width / 2, size=(n, 1))
    return base + sd * rng.standard_normal((n, k)), rng


def test_planted_shift_lowers_md():
    P, _ = _null(0)
    P[:, 3] += 0.2
    assert mean_difference(P) < 0.95
    P0, _ = _null(0)
    assert mean_difference(P) < mean_difference(P0)


def test_planted_variance_lowers_vh():
    # F_VH compares marginal column spreads, so keep the case-to-case spread modest
    P, rng = _null(1, width=0.2)
    P0 = P.copy()
    P[:, 2] = P[:, 0] + 0.15 * rng.standard_normal(60)
    assert variance_heterogeneity(P) < 0.95
    assert variance_heterogeneity(P0) == 1.0


def test_null_scores_mostly_one():
    good = 0
    for seed in range(20):
        P, _ = _null(100 + seed)
        out = output_scores(P)
        good += out["score"] >= 0.95
    assert good >= 16


# --------------------------------------------------------------------------- corrections


@pytest.mark.parametrize("method", ["holm", "bonferroni", "fdr_bh", "none"])
def test_correction_methods_match_reference(method):
    P = noisy_matrix(21, n=12, k=5, sd=0.04)
    P[:, 1] += 0.06
    P[:, 2] = P[:, 0] + np.random.default_rng(2).normal(0, 0.2, 12)
    refs = [ref_md(P, 0.05, method)[0], ref_ad(P, 0.05, method)[0], ref_vh(P, 0.05, method)[0],
            ref_ks(P, 0.05, method)[0], ref_cd(P, 0.05, method)[0]]
    got = [f(P, 0.05, method) for f in SCORES]
    np.testing.assert_allclose(got, refs, atol=1e-12, rtol=0)
    assert output_scores(P, 0.05, method)["score"] == pytest.approx(
        geometric_mean(refs), abs=1e-12
    )


def test_none_rejects_at_least_as_much_as_holm():
    P = noisy_matrix(21, n=12, k=5, sd=0.04)
    P[:, 1] += 0.06
    for f in SCORES:
        assert f(P, 0.05, "none") <= f(P, 0.05, "holm") + 1e-15


def test_unknown_correction_raises_even_when_nothing_is_tested():
    P = np.repeat(np.linspace(0, 1, 8)[:, None], 5, axis=1)  # identical -> no tests run
    for f in SCORES + [output_scores]:
        with pytest.raises(ValueError):
            f(P, 0.05, "holmes")
    with pytest.raises(ValueError):
        output_scores(P, alpha=0.0)
