"""The stage table: every stage of a run, declared once, over the artifact registry.

A :class:`Stage` names the artifacts of :data:`pipeline.artifacts.ARTIFACTS` it reads
(``inputs``, made by an earlier stage; ``optional``, read when fresh, whichever stage
made them) and writes (``outputs``: the artifacts whose ``producer`` it is), the
sections of the config it is given, and the function that runs it.
:func:`pipeline.run` runs the stages of :data:`STAGE_TABLE` in table order;
:func:`pipeline.run_stage` runs one of them on an existing run directory;
:func:`register_stage` adds one (docs/extending/stage.md).

Config sections: :func:`pipeline.run` hands a stage's function a
:class:`~configs.sections.ConfigSections` holding only the sections its record names
(reading another raises ``AttributeError``), or the whole config where the record
names none and says why (``whole_config``). Called without a config
(:func:`pipeline.run_stage`, ``probe fit DIR``), a stage reads the run's own
``config.json``.

Importing this module imports no stage module (they load numpy, pandas, torch); each
stage's function imports its own when it runs.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from latent_bias_probe.configs.sections import ConfigSections
from .artifacts import ARTIFACTS, RunDir

if TYPE_CHECKING:
    from latent_bias_probe.configs.schema import Config

log = logging.getLogger(__name__)

#: the artifact whose mapping :func:`pipeline.run` returns; its stage always runs
RESULTS = "results.json"


@dataclass(frozen=True)
class StageCall:
    """What a stage's function is called with.

    ``config``: the sections its record names (a :class:`ConfigSections`), the whole
    config where the record says so, or None (the stage reads the run's ``config.json``).
    ``limit_cases``, ``shard``, ``overwrite``: the run's options (extract reads them);
    ``options``: the keyword options of :func:`pipeline.run_stage`, passed on to the
    stage's function.
    """

    run_dir: Path
    config: "Config | ConfigSections | None" = None
    limit_cases: int | None = None
    shard: str | None = None
    overwrite: bool = False
    progress: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    """One stage of a run: what it reads, what it writes, the config it is given, what runs it.

    ``inputs``: artifacts it reads, made by an earlier stage; ``optional``: artifacts it
    reads when they are fresh (from any stage); ``outputs``: the artifacts whose
    ``producer`` it is. ``sections``: the config sections it is given; None: the whole
    config, with the reason in ``whole_config``. ``function(call)`` runs it (see
    :class:`StageCall`) and returns what its stage function returns. ``skip(run, wanted)``,
    when set, says why :func:`pipeline.run` passes over the stage in this run (None: it
    runs); ``wanted`` holds the names of the stages of the run.
    """

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    sections: tuple[str, ...] | None
    function: Callable[[StageCall], Any]
    optional: tuple[str, ...] = ()
    whole_config: str = ""
    skip: Callable[[RunDir, frozenset[str]], str | None] | None = None
    description: str = ""


# ---------------------------------------------------------------------- the stages' functions


def _extract(call: StageCall) -> Any:
    from .extract import Shard, run_extract

    cfg = call.config
    if cfg.extract.threads:
        import torch

        torch.set_num_threads(cfg.extract.threads)
    result = run_extract(
        cfg, call.run_dir, limit_cases=call.limit_cases, shard=Shard.parse(call.shard) if call.shard else None,
        overwrite=call.overwrite, progress=call.progress,
    )
    log.info(
        "extract: %d prompts (%d computed now) in %.1f s -> %s",
        result.n_prompts, result.n_computed, result.seconds, result.cache_path,
    )
    return result


def _score(call: StageCall) -> dict[str, Any]:
    from .results import assemble_results

    return assemble_results(call.run_dir)


def _fit(call: StageCall) -> dict[str, Any]:
    from .fit import run_fit

    return run_fit(call.run_dir, **{"cfg": call.config, **call.options})


def _skip_fit(run: RunDir, wanted: frozenset[str]) -> str | None:
    if run.is_fresh("probes.h5"):
        return f"{run / 'probes.h5'} is fresh (same cache and settings), kept"
    return None


def _explain(call: StageCall) -> dict[str, Any]:
    from .explain import run_explain

    return run_explain(call.run_dir, **{"cfg": call.config, "progress": call.progress, **call.options})


def _skip_explain(run: RunDir, wanted: frozenset[str]) -> str | None:
    if run.exists("masked.json"):
        return "a masked-LM audit has no Yes/No decision to steer"
    if ARTIFACTS["probes.h5"].producer not in wanted and not run.is_fresh("probes.h5"):
        return "no fresh probes.h5, and fit is not among the stages run"
    return None


def _report(call: StageCall) -> Path:
    from .report import write_report

    return write_report(call.run_dir)


# ---------------------------------------------------------------------- the table


EXTRACT_WHOLE_CONFIG = (
    "it writes the whole resolved config to config.json (every later stage reads the run's settings from it), "
    "hashes the cache's identity from model, benchmark, extract and masked, and checks the layer indices of "
    "probes and explain against the model's depth before the first forward pass"
)

#: every stage, in the order :func:`pipeline.run` runs them
STAGE_TABLE: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage(
            "extract", inputs=(), outputs=("config.json", "cache.h5", "predictions.csv", "batch_check.json", "masked.json"),
            sections=None, whole_config=EXTRACT_WHOLE_CONFIG, function=_extract,
            description="render the benchmark, run the model, stream outputs and activations (resumes its own cache.h5)",
        ),
        Stage(
            "score", inputs=("config.json", "cache.h5", "predictions.csv"), outputs=(RESULTS,), sections=(),
            optional=("batch_check.json", "masked.json", "probes.h5", "explain.json"), function=_score,
            description="assemble results.json from the fresh artifacts, with the settings of the run's config.json",
        ),
        Stage(
            "fit", inputs=("config.json", "cache.h5"), outputs=("probes.h5",), sections=("probes", "scoring"),
            function=_fit, skip=_skip_fit, description="value axis, steering vectors, probes and F_LV",
        ),
        Stage(
            "explain", inputs=("config.json", "cache.h5", "probes.h5"), outputs=("explain.json",),
            sections=("model", "benchmark", "extract", "scoring", "explain"), function=_explain, skip=_skip_explain,
            description="steering, erasure mediation, causal trace and components: loads the model (model), runs it "
            "with the run's backend and batch size (extract) over its groups (benchmark), with the run's intervals (scoring)",
        ),
        Stage(
            "report", inputs=(RESULTS,), outputs=("report.html",), sections=(), optional=("config.json", "explain.json"),
            function=_report, description="the auditor report",
        ),
    )
}
#: the stages of a whole run, in order (the default of :func:`pipeline.run`)
STAGES = tuple(STAGE_TABLE)


def stage_config(stage: Stage, cfg: "Config") -> "Config | ConfigSections":
    """What ``stage`` is given of ``cfg``: the sections its record names, or the whole config where it names none."""
    return cfg if stage.sections is None else ConfigSections.of(cfg, stage.sections)


def table_problems(table: Mapping[str, Stage] | None = None) -> list[str]:
    """What is wrong with a stage table (default: :data:`STAGE_TABLE`); empty when nothing is.

    Every artifact a stage names is declared in :data:`~pipeline.artifacts.ARTIFACTS`;
    its outputs are the artifacts it is the producer of, and every artifact has its
    producer in the table; each input is made by an earlier stage; ``sections`` are
    sections of a config, and a stage given the whole config says why.
    """
    from latent_bias_probe.configs.schema import Config

    table = STAGE_TABLE if table is None else table
    known_sections = {f.name for f in dataclasses.fields(Config)}
    problems: list[str] = []
    made: set[str] = set()
    for key, stage in table.items():
        where = f"stage {stage.name!r}"
        if key != stage.name:
            problems.append(f"{where}: listed under {key!r}")
        for kind in ("inputs", "optional", "outputs"):
            for name in getattr(stage, kind):
                if name not in ARTIFACTS:
                    problems.append(f"{where}: {kind} names {name!r}, not a declared artifact")
        for name in stage.outputs:
            if name in ARTIFACTS and ARTIFACTS[name].producer != stage.name:
                problems.append(f"{where}: outputs {name!r}, whose producer is {ARTIFACTS[name].producer!r}")
        for name in stage.inputs:
            if name in ARTIFACTS and name not in made:
                problems.append(f"{where}: reads {name!r}, which no earlier stage makes")
        made |= set(stage.outputs)
        if stage.sections is None and not stage.whole_config.strip():
            problems.append(f"{where}: given the whole config, without saying why (whole_config)")
        if stage.sections is not None:
            if stage.whole_config:
                problems.append(f"{where}: names its sections and also a reason for the whole config")
            for name in stage.sections:
                if name not in known_sections:
                    problems.append(f"{where}: sections names {name!r}, not a config section")
    names = {stage.name for stage in table.values()}
    for artifact in ARTIFACTS.values():
        if artifact.producer not in names:
            problems.append(f"artifact {artifact.path!r}: its producer {artifact.producer!r} is not a stage")
        elif artifact.path not in table[artifact.producer].outputs:
            problems.append(f"artifact {artifact.path!r}: not among the outputs of its producer {artifact.producer!r}")
    return problems


def register_stage(stage: Stage, *, before: str | None = None) -> None:
    """Add ``stage`` to :data:`STAGE_TABLE`, before the stage named ``before`` (None: last).

    Refused (``ValueError``) when the name is taken or the table would not pass
    :func:`table_problems`. :func:`pipeline.run` runs it when its name is among the
    stages asked for.
    """
    if stage.name in STAGE_TABLE:
        raise ValueError(f"stage {stage.name!r}: already in the table")
    if before is not None and before not in STAGE_TABLE:
        raise ValueError(f"register_stage: no stage {before!r} to put {stage.name!r} before")
    items = list(STAGE_TABLE.items())
    at = len(items) if before is None else [k for k, _ in items].index(before)
    table = dict(items[:at] + [(stage.name, stage)] + items[at:])
    problems = table_problems(table)
    if problems:
        raise ValueError("; ".join(problems))
    STAGE_TABLE.clear()
    STAGE_TABLE.update(table)
