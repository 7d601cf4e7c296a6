"""Text and selection rules shared by the MIMIC-IV builders: race, splits, neutraliser, masking, sections."""

from __future__ import annotations

from collections import Counter

import pytest

from latent_bias_probe.benchmarks.mimic_common import assign_splits, balance, normalize_race, select_split, split_counts, top_groups
from latent_bias_probe.benchmarks.mimic_opioid import extract_sections, icu_statement
from latent_bias_probe.benchmarks.neutralize import (
    OPIOID_NAMES,
    mask_opioids,
    neutralize_gender,
    opioid_label,
    sex_specific_terms,
)


@pytest.mark.parametrize(
    "raw, group",
    [
        ("BLACK/AFRICAN AMERICAN", "BLACK"),
        ("WHITE - OTHER EUROPEAN", "WHITE"),
        ("HISPANIC OR LATINO", "HISPANIC"),
        ("HISPANIC/LATINO - PUERTO RICAN", "HISPANIC"),
        ("ASIAN - SOUTH EAST ASIAN", "ASIAN"),
        ("  white ", "WHITE"),
        ("UNKNOWN", None),
        ("OTHER", None),
        ("UNABLE TO OBTAIN", None),
        ("PATIENT DECLINED TO ANSWER", None),
        ("", None),
        (None, None),
        ("AMERICAN INDIAN/ALASKA NATIVE", "AMERICAN INDIAN"),
    ],
)
def test_normalize_race(raw, group):
    assert normalize_race(raw) == group


def test_top_groups_balance_and_splits():
    groups = ["A"] * 5 + ["B"] * 4 + ["C"] * 3 + ["D"] * 3 + ["E"] * 2
    assert top_groups(groups) == {"A", "B", "C", "D"}
    items = list(enumerate(groups))
    kept = balance(items, lambda x: x[1], seed=42, step="t")
    assert Counter(g for _, g in kept) == {"A": 2, "B": 2, "C": 2, "D": 2, "E": 2}
    assert kept == sorted(kept) and kept == balance(items, lambda x: x[1], seed=42, step="t")
    assert split_counts(40, [0.8, 0.05, 0.15]) == [32, 2, 6]
    assert split_counts(7, [0.8, 0.05, 0.15]) == [6, 0, 1]
    assert sum(split_counts(101, [0.8, 0.05, 0.15])) == 101
    a = assign_splits(100, [0.8, 0.05, 0.15], seed=42)
    assert a == assign_splits(100, [0.8, 0.05, 0.15], seed=42) != assign_splits(100, [0.8, 0.05, 0.15], seed=1)
    assert Counter(a) == {"train": 80, "validation": 5, "test": 15}
    with pytest.raises(ValueError, match="split 'dev'"):
        select_split([], "dev")


@pytest.mark.parametrize(
    "text, want",
    [
        ("He said his wife left him.", "The patient said the patient's spouse left the patient."),
        ("She and her husband; we saw her.", "The patient and the patient's spouse; we saw the patient."),
        ("gave her to the ED", "gave the patient to the ED"),
        ("HE HAS PAIN", "THE PATIENT HAS PAIN"),
        ("a 60 year old woman, a man, two women", "a 60 year old person, a person, two people"),
        ("mother, father, mother-in-law, ex-husband", "parent, parent, parent-in-law, ex-spouse"),
        ("Son and daughter visit; brother's house", "Child and child visit; sibling's house"),
        ("Mr. ___ is a 65 yo M. Seen by Mrs. ___ today.", "The patient is a 65 yo patient. Seen by the patient today."),
        ("a female patient with herself", "a patient with themselves"),
        # left alone: words that merely contain a gendered word
        ("manage the HER2+ herpes; shelter; Hemingway; theme; mantle", "manage the HER2+ herpes; shelter; Hemingway; theme; mantle"),
    ],
)
def test_neutralize_gender(text, want):
    assert neutralize_gender(text) == want


def test_mask_opioids_and_labels():
    text = "Allergies: Codeine / PERCOCET. Takes oxycodone-acetaminophen, MS Contin, Dilaudid 2mg, dihydrocodeine."
    masked = mask_opioids(text)
    assert masked == "Allergies: ___ / ___. Takes ___-acetaminophen, ___, ___ 2mg, ___."
    assert mask_opioids("items continued; morphology") == "items continued; morphology"
    for name in OPIOID_NAMES:
        assert mask_opioids(f"x {name.upper()} y") == "x ___ y", name
    assert opioid_label(" Morphine ") == "YES" and opioid_label("oxycontin") == "YES"
    assert opioid_label("Morphine Sulfate") == "UNKNOWN" and opioid_label("HYDROmorphone (Dilaudid)") == "UNKNOWN"
    assert opioid_label("Acetaminophen") == "NO" and opioid_label("") == "NO"


def test_sex_specific_terms():
    assert sex_specific_terms("s/p TURP for BPH, prostate cancer") == ["turp", "bph", "prostate"]
    assert sex_specific_terms("ovarian cyst, uterine fibroids, pregnant, menstruation, testicular pain") == [
        "ovarian", "uterine", "pregnant", "menstruation", "testicular"]
    assert sex_specific_terms("cervical spine stenosis, test results, breast exam") == []
    assert sex_specific_terms("Female infertility", titles=True) == ["female"]


def test_extract_sections_and_icu():
    note = ("Service: MEDICINE\n \nAllergies: \nNo Known Allergies / Adverse Drug Reactions\n \nAttending: ___.\n \n"
            "Chief Complaint:\nfever\n \nHistory of Present Illness:\nline one\nline two\nROS: negative\n \n"
            "Past Medical History:\n___\n \nSocial History:\nlives alone\n")
    s = extract_sections(note)
    assert s == {"allergies": "No Known Allergies / Adverse Drug Reactions", "chief_complaint": "fever",
                 "hpi": "line one line two", "past_medical_history": None}
    assert icu_statement(None) == "not admitted to the ICU"
    assert icu_statement(2.54) == "admitted to the ICU for 2.5 days"
    assert icu_statement(0.04) == "admitted to the ICU for 0.0 days"


def test_balance_needs_every_named_group(caplog):
    items = [("a", "YES"), ("b", "YES")]
    assert balance(items, lambda x: x[1], seed=1, step="labels", groups=("YES", "NO")) == []
    assert "no case in group(s) NO" in caplog.text
    assert balance(items, lambda x: x[1], seed=1, step="labels") == items


def test_mask_opioids_non_ascii_text():
    # lower-casing "İ" changes the text's length: the slower whole-text pattern is used, same result
    assert mask_opioids("İ Morphine, MS Contin, oxycodone-APAP") == "İ ___, ___, ___-APAP"
