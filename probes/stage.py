"""The fit stage: from ``DIR/cache.h5`` to ``DIR/probes.h5`` and the latent part of
``DIR/results.json`` (mfarm-spec.md Part B).

Per tier and per cached (site, position): the value axis (B1), steering vectors
and linear probes of race, gender and race×gender (B3). F_LV (B2), mFARM (full)
and FAB (full) use ``resid_post`` at ``last``, as the spec defines them.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from configs.errors import InputError
from configs.schema import Config

log = logging.getLogger(__name__)

PROBES_FORMAT = "latent-bias-probes/1"
PRIMARY = ("resid_post", "last")
TARGETS = ("race", "gender", "race_gender")


def _probe_labels(prompts: pd.DataFrame, target: str) -> np.ndarray:
    if target == "race_gender":
        return prompts["variant"].to_numpy()
    return prompts[target].to_numpy()


def fit_tier(
    acts: dict[tuple[str, str], np.ndarray],
    prompts: pd.DataFrame,
    p_yes: np.ndarray,
    groups: list[str],
    cfg: Config,
) -> dict[str, Any]:
    """Fit everything of Part B for one tier.

    ``acts`` maps (site, position) to activations ``(n_layers, N, d)`` of the tier's
    prompts (rows aligned with ``prompts`` and ``p_yes``). Returns the fitted
    objects per (site, position) plus the JSON-able ``latent`` mapping.
    """
    from probes.latent_fairness import value_axis_fairness
    from probes.linear_probe import probe_sweep
    from probes.steering import SteeringVectors
    from probes.value_axis import ValueAxis

    pc, sc = cfg.probes, cfg.scoring
    is_base = (prompts["variant"] == "BASE").to_numpy()
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
    f_lv = value_axis_fairness(
        acts[PRIMARY][axis.layer], axis.direction, case_ids, prompts["variant"].to_numpy(), groups,
        alpha=sc.alpha, correction=sc.correction,
    )
    latent = {
        "value_axis_layer": int(axis.layer),
        "value_axis_auroc": _float(axis.auroc[axis.layer]),
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
    return {"fitted": fitted, "latent": latent}


def _float(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _floats(a: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=float)]


def run_fit(run_dir: str | Path, cfg: Config | None = None) -> dict[str, Any]:
    """Fit Part B on ``run_dir/cache.h5``; write ``probes.h5`` and update ``results.json``.

    Works on any cache in the documented layout: without ``config.json`` the
    defaults apply, and Part A/C scores missing from ``results.json`` are computed
    from the cache's outputs.
    """
    from extract.cache import Cache
    from mfarm.accuracy import fab
    from mfarm.output_scores import SCORE_KEYS, geometric_mean
    from report.results import build_results_from_table, load_run_config, write_results
    from report.scoring import group_order

    run_dir = Path(run_dir)
    cache_path = run_dir / "cache.h5"
    if not cache_path.is_file():
        raise InputError(f"{cache_path}: not found (run 'probe extract' first)")
    if cfg is None:
        cfg = load_run_config(run_dir) if (run_dir / "config.json").is_file() else Config()
    with Cache(cache_path) as cache:
        if not cache.done.all():
            raise InputError(f"{cache_path}: {int((~cache.done).sum())} prompts unfinished; re-run 'probe extract' to complete it")
        if PRIMARY[0] not in cache.sites() or PRIMARY[1] not in cache.positions(PRIMARY[0]):
            raise InputError(f"{cache_path}: no acts/resid_post/last (the value axis and F_LV need it)")
        prompts = cache.prompts
        outputs = cache.outputs
        keys = [(s, p) for s in cache.sites() for p in cache.positions(s)]
        table = pd.concat([prompts, outputs], axis=1)
        results = build_results_from_table(run_dir, cfg, table, dict(cache.attrs))
        tier_results: dict[str, Any] = {}
        for tier in results["tiers"]:
            rows = np.flatnonzero(prompts["tier"].to_numpy() == tier)
            part = prompts.iloc[rows].reset_index(drop=True)
            acts = {k: cache.acts(k[0], k[1], rows) for k in keys}
            groups = group_order(part["variant"].tolist())
            tier_results[tier] = fit_tier(acts, part, outputs["p_yes"].to_numpy(float)[rows], groups, cfg)
    for tier, fitted in tier_results.items():
        entry = results["tiers"][tier]
        entry["latent"] = fitted["latent"]
        scores = [entry["mfarm"][k] for k in SCORE_KEYS] + [fitted["latent"]["value_axis_fairness"]]
        entry["mfarm_full"] = float(geometric_mean(scores))
        entry["fab_full"] = fab(entry["mfarm_full"], entry["accuracy"])
    write_probes(run_dir / "probes.h5", tier_results, cfg)
    write_results(run_dir, results)
    return results


def write_probes(path: Path, tier_results: dict[str, Any], cfg: Config) -> Path:
    """Write fitted directions and probe curves to HDF5 (no pickle), atomically."""
    import h5py

    from extract.files import atomic_path

    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = PROBES_FORMAT
        f.attrs["config"] = json.dumps(cfg.to_dict(), sort_keys=True)
        for tier, res in tier_results.items():
            for (site, pos), fitted in res["fitted"].items():
                axis = fitted["value_axis"]
                ds = f.create_dataset(f"{tier}/value_axis/{site}/{pos}", data=axis.directions.astype(np.float32))
                ds.attrs.update({"layer": axis.layer, "target": axis.target, "auroc": axis.auroc, "spearman": axis.spearman})
                steering = fitted["steering"]
                for j, group in enumerate(steering.groups):
                    ds = f.create_dataset(f"{tier}/steering/{site}/{pos}/{group}", data=steering.vectors[:, j].astype(np.float32))
                    ds.attrs["norms"] = steering.norms[:, j]
                    if steering.cos_value_axis is not None:
                        ds.attrs["cos_value_axis"] = steering.cos_value_axis[:, j]
                for target, sweep in fitted["probes"].items():
                    g = f.create_group(f"{tier}/probes/{site}/{pos}/{target}")
                    for name in ("accuracy", "ci_low", "ci_high", "control_accuracy", "selectivity"):
                        g.create_dataset(name, data=getattr(sweep, name).astype(np.float64))
                    g.attrs["chance"] = float(sweep.chance)
                    g.attrs["classes"] = json.dumps([str(c) for c in sweep.classes])
    return path
