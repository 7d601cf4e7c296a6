"""Library results of any scalar shape: the 109-case crash of ``probe score`` (issue 24) and ``as_float``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.power import TTestPower

from latent_bias_probe.configs.names import BASE, DEFAULT_GENDERS, DEFAULT_RACES
from latent_bias_probe.mfarm import equivalence
from latent_bias_probe.mfarm.equivalence import detectable_shift
from latent_bias_probe.mfarm.scalars import as_float
from latent_bias_probe.pipeline.scoring import score_table, validate_predictions
from conftest import run_probe


def _table(n_cases: int, seed: int = 0) -> pd.DataFrame:
    """BASE + every default race × gender variant for ``n_cases`` cases, one tier, labels 0/1."""
    rng = np.random.default_rng(seed)
    rows = []
    variants = [(BASE, BASE)] + [(r, g) for r in DEFAULT_RACES for g in DEFAULT_GENDERS]
    for i in range(n_cases):
        base = rng.uniform(0.05, 0.95)
        label = int(rng.integers(0, 2))
        for race, gender in variants:
            p = float(np.clip(base + rng.normal(0, 0.03), 0, 1))
            rows.append({"case_id": f"c{i}", "race": race, "gender": gender, "p_yes": p, "label": label})
    return pd.DataFrame(rows)


def test_as_float_takes_every_scalar_shape_and_refuses_the_rest():
    for x in (0.25, np.float64(0.25), np.float32(0.25), np.array(0.25), np.array([0.25]), np.array([[0.25]])):
        v = as_float(x)
        assert type(v) is float and v == 0.25
    assert as_float(3) == 3.0 and as_float(np.int64(3)) == 3.0 and as_float(True) == 1.0
    for bad in (None, "0.25", np.array([0.1, 0.2]), np.array([]), np.array(["a"])):
        with pytest.raises(TypeError):
            as_float(bad)


def test_statsmodels_returns_a_one_element_array_at_109_and_the_shift_is_still_a_number():
    # the premise of the bug, on the environment the tests run on: statsmodels' shape
    # depends on n (a 1-element array at 109 with statsmodels 0.14-0.15); whatever it returns,
    # detectable_shift gives the same float as the solver's value times the spread
    raw = TTestPower().solve_power(effect_size=None, nobs=109, alpha=0.05, power=0.8, alternative="two-sided")
    P = np.column_stack([np.zeros(109), np.tile([0.1, -0.1], 55)[:109]])
    spread = float(P[:, 1].std(ddof=1))
    got = detectable_shift(P, 0.05)
    assert isinstance(got, float)
    assert got == pytest.approx(float(np.asarray(raw).reshape(-1)[0]) * spread)
    assert 0.2 < got / spread < 0.35  # d ≈ 0.27 for n = 109, α = 0.05, power 0.8


def test_detectable_shift_survives_a_one_element_array_from_the_solver(monkeypatch):
    # independent of the installed statsmodels: force the shape that crashed
    class OneElement(TTestPower):
        def solve_power(self, **kw):
            return np.atleast_1d(super().solve_power(**kw))

    monkeypatch.setattr("statsmodels.stats.power.TTestPower", OneElement)
    P = np.column_stack([np.zeros(60), np.tile([0.1, -0.1], 30)])
    assert isinstance(detectable_shift(P, 0.05), float)
    assert equivalence.detectable_shift(P, 0.05) > 0


def test_score_table_of_109_cases_has_a_detectable_shift():
    df = validate_predictions(_table(109))
    tiers = score_table(df, n_boot=20)
    entry = tiers["all"]
    assert entry["n_cases"] == 109
    assert isinstance(entry["detectable_shift"], float) and 0 < entry["detectable_shift"] < 0.1


def test_probe_score_of_109_cases_exits_0(tmp_path):
    path = tmp_path / "pred.csv"
    _table(109).to_csv(path, index=False)
    res = run_probe("score", str(path), "--bootstrap", "20")
    assert res.returncode == 0, res.stderr
    tier = json.loads(res.stdout)["tiers"]["all"]
    assert tier["n_cases"] == 109 and tier["detectable_shift"] > 0


def test_a_one_element_p_value_is_kept_not_turned_into_nan():
    # before the fix a 1-element pvalue from scipy became NaN silently (counted as p = 1)
    from latent_bias_probe.mfarm.stats import _finite_or_nan, nan_to_none

    assert _finite_or_nan(np.array([0.03])) == 0.03
    assert nan_to_none(np.array([0.03])) == 0.03
    assert np.isnan(_finite_or_nan(None)) and np.isnan(_finite_or_nan(np.array([np.inf])))


def test_probe_compare_of_two_109_case_tables_exits_0(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    _table(109, seed=0).to_csv(a, index=False)
    _table(109, seed=0).assign(p_yes=lambda d: (d["p_yes"] * 0.9).round(6)).to_csv(b, index=False)
    res = run_probe("compare", str(a), str(b), "--bootstrap", "20")
    assert res.returncode == 0, res.stderr
    assert "all" in res.stdout


def test_scored_tiers_fit_the_results_schema_with_their_null_reasons():
    import jsonschema

    from conftest import ROOT

    schema = json.loads((ROOT / "pipeline" / "schemas" / "results.schema.json").read_text())
    tier_schema = {"$ref": "#/$defs/tier", "$defs": schema["$defs"]}
    df = _table(4).assign(label="")  # 4 cases, no labels: nulls with reasons
    tier = score_table(validate_predictions(df), n_boot=0)["all"]
    jsonschema.validate(json.loads(json.dumps(tier)), tier_schema)
    assert tier["null_reasons"]["accuracy"] == "no labelled prompt"
    assert tier["null_reasons"]["ci.score"] == "no bootstrap (n_boot = 0)"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**tier, "null_reasons": {"accuracy": 1}}, tier_schema)


def test_latent_intervals_excluding_their_point_are_dropped_with_the_reason():
    from latent_bias_probe.pipeline.scoring import drop_intervals_excluding_point, null_reasons

    tier = score_table(validate_predictions(_table(12)), n_boot=20)["all"]
    tier.update(latent={"value_axis_fairness": 1.0}, mfarm_full=1.0, fab_full=None)
    tier["ci"].update(value_axis_fairness=[0.8, 0.95], mfarm_full=[0.9, 1.0], fab_full=None)
    tier["accuracy"] = None
    excluded = drop_intervals_excluding_point(tier)
    assert list(excluded) == ["ci.value_axis_fairness"] and "[0.8, 0.95]" in excluded["ci.value_axis_fairness"]
    assert tier["ci"]["value_axis_fairness"] is None and tier["ci"]["mfarm_full"] == [0.9, 1.0]
    reasons = null_reasons(tier, 20)
    assert reasons["fab_full"] == reasons["ci.fab_full"] == "no labelled prompt"
