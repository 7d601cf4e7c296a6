"""Which folders the toolkit writes into: new ones, empty ones, and its own.

A command that writes outputs into a folder (``probe run``, ``probe extract``, a
sweep) first checks it with :func:`check_output_dir`; a later stage (``probe fit``,
``explain``, ``report``) checks its folder with :func:`require_run_dir`. A folder is
the toolkit's own when

- its ``artifacts.json`` is a manifest of that kind of folder (a run directory's,
  or a sweep directory's), or
- (a run directory) its ``cache.h5`` is a cache in the documented layout (made by
  this toolkit or adopted from another tool), or it holds the ``shards/`` folder of
  an unfinished sharded run.

Any other folder that holds anything but the toolkit's own transient files (a lock,
a half-written temporary file) is refused, with or without ``--overwrite``:
``--overwrite`` replaces a cache made from other settings, never a user's files.
"""

from __future__ import annotations

import re
from pathlib import Path

from latent_bias_probe.configs.errors import InputError
from .artifacts import MANIFEST, MANIFEST_FORMAT, SWEEP_MANIFEST_FORMAT, read_manifest_format

#: files the toolkit itself leaves while it works (lock, temporary and partial files, the explain checkpoint)
_TRANSIENT = re.compile(r"\.lock|\..+\.(tmp|partial|h5)|\.explain\.partial\.json")
_SHARD_ENTRY = re.compile(r"\d+-of-\d+|status\.json|logs|\..+")
SWEEP_PLAN = "sweep.json"


def _entries(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if not _TRANSIENT.fullmatch(p.name))


def _holds_toolkit_cache(path: Path) -> bool:
    from latent_bias_probe.extract.cache import Cache

    cache = path / "cache.h5"
    if not cache.is_file():
        return False
    try:
        with Cache(cache):
            return True
    except (InputError, OSError, KeyError, ValueError):
        return False


def _holds_shards(path: Path) -> bool:
    shards = path / "shards"
    if not shards.is_dir():
        return False
    names = [p.name for p in shards.iterdir()]
    return bool(names) and all(_SHARD_ENTRY.fullmatch(n) for n in names)


def _legacy_sweep(path: Path) -> bool:
    """A sweep directory of an earlier version (no manifest): its ``sweep.json`` plan says so."""
    import json

    try:
        plan = json.loads((path / SWEEP_PLAN).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(plan, dict) and isinstance(plan.get("items"), list) and "run_config_sha256" in plan


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is a run directory of this toolkit (see the module docstring)."""
    path = Path(path)
    if not path.is_dir():
        return False
    return read_manifest_format(path) == MANIFEST_FORMAT or _holds_toolkit_cache(path) or _holds_shards(path)


def is_sweep_dir(path: str | Path) -> bool:
    """Whether ``path`` is a sweep directory of this toolkit (its manifest, or an earlier version's plan)."""
    path = Path(path)
    return path.is_dir() and (read_manifest_format(path) == SWEEP_MANIFEST_FORMAT or _legacy_sweep(path))


def check_out_name(out: str | Path | None) -> None:
    """Refuse an empty ``--out`` (it would mean the current folder)."""
    if out is not None and not str(out).strip():
        raise InputError("--out '': give a folder name (an empty one would write into the current folder)")


def check_output_dir(path: str | Path, kind: str = "run") -> None:
    """Refuse (exit 2) to write a run (``kind="run"``) or sweep (``"sweep"``) into ``path`` unless
    it is new, empty, or a folder of that kind made by this toolkit."""
    check_out_name(path)
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise InputError(f"{path}: exists and is not a folder; choose another --out")
    entries = _entries(path)
    if not entries:
        return
    own = is_sweep_dir(path) if kind == "sweep" else is_run_dir(path)
    if own:
        return
    what = "sweep directory" if kind == "sweep" else "run directory"
    other = " (it is a sweep directory: give a sweep config, or another --out)" if kind == "run" and is_sweep_dir(path) else (
        " (it is a run directory: give another --out for a sweep)" if kind == "sweep" and is_run_dir(path) else "")
    shown = ", ".join(entries[:3]) + (f", ... ({len(entries)} entries)" if len(entries) > 3 else "")
    raise InputError(
        f"{path}: not empty and not a {what} of this toolkit (holds {shown}; no {MANIFEST} of this toolkit"
        f"{', no cache.h5' if kind == 'run' else ''}){other}; nothing was written: choose a new or empty --out"
    )


def require_run_dir(path: str | Path) -> Path:
    """``path`` when it is a run directory of this toolkit, else exit 2 naming it."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: no such run directory")
    if not is_run_dir(path):
        raise InputError(
            f"{path}: not a run directory of this toolkit (no {MANIFEST} manifest, no cache.h5 in the documented "
            "layout); nothing was written"
        )
    return path
