"""Steering vectors (spec B3): group-minus-BASE mean differences and their cosine with v̂."""

from __future__ import annotations

import numpy as np
import pytest

from latent_bias_probe.probes import ProbeInputError, SteeringVectors, ValueAxis
from latent_bias_probe.probes.synthetic import make_synthetic_activations

SHIFTED = "Asian-Male"
DECISION_LAYER = 2


@pytest.fixture(scope="module")
def data():
    return make_synthetic_activations(
        n_cases=60, n_layers=5, d=24, race_from_layer=None, decision_layer=DECISION_LAYER,
        decision_strength=6.0, seed=2,
    )


def test_vectors_are_the_hand_computed_mean_differences(data):
    sv = SteeringVectors.fit(data.h, data.variants, data.groups)
    assert sv.groups == data.groups
    assert sv.vectors.shape == (5, 12, 24) and sv.cos_value_axis is None
    base = data.variants == "BASE"
    for ell in (0, 3):
        for j, g in enumerate(data.groups):
            x = data.h[ell].astype(float)
            want = x[data.variants == g].mean(0) - x[base].mean(0)
            np.testing.assert_allclose(sv.vectors[ell, j], want, atol=1e-9)
    np.testing.assert_allclose(sv.norms, np.linalg.norm(sv.vectors, axis=2))
    np.testing.assert_allclose(np.linalg.norm(sv.unit(), axis=2), 1.0)
    np.testing.assert_array_equal(sv.vector(3, data.groups[4]), sv.vectors[3, 4])


def test_group_shifted_along_the_value_axis_has_cosine_near_one(data):
    b = data.is_base
    axis = ValueAxis.fit(data.h[:, b], data.p_yes[b], data.case_ids[b], layer=DECISION_LAYER)
    h = data.h.copy()
    h[:, data.variants == SHIFTED] += (10.0 * data.decision_direction).astype(h.dtype)
    sv = SteeringVectors.fit(h, data.variants, data.groups, value_axis_directions=axis.directions)
    j = data.groups.index(SHIFTED)
    assert sv.cos_value_axis[DECISION_LAYER, j] > 0.95
    others = np.delete(sv.cos_value_axis[DECISION_LAYER], j)
    assert np.all(np.abs(others) < 0.7)


def test_other_groupings_and_bad_inputs(data):
    sv = SteeringVectors.fit(data.h, data.race)  # groups default: order of first appearance
    assert sv.groups == ("White", "Black", "Hispanic", "Asian")
    with pytest.raises(ProbeInputError):
        SteeringVectors.fit(data.h, data.variants, ["Nobody-Here"])
    with pytest.raises(ProbeInputError):
        SteeringVectors.fit(data.h[0], data.variants)
    with pytest.raises(ProbeInputError):
        SteeringVectors.fit(data.h, data.variants, value_axis_directions=np.ones((2, 24)))
    with pytest.raises(ProbeInputError):
        sv.vector(0, "Martian")
