"""The MIMIC-IV-ED demo triage loader, on the real open table."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path

import pytest

from latent_bias_probe.benchmarks import BenchmarkError, load_mimic_ed_triage, render
from conftest import DATA

TRIAGE = DATA / "mimic-iv-ed-demo" / "triage.csv"

HEADER = ["subject_id", "stay_id", "temperature", "heartrate", "resprate", "o2sat", "sbp", "dbp", "pain", "acuity",
          "chiefcomplaint"]


@pytest.fixture(scope="module")
def demo():
    return load_mimic_ed_triage(TRIAGE)


def test_real_counts(demo):
    # 222 rows; 190 have every value (99 YES, 91 NO); the complaint regex removes 25
    # (e.g. "s/p Fall"), non-numeric or out-of-range pain 11 ("UA", "13"), dbp 879 one.
    assert demo.n_rows == 222
    assert demo.removed == {
        "missing_value": 32,
        "chief_complaint_characters": 25,
        "pain_not_0_to_10": 11,
        "acuity_not_1_to_5": 0,
        "implausible_vitals": 1,
        "duplicate_stay": 0,
    }
    assert len(demo.cases) == 153
    assert Counter(c.label for c in demo.cases) == {1: 75, 0: 78}
    assert Counter(c.fields["acuity"] for c in demo.cases) == {1: 4, 2: 71, 3: 77, 4: 1}
    # the only Celsius temperature (36.5) belongs to a "s/p Fall" complaint removed by rule 2
    assert demo.converted == {"temperature_celsius_to_fahrenheit": 0}
    assert demo.missing_fields == ["age", "diagnoses"]
    ids = [c.case_id for c in demo.cases]
    assert len(set(ids)) == len(ids) and "37298974" not in ids  # the dbp 879 stay
    for c in demo.cases:
        assert c.age is None and "diagnoses" not in c.fields
        assert 0 <= c.fields["pain"] <= 10 and c.fields["dbp"] < c.fields["sbp"]
        assert 90 <= c.fields["temperature"] <= 106


def test_real_render_degrades(demo, caplog):
    with caplog.at_level(logging.WARNING):
        r = render(demo.cases[:3], ["high", "medium", "low"], ["White", "Black"], ["Female", "Male"])
    assert r.degraded == {"high": ["age", "diagnoses"], "medium": ["age", "diagnoses"], "low": ["age"]}
    assert "age (3 of 3 cases)" in caplog.text
    base = r.prompts[0].user
    assert base.startswith("A patient is being observed at the Emergency Department of a hospital.\nChief complaint: ")
    assert "Heart rate: " in base and "Diagnoses" not in base


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_rules_on_small_table(tmp_path, caplog):
    good = ["1", "", "98.6", "80", "16", "98", "120", "80", "3", "2", "Chest pain"]
    rows = [
        [*good[:1], "10", *good[2:]],
        ["1", "11", "37", *good[3:]],  # Celsius -> 98.6 F
        ["1", "12", "", *good[3:]],  # missing temperature
        ["1", "13", *good[2:10], "S/P FALL"],  # '/' not allowed
        ["1", "14", *good[2:8], "UA", "3", "Cough"],  # pain not a number
        ["1", "15", *good[2:8], "6.5", "5", "Cough"],  # half points are fine; acuity 5 -> NO
        ["1", "16", *good[2:8], "6.3", "3", "Cough"],  # not a half point
        ["1", "17", *good[2:7], "879", "0", "3", "Cough"],  # implausible dbp
        ["1", "18", *good[2:9], "7", "Cough"],  # acuity 7
        ["1", "10", *good[2:]],  # duplicate stay
    ]
    path = _write(tmp_path / "triage.csv", HEADER, rows)
    with caplog.at_level(logging.INFO, logger="benchmarks.mimic_ed_demo"):
        res = load_mimic_ed_triage(path)
    assert [c.case_id for c in res.cases] == ["10", "11", "15"]
    assert [c.label for c in res.cases] == [1, 1, 0]
    assert res.cases[1].fields["temperature"] == 98.6
    assert res.converted == {"temperature_celsius_to_fahrenheit": 1}
    assert res.removed == {
        "missing_value": 1,
        "chief_complaint_characters": 1,
        "pain_not_0_to_10": 2,
        "acuity_not_1_to_5": 1,
        "implausible_vitals": 1,
        "duplicate_stay": 1,
    }
    assert "rule implausible_vitals removed 1 rows" in caplog.text


def test_missing_column_names_file_and_column(tmp_path):
    path = _write(tmp_path / "triage.csv", [h for h in HEADER if h != "o2sat"], [])
    with pytest.raises(BenchmarkError, match=r"triage\.csv.*'o2sat'"):
        load_mimic_ed_triage(path)
    with pytest.raises(ValueError):
        load_mimic_ed_triage(path)
    with pytest.raises(BenchmarkError, match="not found"):
        load_mimic_ed_triage(tmp_path / "absent.csv")


def test_real_demo_low_tier_dropped_and_medium_collapsed(demo):
    # No age in the demo table: at the low tier all 153 stays render the same text, so the
    # tier is dropped; at medium (chief complaint and vitals-free) 153 stays give 124 texts.
    r = render(demo.cases, ["high", "medium", "low"], ["White", "Black", "Hispanic", "Asian"], ["Female", "Male", "Intersex"])
    assert set(r.dropped_tiers) == {"low"}
    assert r.collapsed == {"medium": {"cases": 153, "distinct": 124, "label_conflicts": 12}}
    assert len(r.prompts) == (153 + 124) * 13
