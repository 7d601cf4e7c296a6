"""The toolkit's hashes of configs: one name, one meaning each.

- :func:`run_config_sha256`: the whole resolved config (results.json
  ``run_config_sha256``; a sweep item is complete when its results carry its own).
- :func:`extraction_sha256`: only the sections that determine what ``cache.h5``
  holds (model, benchmark, extraction settings). The cache stores it in the root
  attribute that the cache contract calls ``config_sha256``; a resumed run or a
  shard merge compares it.
- :func:`section_sha256`: one named part of the config (an input of a run artifact,
  :mod:`pipeline.artifacts`).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .schema import Config

#: extract settings that do not change the cache's contents (in float32 not beyond
#: round-off; ``batch_check.json`` measures how much at reduced precision)
EXTRACT_NOT_IN_IDENTITY = ("batch_size", "threads", "batch_check")
#: model settings that say where the model runs, not what it computes (beyond round-off)
MODEL_NOT_IN_IDENTITY = ("cache_dir", "device", "device_map")


def _sha256(data: Any) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def run_config_sha256(cfg: "Config") -> str:
    """SHA-256 of the whole config (canonical JSON)."""
    return _sha256(cfg.to_dict())


def extraction_sections(cfg: "Config") -> dict[str, Any]:
    """The config data that determines a cache's contents.

    Batch size, thread count and the batch check are left out (see
    :data:`EXTRACT_NOT_IN_IDENTITY`); so are ``--limit-cases`` and ``--shard``: they
    select prompts, which the cache compares one by one, and shards of one job must
    share an identity to be merged. ``model.cache_dir`` only says where a converted
    model is kept, ``model.device`` and ``model.device_map`` where it runs.
    """
    data = cfg.to_dict()
    model = {k: v for k, v in data["model"].items() if k not in MODEL_NOT_IN_IDENTITY}
    if model.get("kind") == "auto":  # the default: hashes of configs from before model.kind stay the same
        model.pop("kind")
    out = {
        "model": model,
        "benchmark": data["benchmark"],
        "extract": {k: v for k, v in data["extract"].items() if k not in EXTRACT_NOT_IN_IDENTITY},
    }
    if data.get("masked") is not None:  # a masked-LM audit's templates, target words and corpus
        out["masked"] = data["masked"]
    return out


def extraction_sha256(cfg: "Config") -> str:
    """SHA-256 of :func:`extraction_sections` (the cache's ``config_sha256`` attribute)."""
    # default=str and non-canonical separators: the value earlier versions stored
    blob = json.dumps(extraction_sections(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def section_sha256(cfg: "Config", section: str) -> str:
    """SHA-256 of one part of the config: a top-level section name, ``extraction``, or ``batch_check``."""
    data = cfg.to_dict()
    if section == "extraction":
        return extraction_sha256(cfg)
    if section == "batch_check":
        return _sha256({"batch_size": data["extract"]["batch_size"], "batch_check": data["extract"]["batch_check"]})
    return _sha256(data[section])
