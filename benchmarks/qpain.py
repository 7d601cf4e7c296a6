"""The Q-Pain importer (Logé et al., 2021; CC BY-SA 4.0).

Reads the five CSVs of a Q-Pain folder (``data_acute_cancer.csv`` ...), columns
``Vignette, Question, Answer, Dosage, Explanation``. Each row becomes one case with
``task = "qpain"``, ``case_id = "<context>-<row>"`` (``acute_cancer-01``), label 1
for ``Yes.`` and 0 for ``No.``; rows with another answer or an empty vignette are
skipped with a logged count.

The vignette and question are stored as templates (``fields["vignette"]``,
``fields["question"]``) in the placeholder grammar of
:mod:`benchmarks.placeholders`, after these normalisations of the published text
(each is logged with how often it applied):

- whitespace runs collapsed to one space, ends stripped;
- the typo ``[subjective]`` read as ``[subject]``;
- ``[possessive]`` used as an object (``give [possessive] something``,
  ``keeps [possessive] from``) becomes ``[object]`` (else "give his something");
- ``[subject] state that`` becomes ``[subject] states that`` (singular, like the rest);
- the closed prompts (Patient B) are written with a fixed ``they``/``their``; these
  become ``[subject]``/``[possessive]`` with verb pairs so that every variant gets
  its own pronouns, as do two fixed ``their`` in Patient D vignettes that refer to
  the patient ("at their surgical site");
- after every ``[subject]`` a present-tense verb (``is``, ``has``, ``says`` ...) becomes
  a ``[singular|plural]`` pair, so BASE and Intersex (``they``) agree.

Source typos that do not involve demographics (``lateral aspects of [possessive]
and [possessive] sternum``, ``[subject] now to requires``) are kept as published.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

from .errors import BenchmarkError
from .types import Case

log = logging.getLogger(__name__)

QPAIN_FILES = (
    "data_acute_cancer.csv",
    "data_acute_non_cancer.csv",
    "data_chronic_cancer.csv",
    "data_chronic_non_cancer.csv",
    "data_post_op.csv",
)
QPAIN_COLUMNS = ("Vignette", "Question", "Answer", "Dosage", "Explanation")
ANSWERS = {"yes.": 1, "yes": 1, "no.": 0, "no": 0}

#: Exact corrections of the published templates: (name, old, new).
SOURCE_FIXES: tuple[tuple[str, str, str], ...] = (
    ("placeholder typo [subjective]", "[subjective]", "[subject]"),
    ("possessive used as object", "give [possessive] something", "give [object] something"),
    ("possessive used as object", "keeps [possessive] from", "keeps [object] from"),
    ("verb agreement 'state'", "[subject] state that", "[subject] states that"),
    ("fixed 'their' for the patient", "very tender at their surgical site", "very tender at [possessive] surgical site"),
    (
        "fixed 'they' with a later verb",
        "they do not have any new deficits and are otherwise",
        "[subject] [does|do] not have any new deficits and [is|are] otherwise",
    ),
)

#: Present-tense verbs seen after [subject]: singular -> plural.
SINGULAR_PLURAL = {
    "is": "are", "was": "were", "has": "have", "does": "do", "doesn't": "don't",
    "attempts": "attempt", "begins": "begin", "believes": "believe", "complains": "complain",
    "continues": "continue", "describes": "describe", "endorses": "endorse", "feels": "feel",
    "needs": "need", "notes": "note", "reaches": "reach", "reports": "report", "reveals": "reveal",
    "says": "say", "states": "state", "uses": "use", "wants": "want", "requires": "require",
    "denies": "deny", "tries": "try", "takes": "take", "asks": "ask", "remains": "remain",
}
PLURAL_SINGULAR = {"are": "is", "were": "was", "have": "has", "do": "does"}
_ADVERBS = r"(?:also|now|only|previously|still|then|currently|again|already|really)"
_SUBJECT_VERB = re.compile(r"\[subject\]( " + _ADVERBS + r")? ([A-Za-z']+)\b")
_FIXED_THEY = re.compile(r"\b([Tt]hey)( " + _ADVERBS + r")? ([A-Za-z']+)\b")
_FIXED_THEIR = re.compile(r"\b[Tt]heir\b")
_PATIENT = re.compile(r"\bPatient ([A-Z])\b")
_AGE = re.compile(r"\b(\d{1,3})[- ]year[- ]old\b")


def _apply_fixes(text: str, counts: dict[str, int]) -> str:
    for name, old, new in SOURCE_FIXES:
        n = text.count(old)
        if n:
            text = text.replace(old, new)
            counts[name] = counts.get(name, 0) + n
    return text


def _neutral_to_placeholders(text: str, counts: dict[str, int]) -> str:
    """A closed-prompt vignette written with a fixed they/their -> placeholders."""

    def they(m: re.Match[str]) -> str:
        adverb, verb = m.group(2) or "", m.group(3)
        counts["fixed they/their -> placeholders"] = counts.get("fixed they/their -> placeholders", 0) + 1
        if verb.lower() in PLURAL_SINGULAR:
            verb = f"[{PLURAL_SINGULAR[verb.lower()]}|{verb}]"
        return f"[subject]{adverb} {verb}"

    text = _FIXED_THEY.sub(they, text)
    n = len(_FIXED_THEIR.findall(text))
    if n:
        counts["fixed they/their -> placeholders"] = counts.get("fixed they/their -> placeholders", 0) + n
    return _FIXED_THEIR.sub("[possessive]", text)


def _verb_pairs(text: str) -> str:
    """After ``[subject]``, write present-tense verbs as ``[singular|plural]`` pairs."""

    def pair(m: re.Match[str]) -> str:
        adverb, verb = m.group(1) or "", m.group(2)
        plural = SINGULAR_PLURAL.get(verb.lower())
        return f"[subject]{adverb} [{verb}|{plural}]" if plural else m.group(0)

    return _SUBJECT_VERB.sub(pair, text)


def normalise_template(text: str, closed_prompt: bool = False, counts: dict[str, int] | None = None) -> str:
    """Turn a published Q-Pain vignette or question into a template for :func:`fill`."""
    counts = {} if counts is None else counts
    text = re.sub(r"\s+", " ", text or "").strip()
    text = _apply_fixes(text, counts)
    if closed_prompt:
        text = _neutral_to_placeholders(text, counts)
    return _verb_pairs(text)


def _read_rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            for col in QPAIN_COLUMNS[:3]:
                if col not in header:
                    raise BenchmarkError(f"{path}: missing column {col!r} (found: {', '.join(header)})")
            return [{(k or "").strip(): (v or "") for k, v in row.items()} for row in reader]
    except UnicodeDecodeError as err:
        raise BenchmarkError(f"{path}: not UTF-8 text ({err.reason})") from None


def load_qpain(folder: str | Path) -> list[Case]:
    """Load every Q-Pain vignette in ``folder`` as a case (see the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchmarkError(f"{folder}: Q-Pain folder not found")
    present = [f for f in QPAIN_FILES if (folder / f).is_file()]
    extra = sorted(p.name for p in folder.glob("data_*.csv") if p.name not in QPAIN_FILES)
    files = present + extra
    if not files:
        raise BenchmarkError(f"{folder}: no Q-Pain files (expected {', '.join(QPAIN_FILES)})")
    missing = [f for f in QPAIN_FILES if f not in present]
    if missing:
        log.warning("Q-Pain folder %s lacks %s", folder, ", ".join(missing))
    cases: list[Case] = []
    skipped: dict[str, int] = {}
    fixes: dict[str, int] = {}
    for name in files:
        context = name[len("data_") : -len(".csv")]
        for i, row in enumerate(_read_rows(folder / name), 1):
            answer = row.get("Answer", "").strip().lower()
            vignette = row.get("Vignette", "").strip()
            if not vignette:
                skipped["empty vignette"] = skipped.get("empty vignette", 0) + 1
                log.info("%s row %d: skipped (empty vignette)", name, i + 1)
                continue
            if answer not in ANSWERS:
                skipped["answer not Yes./No."] = skipped.get("answer not Yes./No.", 0) + 1
                log.info("%s row %d: skipped (answer %r is not Yes. or No.)", name, i + 1, row.get("Answer"))
                continue
            m = _PATIENT.search(vignette)
            patient = f"Patient {m.group(1)}" if m else "The patient"
            closed = patient == "Patient B"
            age = _AGE.search(vignette)
            fields = {
                "vignette": normalise_template(vignette, closed, fixes),
                "question": normalise_template(row.get("Question", ""), closed, fixes),
                "patient": patient,
                "context": context,
                "dosage": row.get("Dosage", "").strip(),
                "explanation": re.sub(r"\s+", " ", row.get("Explanation", "")).strip(),
            }
            cases.append(
                Case(
                    case_id=f"{context}-{i:02d}",
                    task="qpain",
                    label=ANSWERS[answer],
                    age=int(age.group(1)) if age else None,
                    fields=fields,
                    source=f"qpain:{name}",
                )
            )
    for what, n in sorted(fixes.items()):
        log.info("Q-Pain templates: %s applied %d times", what, n)
    for why, n in sorted(skipped.items()):
        log.warning("Q-Pain: skipped %d rows (%s)", n, why)
    n_yes = sum(c.label == 1 for c in cases)
    log.info("Q-Pain: %d cases from %d files (%d Yes, %d No)", len(cases), len(files), n_yes, len(cases) - n_yes)
    return cases
