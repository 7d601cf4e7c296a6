"""The report stage: ``DIR/report.html`` of a run, ``DIR/sweep.html`` of a sweep.

Reads only fresh artifacts (:mod:`pipeline.artifacts`): ``results.json`` is
re-assembled first when it is stale, and a stale ``explain.json`` is never shown.
The pages themselves are rendered by :mod:`report.html` and :mod:`report.sweep_html`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.files import atomic_write_text
from .artifacts import RunDir
from .lock import run_lock

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
SWEEP_REPORT_NAME = "sweep.html"


def read_json_object(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(data, problem): ``problem`` is a one-line reason when the file is unusable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return None, f"{path}: not valid JSON ({err})"
    if not isinstance(data, dict):
        return None, f"{path}: expected a JSON object at the top level"
    return data, None


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` from the fresh ``results.json`` (+ ``explain.json``); return its path.

    Raises :class:`configs.errors.InputError` when the run has no results yet.
    """
    from .results import assemble_results
    from latent_bias_probe.report.html import render_report

    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise InputError(f"{run.path}: no such run directory")
    if not run.is_fresh("results.json"):
        if not run.is_fresh("predictions.csv"):
            raise InputError(f"{run / 'results.json'}: not found or stale (run 'probe run' or 'probe extract' first)")
        assemble_results(run)
    results, problem = read_json_object(run / "results.json")
    if results is None:
        raise InputError(problem)
    explain, problem = (None, None)
    if run.is_fresh("explain.json"):
        explain, problem = read_json_object(run / "explain.json")
        if problem:
            log.warning("report: ignoring %s", problem)
    text = render_report(results, explain, explain_problem=problem)
    path = run / REPORT_NAME
    with run_lock(run.path, "report"):
        atomic_write_text(path, text)
        run.record(REPORT_NAME)
    log.info("report: %s (%d KiB)", path, len(text.encode("utf-8")) // 1024)
    return path


def _run_links(sweep_dir: Path) -> dict[tuple, str]:
    """(model, precision, adapter) -> ``<item>/report.html`` for the items whose report is fresh."""
    from .sweep import PLAN_NAME

    data, _ = read_json_object(sweep_dir / PLAN_NAME)
    items = (data or {}).get("items", [])
    links = {}
    for item in items if isinstance(items, list) else []:
        try:
            key = (item["model"], item["precision"], item.get("adapter") or "")
            name = str(item["name"])
        except (KeyError, TypeError, AttributeError):
            continue
        if RunDir(sweep_dir / name).is_fresh(REPORT_NAME):
            links[key] = f"{name}/{REPORT_NAME}"
    return links


def write_sweep_report(sweep_dir: str | Path) -> Path:
    """Write ``sweep_dir/sweep.html`` from ``sweep_dir/sweep.csv`` atomically; return its path."""
    from .sweep import CSV_NAME, sweep_table
    from latent_bias_probe.report.sweep_html import render_sweep_report

    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / CSV_NAME).is_file():
        raise InputError(f"{sweep_dir / CSV_NAME}: not found (run 'probe run' on a sweep config first)")
    df = sweep_table(sweep_dir)
    rows = df.astype(object).where(df.notna(), None).to_dict("records")
    text = render_sweep_report(rows, title=f"Sweep report: {sweep_dir.name}", run_links=_run_links(sweep_dir))
    path = sweep_dir / SWEEP_REPORT_NAME
    atomic_write_text(path, text)
    log.info("sweep report: %s", path)
    return path
