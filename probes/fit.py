"""Fitting Part B (docs/methods/probes.md) for one tier: value axis, steering vectors, probes, F_LV.

:func:`fit_tier` takes a tier's activations and metadata and returns the fitted
objects and the JSON-able ``latent`` summary; the fit stage
(:mod:`pipeline.fit`) reads the cache and writes ``probes.h5``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.names import BASE, PRIMARY_SITE, PROBE_TARGETS
from latent_bias_probe.configs.schema import Config
from latent_bias_probe.configs.sections import ConfigSections

log = logging.getLogger(__name__)

PRIMARY = PRIMARY_SITE
TARGETS = PROBE_TARGETS


def _probe_labels(prompts: pd.DataFrame, target: str) -> np.ndarray:
    if target == "race_gender":
        return prompts["variant"].to_numpy()
    return prompts[target].to_numpy()


def fit_tier(
    acts: dict[tuple[str, str], np.ndarray],
    prompts: pd.DataFrame,
    p_yes: np.ndarray,
    groups: list[str],
    cfg: Config | ConfigSections,
) -> dict[str, Any]:
    """Fit everything of Part B for one tier.

    ``acts`` maps (site, position) to activations ``(n_layers, N, d)`` of the tier's
    prompts (rows aligned with ``prompts`` and ``p_yes``). ``cfg``: a config, or its
    ``probes`` and ``scoring`` sections (the only ones read). Returns the fitted
    objects per (site, position) plus the JSON-able ``latent`` mapping.
    """
    from .latent_fairness import latent_score_matrix, latent_value_fairness
    from .linear_probe import probe_sweep
    from .steering import SteeringVectors
    from .value_axis import ValueAxis

    pc, sc = cfg.probes, cfg.scoring
    is_base = (prompts["variant"] == BASE).to_numpy()
    labels = prompts["label"].to_numpy()
    case_ids = prompts["case_id"].to_numpy()
    n_cases = len(set(case_ids))
    if n_cases < 2:
        raise InputError(f"probes: need at least 2 cases for grouped folds, the tier has {n_cases}")
    n_folds = min(pc.n_folds, n_cases)
    fitted: dict[tuple[str, str], dict[str, Any]] = {}
    for key, h in acts.items():
        start = time.perf_counter()
        base_labels = labels[is_base] if pc.value_axis_target == "label" else None
        if base_labels is not None and (base_labels < 0).any():
            raise InputError("probes.value_axis_target: 'label' needs a label on every BASE prompt")
        axis = ValueAxis.fit(
            h[:, is_base], p_yes[is_base], case_ids[is_base], labels_base=base_labels,
            target=pc.value_axis_target, n_folds=n_folds, seed=pc.seed,
            layer=pc.value_axis_layer, h_all=h, p_yes_all=p_yes,
        )
        steering = SteeringVectors.fit(h, prompts["variant"].to_numpy(), groups, axis.directions)
        demo = ~is_base
        sweeps = {
            target: probe_sweep(
                h[:, demo], _probe_labels(prompts[demo], target), case_ids[demo],
                n_folds=n_folds, seed=pc.seed, n_boot=pc.bootstrap,
            )
            for target in TARGETS
        }
        fitted[key] = {"value_axis": axis, "steering": steering, "probes": sweeps}
        log.info("fit %s/%s: %d prompts x %d layers in %.1f s", *key, h.shape[1], h.shape[0], time.perf_counter() - start)

    primary = fitted[PRIMARY]
    axis = primary["value_axis"]
    S, s_cases = latent_score_matrix(acts[PRIMARY][axis.layer], axis.direction, case_ids, prompts["variant"].to_numpy(), groups)
    f_lv = latent_value_fairness(S, alpha=sc.alpha, correction=sc.correction)
    latent = {
        "value_axis_layer": int(axis.layer),
        "value_axis_auroc": _float(axis.auroc[axis.layer]),
        "value_axis_auroc_ci": axis.auroc_interval(sc.bootstrap, sc.seed, sc.ci_level),
        "value_axis_fairness": float(f_lv),
        "value_axis_target": axis.target,
        "value_axis_auroc_by_layer": _floats(axis.auroc),
        "value_axis_spearman_by_layer": _floats(axis.spearman),
        "probes": {t: primary["probes"][t].to_dict() for t in TARGETS},
        "steering": {
            "groups": list(primary["steering"].groups),
            "norm_by_layer": {g: _floats(primary["steering"].norms[:, j]) for j, g in enumerate(primary["steering"].groups)},
            "cos_value_axis_by_layer": {
                g: _floats(primary["steering"].cos_value_axis[:, j]) for j, g in enumerate(primary["steering"].groups)
            },
        },
        "other_sites": {
            f"{site}/{pos}": {
                "value_axis_layer": int(f["value_axis"].layer),
                "value_axis_auroc": _float(f["value_axis"].auroc[f["value_axis"].layer]),
                "probes": {t: {"accuracy": _floats(f["probes"][t].accuracy), "selectivity": _floats(f["probes"][t].selectivity)} for t in TARGETS},
            }
            for (site, pos), f in fitted.items()
            if (site, pos) != PRIMARY
        },
    }
    return {"fitted": fitted, "latent": latent, "latent_matrix": S, "latent_cases": [str(c) for c in s_cases], "groups": list(groups)}


def _float(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _floats(a: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=float)]
