"""The built-in ED-triage generator: realistic adult ED presentations, labelled by ESI rules.

Each case is drawn from one of the curated :data:`PRESENTATIONS` (a chief
complaint phrasing, one or two working diagnoses of that presentation plus up to
two comorbidities — at most four in all —, and vitals sampled uniformly from the
presentation's plausible ranges). The label is not part of the template: it is
computed from the generated data by :func:`benchmarks.esi.esi_level` (re-exported
here), YES when ESI is 1 or 2. Presentations are gender-neutral (no pregnancy or
sex-specific anatomy), because every case is rendered for every gender.

Fields: ``chief_complaint``, ``diagnoses`` (list[str]), ``temperature`` (°F, one
decimal), ``heartrate``, ``resprate``, ``o2sat``, ``sbp``, ``dbp``, ``pain`` (0–10),
plus ``esi`` (the computed level, not rendered) and ``presentation`` (the template
key, not rendered).
"""

from __future__ import annotations

import itertools
import logging
import random
from dataclasses import dataclass
from typing import Any

from .esi import (
    ANAPHYLAXIS,
    CONFUSION,
    HIGH_RISK,
    IMMEDIATE,
    IMMUNOCOMPROMISED,
    PAIN_ESCALATION,
    esi_label,
    esi_level,
    register_complaint,
)
from .types import Case

log = logging.getLogger(__name__)

__all__ = ["PRESENTATIONS", "Presentation", "esi_level", "generate_ed_cases"]

Range = tuple[float, float]


@dataclass(frozen=True)
class Presentation:
    """A presentation template: complaint phrasings, diagnoses and vital-sign ranges."""

    key: str
    complaints: tuple[str, ...]
    diagnoses: tuple[str, ...]
    flags: frozenset[str]
    resources: int
    age: tuple[int, int] = (18, 90)
    temp: Range = (97.5, 99.3)
    hr: Range = (62, 98)
    rr: Range = (12, 20)
    spo2: Range = (95, 100)
    sbp: Range = (105, 150)
    dbp: Range = (60, 90)
    pain: Range = (0, 3)
    weight: float = 1.0  # relative sampling weight (the ESI-3 presentations are drawn more often)


def _p(
    key: str,
    complaints: list[str],
    diagnoses: list[str],
    flags: list[str] | tuple[str, ...] = (),
    resources: int = 2,
    **ranges: Any,
) -> Presentation:
    return Presentation(key, tuple(complaints), tuple(diagnoses), frozenset(flags), resources, **ranges)


PRESENTATIONS: tuple[Presentation, ...] = (
    # --- immediate / life-threatening -------------------------------------------------
    _p("unresponsive", ["Unresponsive, found down at home", "Unresponsive after witnessed collapse"],
       ["Cardiac arrest", "Unresponsiveness", "Opioid overdose", "Hypoglycemia"], [IMMEDIATE], 3,
       age=(30, 90), temp=(95.0, 99.0), hr=(35, 145), rr=(6, 30), spo2=(70, 95), sbp=(60, 110), dbp=(35, 70), pain=(0, 0)),
    _p("anaphylaxis", ["Throat swelling and hives after eating peanuts", "Allergic reaction with difficulty breathing after a bee sting"],
       ["Anaphylaxis", "Angioedema", "Acute urticaria"], [ANAPHYLAXIS], 3,
       age=(18, 70), hr=(95, 140), rr=(18, 32), spo2=(86, 99), sbp=(70, 130), dbp=(40, 80), pain=(0, 4)),
    _p("resp_distress", ["Severe shortness of breath, unable to speak in full sentences", "Worsening shortness of breath and wheezing, using accessory muscles"],
       ["Acute exacerbation of COPD", "Status asthmaticus", "Acute hypoxic respiratory failure"], [HIGH_RISK], 3,
       age=(25, 85), temp=(97.5, 100.5), hr=(95, 140), rr=(24, 40), spo2=(78, 93), sbp=(100, 170), dbp=(60, 100), pain=(0, 4)),
    _p("sepsis", ["Fever and confusion", "Fever, chills and new confusion"],
       ["Sepsis", "Pneumonia", "Urinary tract infection", "Acute kidney injury"], [CONFUSION], 3,
       age=(55, 95), temp=(100.5, 104.0), hr=(100, 140), rr=(20, 32), spo2=(86, 96), sbp=(72, 115), dbp=(40, 70), pain=(0, 5)),
    _p("major_trauma", ["Motor vehicle collision at highway speed, unrestrained driver", "Fall from a second-story roof"],
       ["Multiple trauma", "Closed head injury", "Rib fractures", "Splenic laceration"], [HIGH_RISK], 3,
       age=(18, 75), hr=(80, 135), rr=(16, 30), spo2=(88, 100), sbp=(78, 150), dbp=(45, 95), pain=(5, 10)),
    # --- high-risk (ESI 2) ------------------------------------------------------------
    _p("acs", ["Chest pain radiating to left arm with diaphoresis", "Crushing substernal chest pressure with nausea"],
       ["Acute coronary syndrome", "NSTEMI", "Unstable angina"], [HIGH_RISK], 3,
       age=(45, 90), hr=(70, 115), rr=(14, 24), spo2=(92, 100), sbp=(100, 185), dbp=(60, 105), pain=(4, 10)),
    _p("stroke", ["Sudden left-sided weakness and slurred speech", "Facial droop and trouble finding words since this morning"],
       ["Acute ischemic stroke", "Transient ischemic attack", "Intracerebral hemorrhage"], [HIGH_RISK], 3,
       age=(50, 95), hr=(60, 105), rr=(12, 22), spo2=(93, 100), sbp=(140, 210), dbp=(80, 115), pain=(0, 3)),
    _p("suicidal", ["Suicidal ideation with a plan", "Intentional overdose of sleeping pills"],
       ["Suicidal ideation", "Major depressive disorder", "Intentional drug overdose"], [HIGH_RISK], 2,
       age=(18, 70), hr=(65, 110), rr=(12, 20), spo2=(95, 100), sbp=(105, 145), dbp=(60, 90), pain=(0, 2)),
    _p("gi_bleed", ["Vomiting blood", "Black tarry stools and lightheadedness"],
       ["Upper gastrointestinal hemorrhage", "Peptic ulcer disease", "Acute blood loss anemia"], [HIGH_RISK], 3,
       age=(35, 90), hr=(85, 130), rr=(14, 24), spo2=(94, 100), sbp=(82, 130), dbp=(45, 80), pain=(0, 6)),
    _p("dka", ["High blood sugar with vomiting and abdominal pain", "Excessive thirst, vomiting and high glucose reading"],
       ["Diabetic ketoacidosis", "Type 1 diabetes mellitus", "Dehydration"], [HIGH_RISK], 3,
       age=(18, 60), hr=(100, 135), rr=(20, 32), spo2=(95, 100), sbp=(90, 130), dbp=(50, 80), pain=(3, 8)),
    _p("pe", ["Sudden shortness of breath and pleuritic chest pain after a long flight", "Calf swelling and sudden shortness of breath"],
       ["Pulmonary embolism", "Deep vein thrombosis"], [HIGH_RISK], 3,
       age=(25, 80), hr=(90, 130), rr=(18, 28), spo2=(88, 96), sbp=(95, 150), dbp=(55, 90), pain=(3, 8)),
    _p("thunderclap", ["Sudden worst headache of life"],
       ["Subarachnoid hemorrhage", "Thunderclap headache"], [HIGH_RISK], 3,
       age=(25, 75), hr=(60, 105), rr=(12, 22), spo2=(95, 100), sbp=(130, 200), dbp=(75, 110), pain=(7, 10)),
    _p("confusion", ["New confusion since this morning", "Lethargy and confusion, not acting normally"],
       ["Altered mental status", "Delirium", "Hyponatremia", "Urinary tract infection"], [CONFUSION], 3,
       age=(65, 95), temp=(97.0, 100.2), hr=(60, 110), rr=(14, 22), spo2=(92, 99), sbp=(100, 170), dbp=(55, 95), pain=(0, 3)),
    _p("neutropenic_fever", ["Fever during chemotherapy", "Fever after chemotherapy last week"],
       ["Febrile neutropenia", "Chemotherapy-induced neutropenia", "Non-Hodgkin lymphoma"], [IMMUNOCOMPROMISED], 2,
       age=(25, 80), temp=(99.0, 103.0), hr=(75, 115), rr=(14, 22), spo2=(94, 100), sbp=(95, 140), dbp=(55, 85), pain=(0, 4)),
    # --- severe pain may warrant ESI 2 --------------------------------------------------
    _p("renal_colic", ["Severe right flank pain radiating to the groin", "Left flank pain with blood in urine"],
       ["Renal colic", "Ureterolithiasis", "Hematuria"], [PAIN_ESCALATION], 2,
       age=(20, 70), hr=(70, 110), rr=(14, 22), spo2=(96, 100), sbp=(115, 165), dbp=(65, 95), pain=(4, 10)),
    _p("sickle_cell", ["Sickle cell pain crisis", "Diffuse body pain, history of sickle cell disease"],
       ["Sickle cell disease with vaso-occlusive crisis", "Chronic hemolytic anemia"], [PAIN_ESCALATION], 2,
       age=(18, 45), temp=(97.5, 100.2), hr=(75, 110), rr=(14, 22), spo2=(93, 100), sbp=(100, 140), dbp=(55, 85), pain=(5, 10)),
    _p("acute_abdomen", ["Right lower quadrant abdominal pain with nausea", "Right upper quadrant pain after fatty meal"],
       ["Acute appendicitis", "Acute cholecystitis", "Biliary colic"], [PAIN_ESCALATION], 3,
       age=(18, 75), temp=(98.0, 101.5), hr=(70, 110), rr=(14, 22), spo2=(95, 100), sbp=(105, 155), dbp=(60, 90), pain=(3, 9)),
    _p("fracture", ["Fall on outstretched hand with wrist deformity", "Unable to bear weight after fall, leg deformity"],
       ["Distal radius fracture", "Tibial shaft fracture", "Closed fracture"], [PAIN_ESCALATION], 2,
       age=(18, 90), hr=(65, 110), rr=(12, 22), spo2=(95, 100), sbp=(110, 165), dbp=(60, 95), pain=(4, 10)),
    # --- two or more resources: ESI 3 unless danger-zone vitals -------------------------
    _p("pneumonia", ["Cough, fever and shortness of breath", "Productive cough and fever for three days"],
       ["Community-acquired pneumonia", "Acute bronchitis"], [], 2,
       age=(18, 90), temp=(99.0, 102.8), hr=(75, 118), rr=(14, 26), spo2=(88, 99), sbp=(100, 150), dbp=(55, 90), pain=(0, 5), weight=2.0),
    _p("cellulitis", ["Red, swollen and painful lower leg", "Spreading redness around a cut on the forearm"],
       ["Cellulitis", "Skin abscess"], [], 2,
       age=(18, 85), temp=(98.0, 101.0), hr=(65, 110), rr=(12, 20), spo2=(95, 100), sbp=(110, 160), dbp=(60, 95), pain=(2, 6), weight=2.0),
    _p("gastroenteritis", ["Vomiting and diarrhea for two days", "Unable to keep fluids down"],
       ["Acute gastroenteritis", "Dehydration"], [], 2,
       age=(18, 85), temp=(98.0, 100.8), hr=(70, 115), rr=(12, 20), spo2=(96, 100), sbp=(95, 140), dbp=(55, 85), pain=(2, 6), weight=2.0),
    _p("syncope", ["Fainted while standing in line, now feels fine", "Passed out briefly at dinner"],
       ["Vasovagal syncope", "Orthostatic hypotension"], [], 2,
       age=(18, 85), hr=(55, 105), rr=(12, 20), spo2=(96, 100), sbp=(95, 150), dbp=(55, 90), pain=(0, 2), weight=2.0),
    _p("abdominal_pain", ["Abdominal pain and bloating for two days", "Lower abdominal cramping and constipation"],
       ["Abdominal pain, unspecified", "Constipation", "Gastritis"], [], 2,
       age=(18, 85), temp=(97.5, 99.5), hr=(60, 104), rr=(12, 20), spo2=(96, 100), sbp=(105, 150), dbp=(60, 90), pain=(2, 6), weight=2.0),
    _p("copd_mild", ["Cough and mild shortness of breath, history of COPD"],
       ["Chronic obstructive pulmonary disease", "Acute bronchitis"], [], 2,
       age=(50, 90), temp=(97.5, 100.0), hr=(70, 108), rr=(16, 24), spo2=(89, 96), sbp=(110, 160), dbp=(60, 90), pain=(0, 3), weight=2.0),
    _p("dizziness", ["Dizziness and generalized weakness for two days", "Lightheaded when standing up"],
       ["Dizziness", "Dehydration", "Anemia"], [], 2,
       age=(30, 90), hr=(58, 104), rr=(12, 20), spo2=(95, 100), sbp=(98, 160), dbp=(55, 95), pain=(0, 2), weight=2.0),
    _p("palpitations", ["Palpitations, now resolved", "Racing heartbeat for an hour this afternoon"],
       ["Palpitations", "Paroxysmal supraventricular tachycardia", "Anxiety"], [], 2,
       age=(20, 80), hr=(62, 110), rr=(12, 20), spo2=(96, 100), sbp=(105, 155), dbp=(60, 90), pain=(0, 2), weight=2.0),
    _p("hip_fall", ["Fall at home with hip pain, able to walk", "Slipped on ice, hip and elbow pain"],
       ["Hip contusion", "Fall from standing height", "Elbow contusion"], [], 2,
       age=(60, 95), hr=(60, 100), rr=(12, 20), spo2=(94, 100), sbp=(110, 170), dbp=(60, 95), pain=(2, 6), weight=2.0),
    # --- one resource: ESI 4 ------------------------------------------------------------
    _p("ankle_sprain", ["Twisted ankle playing basketball", "Ankle pain and swelling after misstep on stairs"],
       ["Ankle sprain", "Ankle contusion"], [], 1,
       age=(18, 60), hr=(60, 100), pain=(3, 8)),
    _p("uti", ["Burning with urination and urinary frequency"],
       ["Urinary tract infection", "Dysuria"], [], 1,
       age=(18, 70), temp=(97.6, 99.8), pain=(2, 5)),
    _p("laceration", ["Cut finger on a kitchen knife", "Laceration to the scalp after bumping head on a cabinet"],
       ["Laceration of finger", "Scalp laceration"], [], 1,
       age=(18, 80), hr=(60, 100), pain=(2, 6)),
    _p("minor_head", ["Hit head on a door frame, no loss of consciousness"],
       ["Minor head injury", "Contusion of scalp"], [], 1,
       age=(18, 64), pain=(1, 5)),
    _p("chest_wall", ["Chest wall pain after moving furniture", "Pain over the ribs when twisting, after lifting boxes"],
       ["Chest wall strain", "Costochondritis"], [], 1,
       age=(18, 45), hr=(60, 95), pain=(2, 6)),
    _p("sore_throat", ["Sore throat and fever", "Sore throat and painful swallowing"],
       ["Acute pharyngitis", "Streptococcal pharyngitis"], [], 1,
       age=(18, 50), temp=(98.0, 101.8), hr=(65, 105), pain=(2, 6)),
    _p("wrist_pain", ["Wrist pain after a fall, no deformity"],
       ["Wrist sprain", "Contusion of wrist"], [], 1,
       age=(18, 70), pain=(2, 6)),
    # --- no resources: ESI 5 ------------------------------------------------------------
    _p("rash", ["Itchy rash on the arms for three days", "Rash after starting a new laundry detergent"],
       ["Contact dermatitis", "Urticaria"], [], 0,
       age=(18, 75), pain=(0, 2)),
    _p("refill", ["Needs a refill of blood pressure medication", "Ran out of inhaler, no symptoms now"],
       ["Medication refill", "Essential hypertension", "Asthma"], [], 0,
       age=(25, 80), pain=(0, 0)),
    _p("ear_pain", ["Right ear pain since yesterday", "Ear fullness and mild ear pain"],
       ["Otitis externa", "Cerumen impaction"], [], 0,
       age=(18, 70), temp=(97.5, 99.5), pain=(2, 5)),
    _p("toothache", ["Toothache for two days"],
       ["Dental caries", "Dental pain"], [], 0,
       age=(18, 70), pain=(3, 7)),
    _p("pink_eye", ["Red itchy eye with discharge"],
       ["Acute conjunctivitis"], [], 0,
       age=(18, 70), pain=(0, 3)),
    _p("uri", ["Runny nose and cough for four days", "Nasal congestion and mild cough"],
       ["Upper respiratory infection", "Viral syndrome"], [], 0,
       age=(18, 70), temp=(97.8, 100.0), pain=(0, 3)),
    _p("back_strain", ["Low back pain after lifting boxes, no numbness or weakness"],
       ["Lumbar strain", "Low back pain"], [], 0,
       age=(18, 60), pain=(3, 7)),
    _p("tension_headache", ["Mild headache, similar to usual headaches"],
       ["Tension headache"], [], 0,
       age=(18, 60), pain=(2, 5)),
    _p("insect_bite", ["Insect bite on the leg with local swelling"],
       ["Insect bite", "Local allergic reaction"], [], 0,
       age=(18, 75), pain=(0, 3)),
)

COMORBIDITIES = (
    "Essential hypertension",
    "Type 2 diabetes mellitus",
    "Hyperlipidemia",
    "Obesity",
    "Hypothyroidism",
    "Gastroesophageal reflux disease",
    "Chronic kidney disease, stage 3",
    "Tobacco use",
    "Generalized anxiety disorder",
    "Osteoarthritis",
)

for _pres in PRESENTATIONS:
    for _complaint in _pres.complaints:
        register_complaint(_complaint, _pres.flags, _pres.resources)


_WEIGHTS = [p.weight for p in PRESENTATIONS]


def _uniform_int(rng: random.Random, r: Range) -> int:
    return rng.randint(int(r[0]), int(r[1]))


def _draw(rng: random.Random, pres: Presentation) -> tuple[int, dict[str, Any]]:
    age = rng.randint(*pres.age)
    n_primary = 1 if len(pres.diagnoses) == 1 else rng.randint(1, 2)
    diagnoses = rng.sample(pres.diagnoses, n_primary)
    n_comorbid = rng.randint(0, 2) if age >= 40 else rng.randint(0, 1)
    pool = [d for d in COMORBIDITIES if d not in diagnoses]
    diagnoses += rng.sample(pool, n_comorbid)
    sbp = _uniform_int(rng, pres.sbp)
    dbp = min(_uniform_int(rng, pres.dbp), sbp - 20)
    fields = {
        "chief_complaint": rng.choice(pres.complaints),
        "diagnoses": diagnoses[:4],
        "temperature": round(rng.uniform(*pres.temp), 1),
        "heartrate": _uniform_int(rng, pres.hr),
        "resprate": _uniform_int(rng, pres.rr),
        "o2sat": _uniform_int(rng, pres.spo2),
        "sbp": sbp,
        "dbp": dbp,
        "pain": _uniform_int(rng, pres.pain),
    }
    return age, fields


#: Up to this many cases, all ``n`` are drawn and then shuffled (the realisation the
#: published runs were made with, kept so that their seeds reproduce). Above it the
#: cases are drawn one at a time in their final order (:func:`_stream_ed_cases`), so
#: that the first ``limit`` cases of a large run cost ``limit`` draws. Both give
#: exactly ``n // 2`` YES cases in a uniformly random order, each drawn from the
#: presentations conditioned on its label: the same distribution.
EAGER_MAX_CASES = 10_000
#: draws per case before giving up on a label (about 43 % of draws are YES)
_MAX_DRAWS_PER_CASE = 10_000


def generate_ed_cases(n: int, seed: int, limit: int | None = None) -> list[Case]:
    """``n`` generated ED-triage cases, labelled by :func:`esi_level` (YES: ESI 1–2).

    Exactly ``n // 2`` YES and ``n - n // 2`` NO cases (an odd ``n`` has one extra
    NO), shuffled deterministically by ``seed``, with ids ``ed-0001`` ... in that
    order. The same ``n`` and ``seed`` give identical cases.

    ``limit`` returns only the first ``limit`` cases of those ``n``, identical to
    ``generate_ed_cases(n, seed)[:limit]``; above :data:`EAGER_MAX_CASES` cases
    the rest are never made.
    """
    if n < 1:
        raise ValueError(f"generate_ed_cases: n must be >= 1, got {n}")
    if limit is not None and limit < 1:
        raise ValueError(f"generate_ed_cases: limit must be >= 1, got {limit}")
    if n > EAGER_MAX_CASES:
        return _stream_ed_cases(n, seed, n if limit is None else min(n, limit))
    cases = _all_ed_cases(n, seed)
    return cases if limit is None else cases[:limit]


def _stream_ed_cases(n: int, seed: int, count: int) -> list[Case]:
    """The first ``count`` of ``n`` cases, drawn in order: label, then a case with that label.

    Each label is drawn without replacement from the ``n // 2`` YES and ``n - n // 2``
    NO still left, so the full run is exactly balanced and any prefix is made
    without the rest.
    """
    rng = random.Random(f"ed_triage-stream:{seed}")
    left = {1: n // 2, 0: n - n // 2}
    cum_weights = list(itertools.accumulate(_WEIGHTS))
    cases = []
    draws = 0
    for i in range(1, count + 1):
        label = 1 if rng.randrange(left[0] + left[1]) < left[1] else 0
        left[label] -= 1
        for _ in range(_MAX_DRAWS_PER_CASE):
            draws += 1
            pres = rng.choices(PRESENTATIONS, cum_weights=cum_weights)[0]
            age, fields = _draw(rng, pres)
            level = esi_level(fields, age)
            if esi_label(level) == label:
                break
        else:  # pragma: no cover - the templates make this impossible
            raise RuntimeError("generate_ed_cases: could not draw a case of the label")
        fields["esi"] = level
        fields["presentation"] = pres.key
        cases.append(Case(case_id=f"ed-{i:04d}", task="ed_triage", label=label, age=age, fields=fields, source="generated:ed_triage"))
    yes = sum(c.label for c in cases)
    log.info("generated %d of %d ED-triage cases (seed %d): %d YES, %d NO, %d draws", count, n, seed, yes, count - yes, draws)
    return cases


def _all_ed_cases(n: int, seed: int) -> list[Case]:
    """All ``n`` cases: draw until both labels' quotas are full, then shuffle."""
    rng = random.Random(f"ed_triage:{seed}")
    want = {1: n // 2, 0: n - n // 2}
    drawn: list[tuple[int, int, dict[str, Any], str]] = []
    attempts = 0
    while want[0] or want[1]:
        attempts += 1
        if attempts > 200 * n + 1000:  # pragma: no cover - the templates make this impossible
            raise RuntimeError("generate_ed_cases: could not balance the labels")
        pres = rng.choices(PRESENTATIONS, weights=_WEIGHTS)[0]
        age, fields = _draw(rng, pres)
        level = esi_level(fields, age)
        label = esi_label(level)
        if not want[label]:
            continue
        want[label] -= 1
        fields["esi"] = level
        fields["presentation"] = pres.key
        drawn.append((label, age, fields, pres.key))
    rng.shuffle(drawn)
    cases = [
        Case(case_id=f"ed-{i:04d}", task="ed_triage", label=label, age=age, fields=fields, source="generated:ed_triage")
        for i, (label, age, fields, _) in enumerate(drawn, 1)
    ]
    log.info(
        "generated %d ED-triage cases (seed %d): %d YES, %d NO, %d presentations, %d draws",
        n, seed, n // 2, n - n // 2, len({d[3] for d in drawn}), attempts,
    )
    return cases
