"""The extraction's outputs on disk: the cache writer of a run directory and ``predictions.csv``.

Shared by the causal extraction (:mod:`.extract`) and the masked-LM audit (:mod:`.masked`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.files import atomic_path, naming_output

from .artifacts import RunDir

PREDICTION_COLUMNS = [
    "case_id", "tier", "variant", "race", "gender", "label", "p_yes", "p_yes_vocab", "first_token", "option_mass",
]


@dataclass(frozen=True)
class ExtractResult:
    """What the extract stage produced."""

    cache_path: Path
    predictions_path: Path
    n_prompts: int
    n_computed: int
    seconds: float


def open_cache_writer(run: RunDir, spec, table, overwrite: bool, extra: dict):
    """``CacheWriter.create_or_resume`` on ``run/cache.h5``; the cache's manifest entry is dropped (on disk too)
    while it is being written, and put back when the writer refuses the file (a refused run changes nothing)."""
    from latent_bias_probe.extract.cache import CacheWriter

    cache_path = run / "cache.h5"
    entry = run.manifest.get("cache.h5")
    run.invalidate("cache.h5", persist=True)  # the caller holds the run lock
    try:
        with naming_output(cache_path):
            return CacheWriter.create_or_resume(cache_path, spec, table, overwrite=overwrite, extra_attrs=extra)
    except BaseException:
        if entry is not None:
            run.restore("cache.h5", entry)
        raise


def write_predictions(run: RunDir) -> Path:
    """Write ``predictions.csv`` (the contract in docs/reference/run-directory.md) from the run's complete cache, atomically.

    Columns :data:`PREDICTION_COLUMNS`; ``option_mass`` is written empty where the cache
    has none (a format 1 cache, or rows merged from one).
    """
    from latent_bias_probe.extract.cache import Cache

    cache_path, out_path = run / "cache.h5", run / "predictions.csv"
    with Cache(cache_path) as cache:
        if not cache.done.all():
            raise InputError(f"{cache_path}: {int((~cache.done).sum())} prompts unfinished, cannot write predictions")
        df = pd.concat([cache.prompts, cache.outputs], axis=1)
    df["label"] = df["label"].map(lambda v: "" if int(v) < 0 else str(int(v)))
    run.invalidate("predictions.csv")
    with atomic_path(out_path) as tmp:
        df[PREDICTION_COLUMNS].to_csv(tmp, index=False, float_format="%.8g")
    run.record("predictions.csv")
    return out_path
