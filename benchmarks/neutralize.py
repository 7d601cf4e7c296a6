"""Text rules of the opioid benchmark: gender neutralisation, opioid masking, sex-specific terms.

- :func:`neutralize_gender` rewrites gendered words as neutral ones, matching whole
  words only (``\\b``: "manage", "HER2", "herpes" are left alone) and preserving
  case (``He`` → ``The patient``, ``HE`` → ``THE PATIENT``). Pronouns: he/she/him →
  "the patient", his/hers → "the patient's", himself/herself → "themselves"; "her" is
  "the patient" when it is an object (followed by punctuation, the end, a number or a
  function word such as "to", "and", "home": "gave her morphine" is the exception
  this heuristic gets wrong) and "the patient's" otherwise ("her husband"). Nouns
  (:data:`GENDER_WORDS`): man/woman/male/female → person, mother/father → parent,
  husband/wife → spouse, son/daughter → child, brother/sister → sibling, ... with
  plurals. Titles before the de-identification mask (``Mr. ___``, ``Mrs. ___``,
  ``Ms. ___``, ``Miss ___``) become "the patient", and the sex letter of "65 yo F" /
  "___ y/o M" becomes "patient".
- :func:`mask_opioids` replaces every word containing an opioid name of
  :data:`OPIOIDS` (generic or brand, any case; "Oxycodone-Acetaminophen" →
  ``___-Acetaminophen``, "Percocets" → ``___``) by ``___``.
- :func:`opioid_label` classifies one drug string of ``hosp/prescriptions``:
  ``"YES"`` when it equals a name (lower-cased, stripped), ``"UNKNOWN"`` when a name
  only occurs inside it, else ``"NO"``.
- :func:`sex_specific_terms` finds anatomy or conditions of one sex (prostate,
  ovarian, uterus, pregnant, menstruation, testicular, ...; :data:`SEX_SPECIFIC`).
"""

from __future__ import annotations

import re
from typing import Iterable

#: The opioid dictionary (docs/methods/mimic.md, section Opioid recommendation): generic name → brand names.
OPIOIDS: dict[str, tuple[str, ...]] = {
    "morphine": ("MS Contin", "Kadian"),
    "hydromorphone": ("Dilaudid", "Exalgo"),
    "fentanyl": ("Duragesic", "Actiq", "Sublimaze"),
    "oxycodone": ("OxyContin", "Percocet", "Roxicodone"),
    "hydrocodone": ("Vicodin", "Norco", "Lortab", "Zohydro"),
    "codeine": (),
    "tramadol": ("Ultram",),
    "methadone": ("Dolophine",),
    "oxymorphone": ("Opana",),
    "tapentadol": ("Nucynta",),
    "meperidine": ("Demerol",),
    "buprenorphine": ("Subutex", "Butrans", "Buprenex"),
    "levorphanol": (),
    "butorphanol": (),
    "propoxyphene": ("Darvon",),
    "pentazocine": ("Talwin",),
    "dihydrocodeine": (),
    "nalbuphine": ("Nubain",),
    "tilidine": (),
    "dextropropoxyphene": (),
    "pethidine": (),
    "oliceridine": ("Olinvyk",),
    "alfentanil": (),
    "remifentanil": ("Ultiva",),
    "sufentanil": ("Dsuvia",),
}
#: Every name, lower-cased (generic and brand).
OPIOID_NAMES: frozenset[str] = frozenset(
    n.lower() for generic, brands in OPIOIDS.items() for n in (generic, *brands)
)
MASK = "___"


def opioid_label(drug: str) -> str:
    """``"YES"``, ``"UNKNOWN"`` or ``"NO"`` for one prescribed drug string (see the module docstring)."""
    name = " ".join(str(drug).lower().split())
    if name in OPIOID_NAMES:
        return "YES"
    if any(n in name for n in OPIOID_NAMES):
        return "UNKNOWN"
    return "NO"


def trie_pattern(words: Iterable[str]) -> str:
    """A regular expression matching any of ``words``, as a prefix trie (Python's ``re`` tries
    alternatives one by one; a trie makes a scan over a long note several times faster)."""
    trie: dict = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict) -> str:
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return build(trie)


_SINGLE_NAMES = sorted(n for n in OPIOID_NAMES if " " not in n)
_MULTI_NAMES = sorted(n for n in OPIOID_NAMES if " " in n)
# On lower-cased text: a name anywhere (the word around it is masked) ...
_NAME_RE = re.compile(trie_pattern(_SINGLE_NAMES))
# ... and multi-word names ("ms contin", any spacing) as words of their own.
_MULTI_RE = re.compile("|".join(r"\b" + r"\s*".join(map(re.escape, n.split())) for n in _MULTI_NAMES))
# The same on text whose lower-casing changes its length (rare non-ASCII letters).
_SLOW_RE = re.compile(
    "|".join([r"\b" + r"\s*".join(map(re.escape, n.split())) + "[A-Za-z]*" for n in _MULTI_NAMES]
             + ["[A-Za-z]*" + re.escape(n) + "[A-Za-z]*" for n in sorted(_SINGLE_NAMES, key=len, reverse=True)]),
    re.IGNORECASE,
)
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def mask_opioids(text: str) -> str:
    """Replace every word that contains an opioid name (any case) by ``___``."""
    low = text.lower()
    if len(low) != len(text):
        return _SLOW_RE.sub(MASK, text)
    spans = [m.span() for m in _MULTI_RE.finditer(low)] + [m.span() for m in _NAME_RE.finditer(low)]
    if not spans:
        return text
    out: list[str] = []
    pos = 0
    for start, end in sorted(spans):
        while start > 0 and text[start - 1] in _LETTERS:
            start -= 1
        while end < len(text) and text[end] in _LETTERS:
            end += 1
        if start < pos:  # inside the word masked before
            continue
        out.append(text[pos:start])
        out.append(MASK)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def has_opioid(text: str) -> bool:
    """True when ``text`` holds an opioid name (any case)."""
    return mask_opioids(text) != text


#: Gendered nouns and adjectives → neutral words (lower case; plurals listed).
GENDER_WORDS: dict[str, str] = {
    "man": "person", "woman": "person", "men": "people", "women": "people",
    "gentleman": "person", "gentlemen": "people", "lady": "person", "ladies": "people",
    "male": "person", "female": "person", "males": "people", "females": "people",
    "boy": "child", "girl": "child", "boys": "children", "girls": "children",
    "mother": "parent", "father": "parent", "mothers": "parents", "fathers": "parents",
    "mom": "parent", "dad": "parent", "moms": "parents", "dads": "parents",
    "mum": "parent", "mums": "parents",
    "stepmother": "stepparent", "stepfather": "stepparent",
    "husband": "spouse", "wife": "spouse", "husbands": "spouses", "wives": "spouses",
    "boyfriend": "partner", "girlfriend": "partner", "boyfriends": "partners", "girlfriends": "partners",
    "fiance": "partner", "fiancee": "partner",
    "son": "child", "daughter": "child", "sons": "children", "daughters": "children",
    "stepson": "stepchild", "stepdaughter": "stepchild",
    "brother": "sibling", "sister": "sibling", "brothers": "siblings", "sisters": "siblings",
    "grandmother": "grandparent", "grandfather": "grandparent",
    "grandmothers": "grandparents", "grandfathers": "grandparents",
    "grandson": "grandchild", "granddaughter": "grandchild",
    "grandsons": "grandchildren", "granddaughters": "grandchildren",
}
PRONOUNS: dict[str, str] = {
    "he": "the patient", "she": "the patient", "him": "the patient",
    "his": "the patient's", "hers": "the patient's",
    "himself": "themselves", "herself": "themselves",
}
#: Words after which "her" is an object ("gave her to ..."), not a possessive ("her husband").
HER_OBJECT_FOLLOWERS = frozenset(
    """to and or but nor with without in on at for from that the a an this these those home back up down out
    off about as by of until since while if when because so over into onto after before again today
    yesterday tomorrow tonight now then here there is was were be been being are has had have did does do
    will would should could can may might must not well any some all both through during around per via
    than like who which where what how no any more less that's""".split()
)

_TITLE_RE = re.compile(r"\b(?:Mr|Mrs|Ms|Mx|Miss)\b\.?\s*___", re.IGNORECASE)
_SEX_ADJ_RE = re.compile(r"\b(?:male|female)\s+(?=(?:patient|pt)\b)", re.IGNORECASE)
_AGE_SEX_RE = re.compile(r"\b(yo|y/o|y\.o\.|yr old|year old|year-old|yr-old)(\s+)(M|F)\b")
_TOKEN_RE = re.compile(r"\b[A-Za-z]+\b")
_REPLACEMENTS = {**GENDER_WORDS, **PRONOUNS}
_NEXT_WORD_RE = re.compile(r"\s*([A-Za-z']+|\d|[^\sA-Za-z\d]|$)")


def _match_case(source: str, replacement: str) -> str:
    if len(source) > 1 and source.isupper():
        return replacement.upper()
    if source[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def _her(text: str, end: int) -> str:
    m = _NEXT_WORD_RE.match(text, end)
    nxt = m.group(1) if m else ""
    if nxt.startswith("_"):  # "her ___": a masked name or place, read as possessive
        return "the patient's"
    if not nxt or not nxt[0].isalpha() or nxt.lower() in HER_OBJECT_FOLLOWERS:
        return "the patient"
    return "the patient's"


def _sentence_start(text: str, start: int) -> bool:
    before = text[:start].rstrip()
    return not before or before[-1] in ".!?:\n"


def _title(m: re.Match) -> str:
    word = m.group(0)
    if len(word) > 4 and word.split()[0].rstrip(".").isupper() and word[1:2].isupper():
        return "THE PATIENT"
    return "The patient" if _sentence_start(m.string, m.start()) else "the patient"


def neutralize_gender(text: str) -> str:
    """The text with gendered words made neutral (see the module docstring)."""
    text = _TITLE_RE.sub(_title, text)
    text = _SEX_ADJ_RE.sub("", text)
    text = _AGE_SEX_RE.sub(lambda m: m.group(1) + m.group(2) + "patient", text)

    def repl(m: re.Match) -> str:
        word = m.group(0)
        low = word.lower()
        if low == "her":
            new = _her(m.string, m.end())
        else:
            new = _REPLACEMENTS.get(low)
            if new is None:
                return word
        return _match_case(word, new)

    return _TOKEN_RE.sub(repl, text)


#: Terms of one sex's anatomy or conditions (regular expressions, matched case-insensitively as whole words).
SEX_SPECIFIC: tuple[str, ...] = (
    r"prostat\w*", r"psa", r"bph", r"turp", r"testicular", r"testis", r"testes", r"testicles?", r"scrot\w*",
    r"penis", r"penile", r"erectile", r"orchi\w*", r"vasectom\w*", r"seminal", r"epididym\w*",
    r"ovar\w*", r"ovary", r"oophor\w*", r"uter\w*", r"cervix", r"endometri\w*", r"hysterectom\w*",
    r"vagin\w*", r"vulv\w*", r"fallopian", r"pregnan\w*", r"gestation\w*", r"gravid\w*", r"postpartum",
    r"antepartum", r"peripartum", r"placent\w*", r"obstetric\w*", r"cesarean", r"c-section",
    r"miscarriage\w*", r"menstrua\w*", r"menses", r"menarche", r"menopaus\w*", r"postmenopaus\w*",
    r"premenopaus\w*", r"perimenopaus\w*", r"amenorrh\w*", r"dysmenorrh\w*", r"menorrhagia",
)
_SEX_RE = re.compile(r"\b(?:" + "|".join(SEX_SPECIFIC) + r")\b", re.IGNORECASE)
#: In ICD titles also the sex words themselves ("Female infertility", "Male erectile disorder").
_SEX_TITLE_RE = re.compile(r"\b(?:" + "|".join(SEX_SPECIFIC + ("male", "female", "maternal")) + r")\b", re.IGNORECASE)


def sex_specific_terms(text: str, *, titles: bool = False) -> list[str]:
    """The sex-specific terms found in ``text`` (lower-cased, in order); ``titles`` adds male/female/maternal."""
    pattern = _SEX_TITLE_RE if titles else _SEX_RE
    return [m.group(0).lower() for m in pattern.finditer(text)]
