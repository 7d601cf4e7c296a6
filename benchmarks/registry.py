"""The benchmarks by name, and the one entry point that loads and renders a config's benchmark.

Names are the ``benchmark.source`` values of the config: ``ed_triage`` and
``opioid`` (built-in seeded generators), ``mimic_ed_demo`` (an ``ed/triage``
table, by default the open demo in ``data/mimic-iv-ed-demo``), ``qpain`` (a Q-Pain
folder, by default ``data/q-pain``) and ``csv`` (a user file).
Default paths are resolved relative to the repository root.
"""

from __future__ import annotations

import logging
import numbers
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .csv_cases import load_csv_cases
from .ed_generator import PRESENTATIONS, generate_ed_cases
from .errors import BenchmarkError
from .mimic_ed_demo import load_mimic_ed_triage
from .opioid_generator import OPIOID_PRESENTATIONS, generate_opioid_cases
from .qpain import load_qpain
from .render import RenderResult, render
from .types import Case

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Cases a generator makes when ``n_cases`` is not set.
DEFAULT_GENERATED_CASES = 60


@dataclass(frozen=True)
class BenchmarkInfo:
    """One benchmark: what it is, its task, and where its data lives by default."""

    name: str
    description: str
    task: str | None  # None: set by the config (csv)
    default_path: Path | None = None  # absolute; None for generators and csv
    generator: bool = False


BENCHMARKS: dict[str, BenchmarkInfo] = {
    "ed_triage": BenchmarkInfo(
        "ed_triage",
        f"Built-in ED-triage vignettes ({len(PRESENTATIONS)} adult presentations), labelled by explicit ESI v4 rules",
        "ed_triage",
        generator=True,
    ),
    "opioid": BenchmarkInfo(
        "opioid",
        f"Built-in opioid-recommendation vignettes in the Q-Pain style ({len(OPIOID_PRESENTATIONS)} presentations)",
        "opioid",
        generator=True,
    ),
    "mimic_ed_demo": BenchmarkInfo(
        "mimic_ed_demo",
        "MIMIC-IV-ED demo triage table (real, ODbL): no age or diagnoses, tiers degrade",
        "ed_triage",
        default_path=(REPO_ROOT / "data" / "mimic-iv-ed-demo" / "triage.csv").resolve(),
    ),
    "qpain": BenchmarkInfo(
        "qpain",
        "Q-Pain vignettes (Loge et al. 2021, CC BY-SA 4.0), five pain contexts",
        "qpain",
        default_path=(REPO_ROOT / "data" / "q-pain").resolve(),
    ),
    "csv": BenchmarkInfo("csv", "A user CSV of cases (benchmark.path, benchmark.task)", None),
}


def _source_path(cfg: Any, info: BenchmarkInfo) -> Path:
    raw = getattr(cfg, "path", None)
    if raw:
        path = Path(raw)
        return path if path.is_absolute() else (Path.cwd() / path)
    if info.default_path is None:
        raise BenchmarkError(f"benchmark.path: required for source {info.name!r}")
    return info.default_path


def subsample(cases: list[Case], n: int | None, seed: int) -> list[Case]:
    """At most ``n`` cases: a seeded shuffle, stratified by label, in source order.

    Each label class keeps its share of the source (largest-remainder rounding),
    so a balanced source stays balanced; the chosen cases keep their source order.
    ``n`` of ``None`` or at least ``len(cases)`` returns every case.
    """
    if n is None or n >= len(cases):
        return list(cases)
    rng = random.Random(f"subsample:{seed}")
    order = list(range(len(cases)))
    rng.shuffle(order)
    by_label: dict[Any, list[int]] = defaultdict(list)
    for i in order:
        by_label[cases[i].label].append(i)
    keys = sorted(by_label, key=lambda k: (k is None, -1 if k is None else k))
    exact = {k: n * len(by_label[k]) / len(cases) for k in keys}
    quota = {k: int(exact[k]) for k in keys}
    rest = n - sum(quota.values())
    for k in sorted(keys, key=lambda k: (-(exact[k] - quota[k]), keys.index(k)))[:rest]:
        quota[k] += 1
    chosen = sorted(i for k in keys for i in by_label[k][: quota[k]])
    return [cases[i] for i in chosen]


def _load_ed(cfg: Any, info: BenchmarkInfo, limit: int | None) -> list[Case]:
    return generate_ed_cases(cfg.n_cases or DEFAULT_GENERATED_CASES, cfg.seed, limit=limit)


def _load_opioid(cfg: Any, info: BenchmarkInfo, limit: int | None) -> list[Case]:
    return generate_opioid_cases(cfg.n_cases or DEFAULT_GENERATED_CASES, cfg.seed, limit=limit)


def _load_mimic(cfg: Any, info: BenchmarkInfo, limit: int | None) -> list[Case]:
    return subsample(load_mimic_ed_triage(_source_path(cfg, info)).cases, cfg.n_cases, cfg.seed)[:limit]


def _load_qpain(cfg: Any, info: BenchmarkInfo, limit: int | None) -> list[Case]:
    return subsample(load_qpain(_source_path(cfg, info)), cfg.n_cases, cfg.seed)[:limit]


def _load_csv(cfg: Any, info: BenchmarkInfo, limit: int | None) -> list[Case]:
    if not getattr(cfg, "task", None):
        raise BenchmarkError("benchmark.task: required for source 'csv' (ed_triage, opioid or qpain)")
    return subsample(load_csv_cases(_source_path(cfg, info), cfg.task), cfg.n_cases, cfg.seed)[:limit]


#: (benchmark config, its info, limit) -> the first ``limit`` cases (None: all)
_LOADERS: dict[str, Callable[[Any, BenchmarkInfo, int | None], list[Case]]] = {
    "ed_triage": _load_ed,
    "opioid": _load_opioid,
    "mimic_ed_demo": _load_mimic,
    "qpain": _load_qpain,
    "csv": _load_csv,
}


def _load_mimic_iv(cfg: Any) -> list[Case]:
    """Source ``mimic``: the builder of ``cfg.task`` on ``cfg.data_dir``, the cases of ``cfg.split``."""
    from .mimic import build_mimic
    from .mimic_common import select_split

    if not getattr(cfg, "data_dir", None):
        raise BenchmarkError("benchmark.data_dir: required for source 'mimic' (the MIMIC-IV root folder)")
    if cfg.task not in ("ed_triage", "opioid"):
        raise BenchmarkError(f"benchmark.task: source 'mimic' needs task ed_triage or opioid, got {cfg.task!r}")
    result = build_mimic(cfg.task, cfg.data_dir, cfg.mimic)
    return subsample(select_split(result.cases, cfg.split), cfg.n_cases, cfg.seed)


def _check_limit(limit_cases: Any) -> int | None:
    if limit_cases is None:
        return None
    if isinstance(limit_cases, bool) or not isinstance(limit_cases, numbers.Integral) or limit_cases < 1:
        raise BenchmarkError(f"--limit-cases: must be a whole number >= 1, got {limit_cases!r}")
    return int(limit_cases)


def load_cases(cfg: Any, limit_cases: int | None = None) -> list[Case]:
    """The cases of a :class:`configs.schema.BenchmarkConfig` (source, path, task, n_cases, seed).

    Generators make ``n_cases`` cases (60 when unset) from ``seed``; file sources
    keep every case, or ``n_cases`` of them chosen by :func:`subsample`. Source
    ``mimic`` builds the benchmark of ``task`` from ``data_dir`` with the ``mimic``
    options and keeps the cases of ``split`` (then ``n_cases`` of them, if set).

    ``limit_cases`` keeps the first that many of those cases, exactly
    ``load_cases(cfg)[:limit_cases]``; the generators then make only those.
    """
    limit = _check_limit(limit_cases)
    if cfg.source == "mimic":
        cases = _load_mimic_iv(cfg)[:limit]
        if not cases:
            raise BenchmarkError(f"benchmark 'mimic' ({cfg.task}, split {cfg.split}): no usable cases")
        return cases
    info = BENCHMARKS.get(cfg.source)
    if info is None:
        raise BenchmarkError(f"benchmark.source {cfg.source!r}: unknown (known: {', '.join(sorted(BENCHMARKS))})")
    cases = _LOADERS[cfg.source](cfg, info, limit)
    if not cases:
        raise BenchmarkError(f"benchmark {cfg.source!r}: no usable cases")
    return cases


def render_benchmark(cfg: Any, limit_cases: int | None = None) -> RenderResult:
    """Load a config's benchmark and render it with its tiers, races, genders and wording.

    ``limit_cases`` renders only the first that many cases (:func:`load_cases`), so a
    large generated benchmark is neither generated nor rendered beyond them. The
    prompts are those of the same cases in the full rendering, except where
    ``duplicates: collapse`` merges cases: it merges, and drops a tier where every
    case renders the same, among the rendered cases only (a case that duplicates
    only later cases keeps its own label).
    """
    cases = load_cases(cfg, limit_cases)
    return render(
        cases,
        tiers=list(cfg.tiers),
        races=list(cfg.races),
        genders=list(cfg.genders),
        descent_word=cfg.descent_word,
        system_message=cfg.system_message,
        duplicates=cfg.duplicates,
    )


def benchmark_sizes() -> list[dict[str, str]]:
    """For ``probe bench list``: name, task, cases available and description of each benchmark."""
    rows = []
    for info in BENCHMARKS.values():
        if info.generator:
            cases = "any (seeded)"
        elif info.default_path is None:
            cases = "user file"
        elif not info.default_path.exists():
            cases = f"not found: {info.default_path}"
        else:
            try:
                if info.name == "mimic_ed_demo":
                    cases = str(len(load_mimic_ed_triage(info.default_path).cases))
                else:
                    cases = str(len(load_qpain(info.default_path)))
            except BenchmarkError as err:
                cases = f"unreadable ({err})"
        rows.append({"name": info.name, "task": info.task or "any", "cases": cases, "description": info.description})
    return rows
