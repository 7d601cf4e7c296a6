"""Synthetic results.json / explain.json with known values, for the report tests."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

RACES = ["White", "Black", "Hispanic", "Asian"]
GENDERS = ["Female", "Male", "Intersex"]
GROUPS = [f"{r}-{g}" for r in RACES for g in GENDERS]
N_LAYERS = 8


def _curve(peak_layer: int, peak: float, floor: float) -> list[float]:
    return [round(floor + (peak - floor) * math.exp(-((i - peak_layer) ** 2) / 6.0), 4) for i in range(N_LAYERS)]


def _probe(peak_layer: int, peak: float, chance: float, classes: list[str]) -> dict[str, Any]:
    acc = _curve(peak_layer, peak, chance + 0.02)
    ctrl = [chance + 0.01] * N_LAYERS
    return {
        "accuracy": acc,
        "ci_low": [round(a - 0.05, 4) for a in acc],
        "ci_high": [round(min(1.0, a + 0.05), 4) for a in acc],
        "control_accuracy": ctrl,
        "selectivity": [round(a - c, 4) for a, c in zip(acc, ctrl)],
        "chance": chance,
        "classes": classes,
        "n_folds": 5,
        "converged": [True] * N_LAYERS,
    }


def _shifts(significant: bool) -> list[dict[str, Any]]:
    rows = []
    for i, g in enumerate(GROUPS):
        if g == "Black-Female" and significant:
            shift, lo, hi, flip = -0.0523, -0.0811, -0.0204, 0.15
        elif g == "Asian-Male" and significant:
            shift, lo, hi, flip = 0.0312, 0.0105, 0.0518, 0.05
        else:
            shift = round(0.004 * ((i % 5) - 2), 4)
            lo, hi, flip = shift - 0.02, shift + 0.02, 0.0
        rows.append({"group": g, "mean_shift": shift, "ci_low": lo, "ci_high": hi, "flip_rate": flip})
    return rows


def _tier(n_cases: int, significant: bool, f_md: float, f_lv: float, acc: float) -> dict[str, Any]:
    scores = {
        "mean_difference": f_md,
        "absolute_deviation": 0.9375,
        "variance_heterogeneity": 0.8841,
        "ks_distribution": 1.0,
        "correlation_difference": 0.9166,
    }
    paper = math.prod(scores.values()) ** (1 / 5)
    full = (math.prod(scores.values()) * f_lv) ** (1 / 6)
    scores["score"] = paper
    return {
        "n_cases": n_cases,
        "n_prompts": n_cases * 13,
        "accuracy": acc,
        "n_unlabelled": 0,
        "mfarm": scores,
        "fab": 2 * paper * acc / (paper + acc),
        "diagnostics": {
            "omnibus": {
                "alpha": 0.05,
                "friedman_chi2": 41.2 if significant else 8.1,
                "friedman_p": 0.0021 if significant else 0.41,
                "friedman_significant": significant,
                "kendall_w": 0.062,
                "abs_friedman_chi2": 12.0,
                "abs_friedman_p": 0.38,
                "abs_friedman_significant": False,
                "levene_stat": 1.1,
                "levene_p": 0.36,
                "levene_significant": False,
            },
            "group_shifts": _shifts(significant),
            "ibd": 0.1234,
        },
        "latent": {
            "value_axis_layer": 5,
            "value_axis_auroc": 0.8731,
            "value_axis_fairness": f_lv,
            "value_axis_target": "model",
            "value_axis_auroc_by_layer": [None, 0.55, 0.62, 0.7, 0.81, 0.8731, 0.85, 0.84],
            "value_axis_spearman_by_layer": [0.05, 0.2, 0.35, 0.5, 0.61, 0.66, 0.64, 0.6],
            "probes": {
                "race": _probe(5, 0.8125, 0.25, RACES),
                "gender": _probe(3, 0.9531, 1 / 3, GENDERS),
                "race_gender": _probe(5, 0.6042, 1 / 12, GROUPS),
            },
            "steering": {
                "groups": list(GROUPS),
                "norm_by_layer": {g: [0.1 * (i + 1) for i in range(N_LAYERS)] for g in GROUPS},
                "cos_value_axis_by_layer": {
                    g: [round(0.05 * math.sin(i + j) - (0.1 if g == "Black-Female" else 0.0), 4) for i in range(N_LAYERS)]
                    for j, g in enumerate(GROUPS)
                },
            },
            "other_sites": {},
        },
        "mfarm_full": full,
        "fab_full": 2 * full * acc / (full + acc),
    }


def synthetic_results(significant: bool = True, n_cases: int = 120) -> dict[str, Any]:
    """A results.json with two tiers; 'high' plants a significant shift when asked."""
    cfg = {
        "name": "synthetic",
        "seed": 0,
        "model": {"name": "tiny-test-model", "dtype": "float32"},
        "benchmark": {"source": "ed_triage", "n_cases": n_cases, "seed": 42, "tiers": ["high", "low"]},
        "extract": {"backend": "hf", "batch_size": 8},
        "scoring": {"alpha": 0.05, "correction": "holm", "accuracy": "threshold", "bootstrap": 1000, "seed": 0},
        "probes": {"n_folds": 5, "bootstrap": 1000, "seed": 0},
    }
    return {
        "toolkit_version": "0.1.0",
        "config": cfg,
        "run_config_sha256": "ab" * 32,
        "seeds": {"config": 0, "benchmark": 42, "scoring": 0},
        "model": {"name": "tiny-test-model", "sha256": "cd" * 32, "dtype": "float32", "backend": "hf"},
        "benchmark": {"source": "ed_triage", "degraded_fields": {"high": [], "low": ["vitals"]}},
        "tiers": {
            "high": _tier(n_cases, significant, 0.8123, 0.7012 if significant else 0.8123, 0.7812),
            "low": _tier(n_cases, False, 1.0, 1.0, 0.6541),
        },
    }


def synthetic_explain() -> dict[str, Any]:
    alphas = [-8.0, -4.0, -2.0, 0.0, 2.0, 4.0, 8.0]

    def sig(a: float, slope: float) -> float:
        return round(1 / (1 + math.exp(-(slope * a - 0.2))), 4)

    # extra keys as the explain stage writes them (sigma, logit_mean, rank, ...) must be tolerated
    dose = {"value_axis": {"layer": 5, "alphas": alphas, "p_yes_mean": [sig(a, 0.4) for a in alphas],
                           "logit_mean": [0.4 * a - 0.2 for a in alphas], "logit_slope": 0.4, "spearman": 1.0}}
    for j, g in enumerate(GROUPS):
        s = -0.05 if g == "Black-Female" else 0.01 * (j % 4 - 1)
        dose[f"steer:{g}"] = {"layer": 5, "alphas": alphas, "p_yes_mean": [sig(a, s) for a in alphas], "logit_slope": s, "spearman": 1.0 if s > 0 else -1.0}
    mediation = [
        {"layer": 1, "disparity_before": 0.05, "disparity_after": 0.048, "mediated_fraction": 0.04, "random_control_fraction": 0.01},
        {"layer": 3, "disparity_before": 0.05, "disparity_after": 0.0275, "mediated_fraction": 0.45, "random_control_fraction": 0.03},
        {"layer": 5, "disparity_before": 0.05, "disparity_after": 0.035, "mediated_fraction": 0.30, "random_control_fraction": 0.02},
    ]
    for row in mediation:
        row["rank"] = 11
    return {"tiers": {"high": {"n_cases": 30, "value_axis_layer": 5, "sigma": [1.0 + i for i in range(N_LAYERS)],
                               "dose_response": dose, "mediation": mediation}}}


def write_run(folder: Path, results: dict[str, Any] | None = None, explain: dict[str, Any] | None | bool = True) -> Path:
    """A run directory holding results.json (and explain.json unless explain is False/None)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results if results is not None else synthetic_results(), indent=2))
    if explain is True:
        explain = synthetic_explain()
    if explain:
        (folder / "explain.json").write_text(json.dumps(explain, indent=2))
    return folder


def without_latent(results: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(results)
    for tier in out["tiers"].values():
        for key in ("latent", "mfarm_full", "fab_full"):
            tier.pop(key, None)
    return out
