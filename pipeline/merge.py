"""Merging shard run directories (``--shard K/N``) into one run directory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from latent_bias_probe.configs.errors import InputError
from .artifacts import RunDir

log = logging.getLogger(__name__)


def check_complete_shards(caches: Sequence[Path]) -> None:
    """Refuse unless the caches are the shards 1/N .. N/N of one job, each exactly once."""
    from latent_bias_probe.extract.cache import Cache

    seen: dict[int, Path] = {}
    total = None
    for path in caches:
        with Cache(path) as cache:
            text = str(cache.attrs.get("shard") or "")
        try:
            k, n = (int(x) for x in text.split("/"))
        except ValueError:
            raise InputError(f"{path}: not a shard (made without --shard K/N); merge combines the shards of one job") from None
        if total is None:
            total = n
        elif n != total:
            raise InputError(f"{path}: shard {k}/{n} does not belong to a job of {total} shards")
        if k in seen:
            raise InputError(f"{path}: shard {k}/{n} given twice (also {seen[k]})")
        seen[k] = path
    missing = [k for k in range(1, (total or 0) + 1) if k not in seen]
    if missing:
        names = ", ".join(f"{k}/{total}" for k in missing)
        raise InputError(f"merge: shard{'s' if len(missing) > 1 else ''} {names} missing; merge needs every shard of the job")


def merge_runs(dirs: Sequence[str | Path], out_dir: str | Path, overwrite: bool = False) -> dict:
    """Merge the caches of shard run directories into ``out_dir``; write predictions and results.

    The merged run takes the first shard's config. ``out_dir`` is locked while it is
    written (:mod:`pipeline.lock`), and folders this call created are removed again if
    it fails before writing anything. Returns the merged ``results.json`` mapping.
    """
    from latent_bias_probe.extract.cache import merge_caches
    from .extract import create_run_dir, remove_empty_dirs, write_predictions
    from .lock import run_lock
    from .results import assemble_results, load_run_config, save_run_config

    if len(dirs) < 2:
        raise InputError("merge: give at least two shard run directories")
    caches = []
    for d in dirs:
        path = Path(d) / "cache.h5"
        if not path.is_file():
            raise InputError(f"{path}: not found (is {d} a run directory?)")
        caches.append(path)
    check_complete_shards(caches)
    cfg = load_run_config(Path(dirs[0]))
    run = RunDir(out_dir)
    created = create_run_dir(run.path)
    try:
        with run_lock(run.path, "merge"):  # one process per run directory, the merged one too
            run.invalidate("cache.h5")
            merge_caches(caches, run / "cache.h5", overwrite=overwrite)
            save_run_config(run, cfg)
            run.record("cache.h5")
            write_predictions(run)
            run.prune()
            return assemble_results(run)
    except BaseException:
        remove_empty_dirs(created)  # only folders this call created and left empty
        raise
