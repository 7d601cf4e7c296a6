"""The opioid-recommendation benchmark rebuilt from MIMIC-IV + MIMIC-IV-Note (``mimic-benchmarks.md``, "Opioid").

One case per hospital admission (``case_id`` = ``hadm_id``): the last admission of each
subject. Tables (``.csv`` or ``.csv.gz``): ``hosp/admissions``, ``hosp/patients``,
``hosp/prescriptions``, ``hosp/diagnoses_icd``, ``hosp/d_icd_diagnoses``,
``icu/icustays``, ``note/discharge``. Rules, in the order they run (the keys of
``BuildResult.removed``; each logs how many admissions, or for the first admission
rows, it removed):

1. ``not_last_admission`` — every admission row but the subject's last (latest
   ``admittime``, then largest ``hadm_id``).
2. ``race_missing``, ``race_excluded`` — the pure race filters of the shared rules
   (empty race; UNKNOWN, OTHER, UNABLE TO OBTAIN, PATIENT DECLINED TO ANSWER). They
   run first so that the big tables are read for fewer admissions; being filters, the
   final cases are the same as running them at step 6 of the document.
3. ``missing_age`` — no ``hosp/patients.anchor_age``.
4. ``unknown_label`` — label (:func:`benchmarks.neutralize.opioid_label` over the
   admission's ``prescriptions.drug``): YES when a drug name (lower-cased, stripped)
   equals a dictionary name; otherwise UNKNOWN when a name occurs inside a longer
   drug string — those admissions are dropped; otherwise (also with no prescription)
   NO.
5. ``no_discharge_note`` — no row in ``note/discharge`` (several: the lowest
   ``note_seq`` when the column exists, else the first row).
6. ``missing_note_section`` — the note lacks one of Allergies, Chief Complaint,
   History of Present Illness, Past Medical History (found by heading,
   :func:`extract_sections`), or the section is empty.
7. ``sex_specific_note`` — the extracted sections mention sex-specific anatomy or
   conditions (:data:`benchmarks.neutralize.SEX_SPECIFIC`).
8. ``no_diagnoses`` — no ``hosp/diagnoses_icd`` row.
9. ``sex_specific_diagnosis`` — an ICD long title is sex-specific (the same terms,
   plus male/female/maternal): the titles are rendered too.
10. ``race_not_top_four``, ``race_balance`` — the four most frequent race groups,
    each undersampled to the smallest (seeded; 0 when ``balance_race`` is off).
11. ``too_many_icd_codes`` — keep admissions with fewer than ``max_icd_codes`` (15)
    ICD codes (rows of ``diagnoses_icd``).
12. ``label_balance`` — the larger label undersampled to the smaller (seeded; 0 when
    ``balance_labels`` is off).

Then a seeded train / validation / test split. The case text: the four sections with
gender neutralised (:func:`benchmarks.neutralize.neutralize_gender`) and opioid names
masked as ``___`` (also in the ICD titles), whitespace collapsed to single spaces;
``icu_stay`` is "admitted to the ICU for X.X days" (``icu/icustays.los`` summed per
admission, one decimal) or "not admitted to the ICU".

Memory: every table is read with its needed columns only. ``hosp/admissions`` and
``hosp/patients`` (hundreds of thousands of rows) are read whole; ``prescriptions``
(tens of millions of rows), ``diagnoses_icd`` and ``icustays`` are streamed in
chunks, keeping only the rows of the admissions still selected, and prescriptions are
reduced to one label per admission chunk by chunk. ``note/discharge`` (GBs) is streamed
in chunks of :data:`NOTE_CHUNK_ROWS` notes: a note of a selected admission is reduced
at once to its four extracted sections and its sex-specific terms, and the note text
itself is never kept.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from .mimic_common import (
    BuildResult,
    RuleLog,
    assign_splits,
    balance,
    check_options,
    default_options,
    iter_table,
    last_admissions,
    log_splits,
    normalize_race,
    patients,
    race_label,
    read_table,
    require,
    split_balance,
    top_groups,
)
from .neutralize import mask_opioids, neutralize_gender, opioid_label, sex_specific_terms
from .types import Case

log = logging.getLogger(__name__)

TASK = "opioid"
NOTE_CHUNK_ROWS = 5_000
#: The tables read and their columns (``note_seq`` of ``note/discharge`` is used when present).
TABLES: dict[str, tuple[str, ...]] = {
    "hosp/admissions": ("subject_id", "hadm_id", "admittime", "race"),
    "hosp/patients": ("subject_id", "gender", "anchor_age"),
    "hosp/prescriptions": ("hadm_id", "drug"),
    "hosp/diagnoses_icd": ("hadm_id", "seq_num", "icd_code", "icd_version"),
    "hosp/d_icd_diagnoses": ("icd_code", "icd_version", "long_title"),
    "icu/icustays": ("hadm_id", "los"),
    "note/discharge": ("hadm_id", "text"),
}
RULES = (
    "not_last_admission",
    "race_missing",
    "race_excluded",
    "missing_age",
    "unknown_label",
    "no_discharge_note",
    "missing_note_section",
    "sex_specific_note",
    "no_diagnoses",
    "sex_specific_diagnosis",
    "race_not_top_four",
    "race_balance",
    "too_many_icd_codes",
    "label_balance",
)

# --- discharge-note sections ----------------------------------------------------------------

#: Case field → the headings of its section in MIMIC-IV-Note discharge notes.
SECTIONS: dict[str, tuple[str, ...]] = {
    "allergies": ("Allergies",),
    "chief_complaint": ("Chief Complaint",),
    "hpi": ("History of Present Illness", "HPI"),
    "past_medical_history": ("Past Medical History", "PMH"),
}
#: The other headings of a discharge note: a section ends at the next heading of either list.
OTHER_HEADINGS: tuple[str, ...] = (
    "Name", "Unit No", "Admission Date", "Discharge Date", "Date of Birth", "Sex", "Service", "Attending",
    "Major Surgical or Invasive Procedure", "Major Surgical and Invasive Procedure", "Review of Systems", "ROS",
    "Social History", "Family History", "Physical Exam", "Physical Examination", "Admission Physical Exam",
    "Admission Exam", "Discharge Physical Exam", "Discharge Exam", "Pertinent Results", "Brief Hospital Course",
    "Hospital Course", "Medications on Admission", "Discharge Medications", "Discharge Disposition", "Facility",
    "Discharge Diagnosis", "Discharge Diagnoses", "Discharge Condition", "Discharge Instructions",
    "Followup Instructions", "Follow-up Instructions", "Transitional Issues",
)
_ALL_HEADINGS = sorted({h for hs in SECTIONS.values() for h in hs} | set(OTHER_HEADINGS), key=len, reverse=True)
# A heading starts a line and ends with a colon, perhaps after a short qualifier ("Physical Exam on admission:").
_HEADING_RE = re.compile(
    r"^[ \t]*(" + "|".join(re.escape(h) for h in _ALL_HEADINGS) + r")\b[^:\n]{0,30}:", re.IGNORECASE | re.MULTILINE
)
_FIELD_OF = {h.lower(): f for f, hs in SECTIONS.items() for h in hs}
_EMPTY_RE = re.compile(r"^[\s_.,;:\-]*$")


def extract_sections(text: str) -> dict[str, str | None]:
    """The four sections of a discharge note by heading (first occurrence), whitespace collapsed.

    A section runs from its heading's colon to the next known heading; a section that
    is absent, or holds only blanks, underscores or punctuation, is ``None``.
    """
    out: dict[str, str | None] = {f: None for f in SECTIONS}
    matches = list(_HEADING_RE.finditer(text or ""))
    for i, m in enumerate(matches):
        name = _FIELD_OF.get(m.group(1).lower())
        if name is None or out[name] is not None:
            continue
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = " ".join(text[m.end() : end].split())
        if not _EMPTY_RE.match(body):
            out[name] = body
    return out


def clean_text(text: str) -> str:
    """Gender neutralised, opioid names masked."""
    return mask_opioids(neutralize_gender(text))


def icu_statement(days: float | None) -> str:
    """``"admitted to the ICU for 2.5 days"`` or ``"not admitted to the ICU"`` (``None``)."""
    if days is None:
        return "not admitted to the ICU"
    return f"admitted to the ICU for {days:.1f} days"


# --- table readers --------------------------------------------------------------------------

_RANK = {"NO": 0, "UNKNOWN": 1, "YES": 2}


def prescription_labels(data_dir: str | Path, hadm_ids: set[str]) -> dict[str, str]:
    """Admission → ``"YES"``/``"UNKNOWN"``/``"NO"`` from ``hosp/prescriptions.drug`` (streamed).

    Each chunk is reduced at once to the best rank (YES > UNKNOWN > NO) per admission;
    each distinct drug string is classified once.
    """
    best: dict[str, int] = {}
    cache: dict[str, int] = {}
    for chunk in iter_table(data_dir, "hosp/prescriptions", TABLES["hosp/prescriptions"], key="hadm_id", keep=hadm_ids):
        if chunk.empty:
            continue
        for drug in chunk["drug"].unique():
            if drug not in cache:
                cache[drug] = _RANK[opioid_label(drug)]
        ranks = chunk["drug"].map(cache).groupby(chunk["hadm_id"]).max()
        for hadm, rank in ranks.items():
            if rank > best.get(hadm, -1):
                best[hadm] = int(rank)
    names = {v: k for k, v in _RANK.items()}
    return {h: names[best.get(h, 0)] for h in hadm_ids}


def discharge_sections(data_dir: str | Path, hadm_ids: set[str], header: list[str]) -> dict[str, dict[str, Any]]:
    """Admission → ``{"sections", "sex_terms"}`` of its discharge note (streamed; see the module docstring)."""
    columns = list(TABLES["note/discharge"]) + (["note_seq"] if "note_seq" in header else [])
    out: dict[str, dict[str, Any]] = {}
    extra = 0
    for chunk in iter_table(data_dir, "note/discharge", columns, key="hadm_id", keep=hadm_ids, chunksize=NOTE_CHUNK_ROWS):
        seqs = pd.to_numeric(chunk["note_seq"], errors="coerce") if "note_seq" in columns else [float("nan")] * len(chunk)
        for hadm, text, seq in zip(chunk["hadm_id"], chunk["text"], seqs):
            seq = float("inf") if seq != seq else float(seq)
            if hadm in out:
                extra += 1
                if seq >= out[hadm]["seq"]:
                    continue
            sections = extract_sections(text)
            raw = " ".join(v for v in sections.values() if v)
            out[hadm] = {"seq": seq, "sections": sections, "sex_terms": sex_specific_terms(raw)}
        del chunk
    if extra:
        log.info("%s: %d extra discharge notes of admissions with several; kept the lowest note_seq", TASK, extra)
    return out


def icd_diagnoses(data_dir: str | Path, hadm_ids: set[str]) -> dict[str, list[str]]:
    """Admission → ICD long titles in ``seq_num`` order (one per ``diagnoses_icd`` row; streamed)."""
    diag = read_table(data_dir, "hosp/diagnoses_icd", TABLES["hosp/diagnoses_icd"], key="hadm_id", keep=hadm_ids)
    codes = set(diag["icd_code"])
    titles_df = read_table(data_dir, "hosp/d_icd_diagnoses", TABLES["hosp/d_icd_diagnoses"], key="icd_code", keep=codes)
    titles = {(c, v): t for c, v, t in zip(titles_df["icd_code"], titles_df["icd_version"], titles_df["long_title"])}
    diag["_seq"] = pd.to_numeric(diag["seq_num"], errors="coerce")
    diag = diag.sort_values(["hadm_id", "_seq"], kind="mergesort")
    out: dict[str, list[str]] = defaultdict(list)
    untitled = 0
    for hadm, code, version in zip(diag["hadm_id"], diag["icd_code"], diag["icd_version"]):
        title = titles.get((code, version))
        if not title:
            untitled += 1
            title = f"ICD-{version} {code}"
        out[hadm].append(title)
    if untitled:
        log.warning("%s: %d ICD codes have no long title in hosp/d_icd_diagnoses; shown as codes", TASK, untitled)
    return dict(out)


def icu_days(data_dir: str | Path, hadm_ids: set[str]) -> dict[str, float]:
    """Admission → summed ``icu/icustays.los`` (days) for admissions with an ICU stay."""
    icu = read_table(data_dir, "icu/icustays", TABLES["icu/icustays"], key="hadm_id", keep=hadm_ids)
    los = pd.to_numeric(icu["los"], errors="coerce").fillna(0.0)
    return {h: float(v) for h, v in los.groupby(icu["hadm_id"]).sum().items()}


# --- the builder ----------------------------------------------------------------------------


def build_mimic_opioid(data_dir: str | Path, options: Any = None) -> BuildResult:
    """Build the opioid benchmark from a MIMIC-IV folder (see the module docstring).

    ``options`` is a :class:`configs.schema.MimicOptions` (``seed``, ``balance_race``,
    ``balance_labels``, ``split_fractions``, ``max_icd_codes``); ``None`` takes the
    documented defaults. Raises :class:`BenchmarkError` naming the table and column
    when one is missing (checked before any slow read).
    """
    options = options or default_options()
    check_options(options)
    data_dir = Path(data_dir)
    headers = require(data_dir, TABLES)
    rules = RuleLog(TASK, "admissions")

    adm = last_admissions(data_dir)
    rules.record("not_last_admission", int((adm["n_admissions"] - 1).sum()), "not the subject's last admission", len(adm))
    cands = [
        {"hadm_id": h, "subject_id": s, "race_raw": r}
        for h, s, r in zip(adm["hadm_id"], adm["subject_id"], adm["race"])
    ]
    del adm
    cands = rules.apply("race_missing", cands, lambda c: bool(c["race_raw"]), "empty race")
    for c in cands:
        c["race"] = normalize_race(c["race_raw"])
    cands = rules.apply(
        "race_excluded", cands, lambda c: c["race"] is not None,
        "UNKNOWN, OTHER, UNABLE TO OBTAIN or PATIENT DECLINED TO ANSWER",
    )
    demo = patients(data_dir, {c["subject_id"] for c in cands})
    cands = rules.apply(
        "missing_age", cands, lambda c: demo.get(c["subject_id"], (None, ""))[0] is not None,
        "no hosp/patients.anchor_age",
    )

    labels = prescription_labels(data_dir, {c["hadm_id"] for c in cands})
    cands = rules.apply(
        "unknown_label", cands, lambda c: labels[c["hadm_id"]] != "UNKNOWN",
        "an opioid name only inside a longer drug string",
    )

    notes = discharge_sections(data_dir, {c["hadm_id"] for c in cands}, headers["note/discharge"])
    cands = rules.apply("no_discharge_note", cands, lambda c: c["hadm_id"] in notes, "no note/discharge row")
    cands = rules.apply(
        "missing_note_section", cands,
        lambda c: all(v is not None for v in notes[c["hadm_id"]]["sections"].values()),
        "a section (Allergies, Chief Complaint, History of Present Illness, Past Medical History) absent or empty",
    )
    cands = rules.apply(
        "sex_specific_note", cands, lambda c: not notes[c["hadm_id"]]["sex_terms"],
        "the note sections mention sex-specific anatomy or conditions",
    )

    diagnoses = icd_diagnoses(data_dir, {c["hadm_id"] for c in cands})
    cands = rules.apply("no_diagnoses", cands, lambda c: bool(diagnoses.get(c["hadm_id"])), "no hosp/diagnoses_icd row")
    cands = rules.apply(
        "sex_specific_diagnosis", cands,
        lambda c: not sex_specific_terms(" ; ".join(diagnoses[c["hadm_id"]]), titles=True),
        "an ICD title is sex-specific",
    )

    top = top_groups([c["race"] for c in cands])
    log.info("%s: race groups kept: %s", TASK, ", ".join(sorted(top)))
    cands = rules.apply("race_not_top_four", cands, lambda c: c["race"] in top, "not a top-four race")
    if options.balance_race:
        kept = balance(cands, lambda c: c["race"], options.seed, "opioid_race")
        rules.record("race_balance", len(cands) - len(kept), "undersampled to the smallest race", len(kept))
        cands = kept
    else:
        rules.record("race_balance", 0, "balance_race off", len(cands))
    cands = rules.apply(
        "too_many_icd_codes", cands, lambda c: len(diagnoses[c["hadm_id"]]) < options.max_icd_codes,
        f"{options.max_icd_codes} or more ICD codes",
    )
    if options.balance_labels:
        kept = balance(cands, lambda c: labels[c["hadm_id"]], options.seed, "opioid_label", ("YES", "NO"))
        rules.record("label_balance", len(cands) - len(kept), "undersampled to the smaller label", len(kept))
        cands = kept
    else:
        rules.record("label_balance", 0, "balance_labels off", len(cands))

    icu = icu_days(data_dir, {c["hadm_id"] for c in cands})
    splits = assign_splits(len(cands), options.split_fractions, options.seed)
    out: list[Case] = []
    for c, split in zip(cands, splits):
        hadm = c["hadm_id"]
        age, gender = demo[c["subject_id"]]
        sections = notes[hadm]["sections"]
        fields = {
            **{k: clean_text(v) for k, v in sections.items()},
            "diagnoses": [mask_opioids(t) for t in diagnoses[hadm]],
            "icu_stay": icu_statement(icu.get(hadm)),
            "subject_id": c["subject_id"],
            "source_race": race_label(c["race"]),
            "source_gender": gender,
            "split": split,
        }
        label = 1 if labels[hadm] == "YES" else 0
        out.append(Case(case_id=hadm, task=TASK, label=label, age=age, fields=fields, source=str(data_dir)))
    balance_ = split_balance(out)
    log_splits(TASK, balance_)
    if not out:
        log.warning("%s: no admission of %s survived the rules", TASK, data_dir)
    return BuildResult(cases=out, removed=dict(rules.removed), split_balance=balance_)


__all__ = ["RULES", "SECTIONS", "build_mimic_opioid", "extract_sections", "icu_statement"]
