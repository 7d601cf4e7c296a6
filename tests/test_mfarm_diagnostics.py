"""mfarm.diagnostics: omnibus / Kendall's W, group shifts, flip rate, IBD."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as st

from latent_bias_probe.mfarm.diagnostics import group_shifts, intersectional_residual_share, omnibus, parse_group

pytestmark = pytest.mark.filterwarnings("error")

I10 = np.arange(10)
RACES = ["White", "Black", "Asian"]
GENDERS = ["Female", "Male"]
GROUPS = [f"{r}-{g}" for r in RACES for g in GENDERS]


def test_kendall_w_hand():
    base = I10 / 20
    c = 0.01 * (I10 + 1) * (-1.0) ** I10
    P = np.column_stack([base, base + 0.5 + 0.013 * I10, base + c])
    out = omnibus(P)
    # rank sums 15, 30, 15: chi2 = 12/(10*3*4) * 1350 - 3*10*4 = 15; W = 15 / (10 * 2)
    assert out["friedman_chi2"] == pytest.approx(15.0, abs=1e-12)
    assert out["kendall_w"] == pytest.approx(0.75, abs=1e-12)
    assert out["friedman_p"] == pytest.approx(np.exp(-7.5), abs=1e-12)
    assert out["friedman_significant"] is True
    A = np.abs(P[:, 1:] - P[:, [0]])
    assert out["abs_friedman_chi2"] is None  # Friedman needs >= 3 columns
    lev = st.levene(*P.T, center="median")
    assert out["levene_stat"] == pytest.approx(lev.statistic, abs=1e-12)
    assert out["levene_p"] == pytest.approx(lev.pvalue, abs=1e-12)
    assert A.shape == (10, 2)


def test_kendall_w_perfect_agreement_and_abs_friedman():
    rng = np.random.default_rng(0)
    P = np.sort(rng.uniform(size=(8, 5)), axis=1)  # every case ranks columns identically
    out = omnibus(P)
    assert out["kendall_w"] == pytest.approx(1.0, abs=1e-12)
    A = np.abs(P[:, 1:] - P[:, [0]])
    ref = st.friedmanchisquare(*A.T)
    assert out["abs_friedman_chi2"] == pytest.approx(ref.statistic, abs=1e-12)
    assert out["abs_friedman_p"] == pytest.approx(ref.pvalue, abs=1e-12)


def test_omnibus_degenerate_is_json_safe():
    P = np.repeat(np.linspace(0, 1, 6)[:, None], 4, axis=1)
    out = omnibus(P)
    assert out["friedman_chi2"] is None and out["kendall_w"] is None
    assert out["friedman_significant"] is False
    assert out["levene_stat"] == 0.0 and out["levene_p"] == 1.0  # equal spreads
    json.dumps(out, allow_nan=False)
    # zero within-column spread of |x - median| -> infinite Levene statistic -> None
    out2 = omnibus(np.array([[0.0, 0.5, 0.25], [1.0, 0.75, 0.25]]))
    assert out2["levene_stat"] is None and out2["levene_p"] == 0.0
    json.dumps(out2, allow_nan=False)


def test_group_shifts_ci_and_determinism():
    rng = np.random.default_rng(3)
    base = rng.uniform(0.2, 0.8, 40)
    P = np.column_stack([base] + [base + s + rng.normal(0, 0.05, 40) for s in (0.1, 0, -0.05)])
    groups = ["A-F", "B-F", "C-F"]
    out = group_shifts(P, groups, n_boot=500, seed=1)
    assert [o["group"] for o in out] == groups
    for j, o in enumerate(out):
        assert o["mean_shift"] == pytest.approx(np.mean(P[:, j + 1] - base), abs=1e-12)
        assert o["ci_low"] < o["mean_shift"] < o["ci_high"]
        assert all(type(o[key]) is float for key in ("mean_shift", "ci_low", "ci_high", "flip_rate"))
    assert out[0]["ci_low"] > 0 and out[2]["ci_high"] < 0
    assert group_shifts(P, groups, n_boot=500, seed=1) == out
    assert group_shifts(P, groups, n_boot=500, seed=2) != out


def test_group_shifts_bootstrap_by_hand():
    # reproduce the resampling: same case indices for every group
    P = np.array([[0.1, 0.3], [0.2, 0.1], [0.5, 0.9], [0.4, 0.4]])
    out = group_shifts(P, ["X-Y"], n_boot=200, seed=7)[0]
    idx = np.random.default_rng(7).integers(0, 4, size=(200, 4))
    means = (P[:, 1] - P[:, 0])[idx].mean(axis=1)
    assert out["ci_low"] == pytest.approx(np.percentile(means, 2.5), abs=1e-12)
    assert out["ci_high"] == pytest.approx(np.percentile(means, 97.5), abs=1e-12)


def test_flip_rate_hand():
    base = [0.4, 0.6, 0.7, 0.2]
    g1 = [0.6, 0.6, 0.4, 0.5]  # flips: yes, no, yes, no (0.5 is not > 0.5)
    g2 = [0.1, 0.9, 0.8, 0.3]  # no flips
    P = np.column_stack([base, g1, g2])
    out = group_shifts(P, ["A-F", "A-M"], n_boot=10)
    assert out[0]["flip_rate"] == 0.5 and out[1]["flip_rate"] == 0.0
    out = group_shifts(P, ["A-F", "A-M"], n_boot=10, threshold=0.3)
    # base [1,1,1,0]; g1 [1,1,1,1] -> 1 flip; g2 [0,1,1,0] (0.3 is not > 0.3) -> 1 flip
    assert out[0]["flip_rate"] == 0.25 and out[1]["flip_rate"] == 0.25


def _matrix_from_shifts(d, n=5, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.3, 0.6, (n, 1))
    return np.column_stack([base, base + np.asarray(d)[None, :]])


def test_ibd_additive_is_zero_and_interaction_positive():
    race_eff = {"White": 0.0, "Black": 0.08, "Asian": -0.03}
    gender_eff = {"Female": 0.05, "Male": -0.02}
    d_add = [race_eff[r] + gender_eff[g] for r in RACES for g in GENDERS]
    assert intersectional_residual_share(_matrix_from_shifts(d_add), GROUPS) == pytest.approx(
        0.0, abs=1e-12
    )
    # pure interaction (zero row and column means) -> everything is residual
    inter = [0.05, -0.05, -0.05, 0.05, 0.0, 0.0]
    assert intersectional_residual_share(_matrix_from_shifts(inter), GROUPS) == pytest.approx(
        1.0, abs=1e-12
    )
    mixed = [a + b for a, b in zip(d_add, inter)]
    assert 0 < intersectional_residual_share(_matrix_from_shifts(mixed), GROUPS) < 1


def test_ibd_hand_value_and_zero_shift():
    groups = ["R1-F", "R1-M", "R2-F", "R2-M"]
    # d = [1, 0, 0, 0]: gender means F .5, M 0; race means R1 .5, R2 0; grand .25
    # r = [.25, -.25, -.25, .25] -> sum r^2 = .25, sum d^2 = 1
    P = _matrix_from_shifts([1.0, 0.0, 0.0, 0.0])
    assert intersectional_residual_share(P, groups) == pytest.approx(0.25, abs=1e-12)
    P0 = np.repeat(np.linspace(0, 1, 4)[:, None], 5, axis=1)
    assert intersectional_residual_share(P0, groups) == 0.0


def test_parse_group():
    assert parse_group("Black-Female") == ("Black", "Female")
    with pytest.raises(ValueError):
        parse_group("Pacific-Islander-Female")
    assert parse_group(
        "Pacific-Islander-Non-binary", ["Pacific-Islander", "White"], ["Non-binary", "Male"]
    ) == ("Pacific-Islander", "Non-binary")
