"""Choose the forward runner for ``extract.backend``."""

from __future__ import annotations

from configs.errors import InputError
from extract.model import LoadedModel


def make_runner(backend: str, loaded: LoadedModel):
    """A runner with ``n_tokens(text)`` and ``forward(texts, capture=...)`` for ``backend``."""
    if backend == "hf":
        from extract.hf_runner import HFRunner

        return HFRunner(loaded)
    raise InputError(f"extract.backend: unknown backend {backend!r}")
