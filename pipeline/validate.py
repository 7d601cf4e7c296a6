"""``probe validate DIR``: is every artifact of a run (or of a sweep and its runs) fresh, and results.json well-formed?"""

from __future__ import annotations

import json
from pathlib import Path

from latent_bias_probe.configs.errors import InputError
from .artifacts import MANIFEST, MANIFEST_FORMAT, SWEEP_MANIFEST_FORMAT, RunDir, SweepDir, read_manifest_format


def validate_run(run_dir: Path) -> tuple[list[str], list[str]]:
    """(problems, report lines) for a run directory, or a sweep directory (:func:`validate_sweep`).

    A problem is a missing or malformed manifest, a stale artifact, a results.json
    that does not match its schema, or a run with no results. Missing artifacts of
    stages that did not run are not problems.
    """
    from .outdir import is_sweep_dir
    from .results import RESULTS_NAME, validate_results

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    if is_sweep_dir(run_dir):
        return validate_sweep(run_dir)
    run = RunDir(run_dir)
    problems: list[str] = []
    lines: list[str] = []
    manifest = run_dir / MANIFEST
    if not manifest.exists():
        problems.append(f"no {MANIFEST} (not a run directory of this toolkit, or made by an older version)")
    elif read_manifest_format(run_dir) != MANIFEST_FORMAT:
        problems.append(f"{manifest}: not a {MANIFEST_FORMAT} manifest")
    for name, art in run.artifacts.items():
        _artifact_state(run, name, f"{art.producer} stage not run", lines, problems)
    if not run.exists(RESULTS_NAME):
        problems.append(f"{RESULTS_NAME} missing")
    else:
        try:
            validate_results(json.loads((run / RESULTS_NAME).read_text(encoding="utf-8")), str(run / RESULTS_NAME))
            lines.append(f"{RESULTS_NAME:18} matches results.schema.json")
        except (ValueError, InputError, RecursionError) as err:
            problems.append(str(err).splitlines()[0])
    return problems, lines


def validate_sweep(sweep_dir: Path) -> tuple[list[str], list[str]]:
    """(problems, report lines) for a sweep directory: its own artifacts, then every combination's run."""
    from .sweep import PLAN_NAME

    sweep = SweepDir(sweep_dir)
    problems: list[str] = []
    lines: list[str] = []
    if read_manifest_format(sweep_dir) != SWEEP_MANIFEST_FORMAT:
        problems.append(f"no {SWEEP_MANIFEST_FORMAT} {MANIFEST} (a sweep of an older version: run its config again)")
    for name, art in sweep.artifacts.items():
        _artifact_state(sweep, name, f"{art.producer} not run", lines, problems)
    try:
        plan = json.loads((sweep_dir / PLAN_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        plan = None
    items = plan.get("items") if isinstance(plan, dict) else None
    for item in items if isinstance(items, list) else []:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not sweep.is_input_key(f"item:{name}"):
            problems.append(f"{sweep_dir / PLAN_NAME}: an item with no valid name")
            continue
        if not (sweep_dir / name).is_dir():
            lines.append(f"{name}: not run")
            continue
        item_problems, _ = validate_run(sweep_dir / name)
        lines.append(f"{name}: {'valid' if not item_problems else item_problems[0]}")
        problems.extend(f"{name}: {p}" for p in item_problems)
    return problems, lines


def _artifact_state(folder, name: str, why_missing: str, lines: list[str], problems: list[str]) -> None:
    """One report line for an artifact of a run or sweep directory: missing, fresh or STALE (a problem)."""
    if not folder.exists(name):
        lines.append(f"{name:18} missing   ({why_missing})")
    elif folder.is_fresh(name):
        lines.append(f"{name:18} fresh")
    else:
        reason = folder.why_stale(name)
        lines.append(f"{name:18} STALE     ({reason})")
        problems.append(f"{name} is stale: {reason}")
