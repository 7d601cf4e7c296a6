"""Model inference: loading, prompt texts, P(Yes) scoring, forward runners, the cache.

Importing ``extract`` imports neither torch nor transformers (the CLI's fast paths
rely on it); the names below load their module on first access. Import them from
their modules in library code::

    from latent_bias_probe.extract.model import load_model, LoadedModel, ModelError
    from latent_bias_probe.extract.chat import model_text, find_user_offset, char_spans_to_token_positions
    from latent_bias_probe.extract.scoring import yes_no_ids, p_yes_from_logits
    from latent_bias_probe.extract.hf_runner import HFRunner, BatchOutput, score_prompts
    from latent_bias_probe.extract.tiny import tiny_llama
    from latent_bias_probe.extract.cache import Cache            # read a cache.h5: prompts, outputs, one layer at a time
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Cache": "extract.cache",
    "merge_caches": "extract.cache",
    "load_model": "extract.model",
    "LoadedModel": "extract.model",
    "ModelError": "extract.model",
    "model_text": "extract.chat",
    "find_user_offset": "extract.chat",
    "char_spans_to_token_positions": "extract.chat",
    "yes_no_ids": "extract.scoring",
    "p_yes_from_logits": "extract.scoring",
    "HFRunner": "extract.hf_runner",
    "BatchOutput": "extract.hf_runner",
    "score_prompts": "extract.hf_runner",
    "tiny_llama": "extract.tiny",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'extract' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
