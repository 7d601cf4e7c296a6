"""Atomic file output: write under a temporary name in the same folder, then rename."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator


#: errors of writing a file that are about the place written to (a full disk, a quota, ...)
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})


def output_error(err: OSError, path: str | Path, tmp: str | Path | None = None) -> OSError | None:
    """``err`` re-addressed to the output ``path`` when it is about writing it, else None.

    A write error names a temporary file, or no file at all (``write()`` on a full
    disk); the user knows only ``path``, so that is what the message must name. A
    directory standing where ``path`` should be is named as such.
    """
    if Path(path).is_dir():
        return IsADirectoryError(errno.EISDIR, "a folder stands where this file is to be written", str(path))
    names = {None, str(tmp) if tmp is not None else None}
    if err.filename in names and (err.errno in WRITE_ERRNOS or (tmp is not None and err.filename == str(tmp))):
        return type(err)(err.errno, err.strerror or str(err), str(path))
    return None


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    If the block raises, the temporary file is removed and ``path`` is untouched,
    so a reader never sees a half-written output. A write error (a full disk, a
    folder where ``path`` should be) names ``path``, not the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "a folder stands where this file is to be written", str(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    except OSError as err:
        raise (output_error(err, path) or err) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; outputs are ordinary files
        os.replace(tmp_path, path)
    except OSError as err:
        tmp_path.unlink(missing_ok=True)
        mapped = output_error(err, path, tmp_path)
        if mapped is None:
            raise
        raise mapped from err
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def naming_output(path: str | Path) -> Iterator[None]:
    """Within the block, a write error (:func:`output_error`) names ``path`` (e.g. an HDF5 file written in place)."""
    try:
        yield
    except OSError as err:
        mapped = output_error(err, path)
        if mapped is None:
            raise
        raise mapped from err


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
