"""Benchmarks: case sources and the renderer that turns a case into BASE + variants.

Public API (nothing here imports torch):

- :func:`render` → :class:`RenderResult` (``prompts``, ``degraded``)
- generators: :func:`generate_ed_cases` (labels by :func:`esi_level`),
  :func:`generate_opioid_cases`
- loaders: :func:`load_mimic_ed_triage` → :class:`LoadResult`, :func:`load_qpain`,
  :func:`load_csv_cases`
- MIMIC-IV builders: :func:`build_mimic_ed`, :func:`build_mimic_opioid`,
  :func:`build_mimic` → :class:`BuildResult`; :func:`build_prompts_table`
- registry: :data:`BENCHMARKS`, :func:`load_cases`, :func:`render_benchmark`,
  :func:`benchmark_sizes`
"""

from .csv_cases import load_csv_cases
from .ed_generator import generate_ed_cases
from .errors import BenchmarkError
from .esi import esi_level
from .mimic_ed_demo import LoadResult, load_mimic_ed_triage
from .mimic import build_mimic, build_prompts_table
from .mimic_common import BuildResult
from .mimic_ed import build_mimic_ed
from .mimic_opioid import build_mimic_opioid
from .opioid_generator import generate_opioid_cases
from .qpain import load_qpain
from .registry import BENCHMARKS, BenchmarkInfo, benchmark_sizes, load_cases, render_benchmark
from .render import RenderResult, render
from .types import BASE, TASKS, TIERS, Case, Prompt

__all__ = [
    "BASE",
    "BENCHMARKS",
    "TASKS",
    "TIERS",
    "BenchmarkError",
    "BenchmarkInfo",
    "BuildResult",
    "Case",
    "LoadResult",
    "Prompt",
    "RenderResult",
    "benchmark_sizes",
    "build_mimic",
    "build_mimic_ed",
    "build_mimic_opioid",
    "build_prompts_table",
    "esi_level",
    "generate_ed_cases",
    "generate_opioid_cases",
    "load_cases",
    "load_csv_cases",
    "load_mimic_ed_triage",
    "load_qpain",
    "render",
    "render_benchmark",
]
