"""Value axis (spec B1): a planted decision direction is recovered at its layer."""

from __future__ import annotations

import numpy as np
import pytest

from latent_bias_probe.probes import ProbeInputError, ValueAxis
from latent_bias_probe.probes.synthetic import make_synthetic_activations

DECISION_LAYER = 3


@pytest.fixture(scope="module")
def data():
    # The decision direction u carries z_case with weight 6·exp(-(ℓ-3)²/2): peak at layer 3.
    return make_synthetic_activations(
        n_cases=80, n_layers=6, d=32, race_from_layer=2, decision_layer=DECISION_LAYER,
        decision_strength=6.0, seed=0,
    )


def _fit(data, **kw):
    b = data.is_base
    return ValueAxis.fit(data.h[:, b], data.p_yes[b], data.case_ids[b], **kw)


def test_planted_direction_and_layer_are_recovered(data):
    axis = _fit(data, h_all=data.h, p_yes_all=data.p_yes)
    assert axis.target == "model"
    assert axis.layer == DECISION_LAYER
    assert abs(axis.direction @ data.decision_direction) > 0.95
    assert axis.direction @ data.decision_direction > 0  # oriented towards "Yes"
    np.testing.assert_allclose(np.linalg.norm(axis.directions, axis=1), 1.0)
    assert axis.auroc[DECISION_LAYER] > 0.95
    assert axis.auroc[0] < 0.75  # (almost) no decision signal at layer 0
    assert axis.spearman[DECISION_LAYER] > 0.9
    assert axis.spearman[DECISION_LAYER] == axis.spearman.max()


def test_direction_is_the_normalised_class_mean_difference(data):
    axis = _fit(data)
    b = data.is_base
    h, y = data.h[:, b].astype(float), data.p_yes[b] >= 0.5
    v = h[:, y].mean(1) - h[:, ~y].mean(1)
    np.testing.assert_allclose(axis.directions, v / np.linalg.norm(v, axis=1, keepdims=True), atol=1e-10)


def test_median_fallback_when_every_base_prompt_says_yes(data):
    b = data.is_base
    p = 0.5 + 0.5 * data.p_yes[b]  # all >= 0.5, same order
    axis = ValueAxis.fit(data.h[:, b], p, data.case_ids[b])
    assert axis.target == "median"
    assert axis.layer == DECISION_LAYER
    assert abs(axis.direction @ data.decision_direction) > 0.95
    # Same split with ground-truth labels that are all 1.
    lab = ValueAxis.fit(data.h[:, b], p, data.case_ids[b], labels_base=np.ones(b.sum(), int), target="label")
    assert lab.target == "median"
    np.testing.assert_allclose(lab.directions, axis.directions)


def test_label_target_layer_override_and_project(data):
    b = data.is_base
    labels = (data.p_yes[b] >= 0.5).astype(int)
    axis = ValueAxis.fit(
        data.h[:, b], data.p_yes[b], data.case_ids[b], labels_base=labels, target="label", layer=1
    )
    assert axis.target == "label" and axis.layer == 1
    proj = axis.project(data.h)
    assert proj.shape == (6, data.h.shape[1])
    np.testing.assert_allclose(proj[1], axis.project(data.h[1]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(axis.project(data.h[2], layer=2), data.h[2].astype(float) @ axis.directions[2])


def test_bad_inputs(data):
    b = data.is_base
    h, p, c = data.h[:, b], data.p_yes[b], data.case_ids[b]
    with pytest.raises(ProbeInputError):
        ValueAxis.fit(h[0], p, c)
    with pytest.raises(ProbeInputError):
        ValueAxis.fit(h, np.full_like(p, 0.7), c)  # no split possible
    with pytest.raises(ProbeInputError):
        ValueAxis.fit(h, p, c, target="label")  # labels missing
    with pytest.raises(ProbeInputError):
        ValueAxis.fit(h, p, c, target="oracle")
    with pytest.raises(ProbeInputError):
        ValueAxis.fit(h, p, c, h_all=data.h)  # p_yes_all missing
