"""The stages of a run, and the only code that reads or writes run directories.

Data flow (one module per stage; :mod:`pipeline.artifacts` declares every file)::

    config ──► extract ──► cache.h5, predictions.csv, batch_check.json, config.json
                 │
                 ├──► score ──► results.json  (Part A/C; assembled by pipeline.results)
                 ├──► fit ────► probes.h5     (+ latent, mfarm_full, fab_full in results.json)
                 │      └──► explain ──► explain.json (+ latent.mediation)
                 └──► report ──► report.html

:func:`run` chains the stages of one job; :func:`pipeline.sweep.run_sweep` runs one
job per model × precision × adapter. Importing this package does not import torch.

    >>> import pipeline
    >>> results = pipeline.run("configs/ed_triage_demo.yaml", "runs/try", limit_cases=5,
    ...                        stages=("extract", "score", "fit"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

from latent_bias_probe.configs.errors import InputError
from .artifacts import ARTIFACTS, STAGES, Artifact, RunDir

log = logging.getLogger(__name__)

__all__ = ["ARTIFACTS", "STAGES", "Artifact", "RunDir", "read_predictions", "run", "run_stage", "score_predictions"]


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
    ``stages`` is any subset of :data:`STAGES` (run in that order; ``explain``
    needs ``fit``, since it uses the fitted directions). ``extract`` resumes an
    existing cache; ``score`` assembles ``results.json`` from whatever is fresh.
    """
    from .extract import Shard, run_extract
    from .results import assemble_results

    cfg = _as_config(config)
    wanted = set(stages)
    unknown = wanted - set(STAGES)
    if unknown:
        raise InputError(f"stages: unknown {sorted(unknown)} (known: {', '.join(STAGES)})")
    if "explain" in wanted and "fit" not in wanted and not RunDir(out_dir).is_fresh("probes.h5"):
        wanted.discard("explain")
    if "extract" in wanted:
        if cfg.extract.threads:
            import torch

            torch.set_num_threads(cfg.extract.threads)
        result = run_extract(
            cfg, out_dir, limit_cases=limit_cases, shard=Shard.parse(shard) if shard else None,
            overwrite=overwrite, progress=progress,
        )
        log.info(
            "extract: %d prompts (%d computed now) in %.1f s -> %s",
            result.n_prompts, result.n_computed, result.seconds, result.cache_path,
        )
    if "explain" in wanted and RunDir(out_dir).exists("masked.json"):
        log.info("explain: skipped (a masked-LM audit has no Yes/No decision to steer)")
        wanted.discard("explain")
    results = assemble_results(out_dir)
    if "fit" in wanted and RunDir(out_dir).is_fresh("probes.h5"):
        log.info("fit: %s is fresh (same cache and settings), kept", Path(out_dir) / "probes.h5")
    elif "fit" in wanted:
        from .fit import run_fit

        results = run_fit(out_dir, cfg)
    if "explain" in wanted:
        from .explain import run_explain

        run_explain(out_dir, cfg=cfg, progress=progress)
        results = assemble_results(out_dir)
    if "report" in wanted:
        from .report import write_report

        log.info("report: %s", write_report(out_dir))
    return results


def run_stage(stage: str, run_dir: str | Path, **options: Any) -> Any:
    """Run one later stage on an existing run directory (``score``, ``fit``, ``explain``, ``report``)."""
    if stage == "score":
        from .results import assemble_results

        return assemble_results(run_dir)
    if stage == "fit":
        from .fit import run_fit

        return run_fit(run_dir, **options)
    if stage == "explain":
        from .explain import run_explain

        return run_explain(run_dir, **options)
    if stage == "report":
        from .report import write_report

        return write_report(run_dir)
    raise InputError(f"stage {stage!r}: run_stage takes score, fit, explain or report (extract needs a config: use run)")
