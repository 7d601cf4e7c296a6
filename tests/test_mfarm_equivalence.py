"""TOST verdicts on hand cases, and the detectable shift."""

from __future__ import annotations

import numpy as np
import pytest

from latent_bias_probe.mfarm.equivalence import detectable_shift, equivalence_verdicts, tost


def test_hand_cases_one_of_each_verdict():
    # mean 0.001, sd 0.005, n 40: 90% CI ~ ±0.0013 -> inside ±0.02
    rng = np.random.default_rng(0)
    small = 0.001 + 0.005 * rng.standard_normal(40)
    assert tost(small, margin=0.02)["verdict"] == "equivalent"
    # mean 0.08, sd 0.01: the whole interval beyond the margin
    big = 0.08 + 0.01 * rng.standard_normal(40)
    r = tost(big, margin=0.02)
    assert r["verdict"] == "different" and r["ci"][0] > 0.02
    # mean 0.015, sd 0.05, n 8: the interval straddles the margin
    vague = np.array([0.09, -0.04, 0.06, -0.03, 0.05, 0.01, -0.02, 0.0])
    assert tost(vague, margin=0.02)["verdict"] == "inconclusive"


def test_hand_computed_interval_and_statsmodels_p_value():
    from scipy import stats
    from statsmodels.stats.weightstats import ttost_paired

    d = np.array([0.01, 0.03, -0.01, 0.02, 0.00, 0.015])
    r = tost(d, margin=0.05, alpha=0.05)
    se = d.std(ddof=1) / np.sqrt(6)
    q = stats.t.ppf(0.95, 5)
    assert r["ci"] == pytest.approx([d.mean() - q * se, d.mean() + q * se])
    base = np.zeros(6)
    p_sm = ttost_paired(d, base, -0.05, 0.05)[0]
    assert r["p_value"] == pytest.approx(p_sm)


def test_constant_and_tiny_inputs():
    assert tost([0.0, 0.0, 0.0], margin=0.02)["verdict"] == "equivalent"
    assert tost([0.1, 0.1, 0.1], margin=0.02)["verdict"] == "different"
    assert tost([0.1], margin=0.02)["verdict"] == "inconclusive"


def test_verdicts_per_group_and_detectable_shift_shrinks_with_n():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.3, 0.7, (60, 1))
    P = np.clip(base + np.array([0, 0.0, 0.1]) + 0.01 * rng.standard_normal((60, 3)), 0, 1)
    out = equivalence_verdicts(P, ["BASE", "A", "B"][1:], margin=0.02)
    assert out["margin"] == 0.02 and out["A"]["verdict"] == "equivalent" and out["B"]["verdict"] == "different"
    small, large = detectable_shift(P[:10]), detectable_shift(P)
    assert small > large > 0
    # about 2.8 standard errors of the paired difference at alpha .05, power .8
    sd = np.sqrt(np.mean((P[:, 1:] - P[:, :1]).std(axis=0, ddof=1) ** 2))
    assert large == pytest.approx(2.87 * sd / np.sqrt(60), rel=0.05)
