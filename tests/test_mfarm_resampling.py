"""mfarm.resampling and the batched score engine.

The batched engine must give, resample by resample, what the scalar scores give
(every test decision identical, values to 1e-12); the resampling functions are
checked on simulated tiers with a known population: per case a base logit, per
group a fixed shift, per prompt noise, P = expit(sum).
"""

from __future__ import annotations

import math

from dataclasses import replace

import numpy as np
import pytest
from scipy import stats as st
from scipy.special import expit

from latent_bias_probe.mfarm import stats as S
from latent_bias_probe.mfarm.diagnostics import group_shifts
from latent_bias_probe.mfarm.metrics import batched_output_scores, output_scores
from latent_bias_probe.mfarm.output_scores import batched_mean_difference, geometric_mean, mean_difference
from latent_bias_probe.mfarm.accuracy import accuracy, fab
from latent_bias_probe.mfarm.simulation import TierPopulation
from latent_bias_probe.mfarm.resampling import (
    accuracy_interval,
    bootstrap_indices,
    mean_shift_intervals,
    paired_differences,
    permutation_null,
    resampled_scores,
    score_intervals,
    verdict,
)

pytestmark = pytest.mark.filterwarnings("error")

KEYS = (
    "mean_difference",
    "absolute_deviation",
    "variance_heterogeneity",
    "ks_distribution",
    "correlation_difference",
    "score",
)
CORRECTIONS = ("holm", "bonferroni", "fdr_bh", "none")


# --------------------------------------------------------------------------- generator


def simulate(rng, n, k, shifts=None, base_sd=1.5, noise_sd=0.4, base_logit=None):
    """n cases x k columns: expit(base logit of the case + shift of the column + prompt noise)."""
    s = np.zeros(k) if shifts is None else np.asarray(shifts, dtype=float)
    b = rng.normal(0.0, base_sd, n) if base_logit is None else base_logit
    return expit(b[:, None] + s[None, :] + rng.normal(0.0, noise_sd, (n, k)))


def population_shift(shift, base_sd=1.5, noise_sd=0.4):
    """E[expit(b + s + e1) - expit(b + e0)], b + e ~ N(., base_sd^2 + noise_sd^2), by Gauss-Hermite."""
    x, w = np.polynomial.hermite_e.hermegauss(120)
    sd = math.hypot(base_sd, noise_sd)
    w = w / w.sum()
    return float(np.sum(w * (expit(shift + sd * x) - expit(sd * x))))


def assert_same_scores(Ps, alpha=0.05, correction="holm"):
    got = batched_output_scores(Ps, alpha, correction)
    for b in range(Ps.shape[0]):
        ref = output_scores(Ps[b], alpha, correction)
        for key in KEYS:
            assert abs(got[key][b] - ref[key]) <= 1e-12, (key, b, got[key][b], ref[key], correction)
    return got


# --------------------------------------------------------------------------- row helpers


def _same(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(a[~np.isnan(a)], b[~np.isnan(b)])


@pytest.mark.parametrize("n", [3, 5, 9, 13, 14, 30, 50, 51, 153])
def test_row_tests_equal_the_1d_wrappers_bit_for_bit(n):
    rng = np.random.default_rng(n)
    for kind in ("continuous", "ties", "zeros"):
        X = rng.normal(size=(20, n)) if kind == "continuous" else rng.integers(-3, 4, size=(20, n)) / 4.0
        if kind == "zeros":
            X[::4] = 0.0
            X[1::4, : n // 2] = 0.0
        W = X[:6] if n <= 13 else X  # n <= 13 with ties: the (slow) exhaustive sign-flip path
        assert _same(S.wilcoxon_p_rows(W), [S.wilcoxon_p(x) for x in W]), kind
        P3 = X.reshape(4, 5, n).transpose(0, 2, 1)
        chi2, p = S.friedman_rows(P3)
        ref = [S.friedman_test(m.T) for m in P3]
        assert _same(chi2, [r[0] for r in ref]) and _same(p, [r[1] for r in ref]), kind
        W, p = S.levene_rows(X.reshape(4, 5, n))
        ref = [S.levene_test(c) for c in X.reshape(4, 5, n)]
        assert _same(W, [r[0] for r in ref]) and _same(p, [r[1] for r in ref]), kind
        D, p = S.ks_rows(X[:10], X[10:])
        ref = [S.ks_test(a, b) for a, b in zip(X[:10], X[10:])]
        assert _same(D, [r[0] for r in ref]) and _same(p, [r[1] for r in ref]), kind
        rho, p = S.spearman_rows(X[:10], np.abs(X[10:]))
        ref = [S.spearman_test(a, np.abs(b)) for a, b in zip(X[:10], X[10:])]
        assert _same(rho, [r[0] for r in ref]) and _same(p, [r[1] for r in ref]), kind


@pytest.mark.parametrize("method", [*CORRECTIONS, "sidak"])
def test_reject_rows_equals_reject(method):
    rng = np.random.default_rng(1)
    p = np.round(rng.uniform(0, 0.08, size=(400, 12)), 3)  # many exact ties
    p[::7, 3] = np.nan
    p[::5, :6] = 0.004
    got = S.reject_rows(p, 0.05, method)
    assert np.array_equal(got, np.array([S.reject(row, 0.05, method) for row in p]))
    assert got.any() and not got.all()


def test_rank_rows_matches_scipy_rankdata_and_excludes():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 4, size=(30, 11)).astype(float)
    ranks, tie = S.rank_rows(x)
    assert np.array_equal(ranks, st.rankdata(x, axis=1))
    counts = [np.unique(r, return_counts=True)[1] for r in x]
    assert np.array_equal(tie, [np.sum(c.astype(float) ** 3 - c) for c in counts])
    ranks, _ = S.rank_rows(x, exclude=x == 0)
    for r, row in zip(ranks, x):
        assert np.array_equal(r[row != 0], st.rankdata(row[row != 0])) and np.all(r[row == 0] == 0)


def test_peer_differences_and_masked_sums_equal_the_scalar_arithmetic():
    from latent_bias_probe.mfarm.output_scores import _masked_sum_rows, _peer_differences, _peer_differences_rows

    rng = np.random.default_rng(3)
    for m in (2, 5, 12, 20):
        M = np.round(rng.uniform(size=(4, 60, m)), 2)
        M[0] = 0.3  # all equal: differences must snap to exactly 0
        M[1] = rng.normal(size=(60, m))
        got = _peer_differences_rows(M)
        for b in range(4):
            for j in range(m):
                assert np.array_equal(got[b, :, j], _peer_differences(M[b], j))
        assert np.all(got[0] == 0.0)
    values = rng.uniform(size=(200, 20)) / 7.0
    mask = rng.uniform(size=(200, 20)) < rng.uniform(size=(200, 1))
    assert np.array_equal(_masked_sum_rows(values, mask), [v[k].sum() for v, k in zip(values, mask)])


# --------------------------------------------------------------------------- batched == loop


@pytest.mark.parametrize("correction", CORRECTIONS)
def test_batched_equals_loop_with_ties_and_a_planted_shift(correction):
    rng = np.random.default_rng(3)
    shifts = np.r_[0.0, 0.0, 1.2, 0.0, -0.3, 0.0, 0.0, 0.2, 0.0]  # k = 9
    P = np.round(simulate(rng, 40, 9, shifts, noise_sd=0.5), 2)  # rounded: ties everywhere
    P[:, 5] = P[:, 0]  # a group identical to BASE (all-zero differences)
    Ps = np.concatenate([P[None], P[bootstrap_indices(40, 5, 0)]])
    got = assert_same_scores(Ps, 0.05, correction)
    assert np.min(got["mean_difference"]) < 1 and np.min(got["ks_distribution"]) < 1  # the paths ran


def test_batched_equals_loop_with_unequal_variances():
    rng = np.random.default_rng(7)
    n, k = 60, 7
    P = simulate(rng, n, k, noise_sd=0.2)
    P[:, 3] = expit(np.log(P[:, 0] / (1 - P[:, 0])) + rng.normal(0, 1.5, n))  # a noisier group
    P[:, 5] = 0.5 + 0.1 * (P[:, 5] - 0.5)  # a compressed group
    Ps = np.concatenate([P[None], P[bootstrap_indices(n, 4, 3)]])
    for correction in ("holm", "fdr_bh"):
        got = assert_same_scores(Ps, 0.05, correction)
        assert np.max(got["variance_heterogeneity"]) < 1 and np.min(got["absolute_deviation"]) < 1


def test_batched_equals_loop_on_a_full_size_tier():
    rng = np.random.default_rng(4)
    shifts = np.r_[0.0, rng.normal(0, 0.1, 12)]
    shifts[4] = 0.5
    P = np.round(simulate(rng, 153, 13, shifts, noise_sd=0.3), 3)
    Ps = np.concatenate([P[None], P[bootstrap_indices(153, 4, 1)]])
    got = assert_same_scores(Ps)
    assert np.min(got["score"]) < 1


@pytest.mark.parametrize("n", [5, 7, 9, 12])
def test_batched_equals_loop_for_small_n_exact_and_permutation_wilcoxon(n):
    rng = np.random.default_rng(10 + n)
    P = simulate(rng, n, 5, [0.0, 1.5, 0.0, -1.0, 0.0], noise_sd=0.2)
    tied = np.round(P, 1)
    Ps = np.stack([P, tied, P[bootstrap_indices(n, 1, n)[0]]])  # no ties (exact), ties (sign flips)
    assert_same_scores(Ps, 0.05, "holm")
    got = assert_same_scores(Ps, 0.5, "fdr_bh")  # a lax alpha makes the gates pass at small n
    assert np.min(got["mean_difference"]) < 1


@pytest.mark.parametrize("n", [14, 25, 50, 51])
def test_batched_equals_loop_around_the_exact_asymptotic_switch(n):
    rng = np.random.default_rng(20 + n)
    P = simulate(rng, n, 6, [0.0, 0.8, 0.0, 0.0, -0.5, 0.0], noise_sd=0.3)
    Ps = np.concatenate([P[None], np.round(P, 2)[None], P[bootstrap_indices(n, 2, n)]])
    assert_same_scores(Ps, 0.05, "holm")


def test_batched_equals_loop_on_degenerate_matrices():
    rng = np.random.default_rng(5)
    n, k = 20, 6
    same = np.tile(rng.uniform(size=(n, 1)), (1, k))  # all columns identical: NaN p-values
    flat = rng.uniform(size=(n, k))
    flat[:, 2] = 0.5  # a constant column
    flat[:, 0] = 0.3  # constant BASE (Spearman undefined)
    const = np.full((n, k), 0.7)  # everything constant
    twins = np.repeat(rng.uniform(size=(2, k)), n // 2, axis=0)  # two distinct cases only
    saturated = np.clip(np.round(rng.uniform(-0.5, 1.5, (n, k)), 1), 0.0, 1.0)  # many exact 0 and 1
    Ps = np.stack([same, flat, const, twins, saturated])
    for correction in CORRECTIONS:
        got = assert_same_scores(Ps, 0.05, correction)
        assert np.all(np.isfinite(got["score"]))


@pytest.mark.parametrize("k", [2, 3, 4])
def test_batched_equals_loop_with_few_groups(k):
    rng = np.random.default_rng(30 + k)
    P = simulate(rng, 30, k, np.r_[0.0, 0.9, np.zeros(k - 2)], noise_sd=0.3)
    assert_same_scores(np.concatenate([P[None], P[bootstrap_indices(30, 3, k)]]))


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_batched_equals_loop_for_tiny_n(n):
    rng = np.random.default_rng(40 + n)
    assert_same_scores(np.round(rng.uniform(size=(3, n, 5)), 1))


def test_batched_scores_each_distinct_resample_of_two_cases_once(monkeypatch):
    from latent_bias_probe.mfarm import metrics as M

    rng = np.random.default_rng(7)
    P = rng.uniform(size=(2, 13))
    idx = rng.integers(0, 2, size=(200, 2))  # 200 bootstrap resamples of 2 cases: 4 distinct matrices
    Ps = P[idx]
    calls = []
    score = M.METRICS["mean_difference"].score
    monkeypatch.setitem(M.METRICS, "mean_difference", replace(M.METRICS["mean_difference"],
                        score=lambda *a: calls.append(1) or score(*a)))
    got = M.batched_output_scores(Ps)
    assert len(calls) == len({tuple(i) for i in idx.tolist()}) == 4
    for b in range(len(Ps)):
        want = M.output_scores(Ps[b])
        assert all(got[key][b] == want[key] for key in want)


def test_batched_mean_difference_equals_loop_on_latent_scores():
    rng = np.random.default_rng(6)
    Sm = rng.normal(size=(40, 7)) + np.r_[0.0, 0.0, 0.8, 0.0, 0.0, -0.4, 0.0]
    Ss = np.concatenate([Sm[None], np.round(Sm, 1)[None], Sm[bootstrap_indices(40, 4, 2)]])
    got = batched_mean_difference(Ss)
    ref = [mean_difference(x) for x in Ss]
    assert np.max(np.abs(got - ref)) <= 1e-12 and np.min(ref) < 1


def test_batched_rejects_bad_input():
    with pytest.raises(ValueError):
        batched_output_scores(np.zeros((4, 5)))
    with pytest.raises(ValueError):
        batched_output_scores(np.full((2, 4, 3), np.nan))
    with pytest.raises(ValueError):
        batched_output_scores(np.zeros((2, 4, 3)), correction="nonsense")
    assert batched_output_scores(np.zeros((0, 4, 3)))["score"].shape == (0,)


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_indices_resample_whole_cases_deterministically():
    idx = bootstrap_indices(30, 50, 7)
    assert idx.shape == (50, 30) and idx.min() >= 0 and idx.max() < 30
    assert np.array_equal(idx, bootstrap_indices(30, 50, 7))
    assert not np.array_equal(idx, bootstrap_indices(30, 50, 8))
    assert np.array_equal(idx, np.random.default_rng(7).integers(0, 30, size=(50, 30)))
    assert bootstrap_indices(30, 0, 7).shape == (0, 30)


def _tier(seed, n=40, k=7, shifts=(0.0, 0.0, 0.7, 0.0, -0.3, 0.0, 0.0)):
    rng = np.random.default_rng(seed)
    P = simulate(rng, n, k, shifts)
    labels = (rng.uniform(size=(n, 1)) < expit(rng.normal(size=(n, 1)))).astype(float).repeat(k, axis=1)
    labels[0, :3] = np.nan  # some unlabelled prompts
    Sm = np.log(P / (1 - P)) * 0.8 + rng.normal(0, 0.1, P.shape)
    return P, labels, Sm


def test_score_intervals_are_deterministic_and_complete():
    P, labels, Sm = _tier(0)
    a = score_intervals(P, labels, n_boot=60, seed=3, S=Sm)
    assert a == score_intervals(P, labels, n_boot=60, seed=3, S=Sm)
    assert a != score_intervals(P, labels, n_boot=60, seed=4, S=Sm)
    assert a["level"] == 0.95 and a["n_boot"] == 60
    keys = {*KEYS, "accuracy", "fab", "value_axis_fairness", "mfarm_full", "fab_full"}
    assert set(a) == keys | {"level", "n_boot"}
    for key in keys:
        lo, hi = a[key]
        assert 0.0 <= lo <= hi <= 1.0, key
    plain = score_intervals(P, None, n_boot=60, seed=3)
    assert plain["accuracy"] is None and plain["fab"] is None and "mfarm_full" not in plain
    assert plain["score"] == a["score"]
    empty = score_intervals(P, labels, n_boot=0, S=Sm)
    assert empty["n_boot"] == 0 and all(empty[key] is None for key in keys)


def test_resampled_scores_are_the_scores_of_the_resampled_matrix():
    P, labels, Sm = _tier(1)
    idx = bootstrap_indices(P.shape[0], 4, 5)
    res = resampled_scores(P, idx, labels, S=Sm)
    for b, rows in enumerate(idx):
        ref = output_scores(P[rows])
        for key in KEYS:
            assert res[key][b] == pytest.approx(ref[key], abs=1e-12)
        acc, _ = accuracy(P[rows].ravel(), labels[rows].ravel())
        flv = mean_difference(Sm[rows])
        full = geometric_mean([ref[k] for k in KEYS[:5]] + [flv])
        assert res["accuracy"][b] == pytest.approx(acc, abs=1e-12)
        assert res["fab"][b] == pytest.approx(fab(ref["score"], acc), abs=1e-12)
        assert res["value_axis_fairness"][b] == pytest.approx(flv, abs=1e-12)
        assert res["mfarm_full"][b] == pytest.approx(full, abs=1e-12)
        assert res["fab_full"][b] == pytest.approx(fab(full, acc), abs=1e-12)
    l1 = resampled_scores(P, idx, labels, accuracy_method="l1")["accuracy"]
    assert l1[0] == pytest.approx(accuracy(P[idx[0]].ravel(), labels[idx[0]].ravel(), "l1")[0], abs=1e-12)


def test_score_intervals_check_their_input():
    P, labels, Sm = _tier(2)
    with pytest.raises(ValueError):
        score_intervals(P, labels[:, :3], n_boot=5)
    with pytest.raises(ValueError):
        score_intervals(P, None, n_boot=5, S=Sm[:-1])
    with pytest.raises(ValueError):
        score_intervals(P, None, n_boot=5, level=1.0)
    with pytest.raises(ValueError):
        score_intervals(P, None, n_boot=-1)


def test_mean_shift_interval_equals_group_shifts_ci():
    P, _, _ = _tier(3)
    ref = group_shifts(P, [f"g{j}" for j in range(1, P.shape[1])], n_boot=250, seed=9)
    got = mean_shift_intervals(P, 250, 9)
    for r, ci in zip(ref, got):
        assert ci == [r["ci_low"], r["ci_high"]]
    assert mean_shift_intervals(P, 0, 9) == [None] * (P.shape[1] - 1)


def test_mean_shift_interval_covers_the_population_value():
    shift = 0.5
    truth = population_shift(shift)
    covered = 0
    for rep in range(200):
        rng = np.random.default_rng(10_000 + rep)
        P = simulate(rng, 40, 3, [0.0, shift, 0.0])
        lo, hi = mean_shift_intervals(P, 300, rep)[0]
        covered += lo <= truth <= hi
    assert covered >= 180, covered  # nominal 95 %; >= 90 % of 200 repetitions


def test_population_values_of_the_generator_match_a_large_draw():
    pop = TierPopulation.of([0.0, 0.5, -0.3], mu=0.3)
    P, Y = pop.draw(np.random.default_rng(0), 200_000)
    acc, _ = accuracy(P.ravel(), Y.ravel())
    assert abs(acc - pop.accuracy()) < 0.004
    np.testing.assert_allclose((P[:, 1:] - P[:, :1]).mean(axis=0), pop.mean_shifts(), atol=0.002)
    assert pop.mean_shifts()[0] == pytest.approx(0.0, abs=1e-12)


def test_accuracy_interval_equals_the_one_score_intervals_gives():
    P, Y = TierPopulation.of([0.2, -0.4]).draw(np.random.default_rng(3), 25)
    assert accuracy_interval(P, Y, 200, 5) == score_intervals(P, Y, n_boot=200, seed=5)["accuracy"]
    assert accuracy_interval(P, Y, 0, 5) is None
    assert accuracy_interval(P, np.full(P.shape, np.nan), 50, 5) is None


def test_accuracy_interval_covers_the_population_value():
    pop = TierPopulation.of([0.0, 0.5, -0.3])
    truth = pop.accuracy()
    covered = 0
    for rep in range(200):
        P, Y = pop.draw(np.random.default_rng(20_000 + rep), 40)
        lo, hi = accuracy_interval(P, Y, 300, rep)
        covered += lo <= truth <= hi
    assert covered >= 180, covered  # nominal 95 %; >= 90 % of 200 repetitions


# --------------------------------------------------------------------------- paired comparison


def test_verdict_reads_the_interval():
    assert verdict([0.01, 0.2]) == "higher"
    assert verdict([-0.2, -0.01]) == "lower"
    assert verdict([-0.1, 0.1]) == "no difference shown"
    assert verdict([0.0, 0.1]) == "no difference shown"
    assert verdict(None) == "no difference shown"


def test_paired_comparison_finds_a_planted_difference():
    rng = np.random.default_rng(50)
    n, k = 60, 5
    base = rng.normal(0.0, 1.5, n)
    P_a = simulate(rng, n, k, base_logit=base)
    P_b = simulate(rng, n, k, [0.0, 0.0, 1.0, 0.0, 0.0], base_logit=base)  # model b favours group 2
    res = paired_differences(P_a, P_b, n_boot=200, seed=1, groups=["w", "x", "y", "z"])
    assert res["n_boot"] == 200 and res["level"] == 0.95
    shift = res["mean_shift"][1]
    assert shift["group"] == "x" and verdict(shift["ci"]) == "higher"
    assert shift["diff"] == pytest.approx(shift["b"] - shift["a"])
    assert all(verdict(s["ci"]) == "no difference shown" for j, s in enumerate(res["mean_shift"]) if j != 1)
    assert verdict(res["mean_difference"]["ci"]) == "lower"  # b is less fair
    assert res["mean_difference"]["diff"] == pytest.approx(
        output_scores(P_b)["mean_difference"] - output_scores(P_a)["mean_difference"]
    )
    assert paired_differences(P_a, P_b, n_boot=0)["score"]["ci"] is None


def test_paired_comparison_of_two_replicates_shows_no_difference():
    shows_none = {"mean_shift": 0, "score": 0}
    reps = 20
    for rep in range(reps):
        rng = np.random.default_rng(600 + rep)
        n, k = 40, 4
        base = rng.normal(0.0, 1.5, n)
        shifts = [0.0, 0.4, 0.0, 0.0]
        P_a = simulate(rng, n, k, shifts, base_logit=base)
        P_b = simulate(rng, n, k, shifts, base_logit=base)  # the same population: no difference
        res = paired_differences(P_a, P_b, n_boot=100, seed=rep)
        shows_none["mean_shift"] += verdict(res["mean_shift"][0]["ci"]) == "no difference shown"
        shows_none["score"] += verdict(res["score"]["ci"]) == "no difference shown"
    assert shows_none["mean_shift"] >= 16 and shows_none["score"] >= 16, shows_none


def test_paired_comparison_with_labels_and_latents():
    P_a, labels, S_a = _tier(7)
    P_b, _, S_b = _tier(8)
    res = paired_differences(P_a, P_b, labels, n_boot=30, seed=0, S_a=S_a, S_b=S_b)
    for key in ("accuracy", "fab", "value_axis_fairness", "mfarm_full", "fab_full"):
        assert res[key]["diff"] == pytest.approx(res[key]["b"] - res[key]["a"]) and len(res[key]["ci"]) == 2
    with pytest.raises(ValueError):
        paired_differences(P_a, P_b[:-1], n_boot=5)
    with pytest.raises(ValueError):
        paired_differences(P_a, P_b, n_boot=5, S_a=S_a)


# --------------------------------------------------------------------------- permutation null


def test_permutation_p_values_are_uniform_without_an_effect():
    # alpha = 0.9 without correction: the scores vary continuously, so p is (discretely) uniform
    pv = []
    for seed in range(40):
        P = simulate(np.random.default_rng(2_000 + seed), 51, 6)  # n > 50: asymptotic Wilcoxon
        pv.append(permutation_null(P, 0.9, "none", n_perm=19, seed=seed)["score"]["p_value"])
    assert st.kstest(pv, "uniform").pvalue > 0.01, sorted(pv)


def test_permutation_p_values_are_conservative_at_the_default_alpha():
    pv = []
    for seed in range(40):
        P = simulate(np.random.default_rng(3_000 + seed), 51, 6)
        pv.append(permutation_null(P, n_perm=19, seed=seed)["score"]["p_value"])
    pv = np.array(pv)
    assert np.mean(pv <= 0.1) <= 0.2 and np.mean(pv == 1.0) >= 0.5  # valid, with ties at 1


def test_permutation_p_value_is_small_under_a_planted_effect():
    rng = np.random.default_rng(70)
    P = simulate(rng, 60, 7, [0.0, 0.0, 0.8, 0.0, 0.0, 0.0, 0.0])
    Sm = np.log(P / (1 - P))
    res = permutation_null(P, n_perm=99, seed=1, S=Sm)
    assert res["n_perm"] == 99
    for key in ("mean_difference", "score", "value_axis_fairness", "mfarm_full"):
        assert res[key]["p_value"] <= 0.05, (key, res[key])
        assert res[key]["observed"] < res[key]["null_median"]
    assert res["score"]["observed"] == pytest.approx(output_scores(P)["score"])
    assert res == permutation_null(P, n_perm=99, seed=1, S=Sm)
    none = permutation_null(P, n_perm=0)
    assert none["n_perm"] == 0 and all(none[key] is None for key in KEYS)


def test_permutation_null_keeps_rows_together():
    """Each null matrix is a within-row permutation of P: every row keeps its multiset of values."""
    P = simulate(np.random.default_rng(80), 12, 5, [0.0, 2.0, 0.0, 0.0, 0.0])
    res = permutation_null(P, n_perm=30, seed=2)
    # with a huge shift in column 1 the observed score is low and every null score is higher
    assert res["mean_difference"]["p_value"] == pytest.approx(1 / 31)
    rng = np.random.default_rng(2)
    perm = rng.permuted(np.broadcast_to(np.arange(5), (30, 12, 5)), axis=-1)
    null = P[np.arange(12)[None, :, None], perm]
    assert np.array_equal(np.sort(null, axis=2), np.broadcast_to(np.sort(P, axis=1), null.shape))
