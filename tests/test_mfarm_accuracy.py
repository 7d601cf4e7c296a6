"""mfarm.accuracy: accuracy (threshold / l1) over labelled prompts, and FAB."""

from __future__ import annotations

import math

import numpy as np
import pytest

from latent_bias_probe.mfarm.accuracy import accuracy, fab, label_array

P4 = [0.9, 0.4, 0.6, 0.5]
Y4 = [1, 0, 0, 1]


def test_threshold_hand():
    # predictions 1[p > 0.5] = [1, 0, 1, 0] (0.5 is not > 0.5) vs labels [1, 0, 0, 1]
    assert accuracy(P4, Y4) == (0.5, 0)


def test_l1_hand():
    # 1 - mean(|1-.9|, |0-.4|, |0-.6|, |1-.5|) = 1 - 1.6/4 = 0.6
    acc, n_un = accuracy(P4, Y4, "l1")
    assert acc == pytest.approx(0.6, abs=1e-12) and n_un == 0


def test_unlabelled_prompts_are_excluded_and_counted():
    p = P4 + [0.99, 0.01, 0.7, 0.2]
    y = Y4 + [-1, float("nan"), None, ""]
    assert accuracy(p, y) == (0.5, 4)
    acc, n_un = accuracy(p, y, "l1")
    assert acc == pytest.approx(0.6, abs=1e-12) and n_un == 4
    assert accuracy(np.array(p), np.array([1, 0, 0, 1, -1, -1, -1, -1])) == (0.5, 4)


def test_no_labels_gives_none():
    assert accuracy([0.3, 0.8], [-1, -1]) == (None, 2)
    assert accuracy([], []) == (None, 0)


def test_l1_clipped_and_perfect():
    assert accuracy([1.0, 0.0], [1, 0], "l1") == (1.0, 0)
    assert accuracy([0.0, 1.0], [1, 0], "l1") == (0.0, 0)


def test_accuracy_errors():
    with pytest.raises(ValueError):
        accuracy([0.5], [1], "l2")
    with pytest.raises(ValueError):
        accuracy([0.5, 0.2], [1], "threshold")
    with pytest.raises(ValueError):
        accuracy([0.5], [2])
    with pytest.raises(ValueError):
        accuracy([float("nan")], [1])


def test_label_array():
    out = label_array([1, 0, -1, None, "", "1", "0", float("nan")])
    assert out[[0, 1, 5, 6]].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert np.isnan(out[[2, 3, 4, 7]]).all()


def test_fab():
    assert fab(0.8, 0.6) == pytest.approx(2 * 0.48 / 1.4, abs=1e-15)
    assert fab(1.0, 1.0) == 1.0
    assert fab(0.0, 0.0) == 0.0
    assert fab(0.0, 0.7) == 0.0
    assert fab(0.5, None) is None
    assert type(fab(np.float64(0.3), np.float64(0.9))) is float
    assert not math.isnan(fab(0.0, 0.0))
