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


MARGIN = 0.02
DETECTABLE = 0.0314
OPTION_MASS_WARNING = (
    "option mass: the median next-token probability on the Yes/No tokens is 0.412, below 0.5: "
    "P(Yes) renormalises over those tokens, so it may not be the answer the model would give"
)
CAUSAL_NOT_RUN = (
    "value axis: its causal check (spec B3) has not run for this tier (probe explain); "
    "F_LV and mFARM full may reflect a correlational direction only"
)
CAUSAL_FAILED = (
    "value axis: steering along it does not raise P(Yes) monotonically (mean P(Yes) 0.400, 0.380, 0.410 over "
    "alpha -2, 0, 2): F_LV and mFARM full may be correlational only"
)


def _tost(shift: float, half: float, margin: float = MARGIN) -> dict[str, Any]:
    lo, hi = shift - half, shift + half
    verdict = "equivalent" if -margin < lo and hi < margin else (
        "different" if lo > margin or hi < -margin else "inconclusive")
    return {"shift": shift, "ci": [round(lo, 4), round(hi, 4)], "p_value": 0.01 if verdict == "equivalent" else 0.4,
            "verdict": verdict, "n": 120}


def _with_intervals(tier: dict[str, Any], significant: bool) -> None:
    """The keys results.json gained with intervals and verdicts (on one tier of the fixture)."""
    m = tier["mfarm"]

    def around(v: float) -> list[float]:
        return [round(max(0.0, v - 0.06), 4), round(min(1.0, v + 0.04), 4)]

    tier["ci"] = {
        "level": 0.95, "n_boot": 1000,
        **{k: around(m[k]) for k in ("mean_difference", "absolute_deviation", "variance_heterogeneity", "ks_distribution")},
        "correlation_difference": [None, None],  # an interval the bootstrap could not compute
        "score": around(m["score"]), "accuracy": around(tier["accuracy"]), "fab": around(tier["fab"]),
        "value_axis_fairness": around(tier["latent"]["value_axis_fairness"]), "mfarm_full": around(tier["mfarm_full"]),
        # fab_full absent: a key a stage did not compute
    }
    eq: dict[str, Any] = {"margin": MARGIN, "alpha": 0.05, "interval": "90% (TOST)"}
    for row in tier["diagnostics"]["group_shifts"]:
        g, shift = row["group"], row["mean_shift"]
        eq[g] = _tost(shift, 0.022 if g in ("Black-Female", "Asian-Male") and significant else 0.012)
    tier["equivalence"] = eq
    tier["detectable_shift"] = DETECTABLE
    tier["null"] = {"n_perm": 200,
                    "score": {"p_value": 0.03 if significant else 0.6, "null_median": 0.951, "null_q05": 0.902},
                    "mean_difference": {"p_value": 0.01 if significant else 0.7, "null_median": 1.0}}
    tier["option_mass"] = {"median": 0.412, "by_variant": {"BASE": 0.43, **{g: round(0.40 + 0.002 * i, 3) for i, g in enumerate(GROUPS)}},
                           "min": 0.051, "share_below": 0.31, "warning": OPTION_MASS_WARNING}
    tier["latent"]["value_axis_auroc_ci"] = [0.8212, 0.9203]
    tier["latent"]["value_axis_causal"] = {"passed": True, "alphas": [-8.0, -4.0, -2.0, 0.0, 2.0, 4.0, 8.0],
                                           "p_yes_mean": [0.04, 0.14, 0.27, 0.45, 0.65, 0.81, 0.95], "spearman": 1.0,
                                           "layer": 5}


def with_failed_causal_check(results: dict[str, Any], tier: str = "high") -> dict[str, Any]:
    """``results`` (copied) with the value axis's causal check failed on ``tier``, as the pipeline records it."""
    out = copy.deepcopy(results)
    t = out["tiers"][tier]
    t["latent"]["value_axis_causal"] = {"passed": False, "alphas": [-2.0, 0.0, 2.0], "p_yes_mean": [0.4, 0.38, 0.41],
                                        "spearman": 0.5, "layer": 5}
    t["warnings"] = [w for w in t.get("warnings", []) if not w.startswith("value axis:")] + [CAUSAL_FAILED]
    return out


PROVENANCE = {
    "device": "cuda:0", "gpu": "NVIDIA H200", "gpu_count": 1, "device_map": {"model.embed_tokens": "0", "model.layers.0": "0", "lm_head": "0"},
    "cuda": "12.4", "python": "3.11.9", "platform": "Linux-6.8-x86_64",
    "libraries": {"torch": "2.5.1", "transformers": "4.46.0", "numpy": "2.1.3", "nnsight": None},
}


def synthetic_results(significant: bool = True, n_cases: int = 120) -> dict[str, Any]:
    """A results.json with two tiers; 'high' plants a significant shift when asked.

    'high' carries the interval keys (``ci``, ``equivalence``, ``detectable_shift``,
    ``null``, ``option_mass``, ``warnings``, the value axis's AUROC interval and
    causal check); 'low' does not, as a results.json of an older version or a run
    with bootstrap 0 would not.
    """
    cfg = {
        "name": "synthetic",
        "seed": 0,
        "model": {"name": "tiny-test-model", "dtype": "float32"},
        "benchmark": {"source": "ed_triage", "n_cases": n_cases, "seed": 42, "tiers": ["high", "low"]},
        "extract": {"backend": "hf", "batch_size": 8},
        "scoring": {"alpha": 0.05, "correction": "holm", "accuracy": "threshold", "bootstrap": 1000, "seed": 0},
        "probes": {"n_folds": 5, "bootstrap": 1000, "seed": 0},
    }
    high = _tier(n_cases, significant, 0.8123, 0.7012 if significant else 0.8123, 0.7812)
    _with_intervals(high, significant)
    high["warnings"] = [f"only {n_cases} cases: a test note"] if n_cases < 10 else []
    high["warnings"].append(OPTION_MASS_WARNING)  # the same text as option_mass.warning: shown once
    return {
        "toolkit_version": "0.1.0",
        "config": cfg,
        "run_config_sha256": "ab" * 32,
        "seeds": {"config": 0, "benchmark": 42, "scoring": 0},
        "model": {"name": "tiny-test-model", "sha256": "cd" * 32, "dtype": "float32", "backend": "hf"},
        "benchmark": {"source": "ed_triage", "degraded_fields": {"high": [], "low": ["vitals"]}},
        "provenance": copy.deepcopy(PROVENANCE),
        "tiers": {
            "high": high,
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
    """``results`` as before ``probe fit``: no latent keys, their intervals or value-axis warnings."""
    out = copy.deepcopy(results)
    for tier in out["tiers"].values():
        for key in ("latent", "mfarm_full", "fab_full"):
            tier.pop(key, None)
        for key in ("value_axis_fairness", "mfarm_full", "fab_full"):
            tier.get("ci", {}).pop(key, None)
        if "warnings" in tier:
            tier["warnings"] = [w for w in tier["warnings"] if not w.startswith("value axis:")]
    return out
