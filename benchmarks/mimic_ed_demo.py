"""Loader for an ``ed/triage`` table alone (the open MIMIC-IV-ED demo, ODbL).

The table has ``subject_id, stay_id, temperature, heartrate, resprate, o2sat, sbp,
dbp, pain, acuity, chiefcomplaint``: no diagnoses, age or demographics, so the
cases have ``age = None`` and no ``diagnoses`` and the renderer reports those tiers
as degraded. Rules, in order (``mimic-benchmarks.md``, ED section, the ones that
apply to this table; each logs how many rows it removed):

1. ``missing_value`` — drop rows with a missing temperature, heartrate, resprate,
   o2sat, sbp, dbp, pain, acuity or chiefcomplaint.
2. ``chief_complaint_characters`` — the chief complaint must match
   ``^[a-zA-Z0-9\\s,.!?;:'"()-]+$``.
3. ``pain_not_0_to_10`` — pain must be a number in {0, 0.5, 1, ..., 10}.
4. ``acuity_not_1_to_5`` — acuity must be an integer 1..5 (rule 5 labels from it).
5. ``implausible_vitals`` (this toolkit's rule) — after converting Celsius
   temperatures (a value < 50 is read as °C and converted to °F; the count is
   logged), drop rows with a vital outside :data:`PLAUSIBLE` (e.g. dbp 879) or a
   diastolic pressure not below the systolic.
6. ``duplicate_stay`` — a stay_id seen before.

Label (rule 5 of the spec): YES (1) when acuity is 1 or 2, NO (0) when 3, 4 or 5.
``case_id`` is the ``stay_id``.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BenchmarkError
from .types import Case

log = logging.getLogger(__name__)

TRIAGE_COLUMNS = (
    "subject_id", "stay_id", "temperature", "heartrate", "resprate", "o2sat", "sbp", "dbp", "pain", "acuity",
    "chiefcomplaint",
)
VITALS = ("temperature", "heartrate", "resprate", "o2sat", "sbp", "dbp")
REQUIRED_VALUES = VITALS + ("pain", "acuity", "chiefcomplaint")
COMPLAINT_RE = re.compile(r"^[a-zA-Z0-9\s,.!?;:'\"()-]+$")
CELSIUS_BELOW = 50.0

#: Plausible range of each vital sign (inclusive), after Celsius conversion.
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "temperature": (80.0, 110.0),  # °F
    "heartrate": (20.0, 250.0),
    "resprate": (4.0, 70.0),
    "o2sat": (50.0, 100.0),
    "sbp": (40.0, 300.0),
    "dbp": (20.0, 200.0),
}
RULES = (
    "missing_value",
    "chief_complaint_characters",
    "pain_not_0_to_10",
    "acuity_not_1_to_5",
    "implausible_vitals",
    "duplicate_stay",
)
#: Case fields the table cannot provide (the renderer leaves them out; race and gender come from the variants).
MISSING_FIELDS = ["age", "diagnoses"]


@dataclass(frozen=True)
class LoadResult:
    """Cases from a source table, with how many rows each rule removed."""

    cases: list[Case]
    removed: dict[str, int] = field(default_factory=dict)
    missing_fields: list[str] = field(default_factory=list)
    converted: dict[str, int] = field(default_factory=dict)
    n_rows: int = 0


def _float(text: str) -> float | None:
    try:
        x = float(text)
    except ValueError:
        return None
    return x if x == x and abs(x) != float("inf") else None


def _pain(text: str) -> float | None:
    x = _float(text)
    if x is None or not 0 <= x <= 10 or not (2 * x).is_integer():
        return None
    return x


def _read(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise BenchmarkError(f"{path}: triage table not found")
    opener = open
    if path.suffix == ".gz":
        import gzip

        opener = gzip.open  # type: ignore[assignment]
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            for col in TRIAGE_COLUMNS:
                if col not in header:
                    raise BenchmarkError(f"{path}: missing column {col!r} (found: {', '.join(header) or 'none'})")
            return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except UnicodeDecodeError as err:
        raise BenchmarkError(f"{path}: not UTF-8 text ({err.reason})") from None


def load_mimic_ed_triage(path: str | Path) -> LoadResult:
    """Load an ``ed/triage`` table into ED-triage cases (see the module docstring)."""
    path = Path(path)
    rows = _read(path)
    removed = {rule: 0 for rule in RULES}
    celsius = 0
    cases: list[Case] = []
    seen: set[str] = set()
    for row in rows:
        if any(not row.get(c) for c in REQUIRED_VALUES):
            removed["missing_value"] += 1
            continue
        complaint = row["chiefcomplaint"]
        if not COMPLAINT_RE.match(complaint):
            removed["chief_complaint_characters"] += 1
            continue
        pain = _pain(row["pain"])
        if pain is None:
            removed["pain_not_0_to_10"] += 1
            continue
        acuity = _float(row["acuity"])
        if acuity is None or acuity not in (1, 2, 3, 4, 5):
            removed["acuity_not_1_to_5"] += 1
            continue
        vitals = {k: _float(row[k]) for k in VITALS}
        temp = vitals["temperature"]
        if temp is not None and temp < CELSIUS_BELOW:
            vitals["temperature"] = round(temp * 9 / 5 + 32, 1)
            celsius += 1
        if any(v is None or not PLAUSIBLE[k][0] <= v <= PLAUSIBLE[k][1] for k, v in vitals.items()) or (
            vitals["dbp"] >= vitals["sbp"]  # type: ignore[operator]
        ):
            removed["implausible_vitals"] += 1
            log.debug("%s stay %s: implausible vitals %s", path.name, row["stay_id"], vitals)
            continue
        stay = row["stay_id"]
        if stay in seen:
            removed["duplicate_stay"] += 1
            continue
        seen.add(stay)
        fields = {"chief_complaint": complaint, **vitals, "pain": pain, "acuity": int(acuity), "subject_id": row["subject_id"]}
        cases.append(
            Case(case_id=stay, task="ed_triage", label=1 if acuity <= 2 else 0, age=None, fields=fields, source=str(path))
        )
    why = {
        "missing_value": "a missing vital, pain, acuity or chief complaint",
        "chief_complaint_characters": "chief complaint has characters outside the allowed set (e.g. '/')",
        "pain_not_0_to_10": "pain is not a number in {0, 0.5, ..., 10} (e.g. 'UA', '13')",
        "acuity_not_1_to_5": "acuity is not 1-5",
        "implausible_vitals": "a vital sign outside its plausible range (e.g. dbp 879) or dbp >= sbp",
        "duplicate_stay": "stay_id seen before",
    }
    for rule in RULES:
        log.info("%s: rule %s removed %d rows (%s)", path.name, rule, removed[rule], why[rule])
    log.info("%s: converted %d Celsius temperatures to Fahrenheit", path.name, celsius)
    n_yes = sum(c.label == 1 for c in cases)
    log.info(
        "%s: %d of %d rows usable (%d YES, %d NO); the table has no %s",
        path.name, len(cases), len(rows), n_yes, len(cases) - n_yes, ", ".join(MISSING_FIELDS),
    )
    return LoadResult(
        cases=cases,
        removed=removed,
        missing_fields=list(MISSING_FIELDS),
        converted={"temperature_celsius_to_fahrenheit": celsius},
        n_rows=len(rows),
    )
