"""``results.json``: assembled in one place, from the fresh artifacts of a run only.

:func:`assemble_results` is the only code that writes ``results.json``. It takes

- the Part A/C scores of every tier from ``predictions.csv`` and ``config:scoring``
  (reused from the previous ``results.json`` when both are unchanged),
- ``batch_invariance`` from ``batch_check.json``,
- ``latent``, ``mfarm_full`` and ``fab_full`` from ``probes.h5``,
- ``latent.mediation`` from ``explain.json``,
- ``masked`` (a masked-LM audit's statistics) from ``masked.json`` (:mod:`pipeline.masked`),

each only when that artifact is fresh (:mod:`pipeline.artifacts`); a key whose
artifact is missing or stale is absent, never carried over. The result is checked
against the JSON Schema ``pipeline/schemas/results.schema.json`` before it is
written.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.files import atomic_write_text
from latent_bias_probe.configs.hashes import extraction_sha256, run_config_sha256
from latent_bias_probe.configs.names import SCORE_KEYS, VALUE_AXIS_WARNING
from latent_bias_probe.configs.schema import Config, config_from_dict
from latent_bias_probe.configs.version import TOOLKIT_VERSION
from .artifacts import RunDir
from .lock import run_lock

log = logging.getLogger(__name__)

RESULTS_NAME = "results.json"
SCHEMA_PATH = Path(__file__).with_name("schemas") / "results.schema.json"
#: per-tier keys that come from later stages (everything else is Part A/C)
LATENT_KEYS = ("latent", "mfarm_full", "fab_full")
#: interval keys that need the latent matrix of probes.h5
LATENT_CI_KEYS = ("value_axis_fairness", "mfarm_full", "fab_full")


class ResultsSchemaError(InputError, ValueError):
    """A results mapping that does not match ``results.schema.json``."""


# ---------------------------------------------------------------------- config.json


def save_run_config(run_dir: str | Path | RunDir, cfg: Config) -> Path:
    """Record the resolved config in ``DIR/config.json`` atomically (later stages read it back)."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    path = run / "config.json"
    text = json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n"
    if path.is_file() and path.read_text(encoding="utf-8") == text and "config.json" in run.manifest:
        return path
    run.invalidate("config.json")
    atomic_write_text(path, text)
    run.record("config.json")
    run.forget()
    return path


def load_run_config(run_dir: str | Path) -> Config:
    """Read ``DIR/config.json`` written by :func:`save_run_config`."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise InputError(f"{path}: not found (is {run_dir} a run directory made by 'probe run' or 'probe extract'?)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return config_from_dict(data, Path.cwd(), str(path))


# ---------------------------------------------------------------------- schema


@lru_cache(maxsize=1)
def results_schema() -> dict[str, Any]:
    """The JSON Schema of ``results.json`` shipped with the toolkit."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_results(results: Any, source: str = RESULTS_NAME) -> None:
    """Raise :class:`ResultsSchemaError` (one line: the path inside the JSON and the problem) unless valid."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(results_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(results))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ResultsSchemaError(f"{source}: {where}: {error.message.splitlines()[0][:200]}")


# ---------------------------------------------------------------------- assembly


def _cache_attrs(run: RunDir) -> dict[str, Any]:
    from latent_bias_probe.extract.cache import Cache

    with Cache(run / "cache.h5") as cache:
        return dict(cache.attrs)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _output_tiers(run: RunDir, cfg: Config) -> dict[str, Any]:
    """Part A/C per tier: reused when predictions.csv and config:scoring are what the last results used."""
    from .score import read_predictions
    from latent_bias_probe.report.scoring import score_table

    old = _read_json(run / RESULTS_NAME) if run.exists(RESULTS_NAME) else None
    recorded = run.recorded_inputs(RESULTS_NAME)
    same_inputs = all(
        recorded.get(key) is not None and recorded.get(key) == run.fingerprint(key)
        for key in ("predictions.csv", "config:scoring")
    ) and run.fingerprint(RESULTS_NAME) == (run.manifest.get(RESULTS_NAME) or {}).get("sha256")
    if same_inputs and isinstance(old, dict) and isinstance(old.get("tiers"), dict):
        tiers = {t: {k: v for k, v in e.items() if k not in LATENT_KEYS} for t, e in old["tiers"].items()}
        same_probes = recorded.get("probes.h5") is not None and recorded.get("probes.h5") == run.fingerprint("probes.h5")
        for entry in tiers.values():
            if not same_probes:  # the latent intervals were made from another (or no) probes.h5
                entry["ci"] = {k: v for k, v in (entry.get("ci") or {}).items() if k not in LATENT_CI_KEYS}
            entry["warnings"] = [w for w in entry.get("warnings", []) if not w.startswith(LATENT_WARNING_PREFIX)]
            if not entry["warnings"]:
                entry.pop("warnings")
        return tiers
    s = cfg.scoring
    df = read_predictions(run / "predictions.csv")
    return score_table(
        df, s.alpha, s.correction, s.accuracy, s.bootstrap, s.seed, str(run / "predictions.csv"),
        ci_level=s.ci_level, margin=s.equivalence_margin, permutations=s.permutations,
        option_mass_threshold=s.option_mass_threshold,
    )


LATENT_WARNING_PREFIX = VALUE_AXIS_WARNING


def _latent_intervals(run: RunDir, cfg: Config, tiers: dict[str, Any]) -> None:
    """Intervals of every score including F_LV, mFARM full and FAB full, resampling P and S together."""
    import numpy as np

    from .fit import read_latent_matrices
    from .score import read_predictions
    from latent_bias_probe.mfarm.resampling import score_intervals
    from latent_bias_probe.report.scoring import group_order, tier_matrices

    s = cfg.scoring
    df = read_predictions(run / "predictions.csv")
    for tier, (S, s_cases, columns) in read_latent_matrices(run / "probes.h5").items():
        if tier not in tiers:
            continue
        part = df[df["tier"] == tier]
        groups = group_order(part["variant"].tolist())
        P, L, cases = tier_matrices(part, groups)
        if columns[1:] != groups or sorted(s_cases) != sorted(cases):
            continue  # layouts differ: leave the latent intervals out rather than misalign them
        order = [s_cases.index(c) for c in cases]
        tiers[tier]["ci"] = score_intervals(
            P, L, s.alpha, s.correction, s.bootstrap, s.seed, level=s.ci_level, accuracy_method=s.accuracy,
            S=np.asarray(S)[order],
        )


def value_axis_check(explain_tier: dict[str, Any]) -> dict[str, Any] | None:
    """Spec B3's causal check of the value axis: steering along v̂ raises mean P(Yes) monotonically.

    ``passed`` when mean P(Yes) does not decrease from one α to the next (α sorted)
    and ends higher than it starts.
    """
    dose = (explain_tier.get("dose_response") or {}).get("value_axis")
    if not dose or len(dose.get("alphas") or []) < 2:
        return None
    pairs = sorted(zip(dose["alphas"], dose["p_yes_mean"]))
    means = [m for _, m in pairs]
    passed = all(b >= a for a, b in zip(means, means[1:])) and means[-1] > means[0]
    return {"passed": bool(passed), "alphas": [a for a, _ in pairs], "p_yes_mean": means,
            "spearman": dose.get("spearman"), "layer": dose.get("layer")}


def build_results(run: RunDir, cfg: Config) -> dict[str, Any]:
    """The results mapping of a run from its fresh artifacts (see the module docstring)."""
    from latent_bias_probe.mfarm.accuracy import fab
    from latent_bias_probe.mfarm.output_scores import geometric_mean
    from .fit import read_latent
    from latent_bias_probe.probes.causal import best_mediation

    if not run.is_fresh("predictions.csv"):
        raise InputError(f"{run / 'predictions.csv'}: {run.why_stale('predictions.csv')} (run 'probe extract' first)")
    attrs = _cache_attrs(run)
    render_report = json.loads(attrs.get("render_report", "{}") or "{}")
    tiers = _output_tiers(run, cfg)
    if run.is_fresh("probes.h5"):
        for tier, latent in read_latent(run / "probes.h5").items():
            if tier not in tiers:
                continue
            entry = tiers[tier]
            entry["latent"] = latent
            scores = [entry["mfarm"][k] for k in SCORE_KEYS] + [latent["value_axis_fairness"]]
            entry["mfarm_full"] = float(geometric_mean(scores))
            entry["fab_full"] = fab(entry["mfarm_full"], entry["accuracy"])
        have = all(set(LATENT_CI_KEYS) <= set(tiers[t].get("ci") or {}) for t in tiers if "latent" in tiers[t])
        if cfg.scoring.bootstrap and not have:
            _latent_intervals(run, cfg, tiers)
    explain = (_read_json(run / "explain.json") or {}) if run.is_fresh("explain.json") else {}
    for tier, entry in (explain.get("tiers") or {}).items():
        if tier in tiers and "latent" in tiers[tier]:
            tiers[tier]["latent"]["mediation"] = best_mediation(entry.get("mediation") or [])
            check = value_axis_check(entry)
            if check is not None:
                tiers[tier]["latent"]["value_axis_causal"] = check
    for tier, entry in tiers.items():
        if "latent" not in entry:
            continue
        check = entry["latent"].get("value_axis_causal")
        if check is None:
            note = (f"{LATENT_WARNING_PREFIX} its causal check (spec B3) has not run for this tier (probe explain); "
                    "F_LV and mFARM full may reflect a correlational direction only")
        elif not check["passed"]:
            note = (f"{LATENT_WARNING_PREFIX} steering along it does not raise P(Yes) monotonically "
                    f"(mean P(Yes) {', '.join(f'{m:.3f}' for m in check['p_yes_mean'])} over alpha "
                    f"{', '.join(f'{a:g}' for a in check['alphas'])}): F_LV and mFARM full may be correlational only")
        else:
            continue
        entry.setdefault("warnings", []).append(note)
    check = _read_json(run / "batch_check.json") if run.is_fresh("batch_check.json") else None
    masked = None
    if run.is_fresh("masked.json"):
        from .masked import masked_results, read_masked

        data = read_masked(run / "masked.json")
        masked = masked_results(data, cfg) if data is not None else None
    out = {
        "toolkit_version": TOOLKIT_VERSION,
        "config": cfg.to_dict(),
        "run_config_sha256": run_config_sha256(cfg),
        "extraction_sha256": extraction_sha256(cfg),
        "seeds": {"config": cfg.seed, "benchmark": cfg.benchmark.seed, "scoring": cfg.scoring.seed, "probes": cfg.probes.seed},
        "model": {
            "name": attrs.get("model", cfg.model.name),
            "sha256": attrs.get("model_sha256"),
            "dtype": attrs.get("dtype", cfg.model.dtype),
            "backend": attrs.get("backend", cfg.extract.backend),
            **({"n_layers": int(attrs["n_layers"])} if attrs.get("n_layers") is not None else {}),
            **{key: json.loads(attrs[key]) for key in ("prompt_framing", "answer_tokens") if attrs.get(key)},
        },
        "benchmark": {
            "source": cfg.benchmark.source,
            "degraded_fields": render_report.get("degraded", {}),
            "collapsed_duplicates": render_report.get("collapsed", {}),
            "dropped_tiers": render_report.get("dropped_tiers", {}),
        },
        "provenance": json.loads(attrs["provenance"]) if attrs.get("provenance") else None,
        "batch_invariance": check if isinstance(check, dict) else None,
        "tiers": tiers,
    }
    if masked is not None:
        out["masked"] = masked
    return out


def assemble_results(run_dir: str | Path | RunDir) -> dict[str, Any]:
    """Build, validate and write ``DIR/results.json`` from the run's fresh artifacts; return it."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if not run.path.is_dir():
        raise InputError(f"{run.path}: no such run directory")
    with run_lock(run.path, "score"):
        run.prune()
        cfg = load_run_config(run.path)
        results = build_results(run, cfg)
        validate_results(results, str(run / RESULTS_NAME))
        run.invalidate(RESULTS_NAME)
        atomic_write_text(run / RESULTS_NAME, json.dumps(results, indent=2) + "\n")
        run.record(RESULTS_NAME)
    return results


def summary_table(tiers: dict[str, Any]) -> str:
    """A short fixed-width table of the per-tier scores for the terminal."""
    from latent_bias_probe.report.terminal import summary_table as table

    return table(tiers)
