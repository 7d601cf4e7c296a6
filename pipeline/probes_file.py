"""``probes.h5``: what the fit stage writes, and its readers (the latent matrices and summaries per tier)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.files import atomic_path
from latent_bias_probe.configs.names import BASE
from latent_bias_probe.configs.schema import Config
from latent_bias_probe.configs.sections import ConfigSections

PROBES_FORMAT = "latent-bias-probes/1"
PROBES_NAME = "probes.h5"
LATENT_ATTR = "latent"


def write_probes(path: Path, tier_results: dict[str, Any], cfg: Config | ConfigSections) -> Path:
    """Write fitted directions, probe curves and each tier's ``latent`` summary to HDF5 (no pickle), atomically.

    The root attribute ``config`` records ``cfg`` as JSON: the sections :func:`pipeline.run` gives
    the fit stage, or the whole config of ``probe fit DIR``.
    """
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
