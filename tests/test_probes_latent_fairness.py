"""Latent value fairness F_LV (spec B2): a latent-only shift of one group is caught."""

from __future__ import annotations

import numpy as np
import pytest

from latent_bias_probe.probes import (
    ProbeInputError,
    ValueAxis,
    latent_score_matrix,
    latent_scores,
    latent_value_fairness,
    value_axis_fairness,
)
from latent_bias_probe.probes.synthetic import make_synthetic_activations

mfarm_output_scores = pytest.importorskip("mfarm.output_scores")
from latent_bias_probe.mfarm.matrix import score_matrix  # noqa: E402

SHIFTED = "Black-Female"


@pytest.fixture(scope="module")
def data():
    # Race is planted from layer 2 on, orthogonal to the decision direction u.
    return make_synthetic_activations(
        n_cases=40, n_layers=6, d=32, race_from_layer=2, decision_strength=6.0, seed=1
    )


@pytest.fixture(scope="module")
def axis(data):
    b = data.is_base
    return ValueAxis.fit(data.h[:, b], data.p_yes[b], data.case_ids[b])


def _shifted(data, delta):
    """Move every SHIFTED prompt by delta·u at every layer; P(Yes) is left as it was."""
    h = data.h.copy()
    h[:, data.variants == SHIFTED] += (delta * data.decision_direction).astype(h.dtype)
    return h


def test_latent_only_shift_lowers_f_lv_while_outputs_stay_fair(data, axis):
    P, _ = score_matrix(data.case_ids, data.variants, data.p_yes, data.groups)
    f_md = mfarm_output_scores.mean_difference(P)
    assert f_md >= 0.95  # outputs carry no demographic effect

    fair = value_axis_fairness(data.h[axis.layer], axis.direction, data.case_ids, data.variants, data.groups)
    assert fair >= 0.95

    h = _shifted(data, 6.0)  # about one BASE standard deviation of the latent value
    S, cases = latent_score_matrix(h[axis.layer], axis.direction, data.case_ids, data.variants, data.groups)
    biased = latent_value_fairness(S)
    assert biased < 0.9
    # The shifted column moved up; the outputs (and so F_MD) did not change.
    j = 1 + data.groups.index(SHIFTED)
    assert np.median(S[:, j] - S[:, 0]) > 0.5
    assert mfarm_output_scores.mean_difference(P) == f_md
    assert cases == sorted(set(data.case_ids.tolist()))


def test_latent_scores_are_standardised_by_base(data, axis):
    h = data.h[axis.layer]
    S = latent_scores(h, 3.0 * axis.direction, data.is_base)  # the direction's norm does not matter
    assert S[data.is_base].mean() == pytest.approx(0.0, abs=1e-9)
    assert S[data.is_base].std() == pytest.approx(1.0)
    proj = h.astype(float) @ axis.direction
    base = proj[data.is_base]
    np.testing.assert_allclose(S, (proj - base.mean()) / base.std())


def test_layout_matches_the_output_matrix(data, axis):
    args = (data.case_ids, data.variants, data.groups)
    S, cases = latent_score_matrix(data.h[axis.layer], axis.direction, *args)
    P, cases_p = score_matrix(data.case_ids, data.variants, data.p_yes, data.groups)
    assert S.shape == P.shape == (40, 13) and cases == cases_p
    # Shuffling the prompts does not change S.
    perm = np.random.default_rng(0).permutation(len(data.case_ids))
    S2, _ = latent_score_matrix(
        data.h[axis.layer][perm], axis.direction, data.case_ids[perm], data.variants[perm], data.groups
    )
    np.testing.assert_allclose(S2, S)


def test_f_lv_is_a1_on_s_and_bad_inputs(data, axis):
    S, _ = latent_score_matrix(data.h[axis.layer], axis.direction, data.case_ids, data.variants, data.groups)
    want = mfarm_output_scores.mean_difference(S, 0.1, "bonferroni")
    assert latent_value_fairness(S, 0.1, "bonferroni") == want
    with pytest.raises(ProbeInputError):
        latent_scores(data.h[0], np.zeros(32), data.is_base)
    with pytest.raises(ProbeInputError):
        latent_scores(data.h[0], axis.direction, np.zeros(len(data.is_base), bool))
    with pytest.raises(ValueError):  # a missing cell
        latent_score_matrix(data.h[0][1:], axis.direction, data.case_ids[1:], data.variants[1:], data.groups)
