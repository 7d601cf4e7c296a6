"""Vignette templates with demographic placeholders, and how they are filled.

A template is plain text with these tokens (the Q-Pain convention, plus two
additions of this toolkit):

- ``[race]`` — the race word (``Black``); removed, with the space after it, on BASE.
- ``[gender]`` — the gender noun (``woman``); ``patient`` on BASE.
- ``[subject]``, ``[possessive]``, ``[object]`` — the pronouns (``she``/``her``/``her``).
- ``[singular|plural]`` — a verb written both ways (``[has|have]``): the singular form
  is used after ``he``/``she``, the plural after ``they``. The Q-Pain importer adds
  these after ``[subject]`` so that ``they`` agrees (``they have``, not ``they has``).

Gender words and pronouns (the original Q-Pain study used man/woman, he/she):

========== ================= ======= ========== ======
gender     noun              subject possessive object
========== ================= ======= ========== ======
Male       man               he      his        him
Female     woman             she     her        her
Intersex   intersex person   they    their      them
BASE       patient           they    their      them
other      "<name> person"   they    their      them
========== ================= ======= ========== ======

A pronoun that starts a sentence is capitalised, and an ``a``/``an`` directly before
a demographic word is corrected to match it (``an Asian man``, ``a White woman``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .types import BASE


@dataclass(frozen=True)
class Person:
    """The words that fill a template for one demographic variant."""

    race: str  # "" on BASE
    noun: str  # "woman", "man", "intersex person", "patient"
    subject: str
    possessive: str
    obj: str

    @property
    def plural(self) -> bool:
        """True when the subject pronoun takes plural verbs (``they``)."""
        return self.subject == "they"


_GENDER_WORDS = {
    "male": ("man", "he", "his", "him"),
    "female": ("woman", "she", "her", "her"),
    "intersex": ("intersex person", "they", "their", "them"),
}

PLACEHOLDERS = ("race", "gender", "subject", "possessive", "object")
TOKEN_RE = re.compile(r"\[(race|gender|subject|possessive|object)\]|\[([^\[\]|]+)\|([^\[\]|]+)\]")
LEFTOVER_RE = re.compile(r"\[[^\]]*\]")


def person_for(race: str, gender: str) -> Person:
    """The words for a variant; ``race == gender == "BASE"`` gives the neutral patient."""
    if race == BASE and gender == BASE:
        return Person("", "patient", "they", "their", "them")
    words = _GENDER_WORDS.get(gender.lower())
    if words is None:
        words = (f"{gender.lower()} person", "they", "their", "them")
    noun, subj, poss, obj = words
    return Person(race, noun, subj, poss, obj)


def _fix_article(out: list[str], word: str) -> None:
    """Make an ``a``/``an`` that ends ``out`` agree with the following ``word``."""
    if not out or not word:
        return
    text = out[-1]
    m = re.search(r"(^|\s)([Aa]n?) $", text)
    if not m:
        return
    article = "an" if word[0].lower() in "aeiou" else "a"
    if m.group(2)[0] == "A":
        article = article.capitalize()
    out[-1] = text[: m.start(2)] + article + " "


def _sentence_start(out: list[str]) -> bool:
    text = "".join(out).rstrip(" ")
    return not text or text[-1] in ".!?\n"


def fill(template: str, person: Person) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Fill ``template`` for ``person``.

    Returns the text and the demographic spans: the character span of the first
    race word and of the first gender noun (on BASE only the noun ``patient``),
    in that order.
    """
    out: list[str] = []
    race_span: tuple[int, int] | None = None
    gender_span: tuple[int, int] | None = None
    pos = 0
    skip_space = False
    for m in TOKEN_RE.finditer(template):
        literal = template[pos : m.start()]
        if skip_space and literal.startswith(" "):
            literal = literal[1:]
        skip_space = False
        out.append(literal)
        pos = m.end()
        name = m.group(1)
        if name is None:  # a [singular|plural] verb pair
            out.append(m.group(3) if person.plural else m.group(2))
            continue
        if name == "race":
            if not person.race:
                skip_space = True
                continue
            word = person.race
        elif name == "gender":
            word = person.noun
        elif name == "subject":
            word = person.subject
        elif name == "possessive":
            word = person.possessive
        else:
            word = person.obj
        if name in ("race", "gender"):
            _fix_article(out, word)
        elif _sentence_start(out):
            word = word[0].upper() + word[1:]
        start = sum(len(s) for s in out)
        out.append(word)
        span = (start, start + len(word))
        if name == "race" and race_span is None:
            race_span = span
        elif name == "gender" and gender_span is None:
            gender_span = span
    tail = template[pos:]
    if skip_space and tail.startswith(" "):
        tail = tail[1:]
    out.append(tail)
    text = "".join(out)
    spans = tuple(s for s in (race_span, gender_span) if s is not None)
    return text, spans


def leftover_placeholders(text: str) -> list[str]:
    """Any ``[...]`` tokens left in a filled text (there should be none)."""
    return LEFTOVER_RE.findall(text)
