"""One process per run directory: a lock file with the pid and host of its holder.

``DIR/.lock`` is created with ``O_CREAT | O_EXCL`` (atomic on local and network file
systems, unlike HDF5's own file locking, which cluster file systems often turn off).
A second process exits 2 naming the holder. A lock left by a dead process on this
host is taken over with a warning; one from another host is reported, since its
process cannot be checked from here (delete the file if that job is gone).

Dead includes a *zombie*: a process that has exited but not yet been reaped by its
parent (``os.kill(pid, 0)`` still succeeds on it), which is what a SIGKILLed run
leaves where PID 1 does not reap (containers without an init) or while a driver has
not yet waited for its killed child. On Linux the state letter of ``/proc/PID/stat``
tells (``Z``/``X``); elsewhere a signalable process counts as alive. A lock whose
holder cannot be a process (a pid that is not a positive int below 2**31, this
process's own pid, a missing host) is invalid and taken over with a warning; a lock
file that is not a JSON object (after a moment's wait, in case it is being written)
is refused with one line naming it.
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
MAX_PID = 2**31 - 1
MAX_LOCK_BYTES = 1 << 16  # a lock holds a few dozen bytes


class RunLocked(InputError):
    """The run directory is being used by another process."""


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited but is not yet reaped (Linux ``/proc``; False where it cannot tell)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    fields = text[text.rfind(")") + 1 :].split()  # the name in parentheses may hold spaces
    return bool(fields) and fields[0] in ("Z", "X", "x")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return not _zombie(pid)
    except (OverflowError, ValueError, OSError):
        return False
    return not _zombie(pid)


def _invalid(holder: dict) -> str | None:
    """Why a parsed lock cannot name a running process, or None when it can."""
    pid, host = holder.get("pid"), holder.get("host")
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid <= MAX_PID:
        return f"pid {str(pid)[:40]!r} is not a process id"
    if not isinstance(host, str) or not host or len(host) > 255 or not host.isprintable():
        return f"host {str(host)[:40]!r} is not a host name"
    if host == socket.gethostname() and pid == os.getpid():
        return f"pid {pid} is this process, which did not take it"
    return None


def _read(path: Path) -> dict:
    """The lock's JSON object; {} for anything else (a FIFO, a folder, a huge or nested file, invalid JSON)."""
    try:
        if not path.is_file():
            return {}
        with path.open("rb") as f:
            data = json.loads(f.read(MAX_LOCK_BYTES + 1)[:MAX_LOCK_BYTES].decode("utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError, RecursionError):
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
    path = Path(run_dir).resolve() / LOCK_NAME  # the lock itself unresolved: a symlink there is refused, never followed
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
        if not holder:  # being written right now, or unreadable
            time.sleep(0.2)
            if not _read(path):
                raise RunLocked(f"{path}: lock file unreadable (not a JSON object); if no other run uses {path.parent}, delete it")
            continue
        pid, host = holder.get("pid"), holder.get("host")
        why = _invalid(holder)
        if why is not None:
            log.warning("%s: taking over an invalid lock (%s)", path, why)
            path.unlink(missing_ok=True)
            continue
        if host == socket.gethostname() and not _alive(pid):
            log.warning("%s: taking over the lock of process %s on %s, which is no longer running", path.parent, pid, host)
            path.unlink(missing_ok=True)
            continue
        raise RunLocked(
            f"{path.parent}: in use by process {pid} on {host} ({' '.join(str(holder.get('stage', '?')).split())[:40]} stage); "
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
