"""The fit stage: from ``DIR/cache.h5`` to ``DIR/probes.h5`` (Part B: docs/methods/probes.md).

Per tier and per cached (site, position): the value axis (B1), steering vectors
and linear probes of race, gender and race×gender (B3), fitted by
:func:`probes.fit.fit_tier`. F_LV (B2) uses ``resid_post`` at ``last``, as the spec
defines it. ``probes.h5`` also stores each tier's JSON ``latent`` summary, from
which :mod:`pipeline.results` adds ``latent``, ``mfarm_full`` and ``fab_full`` to
``results.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.names import PRIMARY_SITE, tier_order
from latent_bias_probe.configs.schema import Config
from latent_bias_probe.configs.sections import ConfigSections
from .artifacts import RunDir
from .lock import run_lock
from .probes_file import LATENT_ATTR, PROBES_FORMAT, PROBES_NAME, read_latent, read_latent_matrices, write_probes  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)



def run_fit(run_dir: str | Path, cfg: ConfigSections | Config | None = None) -> dict[str, Any]:
    """Fit Part B on ``run_dir/cache.h5``; write ``probes.h5``; re-assemble and return ``results.json``.

    ``cfg``: the sections the stage table gives fit (``probes`` and ``scoring``:
    :mod:`pipeline.stages`), or a whole config; None: the run's own ``config.json``.
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


def _run_fit(run: RunDir, cfg: ConfigSections | Config | None) -> dict[str, Any]:
    from latent_bias_probe.extract.cache import Cache
    from .results import assemble_results
    from .runconfig import load_run_config, save_run_config
    from latent_bias_probe.probes.fit import fit_tier
    from .scoring import group_order

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


