"""Forwards that change only the last position, over the earlier positions' cached keys and values.

An edit at the decision position (the last token) cannot change any earlier position:
attention is causal, so every earlier position's hidden state, key and value is the
unedited run's at every layer. :class:`LastTokenRunner` runs a left-padded batch's first
T−1 tokens once with the model's KV cache (:meth:`LastTokenRunner.prepare`), and then each
edited forward runs the last token alone through every block over a copy of that cache
(:meth:`LastTokenRunner.run`): one token per block instead of T. P(Yes) is read from that
token's logits as :class:`extract.hf_runner.BaseRunner` reads it.

The caller checks the unedited result against a full forward (:meth:`LastTokenRunner.check`)
and falls back to full forwards when a model's cache does not reproduce it.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from .scoring import score_logits


@dataclass
class LastTokenState:
    """A batch's cached first T−1 positions, and what the last token's forward needs."""

    cache: Any
    last_ids: torch.Tensor  # (B, 1)
    attention_mask: torch.Tensor  # (B, T)
    position_ids: torch.Tensor | None  # (B, 1), or None when the model takes none


class LastTokenRunner:
    """Last-position forwards over a runner's model (any backend: the runner's Hugging Face model runs them)."""

    def __init__(self, runner):
        self.runner = runner
        self.model = runner.model
        params = inspect.signature(type(self.model).forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5

    def prepare(self, texts: Sequence[str]) -> LastTokenState:
        """Run the first T−1 tokens of ``texts`` (one left-padded batch) with the KV cache on; keep the cache."""
        batch = self.runner.encode(list(texts))
        if batch["input_ids"].shape[1] < 2:
            raise ValueError("last-token forwards need at least two tokens")
        head = {k: v[:, :-1] for k, v in batch.items()}
        with torch.inference_mode():
            out = self.model(**{**self.runner._model_kwargs(head), "use_cache": True})
        cache = getattr(out, "cache", None)
        if cache is None:
            cache = getattr(out, "past_key_values", None)
        if cache is None:
            raise RuntimeError(f"{type(self.model).__name__} returned no KV cache")
        positions = batch.get("position_ids")
        return LastTokenState(cache, batch["input_ids"][:, -1:], batch["attention_mask"],
                              None if positions is None else positions[:, -1:])

    def run(self, state: LastTokenState) -> np.ndarray:
        """P(Yes) (float64, (B,)) of the last token run alone over a copy of the cache (edits in effect apply)."""
        batch = {"input_ids": state.last_ids, "attention_mask": state.attention_mask}
        if state.position_ids is not None:
            batch["position_ids"] = state.position_ids
        kwargs = {**self.runner._model_kwargs(batch), self._cache_kw: copy.deepcopy(state.cache), "use_cache": True}
        with torch.inference_mode():
            logits = self.model(**kwargs).logits[:, -1, :]
        p_yes, _, _, _ = score_logits(logits, self.runner.yes_ids, self.runner.no_ids)
        return p_yes.cpu().numpy().astype(np.float64)

    def check(self, state: LastTokenState, full: np.ndarray) -> float:
        """max |P(Yes)| difference between the unedited last-token forward and ``full`` (the runner's full forward)."""
        return float(np.abs(self.run(state) - np.asarray(full, dtype=np.float64)).max())
