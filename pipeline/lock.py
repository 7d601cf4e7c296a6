"""One process per run directory: a lock file with the pid and host of its holder.

``DIR/.lock`` is created with ``O_CREAT | O_EXCL`` (atomic on local and network file
systems, unlike HDF5's own file locking, which cluster file systems often turn off).
A second process exits 2 naming the holder. A lock left by a dead process on this
host is taken over with a warning; one from another host is reported, since its
process cannot be checked from here (delete the file if that job is gone).
The lock is re-entrant within a process, so stages that call each other share it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from latent_bias_probe.configs.errors import InputError

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
_held: dict[Path, int] = {}


class RunLocked(InputError):
    """The run directory is being used by another process."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _try_create(path: Path, stage: str) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "stage": stage, "since": time.time()}, f)
    return True


@contextlib.contextmanager
def run_lock(run_dir: str | Path, stage: str) -> Iterator[None]:
    """Hold ``run_dir/.lock`` for the block (the directory must exist)."""
    path = (Path(run_dir) / LOCK_NAME).resolve()
    if _held.get(path):
        _held[path] += 1
        try:
            yield
        finally:
            _held[path] -= 1
        return
    for _ in range(3):
        if _try_create(path, stage):
            break
        holder = _read(path)
        pid, host = holder.get("pid"), holder.get("host")
        if host == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
            log.warning("%s: taking over the lock of process %s on %s, which is no longer running", path.parent, pid, host)
            path.unlink(missing_ok=True)
            continue
        if not holder:  # being written right now, or unreadable
            time.sleep(0.2)
            if not _read(path):
                raise RunLocked(f"{path}: lock file unreadable; if no other run uses {path.parent}, delete it")
            continue
        raise RunLocked(
            f"{path.parent}: in use by process {pid} on {host} ({holder.get('stage', '?')} stage); "
            f"wait for it, or delete {path} if that process is gone"
        )
    else:
        raise RunLocked(f"{path}: could not take the lock")
    _held[path] = 1
    try:
        yield
    finally:
        _held.pop(path, None)
        path.unlink(missing_ok=True)
