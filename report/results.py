"""``results.json``: assembled from a run directory's cache, predictions and config."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from configs.errors import InputError
from configs.schema import Config, config_from_dict
from configs.version import TOOLKIT_VERSION
from extract.batch_check import read_check
from extract.files import atomic_write_text
from report.scoring import read_predictions, score_table, validate_predictions

log = logging.getLogger(__name__)

SCORE_KEYS = ("mean_difference", "absolute_deviation", "variance_heterogeneity", "ks_distribution", "correlation_difference")


def save_run_config(run_dir: Path, cfg: Config) -> Path:
    """Record the resolved config in ``DIR/config.json`` (later stages read it back)."""
    path = Path(run_dir) / "config.json"
    atomic_write_text(path, json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def load_run_config(run_dir: Path) -> Config:
    """Read ``DIR/config.json`` written by :func:`save_run_config`."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise InputError(f"{path}: not found (is {run_dir} a run directory made by 'probe run' or 'probe extract'?)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    return config_from_dict(data, Path.cwd(), str(path))


def _cache_attrs(run_dir: Path) -> dict[str, Any]:
    from extract.cache import Cache

    path = run_dir / "cache.h5"
    if not path.is_file():
        return {}
    with Cache(path) as cache:
        return dict(cache.attrs)


def build_results(run_dir: str | Path, cfg: Config) -> dict[str, Any]:
    """The Part A/C results of a run directory (design.md ``results.json`` contract)."""
    run_dir = Path(run_dir)
    df = read_predictions(run_dir / "predictions.csv")
    return build_results_from_table(run_dir, cfg, df, _cache_attrs(run_dir))  # validated twice: cheap


def build_results_from_table(run_dir: Path, cfg: Config, table: Any, attrs: dict[str, Any]) -> dict[str, Any]:
    """Part A/C results from a predictions-like table (columns of predictions.csv)."""
    s = cfg.scoring
    source = str(Path(run_dir) / "predictions.csv")
    df = validate_predictions(table, source)
    tiers = score_table(df, s.alpha, s.correction, s.accuracy, s.bootstrap, s.seed, source)
    render_report = json.loads(attrs.get("render_report", "{}") or "{}")
    return {
        "toolkit_version": TOOLKIT_VERSION,
        "config": cfg.to_dict(),
        "config_sha256": cfg.sha256(),
        "seeds": {"config": cfg.seed, "benchmark": cfg.benchmark.seed, "scoring": cfg.scoring.seed},
        "model": {
            "name": attrs.get("model", cfg.model.name),
            "sha256": attrs.get("model_sha256"),
            "dtype": attrs.get("dtype", cfg.model.dtype),
            "backend": attrs.get("backend", cfg.extract.backend),
        },
        "benchmark": {
            "source": cfg.benchmark.source,
            "degraded_fields": render_report.get("degraded", {}),
            "collapsed_duplicates": render_report.get("collapsed", {}),
            "dropped_tiers": render_report.get("dropped_tiers", {}),
        },
        "batch_invariance": read_check(run_dir),
        "tiers": tiers,
    }


def write_results(run_dir: str | Path, results: dict[str, Any]) -> Path:
    """Write ``DIR/results.json`` atomically, keeping keys later stages added per tier."""
    path = Path(run_dir) / "results.json"
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = {}
        for tier, entry in results.get("tiers", {}).items():
            for key, value in old.get("tiers", {}).get(tier, {}).items():
                entry.setdefault(key, value)
    atomic_write_text(path, json.dumps(results, indent=2) + "\n")
    return path


def summary_table(tiers: dict[str, Any]) -> str:
    """A short fixed-width table of the per-tier scores for the terminal."""
    head = ["tier", "cases", "acc", "F_MD", "F_AD", "F_VH", "F_KS", "F_CD", "F_LV", "mFARM", "full", "FAB", "FAB_full"]
    rows = [head]

    def num(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    for tier, t in tiers.items():
        m = t["mfarm"]
        rows.append(
            [tier, str(t["n_cases"]), num(t.get("accuracy"))]
            + [num(m[k]) for k in SCORE_KEYS]
            + [num(t.get("latent", {}).get("value_axis_fairness")), num(m["score"]), num(t.get("mfarm_full"))]
            + [num(t.get("fab")), num(t.get("fab_full"))]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)
