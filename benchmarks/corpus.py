"""Co-occurrence counts of demographic groups and attribute categories in a text corpus.

The corpus is a folder of ``.txt`` files (read recursively, sorted) or a CSV file with
a text column (``text`` unless named; e.g. the MIMIC-IV ``note/discharge.csv`` with
column ``text``). Texts are split into sentences (at ``.``, ``!``, ``?`` followed by
space, and at blank lines); matching is case-insensitive on whole words. Files are
streamed a megabyte at a time (cut at sentence boundaries), so memory stays bounded
whatever the corpus's size.

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
import io
import hashlib
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

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
CHUNK_CHARS = 1 << 20  # characters read at a time from a corpus file
MAX_SENTENCE_CHARS = 1 << 22  # a longer run without a sentence boundary is cut where it stands
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


def corpus_sha256(path: str | Path) -> str:
    """SHA-256 over a corpus's contents: a CSV file's bytes, or every ``*.txt`` of a folder
    (relative name and bytes, in sorted order), read in blocks.

    Raises ``OSError`` when the corpus cannot be read.
    """
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*.txt") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode("utf-8", "surrogateescape") + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def iter_documents(path: str | Path, column: str | None = None, chunk_chars: int | None = None) -> Iterator[Iterator[str]]:
    """The documents of a corpus folder (``*.txt``) or CSV file (``column``, default ``text``).

    Each document is an iterator of pieces of about ``chunk_chars`` characters
    (default :data:`CHUNK_CHARS`) cut at sentence boundaries (:func:`sentence_chunks`),
    so a file of any size is read a piece at a time, never whole.
    """
    chunk_chars = chunk_chars or CHUNK_CHARS
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise BenchmarkError(f"{path}: no .txt files in the corpus folder")
        for f in files:
            yield _file_chunks(f, chunk_chars)
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
            yield sentence_chunks(io.StringIO(row.get(col) or "").read, chunk_chars)


def _file_chunks(path: Path, chunk_chars: int) -> Iterator[str]:
    try:
        fh = path.open(encoding="utf-8", errors="replace")
    except OSError as err:
        raise BenchmarkError(f"{path}: cannot read ({err.strerror or err})") from None
    with fh:
        try:
            yield from sentence_chunks(fh.read, chunk_chars)
        except OSError as err:
            raise BenchmarkError(f"{path}: cannot read ({err.strerror or err})") from None


def sentence_chunks(read: Callable[[int], str], chunk_chars: int | None = None) -> Iterator[str]:
    """Pieces of the text that ``read(n)`` returns, each cut where a sentence boundary begins.

    Splitting the pieces into sentences gives the sentences of the whole text (a piece
    may start with the whitespace of the boundary, which no count sees). A run of more
    than ``MAX_SENTENCE_CHARS`` characters without a boundary is cut where it stands.
    """
    chunk_chars = max(1, int(chunk_chars or CHUNK_CHARS))
    buf = ""
    while True:
        block = read(chunk_chars)
        if not block:
            break
        buf += block
        if len(buf) < chunk_chars:
            continue
        cut = None
        for m in _SENTENCE.finditer(buf):
            cut = m.start()
        if cut:
            yield buf[:cut]
            buf = buf[cut:]
        elif len(buf) >= max(MAX_SENTENCE_CHARS, chunk_chars):
            yield buf
            buf = ""
    if buf:
        yield buf


def count_cooccurrence(
    texts: Iterable[str | Iterable[str]],
    races: Sequence[str],
    genders: Sequence[str],
    attribute_words: dict[str, list[str]],
    group_names: Sequence[str] | None = None,
    source: str = "corpus",
) -> CorpusCounts:
    """Count, per sentence, which race x gender groups and attribute categories it mentions (module docstring).

    Each of ``texts`` is one document: a string, or an iterable of pieces of it cut at
    sentence boundaries (:func:`iter_documents`).
    """
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
        for piece in ([text] if isinstance(text, str) else text):
            for sentence in _SENTENCE.split(piece.lower()):
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
    path: str | Path, column: str | None, races: Sequence[str], genders: Sequence[str], attribute_words: dict[str, list[str]],
    chunk_chars: int | None = None,
) -> CorpusCounts:
    """:func:`count_cooccurrence` over the corpus at ``path``, streamed (:func:`iter_documents`)."""
    return count_cooccurrence(iter_documents(path, column, chunk_chars), races, genders, attribute_words, source=str(path))
