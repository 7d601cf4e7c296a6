"""The explain stage: steering dose–response and LEACE mediation on a fitted run.

Reads the fresh ``cache.h5`` and ``probes.h5`` of a run directory, re-runs the model
(:mod:`probes.causal`), writes ``explain.json`` and re-assembles ``results.json``
(which carries each tier's best mediation as ``latent.mediation``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from configs.errors import InputError
from configs.files import atomic_write_text
from configs.names import PRIMARY_SITE
from configs.schema import Config
from pipeline.artifacts import RunDir
from pipeline.lock import run_lock

log = logging.getLogger(__name__)

EXPLAIN_NAME = "explain.json"


def run_explain(
    run_dir: str | Path,
    layers: list[int] | None = None,
    alphas: list[float] | None = None,
    cfg: Config | None = None,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Run the explain stage on a fitted run directory; write explain.json, re-assemble results.json.

    ``layers`` and ``alphas`` override ``explain.layers`` and ``explain.alphas`` for
    this call (and are recorded in explain.json). A run whose config enables remote
    model code is refused unless ``trust_remote_code`` (:mod:`configs.trust`).
    """
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise InputError(f"{run.path}: no such run directory")
    with run_lock(run.path, "explain"):
        return _run_explain(run, layers, alphas, cfg, trust_remote_code)


def _run_explain(run: RunDir, layers, alphas, cfg: Config | None, trust_remote_code: bool) -> dict[str, Any]:
    from configs.trust import apply_trust
    from extract.cache import Cache
    from pipeline.results import load_run_config

    if cfg is None:  # first: a run directory from elsewhere can neither run its model's code nor be half-read
        cfg = apply_trust(load_run_config(run.path), trust_remote_code, str(run / "config.json"))
    if (run / "cache.h5").is_file():
        with Cache(run / "cache.h5") as cache:  # a damaged or foreign file says what is wrong with it
            if cache.attrs.get("model_kind") == "masked":
                raise InputError(f"{run / 'cache.h5'}: a masked-LM audit has no Yes/No decision to steer; 'probe explain' runs on causal models only")
    for name in ("cache.h5", "probes.h5"):
        if not run.is_fresh(name):
            state = run.why_stale(name)
            raise InputError(f"{run / name}: {state} (run 'probe fit {run.path}' first)")
    layers_key = "--layers" if layers is not None else "explain.layers"
    if alphas is not None:
        cfg.explain.alphas = list(alphas)
    if layers is not None:
        cfg.explain.layers = list(layers)
    site, position = PRIMARY_SITE
    fitted = _read_fitted(run / "probes.h5", cfg.explain.tiers or cfg.benchmark.tiers[:1], site, position)

    from extract.backends import make_runner
    from extract.model import load_model
    from pipeline.results import assemble_results
    from probes.causal import default_layers, explain_tier

    loaded = load_model(cfg.model)
    runner = make_runner(cfg.extract.backend, loaded)
    out: dict[str, Any] = {"layers": cfg.explain.layers, "alphas": list(cfg.explain.alphas), "tiers": {}}
    with Cache(run / "cache.h5") as cache:
        if cache.attrs.get("model_sha256") != loaded.sha256:
            raise InputError(f"{run / 'cache.h5'}: was made with another model (weights hash differs from {cfg.model.name})")
        prompts = cache.prompts
        p_all = cache.outputs["p_yes"].to_numpy(float)
        for tier, (axis_dirs, value_layer, steering) in fitted.items():
            rows = np.flatnonzero(prompts["tier"].to_numpy() == tier)
            part = prompts.iloc[rows].reset_index(drop=True)
            tier_layers = sorted(set(cfg.explain.layers or default_layers(loaded.n_layers, value_layer)))
            bad = [layer for layer in tier_layers if not 0 <= layer < loaded.n_layers]
            if bad:
                raise InputError(f"{layers_key}: {bad} out of range 0..{loaded.n_layers - 1}")
            h_last = cache.acts(site, position, rows)
            out["tiers"][tier] = explain_tier(
                runner, loaded.model, part, p_all[rows], h_last, axis_dirs, value_layer, steering, cfg, tier_layers
            )
    run.invalidate(EXPLAIN_NAME)
    atomic_write_text(run / EXPLAIN_NAME, json.dumps(out, indent=2, allow_nan=False) + "\n")
    run.record(EXPLAIN_NAME)
    assemble_results(run)
    return out


def _read_fitted(path: Path, tiers, site: str, position: str) -> dict[str, tuple[np.ndarray, int, dict[str, np.ndarray]]]:
    """``tier -> (value-axis directions, value-axis layer, steering vectors)`` of the tiers fitted in ``probes.h5``.

    Read before the model loads; a file not in the layout :func:`pipeline.fit.write_probes`
    writes is bad input (a run directory can come from anywhere), named in one line.
    """
    import h5py

    fitted = {}
    try:
        with h5py.File(path, "r") as probes:
            for tier in tiers:
                if f"{tier}/value_axis/{site}/{position}" not in probes:
                    continue
                ds = probes[f"{tier}/value_axis/{site}/{position}"]
                steer_group = probes[f"{tier}/steering/{site}/{position}"]
                steering = {g: np.asarray(steer_group[g][()]) for g in steer_group}
                fitted[tier] = (np.asarray(ds[()]), int(ds.attrs["layer"]), steering)
    except (OSError, KeyError, ValueError, TypeError) as err:
        detail = str(err).splitlines()[0][:100] if str(err) else type(err).__name__
        raise InputError(f"{path}: not a probes file written by 'probe fit' ({detail}); re-run 'probe fit'") from None
    if not fitted:
        raise InputError(f"{path}: no fitted tier to explain")
    return fitted
