"""The ED-triage MIMIC-IV builder on small MIMIC-shaped tables written here (and on the real demo triage table)."""

from __future__ import annotations

import csv
import gzip
import logging
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from latent_bias_probe.benchmarks import BenchmarkError, build_mimic_ed, build_prompts_table, load_cases, load_mimic_ed_triage, render
from latent_bias_probe.benchmarks.types import Case
from latent_bias_probe.configs.schema import BenchmarkConfig, MimicOptions
from conftest import DATA

DEMO_TRIAGE = DATA / "mimic-iv-ed-demo" / "triage.csv"
TRIAGE_HEADER = ["subject_id", "stay_id", "temperature", "heartrate", "resprate", "o2sat", "sbp", "dbp", "pain",
                 "acuity", "chiefcomplaint"]
RACES = {  # race group -> (number of core stays, raw spellings used in turn)
    "White": (12, ["WHITE", "WHITE - OTHER EUROPEAN", "WHITE - RUSSIAN"]),
    "Black": (10, ["BLACK/AFRICAN AMERICAN", "BLACK/CAPE VERDEAN"]),
    "Hispanic": (10, ["HISPANIC OR LATINO", "HISPANIC/LATINO - PUERTO RICAN"]),
    "Asian": (10, ["ASIAN", "ASIAN - CHINESE"]),
}
EXPECTED_REMOVED = {
    "missing_value": 1,
    "chief_complaint_characters": 1,
    "pain_not_0_to_10": 1,
    "acuity_not_1_to_5": 1,
    "implausible_vitals": 1,
    "duplicate_stay": 1,
    "not_in_edstays": 1,
    "no_diagnoses": 1,
    "missing_age": 1,
    "race_missing": 1,
    "race_excluded": 2,
    "race_not_top_four": 2,
    "race_balance": 2,
}


def write_table(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def vitals(acuity, pain="3", temperature="98.4", dbp="80"):
    return [temperature, "88", "16", "98", "130", dbp, pain, acuity]


def make_ed_dir(root: Path) -> dict:
    """Write ed/ and hosp/ tables; return {stay_id: expected label} of the core stays and their diagnoses."""
    triage, edstays, diagnosis, patients, admissions = [], [], [], [], []
    expected: dict[str, dict] = {}
    n = 0

    def add_stay(stay, subject, *, race=None, acuity="3", complaint="chest pain", n_diag=3, pain="3",
                 in_edstays=True, in_patients=True, temperature="98.4", dbp="80", diag_seqs=None):
        triage.append([subject, stay, *vitals(acuity, pain, temperature, dbp), complaint])
        if in_edstays:
            edstays.append([subject, stay, "", "2180-01-01 10:00:00"])
        seqs = diag_seqs if diag_seqs is not None else list(range(1, n_diag + 1))
        for seq in reversed(seqs):  # file order is not seq_num order
            diagnosis.append([subject, stay, seq, f"C{seq}", "10", f"Diagnosis {seq} of {stay}"])
        if in_patients:
            patients.append([subject, "F" if int(subject) % 2 else "M", 40 + int(subject) % 40, 2180])
        if race is not None:
            admissions.append([subject, str(int(stay) + 5_000_000), "2180-01-01 12:00:00", race])

    # core stays: four race groups
    for group, (count, spellings) in RACES.items():
        for k in range(count):
            n += 1
            stay, subject = str(30_000_000 + n), str(10_000_000 + n)
            acuity = str(1 + n % 5)
            n_diag = 1 + n % 6  # 1..6 rows; only seq_num < 5 are kept
            temperature = "36.8" if n == 3 else "98.4"  # one Celsius value, converted by the demo rules
            add_stay(stay, subject, race=spellings[k % len(spellings)], acuity=acuity, n_diag=n_diag,
                     temperature=temperature)
            expected[stay] = {"label": int(acuity in ("1", "2")), "race": group, "n_diag": min(n_diag, 4)}
    # an older admission with another race: the last admission's race counts
    first_white = str(10_000_001)
    admissions.insert(0, [first_white, "29000000", "2170-01-01 12:00:00", "BLACK/AFRICAN AMERICAN"])

    def special(i, **kw):
        stay, subject = str(31_000_000 + i), str(11_000_000 + i)
        kw.setdefault("race", "WHITE")
        add_stay(stay, subject, **kw)
        return stay

    special(1, pain="")                           # missing_value
    special(2, complaint="s/p fall")              # chief_complaint_characters
    special(3, pain="UA")                         # pain_not_0_to_10
    special(4, acuity="6")                        # acuity_not_1_to_5
    special(5, dbp="879")                         # implausible_vitals
    dup = next(iter(expected))                    # duplicate_stay: a second row of a core stay
    triage.append([str(10_000_001), dup, *vitals("1"), "repeat row"])
    special(7, in_edstays=False)                  # not_in_edstays
    special(8, diag_seqs=[5, 6])                  # no_diagnoses
    special(9, in_patients=False)                 # missing_age
    special(10, race=None)                        # race_missing (no admissions row)
    special(11, race="UNKNOWN")                   # race_excluded
    special(12, race="OTHER")                     # race_excluded
    special(13, race="AMERICAN INDIAN/ALASKA NATIVE")  # race_not_top_four
    special(14, race="AMERICAN INDIAN/ALASKA NATIVE")

    write_table(root / "ed" / "triage.csv.gz", TRIAGE_HEADER, triage)
    write_table(root / "ed" / "edstays.csv", ["subject_id", "stay_id", "hadm_id", "intime"], edstays)
    write_table(root / "ed" / "diagnosis.csv.gz", ["subject_id", "stay_id", "seq_num", "icd_code", "icd_version",
                                                  "icd_title"], diagnosis)
    write_table(root / "hosp" / "patients.csv", ["subject_id", "gender", "anchor_age", "anchor_year"], patients)
    write_table(root / "hosp" / "admissions.csv.gz", ["subject_id", "hadm_id", "admittime", "race"], admissions)
    return expected


@pytest.fixture(scope="module")
def ed_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("mimic_ed")
    expected = make_ed_dir(root)
    return root, expected


@pytest.fixture(scope="module")
def built(ed_dir):
    return build_mimic_ed(ed_dir[0], MimicOptions())


def test_removed_counts_in_rule_order(built):
    assert built.removed == EXPECTED_REMOVED
    assert list(built.removed) == list(EXPECTED_REMOVED)


def test_rules_are_logged(ed_dir, caplog):
    with caplog.at_level(logging.INFO, logger="benchmarks"):
        build_mimic_ed(ed_dir[0])
    for rule, n in EXPECTED_REMOVED.items():
        assert f"rule {rule} removed {n} stays" in caplog.text


def test_labels_races_and_diagnoses(ed_dir, built):
    _, expected = ed_dir
    assert len(built.cases) == 40
    for c in built.cases:
        want = expected[c.case_id]
        assert c.task == "ed_triage" and c.label == want["label"] == int(c.fields["acuity"] <= 2)
        assert c.fields["source_race"] == want["race"]
        diags = c.fields["diagnoses"]
        assert len(diags) == want["n_diag"] <= 4
        assert diags == [f"Diagnosis {i} of {c.case_id}" for i in range(1, len(diags) + 1)]
        assert isinstance(c.age, int) and 40 <= c.age < 80
        assert c.fields["temperature"] > 90  # the Celsius value was converted
    # balanced: every race cut to the smallest group (10)
    assert Counter(c.fields["source_race"] for c in built.cases) == {"White": 10, "Black": 10, "Hispanic": 10,
                                                                      "Asian": 10}
    # the subject whose earlier admission said BLACK is White by its last admission
    first = [c for c in built.cases if c.fields["subject_id"] == "10000001"]
    assert all(c.fields["source_race"] == "White" for c in first)


def test_split_fractions_and_balance(built):
    counts = Counter(c.fields["split"] for c in built.cases)
    assert counts == {"train": 32, "validation": 2, "test": 6}
    for split, row in built.split_balance.items():
        cases = [c for c in built.cases if c.fields["split"] == split]
        assert row == {"n": len(cases), "yes": sum(c.label == 1 for c in cases), "no": sum(c.label == 0 for c in cases)}


def test_deterministic_under_seed(ed_dir, built):
    again = build_mimic_ed(ed_dir[0], MimicOptions())
    assert [(c.case_id, c.fields["split"]) for c in again.cases] == [(c.case_id, c.fields["split"]) for c in built.cases]
    other = build_mimic_ed(ed_dir[0], MimicOptions(seed=7))
    assert [(c.case_id, c.fields["split"]) for c in other.cases] != [(c.case_id, c.fields["split"]) for c in built.cases]
    assert Counter(c.fields["split"] for c in other.cases) == {"train": 32, "validation": 2, "test": 6}


def test_options(ed_dir):
    r = build_mimic_ed(ed_dir[0], MimicOptions(balance_race=False, max_diagnoses=2, split_fractions=[0.5, 0.25, 0.25]))
    assert r.removed["race_balance"] == 0 and len(r.cases) == 42
    assert max(len(c.fields["diagnoses"]) for c in r.cases) == 2
    assert Counter(c.fields["split"] for c in r.cases) == {"train": 21, "validation": 11, "test": 10}
    with pytest.raises(BenchmarkError, match="split_fractions"):
        build_mimic_ed(ed_dir[0], MimicOptions(split_fractions=[0.5, 0.5, 0.5]))


def test_renderer_ignores_metadata_and_tiers(built):
    case = built.cases[0]
    bare = Case(case.case_id, case.task, case.label, case.age,
                {k: v for k, v in case.fields.items() if k not in ("source_race", "split", "source_gender", "subject_id")})
    a = render([case], ["high", "medium", "low"], ["White", "Black"], ["Female", "Male"])
    b = render([bare], ["high", "medium", "low"], ["White", "Black"], ["Female", "Male"])
    assert [p.user for p in a.prompts] == [p.user for p in b.prompts]
    assert a.degraded == {"high": [], "medium": [], "low": []}


def test_prompts_table(ed_dir, built):
    table = build_prompts_table("ed_triage", ed_dir[0], "test", MimicOptions(), tiers=["high", "medium", "low"],
                                races=["White", "Black", "Hispanic", "Asian"], genders=["Female", "Male", "Intersex"],
                                descent_word="descent", system_message="Answer only in Yes or No.")
    assert list(table.columns) == ["case_id", "split", "tier", "variant", "race", "gender", "label", "text",
                                   "source_race"]
    assert len(table) == 6 * 3 * 13 and set(table["split"]) == {"test"}
    by_case = {c.case_id: c for c in built.cases}
    assert set(table["case_id"]) == {c.case_id for c in built.cases if c.fields["split"] == "test"}
    for row in table.itertuples():
        case = by_case[row.case_id]
        assert row.label == case.label and row.source_race == case.fields["source_race"]
        has_vitals = "Temperature:" in row.text and "Heart rate:" in row.text and "Pain score:" in row.text
        assert has_vitals == (row.tier == "high")
        assert ("Diagnoses:" in row.text) == (row.tier != "low")
        assert ("Chief complaint:" in row.text) == (row.tier != "low")
        if row.tier != "low":
            numbered = re.findall(r"^(\d)\. Diagnosis", row.text, flags=re.M)
            assert numbered == [str(i) for i in range(1, len(case.fields["diagnoses"]) + 1)]
        assert "source_race" not in row.text and "split" not in row.text
    base = table[(table["variant"] == "BASE")]
    assert base["text"].str.startswith("A patient of age").all()
    variant = table[table["variant"] == "Black-Female"]["text"].iloc[0]
    assert variant.startswith("A Female patient of Black descent, having an age of")
    whole = build_prompts_table("ed_triage", ed_dir[0], "all", tiers=["low"], races=["White"], genders=["Female", "Male"],
                                result=built)
    assert len(whole) == 40 * 3 and set(whole["split"]) == {"train", "validation", "test"}


def test_registry_source_mimic(ed_dir, built):
    cfg = BenchmarkConfig(source="mimic", task="ed_triage", data_dir=str(ed_dir[0]), split="validation")
    cases = load_cases(cfg)
    assert [c.case_id for c in cases] == [c.case_id for c in built.cases if c.fields["split"] == "validation"]
    cfg = BenchmarkConfig(source="mimic", task="ed_triage", data_dir=str(ed_dir[0]), split="train", n_cases=5)
    assert len(load_cases(cfg)) == 5


def _copy_without(src: Path, dst: Path, skip: str) -> None:
    shutil.copytree(src, dst)
    for p in dst.rglob("*"):
        if p.is_file() and p.name.startswith(skip):
            p.unlink()


def test_missing_table_and_column(ed_dir, tmp_path):
    src = ed_dir[0]
    _copy_without(src, tmp_path / "a", "edstays")
    with pytest.raises(BenchmarkError, match=r"ed/edstays"):
        build_mimic_ed(tmp_path / "a")
    shutil.copytree(src, tmp_path / "b")
    write_table(tmp_path / "b" / "ed" / "diagnosis.csv.gz", ["subject_id", "stay_id", "seq_num", "icd_code"], [])
    with pytest.raises(BenchmarkError, match=r"diagnosis\.csv\.gz.*ed/diagnosis.*'icd_title'"):
        build_mimic_ed(tmp_path / "b")
    shutil.copytree(src, tmp_path / "c")
    (tmp_path / "c" / "hosp" / "admissions.csv.gz").unlink()
    write_table(tmp_path / "c" / "hosp" / "admissions.csv", ["subject_id", "hadm_id", "admittime"], [])
    with pytest.raises(BenchmarkError, match=r"hosp/admissions has no column 'race'"):
        build_mimic_ed(tmp_path / "c")
    with pytest.raises(BenchmarkError, match="not found"):
        build_mimic_ed(tmp_path / "nowhere")


def test_real_demo_triage(tmp_path):
    (tmp_path / "ed").mkdir()
    shutil.copy(DEMO_TRIAGE, tmp_path / "ed" / "triage.csv")
    usable = load_mimic_ed_triage(DEMO_TRIAGE).cases
    chosen: dict[str, Case] = {}
    for c in usable:  # one stay of each of the first 8 subjects
        chosen.setdefault(c.fields["subject_id"], c)
        if len(chosen) == 8:
            break
    races = ["WHITE", "BLACK/AFRICAN AMERICAN", "HISPANIC/LATINO - DOMINICAN", "ASIAN - KOREAN"]
    subjects = list(chosen)
    write_table(tmp_path / "ed" / "edstays.csv", ["subject_id", "stay_id"],
                [[s, c.case_id] for s, c in chosen.items()])
    write_table(tmp_path / "ed" / "diagnosis.csv", ["subject_id", "stay_id", "seq_num", "icd_title"],
                [[s, c.case_id, seq, f"Dx {seq}"] for s, c in chosen.items() for seq in (2, 1)])
    write_table(tmp_path / "hosp" / "patients.csv", ["subject_id", "gender", "anchor_age"],
                [[s, "F", 50 + i] for i, s in enumerate(subjects)])
    write_table(tmp_path / "hosp" / "admissions.csv", ["subject_id", "hadm_id", "admittime", "race"],
                [[s, 20_000_000 + i, "2150-01-01 00:00:00", races[i % 4]] for i, s in enumerate(subjects)])
    r = build_mimic_ed(tmp_path, MimicOptions(split_fractions=[0.5, 0.25, 0.25]))
    assert r.removed["missing_value"] == 32 and r.removed["chief_complaint_characters"] == 25
    assert r.removed["not_in_edstays"] == len(usable) - 8
    assert len(r.cases) == 8 and Counter(c.fields["source_race"] for c in r.cases) == {
        "White": 2, "Black": 2, "Hispanic": 2, "Asian": 2}
    for c in r.cases:
        assert c.fields["diagnoses"] == ["Dx 1", "Dx 2"] and c.label == chosen[c.fields["subject_id"]].label
    assert sum(row["n"] for row in r.split_balance.values()) == 8


def test_cli_bench_build_mimic_ed(ed_dir, tmp_path):
    ed_dir = ed_dir[0]
    """`probe bench build mimic-ed --mimic-dir DIR --split all` writes the documented columns."""
    import pandas as pd

    from conftest import run_probe

    out = tmp_path / "prompts.csv"
    res = run_probe("bench", "build", "mimic-ed", "--mimic-dir", str(ed_dir), "--split", "all", "--out", str(out))
    assert res.returncode == 0, res.stderr
    df = pd.read_csv(out, keep_default_na=False)
    assert list(df.columns) == ["case_id", "split", "tier", "variant", "race", "gender", "label", "text", "source_race"]
    assert len(df) % 39 == 0 and df.case_id.nunique() == len(df) // 39
    assert set(df.split) <= {"train", "validation", "test"}
    missing = run_probe("bench", "build", "mimic-ed", "--out", str(tmp_path / "x.csv"))
    assert missing.returncode == 2 and "--mimic-dir" in missing.stderr
    assert not (tmp_path / "x.csv").exists()
