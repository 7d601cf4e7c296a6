"""The stages of a run, and the only code that reads or writes run directories.

Data flow (one module per stage; :mod:`pipeline.artifacts` declares every file)::

    config ──► extract ──► cache.h5, predictions.csv, batch_check.json, config.json
                 │
                 ├──► score ──► results.json  (Part A/C; assembled by pipeline.results)
                 ├──► fit ────► probes.h5     (+ latent, mfarm_full, fab_full in results.json)
                 │      └──► explain ──► explain.json (+ latent.mediation)
                 └──► report ──► report.html

:func:`run` runs the stages of one job as the stage table :data:`STAGE_TABLE`
(:mod:`pipeline.stages`) lists them; :func:`pipeline.sweep.run_sweep` runs one job per
model × precision × adapter. Importing this package does not import torch.

    >>> import pipeline
    >>> results = pipeline.run("configs/ed_triage_demo.yaml", "runs/try", limit_cases=5,
    ...                        stages=("extract", "score", "fit"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

from latent_bias_probe.configs.errors import InputError
from . import stages as _stages
from .artifacts import ARTIFACTS, Artifact, RunDir
from .stages import STAGE_TABLE, STAGES, Stage, StageCall, register_stage

log = logging.getLogger(__name__)

__all__ = [
    "ARTIFACTS", "STAGES", "STAGE_TABLE", "Artifact", "RunDir", "Stage", "StageCall", "read_predictions",
    "register_stage", "run", "run_stage", "score_predictions",
]


def score_predictions(path: str | Path, **options: Any) -> dict[str, Any]:
    """``{tier: Part A/C scores}`` of any predictions CSV (what ``probe score`` prints); see :mod:`pipeline.score`."""
    from .score import score_predictions as score

    return score(path, **options)


def read_predictions(path: str | Path):
    """A validated predictions table (DataFrame) from a CSV; see :mod:`pipeline.score`."""
    from .score import read_predictions as read

    return read(path)


def _as_config(config: Any, overrides: Iterable[str] = ()):
    from latent_bias_probe.configs.schema import Config, load_config
    from latent_bias_probe.configs.trust import apply_trust

    if isinstance(config, Config):
        return config
    return apply_trust(load_config(config, list(overrides)), False, str(config))


def run(
    config: Any,
    out_dir: str | Path,
    stages: Iterable[str] = STAGES,
    *,
    limit_cases: int | None = None,
    shard: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the stages of one job into ``out_dir``; return the final ``results.json`` mapping.

    ``config`` is a :class:`configs.schema.Config` or the path of a YAML config.
    ``stages`` names stages of the stage table (:mod:`pipeline.stages`; default
    :data:`STAGES`), run in table order, each given only its record's config sections.
    ``score`` always runs (its ``results.json`` is what this returns) and runs again
    after any later stage that writes one of its inputs. ``extract`` resumes an
    existing cache; without it ``out_dir`` must be a run directory already. A stage
    whose record says why it is not needed here is passed over: ``fit`` when
    ``probes.h5`` is fresh, ``explain`` without fresh probes (and ``fit`` not asked
    for) or on a masked-LM audit.
    """
    from .outdir import check_out_name, require_run_dir

    check_out_name(out_dir)
    cfg = _as_config(config)
    table = _stages.STAGE_TABLE  # read at call time: a registered stage counts
    wanted = set(stages)
    unknown = wanted - set(table)
    if unknown:
        raise InputError(f"stages: unknown {sorted(unknown)} (known: {', '.join(table)})")
    scorer = table[ARTIFACTS[_stages.RESULTS].producer]
    wanted.add(scorer.name)
    selected = [stage for stage in table.values() if stage.name in wanted]
    if all(stage.inputs for stage in selected):  # no stage here starts a run directory
        require_run_dir(out_dir)
    feeds = set(ARTIFACTS[_stages.RESULTS].inputs + ARTIFACTS[_stages.RESULTS].optional)

    def call(stage: Stage) -> StageCall:
        return StageCall(
            Path(out_dir), _stages.stage_config(stage, cfg), limit_cases=limit_cases, shard=shard,
            overwrite=overwrite, progress=progress,
        )

    results: dict[str, Any] = {}
    for stage in selected:
        why = stage.skip(RunDir(out_dir), frozenset(wanted)) if stage.skip else None
        if why:
            log.info("%s: skipped (%s)", stage.name, why)
            continue
        value = stage.function(call(stage))
        if stage is scorer:
            results = value
        elif results and feeds & set(stage.outputs):  # results.json was assembled before this stage's output
            results = scorer.function(call(scorer))
    return results


def run_stage(stage: str, run_dir: str | Path, **options: Any) -> Any:
    """Run one stage that reads an existing run directory (``score``, ``fit``, ``explain``, ``report``); return what it returns.

    The stage reads its settings from the run's ``config.json``; ``options`` go to its
    function (``fit``: ``cfg``; ``explain``: ``layers``, ``alphas``, ``cfg``,
    ``trust_remote_code``, ``progress``).
    """
    table = _stages.STAGE_TABLE
    entry = table.get(stage)
    if entry is None or not entry.inputs:
        later = [s.name for s in table.values() if s.inputs]
        first = [s.name for s in table.values() if not s.inputs]
        takes = ", ".join(later[:-1]) + f" or {later[-1]}" if len(later) > 1 else ", ".join(later)
        raise InputError(f"stage {stage!r}: run_stage takes {takes} ({', '.join(first)} needs a config: use run)")
    return entry.function(StageCall(Path(run_dir), None, options=options))
