"""The ED-triage benchmark rebuilt from MIMIC-IV + MIMIC-IV-ED (``mimic-benchmarks.md``, "ED triage").

One case per ED stay (``case_id`` = ``stay_id``). Tables: ``ed/triage``, ``ed/edstays``,
``ed/diagnosis``, ``hosp/admissions``, ``hosp/patients`` (each ``.csv`` or ``.csv.gz``).
Rules, in the order they run (the names are the keys of ``BuildResult.removed``; each
logs how many stays it removed):

1. The triage rules of :mod:`benchmarks.mimic_ed_demo`, reused as they are:
   ``missing_value``, ``chief_complaint_characters``, ``pain_not_0_to_10``,
   ``acuity_not_1_to_5``, ``implausible_vitals`` (Celsius temperatures converted
   first), ``duplicate_stay``. The label comes from there too: YES when acuity is 1
   or 2, NO when 3, 4 or 5.
2. ``not_in_edstays`` — the stay is not in ``ed/edstays`` (whose ``subject_id`` is used).
3. ``no_diagnoses`` — the stay has no ``ed/diagnosis`` row with ``seq_num`` <
   ``max_diagnoses + 1`` (default: ``seq_num < 5``). The kept rows' ``icd_title`` in
   ``seq_num`` order become ``fields["diagnoses"]`` (at most ``max_diagnoses``).
4. ``missing_age`` — no ``hosp/patients.anchor_age`` for the subject.
5. ``race_missing`` — the subject has no ``hosp/admissions`` row or an empty race.
   The race of a subject is that of its last admission (latest ``admittime``), as
   the "one row per subject" of the shared rules.
6. ``race_excluded`` — UNKNOWN, OTHER, UNABLE TO OBTAIN, PATIENT DECLINED TO ANSWER.
7. ``race_not_top_four`` — not one of the four most frequent race groups of the stays left.
8. ``race_balance`` — every race undersampled to the smallest one (seeded; 0 when
   ``balance_race`` is off).

Then the stays are split into train / validation / test (``split_fractions``, seeded)
and each split's label balance is logged.

Memory: ``ed/triage`` (about 425,000 rows in MIMIC-IV-ED 2.2) is read whole by the
demo loader whose rules are reused (peak about 0.65 GB for the full table);
``ed/edstays``, ``ed/diagnosis`` and ``hosp/patients`` are streamed in chunks of their
needed columns only, keeping just the rows of stays or subjects still selected;
``hosp/admissions`` is read with four columns.
"""

from __future__ import annotations

import logging
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
    last_admissions,
    log_splits,
    normalize_race,
    patients,
    race_label,
    read_table,
    require,
    split_balance,
    table_path,
    top_groups,
)
from .mimic_ed_demo import RULES as TRIAGE_RULES
from .mimic_ed_demo import TRIAGE_COLUMNS, VITALS, load_mimic_ed_triage
from .types import Case

log = logging.getLogger(__name__)

TASK = "ed_triage"
#: The tables read and their columns.
TABLES: dict[str, tuple[str, ...]] = {
    "ed/triage": TRIAGE_COLUMNS,
    "ed/edstays": ("subject_id", "stay_id"),
    "ed/diagnosis": ("stay_id", "seq_num", "icd_title"),
    "hosp/patients": ("subject_id", "gender", "anchor_age"),
    "hosp/admissions": ("subject_id", "hadm_id", "admittime", "race"),
}
RULES = TRIAGE_RULES + (
    "not_in_edstays",
    "no_diagnoses",
    "missing_age",
    "race_missing",
    "race_excluded",
    "race_not_top_four",
    "race_balance",
)


def ed_diagnoses(data_dir: str | Path, stays: set[str], max_diagnoses: int) -> dict[str, list[str]]:
    """``ed/diagnosis``: stay → ``icd_title`` of its rows with ``seq_num < max_diagnoses + 1``, in ``seq_num`` order."""
    diag = read_table(data_dir, "ed/diagnosis", ["stay_id", "seq_num", "icd_title"], key="stay_id", keep=stays)
    diag["_seq"] = pd.to_numeric(diag["seq_num"], errors="coerce")
    diag = diag[(diag["_seq"] < max_diagnoses + 1) & (diag["icd_title"] != "")]
    diag = diag.sort_values(["stay_id", "_seq"], kind="mergesort")
    out: dict[str, list[str]] = defaultdict(list)
    for stay, title in zip(diag["stay_id"], diag["icd_title"]):
        if len(out[stay]) < max_diagnoses:
            out[stay].append(title)
    return dict(out)


def build_mimic_ed(data_dir: str | Path, options: Any = None) -> BuildResult:
    """Build the ED-triage benchmark from a MIMIC-IV folder (see the module docstring).

    ``options`` is a :class:`configs.schema.MimicOptions` (``seed``, ``balance_race``,
    ``split_fractions``, ``max_diagnoses``); ``None`` takes the documented defaults.
    Raises :class:`BenchmarkError` naming the table and column when one is missing.
    """
    options = options or default_options()
    check_options(options)
    data_dir = Path(data_dir)
    require(data_dir, TABLES)  # every table and column, before the slow reads
    rules = RuleLog(TASK, "stays")

    triage = load_mimic_ed_triage(table_path(data_dir, "ed/triage"))
    for rule in TRIAGE_RULES:
        rules.record(rule, triage.removed.get(rule, 0), "triage rule of mimic_ed_demo")
    cases = triage.cases

    stay_ids = {c.case_id for c in cases}
    edstays = read_table(data_dir, "ed/edstays", ["subject_id", "stay_id"], key="stay_id", keep=stay_ids)
    subject_of = dict(zip(edstays["stay_id"], edstays["subject_id"]))
    cases = rules.apply("not_in_edstays", cases, lambda c: c.case_id in subject_of, "stay not in ed/edstays")

    diagnoses = ed_diagnoses(data_dir, {c.case_id for c in cases}, options.max_diagnoses)
    cases = rules.apply(
        "no_diagnoses", cases, lambda c: bool(diagnoses.get(c.case_id)),
        f"no ed/diagnosis row with seq_num < {options.max_diagnoses + 1}",
    )

    subjects = {subject_of[c.case_id] for c in cases}
    demo = patients(data_dir, subjects)
    cases = rules.apply(
        "missing_age", cases, lambda c: demo.get(subject_of[c.case_id], (None, ""))[0] is not None,
        "no hosp/patients.anchor_age",
    )

    adm = last_admissions(data_dir, {subject_of[c.case_id] for c in cases})
    raw_race = dict(zip(adm["subject_id"], adm["race"]))
    cases = rules.apply(
        "race_missing", cases, lambda c: bool(raw_race.get(subject_of[c.case_id], "")),
        "no hosp/admissions row or an empty race",
    )
    race_of = {c.case_id: normalize_race(raw_race[subject_of[c.case_id]]) for c in cases}
    cases = rules.apply(
        "race_excluded", cases, lambda c: race_of[c.case_id] is not None,
        "UNKNOWN, OTHER, UNABLE TO OBTAIN or PATIENT DECLINED TO ANSWER",
    )
    top = top_groups([race_of[c.case_id] for c in cases])
    log.info("%s: race groups kept: %s", TASK, ", ".join(sorted(top)))
    cases = rules.apply("race_not_top_four", cases, lambda c: race_of[c.case_id] in top, "not a top-four race")
    if options.balance_race:
        kept = balance(cases, lambda c: race_of[c.case_id], options.seed, "ed_race")
        rules.record("race_balance", len(cases) - len(kept), "undersampled to the smallest race", len(kept))
        cases = kept
    else:
        rules.record("race_balance", 0, "balance_race off", len(cases))

    splits = assign_splits(len(cases), options.split_fractions, options.seed)
    out: list[Case] = []
    for case, split in zip(cases, splits):
        sid = subject_of[case.case_id]
        age, gender = demo[sid]
        fields = {
            "chief_complaint": case.fields["chief_complaint"],
            "diagnoses": list(diagnoses[case.case_id]),
            **{k: case.fields[k] for k in VITALS},
            "pain": case.fields["pain"],
            "acuity": case.fields["acuity"],
            "subject_id": sid,
            "source_race": race_label(race_of[case.case_id]),
            "source_gender": gender,
            "split": split,
        }
        out.append(Case(case_id=case.case_id, task=TASK, label=case.label, age=age, fields=fields, source=str(data_dir)))
    balance_ = split_balance(out)
    log_splits(TASK, balance_)
    if not out:
        log.warning("%s: no stay of %s survived the rules", TASK, data_dir)
    return BuildResult(cases=out, removed=dict(rules.removed), split_balance=balance_)


__all__ = ["RULES", "build_mimic_ed", "ed_diagnoses"]
