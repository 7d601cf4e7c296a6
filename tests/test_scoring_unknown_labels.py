"""A tier with cases of unknown label (collapsed duplicates whose labels tie) still scores."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from latent_bias_probe.report.scoring import score_table, tier_matrices


def _table(labels):
    rows = []
    for case, label in zip(("a", "b", "c", "d", "e", "f"), labels):
        for j, variant in enumerate(("BASE", "White-Female", "Black-Female")):
            rows.append({"case_id": case, "tier": "low", "variant": variant, "label": label,
                         "p_yes": 0.5 + 0.01 * j + 0.05 * (case in "ace")})
    return pd.DataFrame(rows)


def test_unknown_labels_are_nan_in_the_label_matrix_and_the_tier_scores():
    df = _table([1, 0, -1, 1, 0, 1])
    P, L, cases = tier_matrices(df, ["White-Female", "Black-Female"])
    assert cases == list("abcdef") and P.shape == L.shape == (6, 3)
    assert np.isnan(L[2]).all() and np.array_equal(L[[0, 1, 3, 4, 5], 0], [1, 0, 1, 0, 1])
    tier = score_table(df, n_boot=20)["low"]
    assert tier["n_unlabelled"] == 3 and math.isfinite(tier["mfarm"]["score"])
    same = score_table(_table([1, 0, 1, 1, 0, 1]), n_boot=20)["low"]
    assert same["n_unlabelled"] == 0  # the P(Yes) are the same; only the label differs
    assert tier["mfarm"]["score"] == same["mfarm"]["score"]
