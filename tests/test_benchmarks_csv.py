"""The plain user-CSV loader."""

from __future__ import annotations

import logging

import pytest

from latent_bias_probe.benchmarks import BenchmarkError, load_csv_cases, render


def test_round_trip(tmp_path, caplog):
    path = tmp_path / "cases.csv"
    path.write_text(
        "case_id,label,age,chief_complaint,diagnoses,heartrate,pain,notes\n"
        "a1,Yes,61,Chest pain,ACS; Hypertension ;,112,8,keep me out\n"
        "a2,no,,Ankle sprain,,80,,\n"
        "a3,,40,Rash,Contact dermatitis,,,\n"
        "a4,1,30,Cough,,,0.5,\n"
    )
    with caplog.at_level(logging.WARNING):
        cases = load_csv_cases(path, "ed_triage")
    assert "notes" in caplog.text
    assert [c.case_id for c in cases] == ["a1", "a2", "a3", "a4"]
    assert [c.label for c in cases] == [1, 0, None, 1]
    assert [c.age for c in cases] == [61, None, 40, 30]
    assert cases[0].fields == {"chief_complaint": "Chest pain", "diagnoses": ["ACS", "Hypertension"],
                               "heartrate": 112.0, "pain": 8.0}
    assert "notes" not in cases[0].fields and "pain" not in cases[1].fields
    r = render(cases, ["high"], ["Black"], ["Male"])
    assert "Diagnoses:\n1. ACS\n2. Hypertension" in r.prompts[0].user
    assert "Heart rate: 112 beats per minute" in r.prompts[0].user
    assert "age" in r.degraded["high"] and "temperature" in r.degraded["high"]


def test_opioid_columns(tmp_path):
    path = tmp_path / "op.csv"
    path.write_text('case_id,label,hpi,icu_stay\nx,No.,"Pain for a week, better with rest.",not admitted to the ICU\n')
    (case,) = load_csv_cases(path, "opioid")
    assert case.label == 0 and case.fields["hpi"] == "Pain for a week, better with rest."


@pytest.mark.parametrize(
    "body, match",
    [
        ("case_id,label\na,yes\nb,maybe\n", r"cases\.csv: row 2 \(line 3\), column 'label'.*'maybe'"),
        ("case_id,label,age\na,yes,forty\n", r"row 1 \(line 2\), column 'age'"),
        ("case_id,label,heartrate\na,yes,fast\n", r"row 1 \(line 2\), column 'heartrate'"),
        ("case_id,label\na,yes\na,no\n", r"row 2 .*already used in row 1"),
        ("case_id,label\n,yes\n", r"row 1 .*empty case_id"),
        ("case_id,outcome\na,yes\n", r"cases\.csv: missing required column 'label'"),
    ],
)
def test_errors_name_file_row_column(tmp_path, body, match):
    path = tmp_path / "cases.csv"
    path.write_text(body)
    with pytest.raises(BenchmarkError, match=match):
        load_csv_cases(path, "ed_triage")


def test_unknown_task_and_missing_file(tmp_path):
    with pytest.raises(BenchmarkError, match="task"):
        load_csv_cases(tmp_path / "x.csv", "dermatology")
    with pytest.raises(BenchmarkError, match="not found"):
        load_csv_cases(tmp_path / "x.csv", "opioid")
