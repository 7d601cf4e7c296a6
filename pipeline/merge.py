"""Merging shard run directories (``--shard K/N``) into one run directory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from latent_bias_probe.configs.errors import InputError
from .artifacts import RunDir

log = logging.getLogger(__name__)

#: settings of where a shard ran, not of what it computed: they may differ between shards
PLACEMENT_KEYS = ("cluster.", "model.device", "model.device_map", "extract.threads")


def _shard_text(cache_path: Path) -> str:
    from latent_bias_probe.extract.cache import Cache

    with Cache(cache_path) as cache:
        return str(cache.attrs.get("shard") or "")


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"scoring.alpha": 0.05, ...}`` of a nested mapping (lists are leaves)."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def same_settings(dirs: Sequence[Path]):
    """The shards' common config; refuse (naming the first differing key) shards run with different settings.

    A merged run takes one config for all of its rows, so every setting must agree,
    the later stages' too (scoring, probes, explain): a shard made with another
    ``scoring.alpha`` would otherwise be re-scored silently with the first one's.
    Only where a shard ran may differ (:data:`PLACEMENT_KEYS`); the merged run keeps
    the first shard's.
    """
    from .results import load_run_config

    cfgs = [load_run_config(d) for d in dirs]
    first = _flat(cfgs[0].to_dict())
    for d, cfg in zip(dirs[1:], cfgs[1:]):
        other = _flat(cfg.to_dict())
        for key in sorted(set(first) | set(other)):
            if key.startswith(PLACEMENT_KEYS):
                continue
            a, b = first.get(key, "(unset)"), other.get(key, "(unset)")
            if a != b:
                raise InputError(
                    f"merge: {d / 'config.json'}: {key} is {_show(b)}, but {_show(a)} in {dirs[0] / 'config.json'}; "
                    "the shards of one job share every setting"
                )
    return cfgs[0]


def _show(value: Any) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


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

    The shards must share every setting (:func:`same_settings`); the merged run takes their config. ``out_dir`` is locked while it is
    written (:mod:`pipeline.lock`), and folders this call created are removed again if
    it fails before writing anything. Returns the merged ``results.json`` mapping.
    """
    from latent_bias_probe.extract.cache import merge_caches
    from .extract import create_run_dir, remove_empty_dirs
    from .predictions import write_predictions
    from .lock import run_lock
    from .results import assemble_results, save_run_config

    if not dirs:
        raise InputError("merge: give the shard run directories")
    caches = []
    for d in dirs:
        path = Path(d) / "cache.h5"
        if not path.is_file():
            raise InputError(f"{path}: not found (is {d} a run directory?)")
        caches.append(path)
    if len(caches) == 1 and _shard_text(caches[0]) != "1/1":
        raise InputError("merge: give at least two shard run directories (one only for a job of one shard, --shard 1/1)")
    check_complete_shards(caches)
    cfg = same_settings([Path(d) for d in dirs])
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
