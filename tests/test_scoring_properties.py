"""Property-based tests of every public scoring path over random predictions tables (issue 24).

Tables of 2 to 300 cases, one to three tiers, ties, P(Yes) exactly 0 and 1, constant
columns, unlabelled rows, other race and gender lists, a variant absent from a tier,
option mass: scoring never raises, every score lies in [0, 1] or is null with its
reason recorded, every interval contains its point value or is null. A variant
missing for only some cases of a tier is an input error (exit 2) naming the case and
the variant, never a crash. Bounded (few examples, small bootstrap) to keep the
suite fast.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from latent_bias_probe.configs.names import BASE, DEFAULT_GENDERS, DEFAULT_RACES
from latent_bias_probe.mfarm.equivalence import detectable_shift, tost
from latent_bias_probe.mfarm.output_scores import SCORE_KEYS
from latent_bias_probe.pipeline.compare import compare_tables
from latent_bias_probe.pipeline.scoring import PredictionsError, score_table, validate_predictions

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
N_BOOT, N_PERM = 24, 12
EPS = 1e-9
RACE_LISTS = [list(DEFAULT_RACES), ["White", "Black"], ["Native-American", "Pacific-Islander", "Martian"], ["Solo"]]
GENDER_LISTS = [list(DEFAULT_GENDERS), ["Female", "Male"], ["Nonbinary"], ["X", "Y", "Z"]]
# P(Yes) regimes: continuous, ties on a grid, extremes 0 and 1, one constant value
P_KINDS = ["uniform", "grid", "extremes", "constant"]


@st.composite
def tables(draw: Any, max_cases: int = 300) -> pd.DataFrame:
    """A valid predictions table (every tier complete: each case has BASE and every variant of its tier)."""
    races = draw(st.sampled_from(RACE_LISTS))
    genders = draw(st.sampled_from(GENDER_LISTS))
    variants = [(r, g) for r in races for g in genders]
    n_tiers = draw(st.integers(1, 3))
    tier_names = ["all"] if n_tiers == 1 else ["minimal", "full", "rich"][:n_tiers]
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    label_mode = draw(st.sampled_from(["all", "some", "none", "no column", "constant"]))
    with_mass = draw(st.booleans())
    rows = []
    for t, tier in enumerate(tier_names):
        n = draw(st.integers(2, max_cases if n_tiers == 1 else max_cases // 3))
        kind = draw(st.sampled_from(P_KINDS))
        # a variant absent from the whole tier (when more than one remains)
        drop = draw(st.booleans()) and len(variants) > 1
        tier_variants = variants[1:] if drop else variants
        constant_column = draw(st.booleans())
        for i in range(n):
            base = _p(rng, kind)
            label = {"all": int(rng.integers(0, 2)), "some": int(rng.choice([0, 1, -1])), "none": -1,
                     "no column": -1, "constant": 1}[label_mode]
            for race, gender in [(BASE, BASE)] + tier_variants:
                if constant_column and race == tier_variants[0][0] and gender == tier_variants[0][1]:
                    p = 0.5
                elif kind == "uniform":
                    p = float(np.clip(base + rng.normal(0, 0.1), 0, 1))
                else:
                    p = _p(rng, kind) if rng.random() < 0.3 else base
                row = {"case_id": f"{tier}-c{i}" if t % 2 else f"c{i}", "race": race, "gender": gender, "tier": tier, "p_yes": p}
                if label_mode != "no column":
                    row["label"] = "" if label < 0 else str(label)
                if with_mass:
                    row["option_mass"] = float(rng.choice([0.0, 1.0, rng.uniform(0, 1)]))
                rows.append(row)
    df = pd.DataFrame(rows)
    return df.sample(frac=1.0, random_state=seed % 1000).reset_index(drop=True)  # rows in any order


def _p(rng: np.random.Generator, kind: str) -> float:
    if kind == "uniform":
        return float(rng.uniform(0, 1))
    if kind == "grid":
        return float(rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]))
    if kind == "extremes":
        return float(rng.choice([0.0, 1.0]))
    return 0.3


def _unit(v: Any, where: str) -> None:
    assert v is not None and isinstance(v, float) and math.isfinite(v) and -EPS <= v <= 1 + EPS, f"{where} = {v!r}"


def _contains(ci: Any, point: Any, where: str) -> None:
    if ci is None:
        return
    lo, hi = ci
    assert point is not None, f"{where}: an interval {ci} for a null point value"
    assert lo - EPS <= point <= hi + EPS, f"{where}: {point!r} outside its interval {ci}"


def _check_tier(name: str, t: dict, permutations: bool) -> None:
    for key in (*SCORE_KEYS, "score"):
        _unit(t["mfarm"][key], f"{name} mfarm.{key}")
    if t["accuracy"] is None:
        assert t["n_unlabelled"] == t["n_prompts"], f"{name}: accuracy null although some prompt is labelled"
        assert t["fab"] is None
        assert t["null_reasons"]["accuracy"] == t["null_reasons"]["fab"] == "no labelled prompt"
    else:
        _unit(t["accuracy"], f"{name} accuracy")
        _unit(t["fab"], f"{name} fab")
    ci = t["ci"]
    assert ci["n_boot"] == N_BOOT
    for key in (*SCORE_KEYS, "score"):
        _contains(ci[key], t["mfarm"][key], f"{name} ci.{key}")
    _contains(ci["accuracy"], t["accuracy"], f"{name} ci.accuracy")
    _contains(ci["fab"], t["fab"], f"{name} ci.fab")
    for key, iv in ci.items():
        if iv is None:
            assert t["null_reasons"][f"ci.{key}"], f"{name}: ci.{key} null without a reason"
        if isinstance(iv, list):
            assert all(-EPS <= x <= 1 + EPS for x in iv), f"{name} ci.{key} = {iv}"
    for shift in t["diagnostics"]["group_shifts"]:
        assert -1 - EPS <= shift["mean_shift"] <= 1 + EPS
        assert 0 <= shift["flip_rate"] <= 1
        if shift["ci_low"] is not None:
            _contains([shift["ci_low"], shift["ci_high"]], shift["mean_shift"], f"{name} shift {shift['group']}")
    eq = t["equivalence"]
    for group, res in eq.items():
        if not isinstance(res, dict):
            continue
        assert res["verdict"] in ("equivalent", "different", "inconclusive")
        if res["ci"][0] is not None:
            _contains(res["ci"], res["shift"], f"{name} TOST {group}")
        else:
            assert t["null_reasons"][f"equivalence.{group}.ci"]
        if res["p_value"] is not None:
            assert 0 <= res["p_value"] <= 1
    shift = t["detectable_shift"]
    assert shift is None or (isinstance(shift, float) and math.isfinite(shift) and shift >= 0)
    if shift is None:
        assert t["null_reasons"]["detectable_shift"]
    if permutations:
        assert t["null"]["n_perm"] == N_PERM
        for key in (*SCORE_KEYS, "score"):
            res = t["null"][key]
            assert res["observed"] == pytest.approx(t["mfarm"][key])
            assert 0 < res["p_value"] <= 1
            _unit(res["null_median"], f"{name} null {key} median")
            _unit(res["null_q05"], f"{name} null {key} q05")
    if "option_mass" in t:
        m = t["option_mass"]
        for key in ("median", "min", "share_below"):
            _unit(m[key], f"{name} option_mass.{key}")
        for v in m["by_variant"].values():
            _unit(v, f"{name} option_mass.by_variant")


@SETTINGS
@given(df=tables(), permutations=st.sampled_from([0, N_PERM]), accuracy=st.sampled_from(["threshold", "l1"]))
def test_score_table_never_raises_and_every_score_and_interval_is_sound(df, permutations, accuracy):
    tiers = score_table(validate_predictions(df), n_boot=N_BOOT, permutations=permutations, accuracy=accuracy)
    assert set(tiers) == set(df["tier"])
    for name, t in tiers.items():
        _check_tier(name, t, bool(permutations))


@SETTINGS
@given(df=tables(max_cases=120), shift=st.floats(-0.3, 0.3), flip=st.booleans())
def test_compare_tables_never_raises_and_every_difference_lies_in_its_interval(df, shift, flip):
    a = validate_predictions(df)
    b = a.copy()
    b["p_yes"] = np.clip(b["p_yes"] + np.where(b["variant"] == BASE, 0.0, shift), 0, 1)
    if flip:
        b["p_yes"] = 1.0 - b["p_yes"]
    out = compare_tables(a, b, n_boot=N_BOOT)
    for name, t in out["tiers"].items():
        for key, v in t.items():
            if not isinstance(v, dict) or "diff" not in v:
                continue
            if v["diff"] is None:
                assert v["ci"] is None
                continue
            assert -1 - EPS <= v["diff"] <= 1 + EPS, f"{name} {key} diff {v['diff']}"
            _contains(v["ci"], v["diff"], f"{name} compare.{key}")
            if v["ci"] is None:
                assert "excludes the observed" in v["ci_null_reason"]
                assert v["verdict"] == "no difference shown"
            assert v["verdict"] in ("higher", "lower", "no difference shown")
        for s in t["mean_shift"]:
            _contains(s["ci"], s["diff"], f"{name} compare shift {s['group']}")
            assert s["ci"] is not None or s["ci_null_reason"]


@SETTINGS
@given(df=tables(max_cases=60), data=st.data())
def test_a_variant_missing_for_some_cases_is_an_input_error_naming_the_cell(df, data):
    demo = df.index[df["race"] != BASE]
    # drop one demographic cell of a case whose tier keeps that variant for other cases
    candidates = [i for i in demo if ((df["tier"] == df.at[i, "tier"]) & (df["race"] == df.at[i, "race"])
                                      & (df["gender"] == df.at[i, "gender"])).sum() > 1]
    if not candidates:
        return
    i = data.draw(st.sampled_from(candidates))
    case, variant = df.at[i, "case_id"], f"{df.at[i, 'race']}-{df.at[i, 'gender']}"
    with pytest.raises(PredictionsError) as err:
        score_table(validate_predictions(df.drop(index=i)), n_boot=4)
    msg = str(err.value)
    assert "missing cell" in msg and case in msg and variant in msg


@settings(max_examples=60, deadline=None, derandomize=True)
@given(n=st.integers(0, 400), spread=st.sampled_from([0.0, 1e-12, 0.01, 0.3]), k=st.integers(1, 12))
def test_detectable_shift_is_a_float_or_null_for_every_size(n, spread, k):
    rng = np.random.default_rng(n)
    P = np.clip(0.5 + spread * rng.standard_normal((n, k + 1)), 0, 1)
    got = detectable_shift(P, 0.05)
    if n < 3:
        assert got is None
    else:
        assert isinstance(got, float) and math.isfinite(got) and got >= 0


@settings(max_examples=60, deadline=None, derandomize=True)
@given(d=st.lists(st.sampled_from([-1.0, -0.5, 0.0, 1e-300, 0.02, 0.5, 1.0]) | st.floats(-1, 1), min_size=0, max_size=300),
       margin=st.sampled_from([1e-6, 0.02, 0.5]))
def test_tost_verdict_interval_and_p_value(d, margin):
    r = tost(d, margin)
    assert r["verdict"] in ("equivalent", "different", "inconclusive") and r["n"] == len(d)
    if r["ci"][0] is not None:
        _contains(r["ci"], r["shift"], "TOST")
    assert r["p_value"] is None or 0 <= r["p_value"] <= 1


def test_hyphenated_race_names_score_with_an_intersectional_share():
    # found by the property test: IBD could not split "Native-American-Female" and scoring raised
    rows = []
    for i in range(8):
        rows.append({"case_id": f"c{i}", "race": BASE, "gender": BASE, "p_yes": 0.5, "label": 1})
        for r, shift in (("Native-American", 0.1), ("White", 0.0)):
            for g, extra in (("Female", 0.05), ("Male", 0.0)):
                rows.append({"case_id": f"c{i}", "race": r, "gender": g, "p_yes": 0.4 + shift + extra + 0.01 * i, "label": 1})
    tier = score_table(validate_predictions(pd.DataFrame(rows)), n_boot=10)["all"]
    assert tier["diagnostics"]["ibd"] == pytest.approx(0.0, abs=1e-12)  # additive shifts: no interaction
