"""The fit stage: from ``DIR/cache.h5`` to ``DIR/probes.h5`` (mfarm-spec.md Part B).

Per tier and per cached (site, position): the value axis (B1), steering vectors
and linear probes of race, gender and race×gender (B3), fitted by
:func:`probes.fit.fit_tier`. F_LV (B2) uses ``resid_post`` at ``last``, as the spec
defines it. ``probes.h5`` also stores each tier's JSON ``latent`` summary, from
which :mod:`pipeline.results` adds ``latent``, ``mfarm_full`` and ``fab_full`` to
``results.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.files import atomic_path
from latent_bias_probe.configs.names import BASE, PRIMARY_SITE, tier_order
from latent_bias_probe.configs.schema import Config
from .artifacts import RunDir
from .lock import run_lock

log = logging.getLogger(__name__)

PROBES_FORMAT = "latent-bias-probes/1"
PROBES_NAME = "probes.h5"
LATENT_ATTR = "latent"


def run_fit(run_dir: str | Path, cfg: Config | None = None) -> dict[str, Any]:
    """Fit Part B on ``run_dir/cache.h5``; write ``probes.h5``; re-assemble and return ``results.json``.

    Works on any cache in the documented layout: a cache no manifest lists is
    adopted as it is, and without ``config.json`` the defaults apply (and are
    recorded there).
    """
    run = RunDir(run_dir)
    cache_path = run / "cache.h5"
    if not cache_path.is_file():
        raise InputError(f"{cache_path}: not found (run 'probe extract' first)")
    with run_lock(run.path, "fit"):
        return _run_fit(run, cfg)


def _run_fit(run: RunDir, cfg: Config | None) -> dict[str, Any]:
    from latent_bias_probe.extract.cache import Cache
    from .results import assemble_results, load_run_config, save_run_config
    from latent_bias_probe.probes.fit import fit_tier
    from latent_bias_probe.report.scoring import group_order

    cache_path = run / "cache.h5"
    with Cache(cache_path):  # a damaged or foreign file is named as such (CacheFormatError), not as stale
        pass
    if cfg is None and (run / "config.json").is_file():
        cfg = load_run_config(run.path)  # an unreadable config.json is named before any freshness check
    run.adopt("cache.h5")
    if not run.is_fresh("cache.h5"):
        raise InputError(f"{cache_path}: {run.why_stale('cache.h5')} (re-run 'probe extract' on this directory)")
    if cfg is None:
        if not (run / "config.json").is_file():
            save_run_config(run, Config())
            run.adopt("config.json")
        cfg = load_run_config(run.path)
    site, position = PRIMARY_SITE
    with Cache(cache_path) as cache:
        if not cache.done.all():
            raise InputError(f"{cache_path}: {int((~cache.done).sum())} prompts unfinished; re-run 'probe extract' to complete it")
        if site not in cache.sites() or position not in cache.positions(site):
            raise InputError(f"{cache_path}: no acts/{site}/{position} (the value axis and F_LV need it)")
        prompts = cache.prompts
        p_yes = cache.outputs["p_yes"].to_numpy(float)
        keys = [(s, p) for s in cache.sites() for p in cache.positions(s)]
        tier_results: dict[str, Any] = {}
        for tier in tier_order(prompts["tier"]):
            rows = np.flatnonzero(prompts["tier"].to_numpy() == tier)
            part = prompts.iloc[rows].reset_index(drop=True)
            acts = {k: cache.acts(k[0], k[1], rows) for k in keys}
            groups = group_order(part["variant"].tolist())
            tier_results[tier] = fit_tier(acts, part, p_yes[rows], groups, cfg)
    run.invalidate(PROBES_NAME)
    write_probes(run / PROBES_NAME, tier_results, cfg)
    run.record(PROBES_NAME)
    return assemble_results(run)


def write_probes(path: Path, tier_results: dict[str, Any], cfg: Config) -> Path:
    """Write fitted directions, probe curves and each tier's ``latent`` summary to HDF5 (no pickle), atomically."""
    import h5py

    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = PROBES_FORMAT
        f.attrs["config"] = json.dumps(cfg.to_dict(), sort_keys=True)
        for tier, res in tier_results.items():
            group = f.require_group(tier)
            group.attrs[LATENT_ATTR] = json.dumps(res["latent"], sort_keys=True, allow_nan=False)
            ds = group.create_dataset("latent_matrix", data=np.asarray(res["latent_matrix"], dtype=np.float64))
            ds.attrs["cases"] = json.dumps(res["latent_cases"])
            ds.attrs["columns"] = json.dumps([BASE, *res["groups"]])
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


def read_latent_matrices(path: Path) -> dict[str, tuple[np.ndarray, list[str], list[str]]]:
    """``tier -> (S, case ids of its rows, column names)``: the latent matrix of spec B2 per tier."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:  # read after read_latent has checked the file
        for tier, group in f.items():
            if isinstance(group, h5py.Group) and "latent_matrix" in group:
                ds = group["latent_matrix"]
                out[tier] = (ds[()], json.loads(ds.attrs["cases"]), json.loads(ds.attrs["columns"]))
    return out


def read_latent(path: Path) -> dict[str, dict[str, Any]]:
    """``tier -> latent summary`` stored in a ``probes.h5`` by :func:`write_probes`."""
    import h5py

    out: dict[str, dict[str, Any]] = {}
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != PROBES_FORMAT:
                raise InputError(f"{path}: not a probes file written by 'probe fit' (format {f.attrs.get('format')!r})")
            for tier, group in f.items():
                if isinstance(group, h5py.Group) and LATENT_ATTR in group.attrs:
                    out[tier] = json.loads(group.attrs[LATENT_ATTR])
    except (OSError, KeyError, ValueError) as err:
        raise InputError(f"{path}: not a probes file written by 'probe fit' ({str(err).splitlines()[0][:80]}); re-run 'probe fit'") from None
    return out
