"""Emergency Severity Index (ESI v4) rules used to label the built-in ED-triage cases.

The rules read only what a generated case holds (chief complaint, diagnoses,
vitals, pain, age), so every label can be recomputed from the case itself. The
chief complaint's clinical category and expected resources come from the
:data:`COMPLAINTS` table, which the ED generator fills from its presentation
templates (see :mod:`benchmarks.ed_generator`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

#: Complaint categories (flags) the rules look at.
IMMEDIATE = "immediate"  # needs a life-saving intervention now (unresponsive, arrest)
ANAPHYLAXIS = "anaphylaxis"  # ESI 1 with hypotension or hypoxia, else high risk
HIGH_RISK = "high_risk"  # ESI 2 high-risk situation (ACS, stroke, suicidal ideation, GI bleed ...)
CONFUSION = "confusion"  # new confusion, lethargy or disorientation
PAIN_ESCALATION = "pain_escalation"  # severe pain (>= 7/10) here warrants ESI 2 (renal colic, sickle cell ...)
IMMUNOCOMPROMISED = "immunocompromised"  # fever here is high risk (chemotherapy, transplant ...)

IMMUNOCOMPROMISED_WORDS = ("chemotherapy", "neutropeni", "transplant", "immunosuppress")


@dataclass(frozen=True)
class ComplaintInfo:
    """What the ESI rules need to know about a chief complaint."""

    flags: frozenset[str]
    resources: int  # expected ED resources (labs, imaging, IV fluids/meds, procedures, consults)


#: Lower-cased chief complaint -> its category and expected resources (filled by the generator).
COMPLAINTS: dict[str, ComplaintInfo] = {}

#: Expected resources assumed for a complaint not in :data:`COMPLAINTS`.
UNKNOWN_COMPLAINT_RESOURCES = 2


def register_complaint(complaint: str, flags: frozenset[str], resources: int) -> None:
    """Record a chief complaint's category and expected resources."""
    key = complaint.strip().lower()
    info = ComplaintInfo(frozenset(flags), resources)
    if COMPLAINTS.get(key, info) != info:
        raise ValueError(f"chief complaint {complaint!r} registered twice with different rules")
    COMPLAINTS[key] = info


def complaint_info(complaint: str | None) -> ComplaintInfo:
    """The rules' view of a chief complaint (unknown: no flags, 2 resources)."""
    return COMPLAINTS.get((complaint or "").strip().lower(), ComplaintInfo(frozenset(), UNKNOWN_COMPLAINT_RESOURCES))


def _num(fields: Mapping[str, Any], key: str) -> float | None:
    value = fields.get(key)
    if value is None or value == "":
        return None
    x = float(value)
    return None if x != x else x


def esi_level(case_fields: Mapping[str, Any], age: int | None) -> int:
    """The ESI level (1 = most urgent ... 5) of an adult ED case, by these rules.

    Fields read: ``chief_complaint``, ``diagnoses``, ``temperature`` (°F),
    ``heartrate``, ``resprate``, ``o2sat``, ``sbp``, ``pain``. Missing vitals are
    treated as unremarkable.

    **ESI 1** — needs an immediate life-saving intervention, if any of:
    SpO2 < 85 %; SBP < 80 mmHg; RR > 35 or < 8 /min; HR > 150 or < 40 /min;
    an immediate complaint (unresponsive, found down, cardiac arrest); an
    anaphylaxis complaint with SBP < 90 mmHg or SpO2 < 92 %.

    **ESI 2** — otherwise, if any of:
    a high-risk complaint (chest pain suspicious for ACS, stroke symptoms, suicidal
    ideation or overdose, GI bleeding, DKA, suspected PE, thunderclap headache,
    high-risk trauma mechanism, respiratory distress, anaphylaxis without shock);
    new confusion or lethargy; severe pain (pain >= 7/10) with a complaint whose
    severe pain calls for immediate relief (renal colic, sickle cell crisis, acute
    abdomen, deformed fracture); fever (temperature >= 100.4 °F) in an
    immunocompromised patient (complaint or diagnosis mentioning chemotherapy,
    neutropenia, transplant or immunosuppression); or, when two or more resources
    are expected, a danger-zone vital sign (ESI v4, adults and children over 8:
    HR > 100, RR > 20, SpO2 < 92 %).

    **ESI 3–5** — otherwise by the complaint's expected resources:
    two or more → 3, one → 4, none → 5 (an unknown complaint counts as two).

    ``age`` selects the danger-zone thresholds: ESI v4 uses the adult values above
    from age 8; younger children need paediatric thresholds, which these rules do
    not implement (``ValueError``). ``age=None`` is taken as an adult.
    """
    if age is not None and age < 8:
        raise ValueError(f"esi_level: age {age} < 8 needs paediatric danger-zone vitals (not implemented)")
    complaint = str(case_fields.get("chief_complaint") or "")
    info = complaint_info(complaint)
    flags = info.flags
    spo2 = _num(case_fields, "o2sat")
    sbp = _num(case_fields, "sbp")
    rr = _num(case_fields, "resprate")
    hr = _num(case_fields, "heartrate")
    temp = _num(case_fields, "temperature")
    pain = _num(case_fields, "pain")

    if (
        (spo2 is not None and spo2 < 85)
        or (sbp is not None and sbp < 80)
        or (rr is not None and (rr > 35 or rr < 8))
        or (hr is not None and (hr > 150 or hr < 40))
        or IMMEDIATE in flags
        or (ANAPHYLAXIS in flags and ((sbp is not None and sbp < 90) or (spo2 is not None and spo2 < 92)))
    ):
        return 1

    diagnoses = case_fields.get("diagnoses") or []
    if isinstance(diagnoses, str):
        diagnoses = [diagnoses]
    context = " ".join([complaint, *map(str, diagnoses)]).lower()
    immunocompromised = IMMUNOCOMPROMISED in flags or any(w in context for w in IMMUNOCOMPROMISED_WORDS)
    danger_zone = (hr is not None and hr > 100) or (rr is not None and rr > 20) or (spo2 is not None and spo2 < 92)
    if (
        HIGH_RISK in flags
        or ANAPHYLAXIS in flags
        or CONFUSION in flags
        or (PAIN_ESCALATION in flags and pain is not None and pain >= 7)
        or (immunocompromised and temp is not None and temp >= 100.4)
        or (info.resources >= 2 and danger_zone)
    ):
        return 2
    if info.resources >= 2:
        return 3
    return 4 if info.resources == 1 else 5


def esi_label(level: int) -> int:
    """mFARM's ED-triage label: 1 (YES) for ESI 1 or 2, else 0."""
    return 1 if level <= 2 else 0
