"""Metrics: one registry record each (mfarm.metrics); every output follows from the registry.

The worked example of the extension guide: registering one metric makes it appear in
a tier's ``mfarm`` mapping, its bootstrap interval and permutation null, the
results.json schema, the HTML report, the terminal table and the sweep columns.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import write_config
from latent_bias_probe import pipeline
from latent_bias_probe.configs.names import SCORE_KEYS
from latent_bias_probe.mfarm import metrics
from latent_bias_probe.mfarm.metrics import METRICS, Metric, metric_keys, mfarm_keys, output_scores, register_metric
from latent_bias_probe.pipeline.results import results_schema, validate_results
from latent_bias_probe.pipeline.scoring import score_table
from latent_bias_probe.report.sweep import sweep_columns
from latent_bias_probe.report.terminal import summary_table


def largest_mean_shift(P: np.ndarray, alpha: float = 0.05, correction: str = "holm") -> float:
    """1 - the largest |mean P(Yes) of a group - mean P(Yes) of BASE| (1 = no group moves on average)."""
    shifts = np.abs(P[:, 1:].mean(axis=0) - P[:, 0].mean())
    return float(np.clip(1.0 - shifts.max(), 0.0, 1.0))


@pytest.fixture
def registry():
    """The registry, restored after the test (register_metric changes it in place)."""
    saved = dict(METRICS)
    yield METRICS
    METRICS.clear()
    METRICS.update(saved)


def _register() -> Metric:
    # the whole extension: one record
    return register_metric(Metric(key="largest_mean_shift", short="F_LMS", label="Largest mean shift (allocational)",
                                  score=largest_mean_shift))


def _table(n_cases: int = 12, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for case in range(n_cases):
        base = rng.uniform(0.2, 0.8)
        rows.append({"case_id": f"c{case}", "variant": "BASE", "race": "BASE", "gender": "BASE", "p_yes": base})
        for race, shift in (("White", 0.0), ("Black", -0.1)):
            for gender in ("Female", "Male"):
                rows.append({"case_id": f"c{case}", "variant": f"{race}-{gender}", "race": race, "gender": gender,
                             "p_yes": float(np.clip(base + shift + rng.normal(0, 0.01), 0, 1))})
    df = pd.DataFrame(rows)
    df["label"] = (df.groupby("case_id")["p_yes"].transform("first") > 0.5).astype(int)
    df["tier"] = "high"
    return df


def test_the_paper_scores_are_registered_and_define_mfarm():
    assert mfarm_keys() == SCORE_KEYS == metric_keys()
    P = np.random.default_rng(1).uniform(size=(20, 5))
    out = output_scores(P)
    assert set(out) == {*SCORE_KEYS, "score"}
    assert out["score"] == pytest.approx(np.prod([out[k] for k in SCORE_KEYS]) ** (1 / 5))


def test_worked_example_one_record_reaches_every_output(registry):
    _register()
    df = _table()
    tier = score_table(df, n_boot=60, seed=0, permutations=40)["high"]
    want = 1.0 - 0.1  # the Black groups sit 0.1 below BASE, White groups on it
    assert tier["mfarm"]["largest_mean_shift"] == pytest.approx(want, abs=0.01)
    lo, hi = tier["ci"]["largest_mean_shift"]
    assert lo <= tier["mfarm"]["largest_mean_shift"] <= hi
    assert tier["null"]["largest_mean_shift"]["observed"] == tier["mfarm"]["largest_mean_shift"]
    # mFARM itself is unchanged by the new metric
    assert tier["mfarm"]["score"] == pytest.approx(np.prod([tier["mfarm"][k] for k in SCORE_KEYS]) ** (1 / 5))
    assert "largest_mean_shift" in results_schema()["$defs"]["tier"]["properties"]["mfarm"]["properties"]
    assert "F_LMS" in summary_table({"high": tier}).splitlines()[0]
    assert "largest_mean_shift" in sweep_columns()


def test_worked_example_through_a_whole_run(registry, tmp_path, tiny_model_dir):
    _register()
    cfg = write_config(tmp_path / "c.yaml", tiny_model_dir, benchmark={"n_cases": 4, "tiers": ["low"]})
    out = tmp_path / "run"
    pipeline.run(cfg, out, stages=("extract", "report"), progress=False)
    results = json.loads((out / "results.json").read_text())
    validate_results(results)
    assert 0.0 <= results["tiers"]["low"]["mfarm"]["largest_mean_shift"] <= 1.0
    html = (out / "report.html").read_text()
    assert "F_LMS" in html and "Largest mean shift (allocational)" in html


def test_the_schema_refuses_an_unregistered_score(registry):
    tier_schema = results_schema()["$defs"]["tier"]["properties"]["mfarm"]
    assert tier_schema["additionalProperties"] is False
    assert "largest_mean_shift" not in tier_schema["properties"]


@pytest.mark.parametrize("bad, message", [
    (Metric("score", "S", "taken", largest_mean_shift), "reserved"),
    (Metric("mean_difference", "S", "taken", largest_mean_shift), "taken"),
    (Metric("not an identifier", "S", "x", largest_mean_shift), "not an identifier"),
    (Metric("sixth", "S", "x", largest_mean_shift, in_mfarm=True), "geometric mean of the five"),
])
def test_register_refuses_what_would_change_a_contract(registry, bad, message):
    with pytest.raises(ValueError, match=message):
        register_metric(bad)
    assert metric_keys() == SCORE_KEYS
    assert metrics.METRICS is METRICS
