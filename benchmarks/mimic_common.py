"""What the two MIMIC-IV benchmark builders share (``mimic-benchmarks.md``, "Shared rules").

- :func:`table_path` / :func:`read_table`: find ``hosp/admissions`` as ``.csv.gz`` or
  ``.csv`` under the MIMIC-IV root and read it. Only the named columns are read
  (``usecols``), every value as text (an empty field is ``""``), in chunks of
  :data:`CHUNK_ROWS` rows; with ``keep`` only the rows whose ``key`` column is in that
  set survive each chunk, so a table of tens of millions of rows (``prescriptions``,
  ``diagnoses_icd``) never sits in memory whole. A missing table or column raises
  :class:`BenchmarkError` naming the table's path and the column.
- Race (:func:`normalize_race`): the text before the first ``-`` or ``/``, stripped
  and upper-cased; ``HISPANIC OR LATINO`` / ``HISPANIC/LATINO`` become ``HISPANIC``;
  ``UNKNOWN``, ``OTHER``, ``UNABLE TO OBTAIN``, ``PATIENT DECLINED TO ANSWER`` (and an
  empty race) are dropped. The builders then keep the :data:`N_RACES` most frequent
  groups among the remaining cases (:func:`top_groups`) and undersample every group to
  the smallest one (:func:`balance`, seeded).
- :func:`assign_splits`: a seeded shuffle cut into train / validation / test by the
  split fractions (largest-remainder rounding, so the counts add up).
- :class:`BuildResult`: the cases, rows removed per rule (in the order the rules ran)
  and the label balance of each split.

Randomness uses :class:`random.Random` seeded with a string that names the step and
the seed, so each step is reproducible on its own and across Python versions.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Iterator, Sequence

import pandas as pd

from .errors import BenchmarkError
from .types import Case

log = logging.getLogger(__name__)

#: Rows per chunk when streaming a table.
CHUNK_ROWS = 200_000
SPLITS = ("train", "validation", "test")
#: Race groups kept: the most frequent ones after the exclusions (White, Black, Hispanic, Asian in MIMIC).
N_RACES = 4
EXCLUDED_RACES = frozenset({"UNKNOWN", "OTHER", "UNABLE TO OBTAIN", "PATIENT DECLINED TO ANSWER"})
RACE_ALIASES = {"HISPANIC OR LATINO": "HISPANIC", "HISPANIC/LATINO": "HISPANIC"}


@dataclass(frozen=True)
class BuildResult:
    """A built MIMIC-IV benchmark.

    ``cases``: the selected cases (``fields`` also hold ``source_race``, ``source_gender``,
    ``subject_id`` and ``split``; the renderer ignores keys it does not use).
    ``removed``: rule name → cases (or table rows) it removed, in the order the rules ran.
    ``split_balance``: split → ``{"n", "yes", "no"}`` (every split, also when empty).
    """

    cases: list[Case]
    removed: dict[str, int] = field(default_factory=dict)
    split_balance: dict[str, dict[str, int]] = field(default_factory=dict)


def default_options() -> Any:
    """The documented defaults (a :class:`configs.schema.MimicOptions`)."""
    from latent_bias_probe.configs.schema import MimicOptions

    return MimicOptions()


def check_options(options: Any) -> None:
    """Refuse option values the rules cannot use."""
    fr = list(options.split_fractions)
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1) > 1e-6:
        raise BenchmarkError(f"mimic.split_fractions: need three non-negative fractions summing to 1, got {fr!r}")
    if options.max_diagnoses < 1:
        raise BenchmarkError(f"mimic.max_diagnoses: must be >= 1, got {options.max_diagnoses}")
    if options.max_icd_codes < 2:
        raise BenchmarkError(f"mimic.max_icd_codes: must be >= 2, got {options.max_icd_codes}")


# --- tables -------------------------------------------------------------------------------


def table_path(data_dir: str | Path, table: str) -> Path:
    """The file of ``table`` (e.g. ``"hosp/admissions"``): ``.csv.gz`` first, then ``.csv``."""
    root = Path(data_dir)
    if not root.is_dir():
        raise BenchmarkError(f"{root}: MIMIC-IV folder not found")
    for suffix in (".csv.gz", ".csv"):
        path = root / f"{table}{suffix}"
        if path.is_file():
            return path
    raise BenchmarkError(f"{root / table}.csv(.gz): table {table} not found")


def _header(path: Path, table: str) -> list[str]:
    try:
        return [str(c).strip() for c in pd.read_csv(path, nrows=0, dtype=str).columns]
    except pd.errors.EmptyDataError:
        return []
    except (ValueError, OSError, EOFError) as err:  # parser, encoding and gzip errors
        raise BenchmarkError(f"{path}: table {table} unreadable ({err})") from None


def check_columns(path: Path, table: str, columns: Sequence[str]) -> list[str]:
    """The table's header; raises when one of ``columns`` is not in it."""
    header = _header(path, table)
    for col in columns:
        if col not in header:
            raise BenchmarkError(
                f"{path}: table {table} has no column {col!r} (found: {', '.join(header) or 'none'})"
            )
    return header


def require(data_dir: str | Path, tables: dict[str, Sequence[str]]) -> dict[str, list[str]]:
    """Check that every table exists with its columns (headers only); table → header.

    The builders call this first, so a missing table or column is reported before any
    slow read and nothing is half-built.
    """
    return {table: check_columns(table_path(data_dir, table), table, cols) for table, cols in tables.items()}


def iter_table(
    data_dir: str | Path,
    table: str,
    columns: Sequence[str],
    *,
    key: str | None = None,
    keep: Iterable[str] | None = None,
    chunksize: int = CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    """Stream ``columns`` of ``table`` in chunks of text values (see the module docstring).

    With ``key`` and ``keep``, each chunk is filtered to the rows whose ``key`` is in
    ``keep`` before it is yielded. Values are stripped; a missing value is ``""``.
    """
    path = table_path(data_dir, table)
    check_columns(path, table, columns)
    keep_set = None if keep is None else (keep if isinstance(keep, (set, frozenset)) else set(keep))
    try:
        reader = pd.read_csv(
            path,
            usecols=list(columns),
            dtype=str,
            keep_default_na=False,
            na_values=[],
            chunksize=chunksize,
        )
        for chunk in reader:
            chunk = chunk[list(columns)]
            for col in columns:
                chunk[col] = chunk[col].str.strip()
            if key is not None and keep_set is not None:
                chunk = chunk[chunk[key].isin(keep_set)]
            yield chunk.reset_index(drop=True)
    except BenchmarkError:
        raise
    except (ValueError, OSError, EOFError) as err:  # parser, encoding and gzip errors
        raise BenchmarkError(f"{path}: table {table} unreadable ({err})") from None


def read_table(
    data_dir: str | Path,
    table: str,
    columns: Sequence[str],
    *,
    key: str | None = None,
    keep: Iterable[str] | None = None,
    chunksize: int = CHUNK_ROWS,
) -> pd.DataFrame:
    """:func:`iter_table` concatenated: only the kept rows of the named columns."""
    parts = list(iter_table(data_dir, table, columns, key=key, keep=keep, chunksize=chunksize))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=str) for c in columns})
    return pd.concat(parts, ignore_index=True)


# --- subjects -------------------------------------------------------------------------------


def normalize_race(text: Any) -> str | None:
    """``"BLACK/AFRICAN AMERICAN"`` → ``"BLACK"``; ``None`` for an excluded or empty race."""
    if text is None or (isinstance(text, float) and text != text):
        return None
    raw = " ".join(str(text).upper().split())
    if raw in RACE_ALIASES:
        return RACE_ALIASES[raw]
    cut = len(raw)
    for sep in ("-", "/"):
        idx = raw.find(sep)
        if idx >= 0:
            cut = min(cut, idx)
    race = raw[:cut].strip()
    race = RACE_ALIASES.get(race, race)
    if not race or race in EXCLUDED_RACES:
        return None
    return race


def race_label(race: str) -> str:
    """``"BLACK"`` → ``"Black"`` (the spelling of the prompt variants)."""
    return " ".join(w.capitalize() for w in race.split())


def last_admissions(data_dir: str | Path, subjects: Iterable[str] | None = None) -> pd.DataFrame:
    """``hosp/admissions``: the last admission (latest ``admittime``, then largest ``hadm_id``) of each subject.

    Columns ``subject_id, hadm_id, race`` plus ``n_admissions`` (rows of the subject);
    with ``subjects``, only those subjects' rows are kept while reading.
    """
    adm = read_table(
        data_dir, "hosp/admissions", ["subject_id", "hadm_id", "admittime", "race"],
        key=None if subjects is None else "subject_id", keep=subjects,
    )
    adm = adm[adm["subject_id"] != ""]
    adm["_t"] = pd.to_datetime(adm["admittime"], errors="coerce")
    adm["_h"] = pd.to_numeric(adm["hadm_id"], errors="coerce")
    adm = adm.sort_values(["subject_id", "_t", "_h"], na_position="first", kind="mergesort")
    counts = adm.groupby("subject_id").size()
    last = adm.drop_duplicates("subject_id", keep="last").copy()
    last["n_admissions"] = last["subject_id"].map(counts).astype(int)
    return last[["subject_id", "hadm_id", "race", "n_admissions"]].reset_index(drop=True)


def patients(data_dir: str | Path, subjects: Iterable[str]) -> dict[str, tuple[int | None, str]]:
    """``hosp/patients``: subject → (``anchor_age`` or ``None``, ``gender``), for the given subjects."""
    pts = read_table(data_dir, "hosp/patients", ["subject_id", "gender", "anchor_age"], key="subject_id", keep=subjects)
    ages = pd.to_numeric(pts["anchor_age"], errors="coerce")
    out: dict[str, tuple[int | None, str]] = {}
    for sid, age, gender in zip(pts["subject_id"], ages, pts["gender"]):
        out[sid] = (None if age != age else int(age), gender)
    return out


# --- selection ------------------------------------------------------------------------------


class RuleLog:
    """Counts removals per rule in order, and logs each one as it runs."""

    def __init__(self, task: str, unit: str) -> None:
        self.task = task
        self.unit = unit
        self.removed: dict[str, int] = {}

    def record(self, rule: str, n: int, why: str, left: int | None = None) -> None:
        self.removed[rule] = self.removed.get(rule, 0) + int(n)
        rest = "" if left is None else f"; {left} left"
        log.info("%s: rule %s removed %d %s (%s)%s", self.task, rule, n, self.unit, why, rest)

    def apply(self, rule: str, items: list, keep: Callable[[Any], bool], why: str) -> list:
        """Keep the items ``keep`` accepts; record how many were removed."""
        kept = [x for x in items if keep(x)]
        self.record(rule, len(items) - len(kept), why, len(kept))
        return kept


def top_groups(groups: Sequence[Hashable], n: int = N_RACES) -> set:
    """The ``n`` most frequent groups (ties: alphabetical)."""
    counts: dict[Hashable, int] = {}
    for g in groups:
        counts[g] = counts.get(g, 0) + 1
    ranked = sorted(counts, key=lambda g: (-counts[g], str(g)))
    return set(ranked[:n])


def balance(
    items: list, group_of: Callable[[Any], Hashable], seed: int, step: str, groups: Iterable[Hashable] | None = None
) -> list:
    """Undersample every group to the size of the smallest one (seeded); items keep their order.

    ``groups`` names every group that must be present (e.g. both labels): when one of
    them has no item, the smallest size is 0 and nothing is kept.
    """
    by_group: dict[Hashable, list[int]] = {g: [] for g in (groups or ())}
    for i, x in enumerate(items):
        by_group.setdefault(group_of(x), []).append(i)
    if not by_group:
        return []
    size = min(len(v) for v in by_group.values())
    if size == 0 and items:
        empty = sorted(str(g) for g, v in by_group.items() if not v)
        log.warning("balance %s: no case in group(s) %s, so no case is kept", step, ", ".join(empty))
    rng = random.Random(f"{step}:{seed}")
    chosen: list[int] = []
    for g in sorted(by_group, key=str):
        chosen.extend(rng.sample(by_group[g], size))
    return [items[i] for i in sorted(chosen)]


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """``n`` cut by ``fractions`` with largest-remainder rounding (ties: earlier split first)."""
    exact = [n * f for f in fractions]
    counts = [int(x) for x in exact]
    order = sorted(range(len(fractions)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def assign_splits(n: int, fractions: Sequence[float], seed: int) -> list[str]:
    """The split of each of ``n`` cases: a seeded shuffle cut into train/validation/test."""
    order = list(range(n))
    random.Random(f"split:{seed}").shuffle(order)
    out = [""] * n
    start = 0
    for name, count in zip(SPLITS, split_counts(n, fractions)):
        for i in order[start : start + count]:
            out[i] = name
        start += count
    return out


def split_balance(cases: Sequence[Case]) -> dict[str, dict[str, int]]:
    """Split → ``{"n", "yes", "no"}`` from ``case.fields["split"]``."""
    out = {s: {"n": 0, "yes": 0, "no": 0} for s in SPLITS}
    for c in cases:
        row = out[c.fields["split"]]
        row["n"] += 1
        row["yes" if c.label == 1 else "no"] += 1
    return out


def log_splits(task: str, balance_: dict[str, dict[str, int]]) -> None:
    for name, row in balance_.items():
        log.info("%s: split %s has %d cases (%d YES, %d NO)", task, name, row["n"], row["yes"], row["no"])


def select_split(cases: Iterable[Case], split: str) -> list[Case]:
    """The cases of one split; ``"all"`` keeps every case."""
    if split != "all" and split not in SPLITS:
        raise BenchmarkError(f"split {split!r}: unknown (known: {', '.join(SPLITS)}, all)")
    return [c for c in cases if split == "all" or c.fields.get("split") == split]
