"""Linear probes (spec B3): known answers on planted signals and agreement with scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from latent_bias_probe.probes import ProbeInputError, group_folds, probe_sweep
from latent_bias_probe.probes.linear_probe import probe_targets
from latent_bias_probe.probes.synthetic import make_synthetic_activations

RACE_LAYER = 3


@pytest.fixture(scope="module")
def data():
    # 6 layers x 25 cases x 13 variants x 32 dims; race planted from layer 3 on.
    return make_synthetic_activations(
        n_cases=25, n_layers=6, d=32, race_from_layer=RACE_LAYER, race_strength=5.0, seed=1
    )


@pytest.fixture(scope="module")
def race_sweep(data):
    demo = ~data.is_base
    return probe_sweep(data.h[:, demo], data.race[demo], data.case_ids[demo], n_boot=200, threads=1)


def test_group_folds_keep_cases_whole_and_are_balanced():
    groups = np.repeat(np.arange(23), 12)
    fold = group_folds(groups, 5, seed=3)
    for g in range(23):
        assert len(set(fold[groups == g])) == 1
    sizes = np.bincount(fold)
    assert sizes.max() - sizes.min() <= 12
    np.testing.assert_array_equal(fold, group_folds(groups, 5, seed=3))
    assert not np.array_equal(fold, group_folds(groups, 5, seed=4))
    with pytest.raises(ProbeInputError):
        group_folds(np.arange(3), 5)


def test_planted_race_is_decoded_from_its_layer_on(race_sweep):
    acc, sel = race_sweep.accuracy, race_sweep.selectivity
    assert race_sweep.classes == ("Asian", "Black", "Hispanic", "White")
    assert race_sweep.chance == pytest.approx(0.25)
    assert np.all(acc[RACE_LAYER:] >= 0.95), acc
    assert np.all(np.abs(acc[:RACE_LAYER] - 0.25) <= 0.1), acc
    assert np.all(sel[RACE_LAYER:] >= 0.6), sel
    assert np.all(np.abs(sel[:RACE_LAYER]) <= 0.1), sel
    assert race_sweep.converged.all()
    assert race_sweep.best_layer >= RACE_LAYER


def test_bootstrap_interval_brackets_accuracy(race_sweep):
    assert np.all(race_sweep.ci_low <= race_sweep.accuracy + 1e-12)
    assert np.all(race_sweep.accuracy <= race_sweep.ci_high + 1e-12)
    assert np.all(race_sweep.ci_high - race_sweep.ci_low < 0.3)
    d = race_sweep.to_dict()
    assert len(d["accuracy"]) == 6 and d["classes"][0] == "Asian"


def _sklearn_loop(h, y, fold, targets, n_folds, R):
    """Held-out accuracy (R, n_layers) of StandardScaler + LogisticRegression per layer and fold."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    acc = np.zeros((R, h.shape[0]))
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for ell in range(h.shape[0]):
            correct = np.zeros((R, len(y)), bool)
            for f in range(n_folds):
                tr, te = fold != f, fold == f
                sc = StandardScaler().fit(h[ell][tr])
                for r in range(R):
                    clf = LogisticRegression(max_iter=1000)
                    clf.fit(sc.transform(h[ell][tr]), targets[f * R + r][tr])
                    correct[r, te] = clf.predict(sc.transform(h[ell][te])) == y[te]
            acc[:, ell] = correct.mean(1)
    return acc


@pytest.mark.parametrize("label", ["race", "gender", "binary"])
def test_accuracy_matches_sklearn_loop(data, label):
    demo = ~data.is_base
    h = data.h[:, demo][:4]  # layers 0-3: chance, then the planted race
    groups = data.case_ids[demo]
    labels = {
        "race": data.race[demo],
        "gender": data.gender[demo],  # no gender signal planted: a hard, noisy problem
        "binary": np.isin(data.race[demo], ["Black", "Asian"]).astype(int),  # binomial in sklearn
    }[label]
    sweep = probe_sweep(h, labels, groups, n_boot=0, threads=1)
    _, y = np.unique(labels, return_inverse=True)
    fold, targets, _ = probe_targets(y, groups, 5, 0, True)
    ref = _sklearn_loop(h, y, fold, targets, 5, 2)
    assert np.abs(sweep.accuracy - ref[0]).max() <= 0.01
    assert np.abs(sweep.control_accuracy - ref[1]).max() <= 0.01
    assert np.all(np.isnan(sweep.ci_low))


def test_layer_batches_and_float64_give_the_same_answer(data, race_sweep):
    demo = ~data.is_base
    args = (data.h[:, demo], data.race[demo], data.case_ids[demo])
    batched = probe_sweep(*args, n_boot=200, layer_batch=4, threads=1)
    np.testing.assert_array_equal(batched.accuracy, race_sweep.accuracy)
    np.testing.assert_array_equal(batched.ci_low, race_sweep.ci_low)
    wide = probe_sweep(*args, n_boot=0, dtype="float64", threads=1)
    assert np.abs(wide.accuracy - race_sweep.accuracy).max() <= 0.01


def test_without_selectivity_and_bad_input(data):
    demo = ~data.is_base
    h, g = data.h[:2, demo], data.case_ids[demo]
    sweep = probe_sweep(h, data.race[demo], g, selectivity=False, n_boot=0)
    assert np.all(np.isnan(sweep.selectivity)) and sweep.accuracy.shape == (2,)
    with pytest.raises(ProbeInputError):
        probe_sweep(h[0], data.race[demo], g)
    with pytest.raises(ProbeInputError):
        probe_sweep(h, np.zeros(h.shape[1]), g)
    with pytest.raises(ProbeInputError):
        probe_sweep(h, data.race[demo][:-1], g)
