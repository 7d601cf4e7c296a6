"""``probe validate DIR``: is every artifact of a run fresh, and results.json well-formed?"""

from __future__ import annotations

import json
from pathlib import Path

from latent_bias_probe.configs.errors import InputError
from .artifacts import ARTIFACTS, MANIFEST, RunDir


def validate_run(run_dir: Path) -> tuple[list[str], list[str]]:
    """(problems, report lines) for a run directory.

    A problem is a stale artifact, a results.json that does not match its schema,
    or a run with no results. Missing artifacts of stages that did not run are not
    problems.
    """
    from .results import RESULTS_NAME, validate_results

    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    run = RunDir(run_dir)
    problems: list[str] = []
    lines: list[str] = []
    if not (run_dir / MANIFEST).is_file():
        problems.append(f"no {MANIFEST} (not a run directory of this toolkit, or made by an older version)")
    for name, art in ARTIFACTS.items():
        if not run.exists(name):
            lines.append(f"{name:18} missing   ({art.producer} stage not run)")
            continue
        if run.is_fresh(name):
            lines.append(f"{name:18} fresh")
        else:
            reason = run.why_stale(name)
            lines.append(f"{name:18} STALE     ({reason})")
            problems.append(f"{name} is stale: {reason}")
    if not run.exists(RESULTS_NAME):
        problems.append(f"{RESULTS_NAME} missing")
    else:
        try:
            validate_results(json.loads((run / RESULTS_NAME).read_text(encoding="utf-8")), str(run / RESULTS_NAME))
            lines.append(f"{RESULTS_NAME:18} matches results.schema.json")
        except (ValueError, InputError) as err:
            problems.append(str(err).splitlines()[0])
    return problems, lines
