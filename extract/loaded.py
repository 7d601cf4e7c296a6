"""What a loaded model is, the error a failed load raises, and the weights' hash.

The lowest layer of model loading: :mod:`.model` loads and :mod:`.precision` edits
a :class:`LoadedModel`; both import it from here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.files import atomic_write_text

log = logging.getLogger(__name__)


class ModelError(RuntimeError, InputError):
    """The model cannot be loaded; the message is one line and names the model.

    It is also an :class:`configs.errors.InputError`, so the CLI reports it as bad
    input (exit code 2) without a traceback.
    """


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to run, with its tokenizer and provenance."""

    model: Any = field(repr=False)  # a transformers PreTrainedModel, eval mode
    tokenizer: Any = field(repr=False)  # a fast tokenizer; pad token set, padding_side="left"
    name: str  # as configured (the embedded name, a Hugging Face id, or a directory)
    sha256: str  # hex SHA-256 of the weights file(s), see the module docstring
    dtype: str  # "float32" or "bfloat16"
    n_layers: int
    d_model: int
    device: str = "cpu"
    path: str | None = None  # the folder the weights were loaded from


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | Path, index_dir: Path | None = None) -> str:
    """SHA-256 of one file, remembered in ``index_dir/sha256-index.json`` by
    (resolved path, size, mtime) when ``index_dir`` is given and writable."""
    path = Path(path)
    real = os.path.realpath(path)
    st = os.stat(real)
    key = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    index_path = index_dir / "sha256-index.json" if index_dir is not None else None
    index: dict[str, Any] = {}
    if index_path is not None:
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            hit = index.get(real)
            if isinstance(hit, dict) and all(hit.get(k) == v for k, v in key.items()) and hit.get("sha256"):
                return str(hit["sha256"])
        except (OSError, ValueError):
            index = {}
    digest = _hash_file(Path(real))
    if index_path is not None:
        try:
            # re-read just before writing so a concurrent writer's entries survive
            try:
                index = json.loads(index_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                index = {}
            index[real] = key | {"sha256": digest}
            atomic_write_text(index_path, json.dumps(index, indent=1, sort_keys=True))
        except OSError as err:  # an unwritable cache only costs re-hashing
            log.debug("could not update %s: %s", index_path, err)
    return digest
