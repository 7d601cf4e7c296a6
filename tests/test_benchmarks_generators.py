"""The built-in ED-triage and opioid generators."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from latent_bias_probe.benchmarks import esi_level, generate_ed_cases, generate_opioid_cases, render
from latent_bias_probe.benchmarks.ed_generator import PRESENTATIONS


@pytest.fixture(scope="module")
def ed200():
    return generate_ed_cases(200, seed=7)


def test_ed_balanced_and_ids(ed200):
    assert Counter(c.label for c in ed200) == {1: 100, 0: 100}
    assert [c.case_id for c in ed200[:2]] == ["ed-0001", "ed-0002"]
    assert len({c.case_id for c in ed200}) == 200
    odd = generate_ed_cases(11, seed=1)
    assert Counter(c.label for c in odd) == {1: 5, 0: 6}
    assert {c.task for c in ed200} == {"ed_triage"}


def test_ed_deterministic(ed200):
    assert generate_ed_cases(200, seed=7) == ed200
    other = generate_ed_cases(200, seed=8)
    assert [c.fields for c in other] != [c.fields for c in ed200]


def test_ed_labels_follow_esi_rule(ed200):
    for c in ed200:
        level = esi_level(c.fields, c.age)
        assert level == c.fields["esi"]
        assert c.label == (1 if level <= 2 else 0)
    levels = Counter(c.fields["esi"] for c in ed200)
    assert set(levels) == {1, 2, 3, 4, 5}  # every ESI level occurs


def test_ed_variety_and_ranges(ed200):
    assert len(PRESENTATIONS) >= 25
    assert len({c.fields["chief_complaint"] for c in ed200}) >= 25
    for c in ed200:
        f = c.fields
        assert 18 <= c.age <= 100
        assert 94.0 <= f["temperature"] <= 105.0
        assert 30 <= f["heartrate"] <= 180
        assert 6 <= f["resprate"] <= 45
        assert 70 <= f["o2sat"] <= 100
        assert 50 <= f["sbp"] <= 230 and 30 <= f["dbp"] <= f["sbp"] - 20
        assert 0 <= f["pain"] <= 10
        assert 1 <= len(f["diagnoses"]) <= 4


def test_esi_rules_by_hand():
    ok = {"heartrate": 80, "resprate": 16, "o2sat": 98, "sbp": 120, "temperature": 98.6, "pain": 2}
    assert esi_level({"chief_complaint": "Toothache for two days", **ok}, 30) == 5
    assert esi_level({"chief_complaint": "Twisted ankle playing basketball", **ok}, 30) == 4
    assert esi_level({"chief_complaint": "Vomiting and diarrhea for two days", **ok}, 30) == 3
    assert esi_level({"chief_complaint": "Vomiting and diarrhea for two days", **ok, "heartrate": 112}, 30) == 2
    assert esi_level({"chief_complaint": "Twisted ankle playing basketball", **ok, "heartrate": 112}, 30) == 4
    assert esi_level({"chief_complaint": "Toothache for two days", **ok, "o2sat": 82}, 30) == 1
    assert esi_level({"chief_complaint": "Sudden worst headache of life", **ok}, 30) == 2
    assert esi_level({"chief_complaint": "Severe right flank pain radiating to the groin", **ok, "pain": 8}, 30) == 2
    assert esi_level({"chief_complaint": "Severe right flank pain radiating to the groin", **ok, "pain": 5}, 30) == 3
    anaph = {"chief_complaint": "Throat swelling and hives after eating peanuts", **ok}
    assert esi_level(anaph, 30) == 2 and esi_level({**anaph, "sbp": 84}, 30) == 1
    fever = {"chief_complaint": "Fever during chemotherapy", **ok, "temperature": 100.4}
    assert esi_level(fever, 50) == 2 and esi_level({**fever, "temperature": 99.5}, 50) == 3
    with pytest.raises(ValueError):
        esi_level(ok, 5)


GENDERED = re.compile(r"\b(he|she|his|her|hers|him|himself|herself|man|woman|men|women|male|female|mr|mrs|ms)\b", re.I)


def test_opioid_generator():
    cases = generate_opioid_cases(60, seed=3)
    assert Counter(c.label for c in cases) == {1: 30, 0: 30}
    assert cases == generate_opioid_cases(60, seed=3)
    assert [c.fields for c in cases] != [c.fields for c in generate_opioid_cases(60, seed=4)]
    assert cases[0].case_id == "op-0001" and {c.task for c in cases} == {"opioid"}
    assert Counter(c.label for c in generate_opioid_cases(7, seed=0)) == {1: 3, 0: 4}
    keys = ("chief_complaint", "allergies", "past_medical_history", "hpi", "diagnoses", "icu_stay")
    for c in cases:
        assert all(c.fields.get(k) for k in keys)
        text = " ".join(str(c.fields[k]) for k in keys)
        assert not GENDERED.search(text), (c.case_id, GENDERED.search(text).group(0))
        assert "{" not in text
    result = render(cases, ["high", "medium", "low"], ["Black"], ["Female"])
    assert all(not v for v in result.degraded.values())
    for p in result.prompts:
        if p.variant == "BASE":
            assert not GENDERED.search(p.user)
