"""A tier with unknown labels (e.g. collapsed duplicate prompts with tied labels) still scores.

The demo's low tier collapses 60 cases to 40 distinct prompts and gives a case whose
merged labels tie the label "unknown" (empty in predictions.csv, -1 in the table):
accuracy and its interval must use only the labelled cases, the other scores all of them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from latent_bias_probe.mfarm.resampling import accuracy_interval
from latent_bias_probe.pipeline import score_predictions
from latent_bias_probe.report.scoring import tier_matrices

RACES, GENDERS = ("White", "Black"), ("Female", "Male")


def _predictions(tmp_path):
    rng = np.random.default_rng(4)
    rows = []
    for i in range(8):
        label = "" if i == 3 else str(i % 2)
        variants = [("BASE", "BASE", "BASE")] + [(f"{r}-{g}", r, g) for r in RACES for g in GENDERS]
        for v, r, g in variants:
            rows.append(dict(case_id=f"c{i}", tier="low", variant=v, race=r, gender=g, label=label,
                             p_yes=round(float(rng.uniform(0.2, 0.8)), 4)))
    path = tmp_path / "predictions.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path, pd.DataFrame(rows)


def test_an_unknown_label_leaves_accuracy_to_the_labelled_cases(tmp_path):
    path, df = _predictions(tmp_path)
    got = score_predictions(path, n_boot=200, seed=1)["low"]
    known = df[df.label != ""]
    hand = float(np.mean((known.p_yes > 0.5) == (known.label == "1")))
    assert got["accuracy"] == hand
    assert got["n_unlabelled"] == 5
    from latent_bias_probe.pipeline import read_predictions

    part = read_predictions(path)
    P, L, cases = tier_matrices(part[part.tier == "low"], [f"{r}-{g}" for r in RACES for g in GENDERS])
    assert np.isnan(L[cases.index("c3")]).all() and not np.isnan(np.delete(L, cases.index("c3"), axis=0)).any()
    assert got["ci"]["accuracy"] == accuracy_interval(P, L, 200, 1)
    assert got["ci"]["score"] is not None
