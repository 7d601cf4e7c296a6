"""mfarm.stats: dom, reject, wilcoxon_p and the degenerate-input wrappers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from latent_bias_probe.mfarm.stats import (
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

pytestmark = pytest.mark.filterwarnings("error")


def test_dom_counts_ties_in_n():
    assert dom([1.0, -2.0, 0.0, 3.0]) == pytest.approx(0.25, abs=1e-15)  # (2 - 1) / 4
    assert dom([0.0, 0.0]) == 0.0
    assert dom([-1.0, -0.5, 0.0]) == pytest.approx(-2 / 3, abs=1e-15)
    assert dom([]) == 0.0


def test_reject_none_is_plain_threshold_and_nan_counts_as_one():
    r = reject([math.nan, 0.01, 0.05, 0.051], 0.05, "none")
    assert r.tolist() == [False, True, True, False]


def test_reject_nan_is_one_before_correction():
    # holm with 2 tests: 0.01 <= 0.05/2 -> reject; NaN -> p = 1 -> keep
    assert reject([math.nan, 0.01], 0.05, "holm").tolist() == [False, True]
    # bonferroni with 3 tests: threshold 0.05/3
    assert reject([0.016, 0.017, math.nan], 0.05, "bonferroni").tolist() == [True, False, False]


@pytest.mark.parametrize("method", ["holm", "bonferroni", "fdr_bh", "sidak", "hommel"])
def test_reject_matches_statsmodels(method):
    rng = np.random.default_rng(7)
    # statsmodels' holm branch runs gc.collect() per call (slow under pytest): few trials
    for trial in range(6):
        m = int(rng.integers(1, 15))
        p = rng.uniform(0, 0.2, m) ** 2
        if trial % 3 == 0:  # ties
            p[: m // 2] = p[0]
        if trial % 4 == 0:
            p[-1] = math.nan
        alpha = float(rng.choice([0.01, 0.05, 0.1]))
        with np.errstate(all="ignore"):
            expected = multipletests(np.where(np.isnan(p), 1.0, p), alpha=alpha, method=method)[0]
        assert reject(p, alpha, method).tolist() == expected.tolist()
        if method == "holm":
            assert reject(p, alpha, "h").tolist() == expected.tolist()


def test_reject_empty_and_unknown_method():
    assert reject([], 0.05, "holm").size == 0
    with pytest.raises(ValueError, match="unknown multiple-testing"):
        reject([0.1], 0.05, "holmes")
    with pytest.raises(ValueError):
        check_correction("bogus")
    with pytest.raises(ValueError):
        reject([0.1], 1.5, "holm")
    assert check_correction("none") == "none"
    assert check_correction("fdr_bh") == "fdr_bh"


def test_wilcoxon_p_matches_scipy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=12), rng.normal(size=12)
    expected = st.wilcoxon(x, y, zero_method="wilcox", correction=False).pvalue
    assert wilcoxon_p(x, y) == pytest.approx(expected, abs=1e-15)
    d = x - y
    assert wilcoxon_p(d) == pytest.approx(
        st.wilcoxon(d, zero_method="wilcox", correction=False).pvalue, abs=1e-15
    )
    # all 10 differences positive -> exact two-sided p = 2 / 2**10
    assert wilcoxon_p(np.arange(1, 11.0)) == pytest.approx(2 / 1024, abs=1e-15)


@pytest.mark.parametrize("n", [1, 5, 30, 60])
def test_wilcoxon_p_all_zero_is_nan_without_warnings(n):
    # scipy returns p=1 (n<=50) or NaN (n>50) with a RuntimeWarning; we return NaN silently
    assert math.isnan(wilcoxon_p(np.zeros(n)))
    assert math.isnan(wilcoxon_p(np.ones(n), np.ones(n)))
    assert math.isnan(wilcoxon_p(np.zeros(0)))


def test_wrappers_degenerate_inputs_no_warnings():
    X = np.ones((5, 4))
    assert all(math.isnan(v) for v in friedman_test(X.T))
    assert all(math.isnan(v) for v in friedman_test(np.ones((5, 2)).T))  # < 3 samples
    assert all(math.isnan(v) for v in levene_test(X.T))
    assert ks_test(np.ones(5), np.ones(5)) == (0.0, 1.0)
    d, p = ks_test(np.ones(1), np.zeros(1))
    assert d == 1.0 and math.isnan(p)
    assert spearman_test(np.ones(5), np.arange(5.0)) == (0.0, 1.0)
    rho, p = spearman_test(np.arange(2.0), np.arange(2.0))
    assert rho == pytest.approx(1.0) and math.isnan(p)


def test_snap_zero_only_removes_rounding_noise():
    x = np.full(3, 0.1)
    noisy = x[0] - x.mean()  # (0.1 + 0.1 + 0.1) / 3 != 0.1 in floating point
    assert noisy != 0.0
    out = snap_zero(np.array([noisy, 1e-9, -0.3]), np.array([0.1, 0.1, 0.3]), 3)
    assert out.tolist() == [0.0, 1e-9, -0.3]


def test_wilcoxon_fast_permutation_path_equals_scipy():
    # ties / zeros with n <= 13: scipy runs an exhaustive sign-flip permutation test,
    # one Python call per flip; wilcoxon_p evaluates the same test vectorised.
    from latent_bias_probe.mfarm.stats import _fast_permutation_ok, _uses_exhaustive_permutation

    assert _fast_permutation_ok()
    rng = np.random.default_rng(12)
    checked = 0
    for _ in range(25):
        n = int(rng.integers(2, 10))
        d = np.round(rng.normal(size=n), 1)
        if not np.any(d) or not _uses_exhaustive_permutation(d):
            continue
        with np.errstate(all="ignore"):
            ref = st.wilcoxon(d, zero_method="wilcox", correction=False).pvalue
        assert wilcoxon_p(d) == ref
        checked += 1
    assert checked >= 12
    assert not _uses_exhaustive_permutation(np.arange(1, 11.0))  # no ties: exact
    assert not _uses_exhaustive_permutation(np.ones(14))  # n > 13: asymptotic
