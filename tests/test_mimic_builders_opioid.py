"""The opioid MIMIC-IV builder on small MIMIC-shaped tables written here."""

from __future__ import annotations

import csv
import gzip
import logging
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from latent_bias_probe.benchmarks import BenchmarkError, build_mimic_opioid, build_prompts_table, load_cases
from latent_bias_probe.benchmarks.neutralize import OPIOID_NAMES
from latent_bias_probe.configs.schema import BenchmarkConfig, MimicOptions

EXPECTED_REMOVED = {
    "not_last_admission": 2,
    "race_missing": 1,
    "race_excluded": 3,
    "missing_age": 1,
    "unknown_label": 1,
    "no_discharge_note": 1,
    "missing_note_section": 1,
    "sex_specific_note": 2,
    "no_diagnoses": 1,
    "sex_specific_diagnosis": 1,
    "race_not_top_four": 2,
    "race_balance": 2,
    "too_many_icd_codes": 2,
    "label_balance": 2,
}
HPI = ("Mr. ___ is a ___ yo M with chronic back pain. He reports that his wife noticed worse pain; "
       "she gave him Percocet at home. His mother and HIS FATHER have arthritis. Her husband, not relevant.")
ICD_TITLES = {
    "I10": "Essential (primary) hypertension",
    "E119": "Type 2 diabetes mellitus without complications",
    "M545": "Low back pain",
    "T401X1A": "Poisoning by heroin, accidental",
    "T403X1A": "Poisoning by methadone, accidental (unintentional), initial encounter",
    "N400": "Benign prostatic hyperplasia without lower urinary tract symptoms",
}


def write_table(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def note_text(cc="back pain", allergies="Codeine / Percocet", hpi=HPI,
              pmh="- HTN\n- chronic back pain on oxycodone-acetaminophen\n- DM2") -> str:
    lines = [" ", "Name:  ___                     Unit No:   ___", " ",
             "Admission Date:  ___              Discharge Date:   ___", " ",
             "Date of Birth:  ___             Sex:   M", " ", "Service: MEDICINE", " ",
             "Allergies: ", allergies, " ", "Attending: ___.", " ", "Chief Complaint:", cc, " ",
             "Major Surgical or Invasive Procedure:", "None", " ", " ", "History of Present Illness:", hpi, " "]
    if pmh is not None:
        lines += ["Past Medical History:", pmh, " "]
    lines += ["Social History:", "___", "Family History:", "Father with prostate cancer. Mother pregnant at 40.", " ",
              "Physical Exam:", "VS: 98.6 80 120/80 16 98%RA", "Discharge Diagnosis:", "back pain", ""]
    return "\n".join(lines)


def make_opioid_dir(root: Path) -> dict:
    """Write hosp/, icu/, note/ tables; return {hadm_id: expected facts} of the admissions that can be kept."""
    admissions, patients, prescriptions, diagnoses, icustays, notes = [], [], [], [], [], []
    expected: dict[str, dict] = {}
    counter = iter(range(1, 1000))

    def add(race, *, yes=False, drugs=None, icd=("I10", "E119", "M545"), icu=(), note=None, in_patients=True,
            group=None):
        i = next(counter)
        sid, hadm = str(10_000_000 + i), str(20_000_000 + i)
        admissions.append([sid, hadm, f"2180-0{1 + i % 9}-1{i % 10} 08:00:00", race])
        if in_patients:
            patients.append([sid, "M" if i % 2 else "F", 30 + i, 2180])
        for d in drugs if drugs is not None else (["Morphine", "Acetaminophen"] if yes else ["Acetaminophen", "Heparin"]):
            prescriptions.append([sid, hadm, d])
        order = list(enumerate(icd, 1))
        for seq, code in reversed(order):  # file order is not seq_num order
            diagnoses.append([sid, hadm, seq, code, "10"])
        for los in icu:
            icustays.append([sid, hadm, str(30_000_000 + len(icustays)), f"{los}"])
        if note is not False:
            notes.append([f"{sid}-DS-1", sid, hadm, "DS", 1, note if note is not None else note_text()])
        expected[hadm] = {"label": int(yes), "race": group, "icd": list(icd), "subject": sid}
        return sid, hadm

    many = [f"C{k:02d}" for k in range(15)]  # 15 ICD codes: too many
    # the four race groups (WHITE 8, the others 6 each)
    for k in range(8):
        add(["WHITE", "WHITE - RUSSIAN"][k % 2], yes=True, group="White",
            drugs=["Morphine Sulfate", "Morphine"] if k == 0 else None)
    black = [add("BLACK/AFRICAN AMERICAN", yes=True, icu=(1.24, 1.3), group="Black",
                 icd=("T403X1A", "I10", "M545"))]
    black.append(add("BLACK/CAPE VERDEAN", icd=many, group="Black"))
    black += [add("BLACK/AFRICAN AMERICAN", group="Black") for _ in range(4)]
    hisp = [add("HISPANIC OR LATINO", yes=True, icd=tuple(many[:14]), group="Hispanic"),
            add("HISPANIC/LATINO - PUERTO RICAN", yes=True, drugs=["Dilaudid"], group="Hispanic")]
    hisp += [add("HISPANIC/LATINO - PUERTO RICAN", group="Hispanic") for _ in range(4)]
    asian = [add("ASIAN - CHINESE", yes=True, drugs=["MS Contin"], icu=(3.14,), group="Asian"),
             add("ASIAN", icd=many, group="Asian")]
    asian += [add("ASIAN", group="Asian") for _ in range(4)]
    # earlier admissions of two subjects (other race, opioid): only the last admission counts
    for sid, hadm in (black[2], hisp[2]):
        admissions.append([sid, str(int(hadm) + 500), "2100-01-01 08:00:00", "UNKNOWN"])
        prescriptions.append([sid, str(int(hadm) + 500), "Fentanyl"])
        icustays.append([sid, str(int(hadm) + 500), "39999999", "9.0"])

    def special(race="WHITE", **kw):
        _, hadm = add(race, **kw)
        expected.pop(hadm)
        return hadm

    special(race="")                                            # race_missing
    special(race="PATIENT DECLINED TO ANSWER")                  # race_excluded
    special(race="UNABLE TO OBTAIN")
    special(race="OTHER")
    special(in_patients=False)                                  # missing_age
    special(drugs=["Morphine Sulfate", "Acetaminophen"])        # unknown_label
    special(note=False)                                         # no_discharge_note
    special(note=note_text(pmh=None))                           # missing_note_section
    special(note=note_text(hpi="She is 20 weeks pregnant with back pain."))  # sex_specific_note
    special(note=note_text(pmh="- prostate cancer s/p radiation"))
    special(icd=())                                             # no_diagnoses
    special(icd=("N400", "I10"))                                # sex_specific_diagnosis
    special(race="NATIVE HAWAIIAN OR OTHER PACIFIC ISLANDER")   # race_not_top_four
    special(race="NATIVE HAWAIIAN OR OTHER PACIFIC ISLANDER")
    # a second, later-sequenced note of a kept admission is ignored
    notes.append(["x-DS-2", black[0][0], black[0][1], "DS", 2, note_text(cc="IGNORED NOTE")])

    titles = [[code, "10", title] for code, title in ICD_TITLES.items()] + [[c, "10", f"Condition {c}"] for c in many]
    titles.append(["I10", "9", "ICD-9 title of the same code"])
    write_table(root / "hosp" / "admissions.csv", ["subject_id", "hadm_id", "admittime", "race"], admissions)
    write_table(root / "hosp" / "patients.csv.gz", ["subject_id", "gender", "anchor_age", "anchor_year"], patients)
    write_table(root / "hosp" / "prescriptions.csv.gz", ["subject_id", "hadm_id", "drug"], prescriptions)
    write_table(root / "hosp" / "diagnoses_icd.csv.gz", ["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"],
                diagnoses)
    write_table(root / "hosp" / "d_icd_diagnoses.csv", ["icd_code", "icd_version", "long_title"], titles)
    write_table(root / "icu" / "icustays.csv", ["subject_id", "hadm_id", "stay_id", "los"], icustays)
    write_table(root / "note" / "discharge.csv.gz", ["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "text"],
                notes)
    expected["_icu"] = {black[0][1]: "admitted to the ICU for 2.5 days", asian[0][1]: "admitted to the ICU for 3.1 days"}
    expected["_icd14"] = hisp[0][1]
    return expected


@pytest.fixture(scope="module")
def opioid_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("mimic_opioid")
    return root, make_opioid_dir(root)


@pytest.fixture(scope="module")
def built(opioid_dir):
    return build_mimic_opioid(opioid_dir[0], MimicOptions())


def test_removed_counts_in_rule_order(built):
    assert built.removed == EXPECTED_REMOVED
    assert list(built.removed) == list(EXPECTED_REMOVED)


def test_rules_are_logged(opioid_dir, caplog):
    with caplog.at_level(logging.INFO, logger="benchmarks"):
        build_mimic_opioid(opioid_dir[0])
    for rule, n in EXPECTED_REMOVED.items():
        unit = "admissions"
        assert f"rule {rule} removed {n} {unit}" in caplog.text


def test_labels_races_icd_and_balance(opioid_dir, built):
    _, expected = opioid_dir
    assert len(built.cases) == 20
    assert Counter(c.label for c in built.cases) == {1: 10, 0: 10}  # label balance
    for c in built.cases:
        want = expected[c.case_id]
        assert c.task == "opioid" and c.label == want["label"]
        assert c.fields["source_race"] == want["race"] and c.fields["subject_id"] == want["subject"]
        assert len(c.fields["diagnoses"]) == len(want["icd"]) < 15
        titles = [ICD_TITLES.get(code, f"Condition {code}") for code in want["icd"]]
        masked = [re.sub("methadone", "___", t) for t in titles]
        assert c.fields["diagnoses"] == masked  # seq_num order, version-matched, opioid names masked
        assert c.fields["icu_stay"] == expected["_icu"].get(c.case_id, "not admitted to the ICU")
    races = Counter(c.fields["source_race"] for c in built.cases)
    assert set(races) == {"White", "Black", "Hispanic", "Asian"} and races["White"] == 6  # White cut from 8 to 6
    assert expected["_icd14"] in {c.case_id for c in built.cases}  # 14 codes kept, 15 removed
    # the ICU stays and prescriptions of earlier admissions do not count
    assert all(c.fields["icu_stay"] != "admitted to the ICU for 9.0 days" for c in built.cases)


def test_note_text_neutralised_and_masked(built):
    case = next(c for c in built.cases if c.label == 1)
    f = case.fields
    assert f["chief_complaint"] == "back pain"
    assert f["allergies"] == "___ / ___"
    assert f["past_medical_history"] == "- HTN - chronic back pain on ___-acetaminophen - DM2"
    assert f["hpi"] == (
        "The patient is a ___ yo patient with chronic back pain. The patient reports that the patient's spouse noticed "
        "worse pain; the patient gave the patient ___ at home. The patient's parent and THE PATIENT'S PARENT have "
        "arthritis. The patient's spouse, not relevant."
    )
    assert all(c.fields["chief_complaint"] != "IGNORED NOTE" for c in built.cases)


def test_prompts_table_text(opioid_dir, built):
    table = build_prompts_table("opioid", opioid_dir[0], "all", result=built)
    assert len(table) == 20 * 3 * 13
    gendered = re.compile(r"\b(he|she|him|his|her|hers|husband|wife|mother|father|man|woman|Mr)\b", re.I)
    opioid = re.compile("|".join(sorted(OPIOID_NAMES, key=len, reverse=True)), re.I)
    for row in table.itertuples():
        body = row.text.split("\n", 1)[1]  # after the opening sentence (which holds the variant's gender word)
        assert not gendered.search(body) and not opioid.search(row.text)
        high = row.tier == "high"
        assert ("History of present illness:" in row.text) == high and ("Diagnoses:" in row.text) == high
        assert ("ICU stay:" in row.text) == (row.tier != "low") and ("Allergies:" in row.text) == (row.tier != "low")
        assert "source_race" not in row.text
    assert "admitted to the ICU for 2.5 days" in "\n".join(table["text"])
    assert Counter(table.drop_duplicates("case_id")["split"]) == {"train": 16, "validation": 1, "test": 3}


def test_split_balance_and_determinism(opioid_dir, built):
    for split, row in built.split_balance.items():
        cases = [c for c in built.cases if c.fields["split"] == split]
        assert row == {"n": len(cases), "yes": sum(c.label for c in cases), "no": sum(1 - c.label for c in cases)}
    again = build_mimic_opioid(opioid_dir[0], MimicOptions())
    assert again == built
    other = build_mimic_opioid(opioid_dir[0], MimicOptions(seed=3))
    assert other.removed == built.removed
    assert [(c.case_id, c.fields["split"]) for c in other.cases] != [(c.case_id, c.fields["split"]) for c in built.cases]


def test_options(opioid_dir):
    r = build_mimic_opioid(opioid_dir[0], MimicOptions(balance_labels=False, balance_race=False, max_icd_codes=16))
    assert r.removed["label_balance"] == r.removed["race_balance"] == r.removed["too_many_icd_codes"] == 0
    assert len(r.cases) == 26 and Counter(c.label for c in r.cases) == {1: 12, 0: 14}


def test_registry_source_mimic(opioid_dir, built):
    cfg = BenchmarkConfig(source="mimic", task="opioid", data_dir=str(opioid_dir[0]), split="test")
    assert [c.case_id for c in load_cases(cfg)] == [c.case_id for c in built.cases if c.fields["split"] == "test"]


@pytest.mark.parametrize(
    "table, drop_column, pattern",
    [
        ("icu/icustays.csv", None, r"icu/icustays"),
        ("note/discharge.csv.gz", None, r"note/discharge"),
        ("hosp/prescriptions.csv.gz", "drug", r"prescriptions\.csv\.gz: table hosp/prescriptions has no column 'drug'"),
        ("hosp/d_icd_diagnoses.csv", "long_title", r"hosp/d_icd_diagnoses has no column 'long_title'"),
        ("note/discharge.csv.gz", "text", r"note/discharge has no column 'text'"),
    ],
)
def test_missing_table_or_column(opioid_dir, tmp_path, table, drop_column, pattern):
    root = tmp_path / "mimic"
    shutil.copytree(opioid_dir[0], root)
    path = root / table
    if drop_column is None:
        path.unlink()
    else:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", newline="") as fh:
            rows = list(csv.reader(fh))
        keep = [i for i, name in enumerate(rows[0]) if name != drop_column]
        write_table(path, [rows[0][i] for i in keep], [[r[i] for i in keep] for r in rows[1:]])
    with pytest.raises(BenchmarkError, match=pattern):
        build_mimic_opioid(root)
