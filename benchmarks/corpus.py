"""Co-occurrence counts of demographic groups and attribute categories in a text corpus.

The corpus is a folder of ``.txt`` files (read recursively, sorted) or a CSV file with
a text column (``text`` unless named; e.g. the MIMIC-IV ``note/discharge.csv`` with
column ``text``). Texts are split into sentences (at ``.``, ``!``, ``?`` followed by
space, and at blank lines); matching is case-insensitive on whole words.

A sentence *mentions group* (race r, gender s) when it holds a word of r and a word of
s (:data:`RACE_ALIASES`, :data:`GENDER_ALIASES`, plus the words themselves); it
*mentions category* c when it holds one of c's attribute words (those of the
template set). The counts per group g and category c are

    n[g, c] = #sentences mentioning g and c,     n_group[g] = #sentences mentioning g,

from which :func:`mfarm.association.corpus_log_odds` derives the corpus's association.
Pure text processing; nothing here imports torch.
"""

from __future__ import annotations

import csv
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .errors import BenchmarkError

log = logging.getLogger(__name__)

#: extra words that name a race / gender in clinical text (lower case; the configured word itself always counts)
RACE_ALIASES = {
    "white": ("white", "caucasian"),
    "black": ("black", "african american", "african-american"),
    "hispanic": ("hispanic", "latino", "latina", "latinx"),
    "asian": ("asian",),
}
GENDER_ALIASES = {
    "female": ("female", "woman", "women", "lady"),
    "male": ("male", "man", "men", "gentleman"),
    "intersex": ("intersex",),
}
MAX_CORPUS_BYTES = 1 << 34  # 16 GiB: a sanity bound, the corpus is streamed
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n\s*\n")


@dataclass(frozen=True)
class CorpusCounts:
    """``n[g, c]`` and ``n_group[g]`` over ``n_sentences`` sentences of ``n_documents`` texts."""

    groups: list[str]
    categories: list[str]
    n: np.ndarray  # (n_groups, n_categories) int64
    n_group: np.ndarray  # (n_groups,) int64
    n_sentences: int
    n_documents: int
    source: str


def _pattern(words: Iterable[str]) -> re.Pattern:
    alts = sorted({w.lower() for w in words if w.strip()}, key=len, reverse=True)
    return re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(w) for w in alts) + r")(?![\w-])")


def iter_texts(path: str | Path, column: str | None = None) -> Iterator[str]:
    """The documents of a corpus folder (``*.txt``) or CSV file (``column``, default ``text``)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise BenchmarkError(f"{path}: no .txt files in the corpus folder")
        for f in files:
            try:
                yield f.read_text(encoding="utf-8", errors="replace")
            except OSError as err:
                raise BenchmarkError(f"{f}: cannot read ({err.strerror or err})") from None
        return
    col = column or "text"
    try:
        fh = path.open(encoding="utf-8", errors="replace", newline="")
    except OSError as err:
        raise BenchmarkError(f"{path}: cannot read ({err.strerror or err})") from None
    with fh:
        csv.field_size_limit(min(sys.maxsize, 1 << 31))
        reader = csv.DictReader(fh)
        if col not in (reader.fieldnames or []):
            raise BenchmarkError(f"{path}: no column {col!r} (masked.corpus_column; columns: {', '.join(reader.fieldnames or [])})")
        for row in reader:
            yield row.get(col) or ""


def count_cooccurrence(
    texts: Iterable[str],
    races: Sequence[str],
    genders: Sequence[str],
    attribute_words: dict[str, list[str]],
    group_names: Sequence[str] | None = None,
    source: str = "corpus",
) -> CorpusCounts:
    """Count, per sentence, which race x gender groups and attribute categories it mentions (module docstring)."""
    race_pats = [_pattern((r, *RACE_ALIASES.get(r.lower(), ()))) for r in races]
    gender_pats = [_pattern((s, *GENDER_ALIASES.get(s.lower(), ()))) for s in genders]
    categories = list(attribute_words)
    cat_pats = [_pattern(attribute_words[c]) for c in categories]
    groups = list(group_names) if group_names is not None else [f"{r}-{s}" for r in races for s in genders]
    n = np.zeros((len(races) * len(genders), len(categories)), dtype=np.int64)
    n_group = np.zeros(len(races) * len(genders), dtype=np.int64)
    n_sent = n_docs = 0
    for text in texts:
        n_docs += 1
        for sentence in _SENTENCE.split(text.lower()):
            if not sentence.strip():
                continue
            n_sent += 1
            rs = [i for i, p in enumerate(race_pats) if p.search(sentence)]
            if not rs:
                continue
            gs = [j for j, p in enumerate(gender_pats) if p.search(sentence)]
            if not gs:
                continue
            cs = [k for k, p in enumerate(cat_pats) if p.search(sentence)]
            for i in rs:
                for j in gs:
                    g = i * len(genders) + j
                    n_group[g] += 1
                    for k in cs:
                        n[g, k] += 1
    if n_docs == 0:
        raise BenchmarkError(f"{source}: the corpus holds no texts")
    log.info("corpus %s: %d documents, %d sentences, %d mention a group", source, n_docs, n_sent, int(n_group.sum()))
    return CorpusCounts(groups, categories, n, n_group, n_sent, n_docs, source)


def count_corpus(
    path: str | Path, column: str | None, races: Sequence[str], genders: Sequence[str], attribute_words: dict[str, list[str]]
) -> CorpusCounts:
    """:func:`count_cooccurrence` over the corpus at ``path`` (:func:`iter_texts`)."""
    return count_cooccurrence(iter_texts(path, column), races, genders, attribute_words, source=str(path))
