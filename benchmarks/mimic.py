"""The MIMIC-IV benchmarks by task, and the table of their rendered prompts.

- :func:`build_mimic` dispatches to :func:`benchmarks.mimic_ed.build_mimic_ed`
  (``ed_triage``) or :func:`benchmarks.mimic_opioid.build_mimic_opioid` (``opioid``).
- :func:`build_prompts_table` builds a benchmark, keeps one split and renders every
  case as BASE + race × gender variants at each tier, one row per prompt.

Nothing is written to disk here: the caller gets the data and writes it (atomically).
"""

from __future__ import annotations

import logging
from latent_bias_probe.configs.names import DEFAULT_GENDERS, DEFAULT_RACES, TIERS
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .errors import BenchmarkError
from .mimic_common import BuildResult, select_split
from .mimic_ed import build_mimic_ed
from .mimic_opioid import build_mimic_opioid
from .render import DEFAULT_SYSTEM, render

log = logging.getLogger(__name__)

MIMIC_TASKS = ("ed_triage", "opioid")
PROMPT_COLUMNS = ("case_id", "split", "tier", "variant", "race", "gender", "label", "text", "source_race")


def build_mimic(task: str, data_dir: str | Path, options: Any = None) -> BuildResult:
    """The built benchmark of ``task`` (``ed_triage`` or ``opioid``) from a MIMIC-IV folder."""
    if task == "ed_triage":
        return build_mimic_ed(data_dir, options)
    if task == "opioid":
        return build_mimic_opioid(data_dir, options)
    raise BenchmarkError(f"task {task!r}: no MIMIC-IV builder (known: {', '.join(MIMIC_TASKS)})")


def build_prompts_table(
    task: str,
    data_dir: str | Path,
    split: str = "test",
    options: Any = None,
    tiers: Sequence[str] = TIERS,
    races: Sequence[str] = DEFAULT_RACES,
    genders: Sequence[str] = DEFAULT_GENDERS,
    descent_word: str = "descent",
    system_message: str = DEFAULT_SYSTEM,
    *,
    result: BuildResult | None = None,
    duplicates: str = "keep",
) -> pd.DataFrame:
    """One row per rendered prompt of the split (``"all"``: every split).

    Columns :data:`PROMPT_COLUMNS`: ``case_id, split, tier, variant, race, gender,
    label`` (1 = YES, 0 = NO), ``text`` (the rendered user message) and ``source_race``
    (the case's recorded race group, metadata only). Rows follow the renderer's order.
    Pass ``result`` to render an already built benchmark instead of building it again.
    Every case is exported (``duplicates="keep"``, the published benchmark as it is);
    ``probe run`` collapses identical renderings when the config says so.
    """
    if result is None:
        result = build_mimic(task, data_dir, options)
    cases = select_split(result.cases, split)
    rendered = render(
        cases, tiers, races, genders, descent_word=descent_word, system_message=system_message, duplicates=duplicates
    )
    by_id = {c.case_id: c for c in cases}
    rows = [
        (
            p.case_id, by_id[p.case_id].fields.get("split"), p.tier, p.variant, p.race, p.gender, p.label, p.user,
            by_id[p.case_id].fields.get("source_race"),
        )
        for p in rendered.prompts
    ]
    table = pd.DataFrame(rows, columns=list(PROMPT_COLUMNS))
    table["label"] = table["label"].astype("Int64")
    log.info("%s: %d prompts of %d cases (split %s)", task, len(table), len(cases), split)
    return table
