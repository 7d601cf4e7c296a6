"""Merging shard run directories (``--shard K/N``) into one run directory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from configs.errors import InputError
from pipeline.artifacts import RunDir

log = logging.getLogger(__name__)


def merge_runs(dirs: Sequence[str | Path], out_dir: str | Path, overwrite: bool = False) -> dict:
    """Merge the caches of shard run directories into ``out_dir``; write predictions and results.

    The merged run takes the first shard's config. Returns the merged ``results.json`` mapping.
    """
    from extract.cache import merge_caches
    from pipeline.extract import write_predictions
    from pipeline.results import assemble_results, load_run_config, save_run_config

    if len(dirs) < 2:
        raise InputError("merge: give at least two shard run directories")
    caches = []
    for d in dirs:
        path = Path(d) / "cache.h5"
        if not path.is_file():
            raise InputError(f"{path}: not found (is {d} a run directory?)")
        caches.append(path)
    cfg = load_run_config(Path(dirs[0]))
    run = RunDir(out_dir)
    created = not run.path.exists()
    run.path.mkdir(parents=True, exist_ok=True)
    try:
        run.invalidate("cache.h5")
        merge_caches(caches, run / "cache.h5", overwrite=overwrite)
    except BaseException:
        if created and not any(run.path.iterdir()):
            run.path.rmdir()
        raise
    save_run_config(run, cfg)
    run.record("cache.h5")
    write_predictions(run)
    run.prune()
    return assemble_results(run)
