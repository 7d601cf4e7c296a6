"""Template sets of a masked-LM audit: loading, validation, and rendering per group.

A template set is a YAML file (format ``latent-bias-templates/1``)::

    format: latent-bias-templates/1
    name: clinical
    categories: {behaviour: "negative descriptors ...", agency: "..."}   # optional descriptions
    templates:
      - {id: beh01, category: behaviour, attribute: combative,
         text: "The [TARGET] patient was [ATTRIBUTE] during the examination."}

or a CSV file with the columns ``id, category, text, attribute``. Every text holds
``[TARGET]`` and ``[ATTRIBUTE]`` exactly once; ids are unique. The shipped set
(``clinical``) is ``data/clinical-templates/templates.yaml``, written for this project.

Rendering (:func:`render_sentence`): ``[TARGET]`` is replaced by a group's words
(``masked.target_format``, e.g. ``"{race} {gender_lower}"`` → "Black female") or, for
BASE, removed; ``[ATTRIBUTE]`` by the attribute word; runs of spaces collapse to one.
The character spans of both slots in the rendered text are returned, so the model
side can find their tokens with a fast tokenizer's offsets.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import yaml

from .errors import BenchmarkError
from latent_bias_probe.configs.names import ATTRIBUTE_SLOT, BASE, TARGET_SLOT

TEMPLATES_FORMAT = "latent-bias-templates/1"
#: the shipped template set's name and file
SHIPPED = {"clinical": Path(__file__).resolve().parents[1] / "data" / "clinical-templates" / "templates.yaml"}
CSV_COLUMNS = ("id", "category", "text", "attribute")
MAX_TEMPLATES = 100_000
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True)
class Template:
    """One template: ``text`` with ``[TARGET]`` and ``[ATTRIBUTE]``, filled by ``attribute``."""

    id: str
    category: str
    text: str
    attribute: str


@dataclass(frozen=True)
class TemplateSet:
    """A validated template set, in file order."""

    name: str
    templates: tuple[Template, ...]
    descriptions: dict[str, str]
    source: str

    @property
    def categories(self) -> list[str]:
        """Categories in order of first appearance."""
        return list(dict.fromkeys(t.category for t in self.templates))

    def counts(self) -> dict[str, int]:
        """Templates per category."""
        return {c: sum(t.category == c for t in self.templates) for c in self.categories}

    def attribute_words(self) -> dict[str, list[str]]:
        """Category -> its distinct attribute words (lower case), for the corpus counts."""
        out: dict[str, list[str]] = {}
        for t in self.templates:
            words = out.setdefault(t.category, [])
            if t.attribute.lower() not in words:
                words.append(t.attribute.lower())
        return out

    def select(self, categories: Sequence[str] | None = None, n_per_category: int | None = None) -> "TemplateSet":
        """The templates of ``categories`` (all when None), the first ``n_per_category`` of each."""
        if categories is not None:
            unknown = [c for c in categories if c not in self.categories]
            if unknown:
                raise BenchmarkError(
                    f"masked.categories: {unknown[0]!r} is not a category of {self.source} (has {', '.join(self.categories)})"
                )
        keep, seen = [], {}
        for t in self.templates:
            if categories is not None and t.category not in categories:
                continue
            seen[t.category] = seen.get(t.category, 0) + 1
            if n_per_category is None or seen[t.category] <= n_per_category:
                keep.append(t)
        return TemplateSet(self.name, tuple(keep), self.descriptions, self.source)


def _check(templates: list[Template], where: str) -> None:
    if not templates:
        raise BenchmarkError(f"{where}: no templates")
    if len(templates) > MAX_TEMPLATES:
        raise BenchmarkError(f"{where}: more than {MAX_TEMPLATES} templates")
    seen: set[str] = set()
    for i, t in enumerate(templates):
        at = f"{where}: template {i + 1}"
        if not _ID.fullmatch(t.id):
            raise BenchmarkError(f"{at}: id must be 1-64 letters, digits or _.:-, got {t.id!r}")
        if t.id in seen:
            raise BenchmarkError(f"{at}: duplicate id {t.id!r}")
        seen.add(t.id)
        if not t.category.strip() or not t.category.isprintable() or len(t.category) > 64:
            raise BenchmarkError(f"{at} ({t.id}): category must be one printable line of at most 64 characters, got {t.category!r}")
        for slot in (TARGET_SLOT, ATTRIBUTE_SLOT):
            if t.text.count(slot) != 1:
                raise BenchmarkError(f"{at} ({t.id}): text must hold {slot} exactly once, got {t.text!r}")
        if not t.text.isprintable() or len(t.text) > 2000:
            raise BenchmarkError(f"{at} ({t.id}): text must be one printable line of at most 2000 characters")
        if not t.attribute.strip() or not t.attribute.isprintable() or "[" in t.attribute or len(t.attribute) > 100:
            raise BenchmarkError(f"{at} ({t.id}): attribute must be a printable word or phrase, got {t.attribute!r}")


def _field(row: dict, key: str, at: str) -> str:
    value = row.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise BenchmarkError(f"{at}: {key} must be text, got {value!r}")
    return value.strip()


def load_templates(spec: str | Path) -> TemplateSet:
    """The template set ``spec``: a shipped name (``clinical``) or a .yaml/.yml/.csv path."""
    path = SHIPPED.get(str(spec), Path(spec))
    where = str(path)
    if not path.is_file():
        raise BenchmarkError(f"{where}: template file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise BenchmarkError(f"{where}: cannot read the template file ({err})") from None
    descriptions: dict[str, str] = {}
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise BenchmarkError(f"{where}: missing column {missing[0]!r} (needs {', '.join(CSV_COLUMNS)})")
        rows = list(reader)
        name = path.stem
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise BenchmarkError(f"{where}: not valid YAML ({' '.join(str(err).split())[:160]})") from None
        if not isinstance(data, dict):
            raise BenchmarkError(f"{where}: expected a mapping with 'templates'")
        if data.get("format", TEMPLATES_FORMAT) != TEMPLATES_FORMAT:
            raise BenchmarkError(f"{where}: format {data.get('format')!r} (expected {TEMPLATES_FORMAT!r})")
        rows = data.get("templates")
        if not isinstance(rows, list):
            raise BenchmarkError(f"{where}: templates: expected a list of mappings")
        cats = data.get("categories") or {}
        if not isinstance(cats, dict):
            raise BenchmarkError(f"{where}: categories: expected a mapping of category to description")
        descriptions = {str(k): str(v) for k, v in cats.items()}
        name = str(data.get("name") or path.stem)
    templates = []
    for i, row in enumerate(rows):
        at = f"{where}: template {i + 1}"
        if not isinstance(row, dict):
            raise BenchmarkError(f"{at}: expected a mapping with {', '.join(CSV_COLUMNS)}")
        extra = sorted(set(row) - set(CSV_COLUMNS))
        if extra:
            raise BenchmarkError(f"{at}: unknown key {extra[0]!r} (allowed: {', '.join(CSV_COLUMNS)})")
        templates.append(Template(*(_field(row, k, at) for k in CSV_COLUMNS)))
    _check(templates, where)
    return TemplateSet(name, tuple(templates), descriptions, where)


def target_words(race: str, gender: str, target_format: str) -> str:
    """A group's words for ``[TARGET]`` (``masked.target_format``)."""
    return target_format.format(race=race, gender=gender, race_lower=race.lower(), gender_lower=gender.lower())


@dataclass(frozen=True)
class Sentence:
    """A rendered template: the text and the character spans ``[start, end)`` of its slots."""

    text: str
    target: tuple[int, int]  # empty (start == end) for BASE
    attribute: tuple[int, int]


def render_sentence(template: Template, target: str | None) -> Sentence:
    """``template`` with ``[TARGET]`` := ``target`` (removed when None: BASE) and the attribute filled in."""
    parts = re.split(r"(\[TARGET\]|\[ATTRIBUTE\])", template.text)
    out, spans = "", {}
    for part in parts:
        if part == TARGET_SLOT:
            fill, key = (target or ""), "target"
        elif part == ATTRIBUTE_SLOT:
            fill, key = template.attribute, "attribute"
        else:
            fill, key = re.sub(r"\s+", " ", part), None
        if key is None:
            if out.endswith(" ") and fill.startswith(" "):
                fill = fill[1:]
            out += fill
            continue
        if not fill and out.endswith(" "):
            out = out[:-1]  # BASE: drop the slot and one of its spaces
            spans[key] = (len(out), len(out))
            continue
        spans[key] = (len(out), len(out) + len(fill))
        out += fill
    text = out.strip()
    shift = len(out) - len(out.lstrip())
    t0, t1 = spans["target"]
    a0, a1 = spans["attribute"]
    return Sentence(text, (max(t0 - shift, 0), max(t1 - shift, 0)), (a0 - shift, a1 - shift))


def group_name(race: str, gender: str) -> str:
    """The variant name of a race x gender group (as in the causal benchmarks)."""
    return f"{race}-{gender}"


__all__ = [
    "BASE", "TEMPLATES_FORMAT", "Template", "TemplateSet", "Sentence", "load_templates", "render_sentence",
    "target_words", "group_name",
]
