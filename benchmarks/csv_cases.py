"""Loader for a plain user CSV of cases.

Columns: ``case_id`` and ``label`` are required; ``label`` is ``yes``/``no``/``1``/
``0`` (any case, an optional trailing period) or empty for unknown. ``age`` is
optional (whole years). The task's field columns are optional, named as in
:mod:`benchmarks.render`:

- ``ed_triage``: chief_complaint, diagnoses, temperature, heartrate, resprate,
  o2sat, sbp, dbp, pain (the vitals and pain must be numbers);
- ``opioid``: chief_complaint, allergies, past_medical_history, hpi, diagnoses,
  icu_stay;
- ``qpain``: vignette, question (templates with the placeholders of
  :mod:`benchmarks.placeholders`), patient.

``diagnoses`` holds several diagnoses separated by ``;``. Empty cells are missing
values (the renderer reports the tiers they degrade). Other columns are logged and
ignored. Errors name the file, the row (data rows count from 1; the header is line
1 of the file) and the column.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from .errors import BenchmarkError
from .types import TASKS, Case

log = logging.getLogger(__name__)

TASK_COLUMNS: dict[str, tuple[str, ...]] = {
    "ed_triage": ("chief_complaint", "diagnoses", "temperature", "heartrate", "resprate", "o2sat", "sbp", "dbp", "pain"),
    "opioid": ("chief_complaint", "allergies", "past_medical_history", "hpi", "diagnoses", "icu_stay"),
    "qpain": ("vignette", "question", "patient"),
}
NUMERIC_COLUMNS = frozenset({"temperature", "heartrate", "resprate", "o2sat", "sbp", "dbp", "pain"})
LABELS = {"yes": 1, "1": 1, "no": 0, "0": 0, "": None}


def _where(path: Path, row: int, column: str) -> str:
    return f"{path}: row {row} (line {row + 1}), column {column!r}"


def parse_label(text: str, where: str = "label") -> int | None:
    """``yes``/``1`` → 1, ``no``/``0`` → 0, empty → None; anything else is an error."""
    key = text.strip().lower().rstrip(".")
    if key in ("1.0",):
        key = "1"
    elif key in ("0.0",):
        key = "0"
    if key not in LABELS:
        raise BenchmarkError(f"{where}: label {text!r} is not yes, no, 1, 0 or empty")
    return LABELS[key]


def _number(text: str, where: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise BenchmarkError(f"{where}: {text!r} is not a number") from None
    if x != x or abs(x) == float("inf"):
        raise BenchmarkError(f"{where}: {text!r} is not a finite number")
    return x


def _age(text: str, where: str) -> int | None:
    if not text.strip():
        return None
    x = _number(text, where)
    if not x.is_integer() or not 0 <= x <= 130:
        raise BenchmarkError(f"{where}: age {text!r} is not a whole number of years in 0..130")
    return int(x)


def load_csv_cases(path: str | Path, task: str) -> list[Case]:
    """Read the cases of a user CSV for ``task`` (see the module docstring)."""
    path = Path(path)
    if task not in TASKS:
        raise BenchmarkError(f"task {task!r}: unknown (known: {', '.join(TASKS)})")
    if not path.is_file():
        raise BenchmarkError(f"{path}: file not found")
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            header = [(h or "").strip() for h in (reader.fieldnames or [])]
            for col in ("case_id", "label"):
                if col not in header:
                    raise BenchmarkError(f"{path}: missing required column {col!r} (found: {', '.join(header) or 'none'})")
            known = {"case_id", "label", "age", *TASK_COLUMNS[task]}
            unknown = [h for h in header if h not in known]
            if unknown:
                log.warning("%s: ignoring columns not used by task %s: %s", path, task, ", ".join(unknown))
            raw_rows = [{(k or "").strip(): v for k, v in row.items()} for row in reader]
    except UnicodeDecodeError as err:
        raise BenchmarkError(f"{path}: not UTF-8 text ({err.reason})") from None
    except csv.Error as err:
        raise BenchmarkError(f"{path}: not a valid CSV ({err})") from None

    cases: list[Case] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(raw_rows, 1):
        if None in row:
            raise BenchmarkError(f"{path}: row {i} (line {i + 1}) has more cells than the header")
        cells = {k: (v or "").strip() for k, v in row.items()}
        case_id = cells["case_id"]
        if not case_id:
            raise BenchmarkError(f"{_where(path, i, 'case_id')}: empty case_id")
        if case_id in seen:
            raise BenchmarkError(f"{_where(path, i, 'case_id')}: case_id {case_id!r} already used in row {seen[case_id]}")
        seen[case_id] = i
        label = parse_label(cells["label"], _where(path, i, "label"))
        age = _age(cells.get("age", ""), _where(path, i, "age"))
        fields: dict[str, Any] = {}
        for col in TASK_COLUMNS[task]:
            text = cells.get(col, "")
            if not text:
                continue
            if col == "diagnoses":
                fields[col] = [d.strip() for d in text.split(";") if d.strip()]
            elif col in NUMERIC_COLUMNS:
                fields[col] = _number(text, _where(path, i, col))
            else:
                fields[col] = text
        cases.append(Case(case_id=case_id, task=task, label=label, age=age, fields=fields, source=str(path)))
    n_unknown = sum(c.label is None for c in cases)
    log.info("%s: %d %s cases (%d without a label)", path, len(cases), task, n_unknown)
    return cases
