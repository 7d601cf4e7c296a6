"""What a forward runner (an ``extract.backend``) provides: the :class:`Runner` protocol.

A backend is one entry of ``configs.names.BACKEND_RUNNERS``: its name and the
``module:Class`` of a class that is constructed from a
:class:`~latent_bias_probe.extract.loaded.LoadedModel` and satisfies this protocol.
Subclassing :class:`~latent_bias_probe.extract.hf_runner.BaseRunner` gives
tokenisation, validation, scoring and output assembly; a subclass then implements
``_run(batch, plan)`` alone (see the backend guide in the docs).
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class Runner(Protocol):
    """One forward pass over a batch of model texts, with optional activation capture."""

    backend: str  # its name in configs.names.BACKEND_RUNNERS
    n_layers: int
    d_model: int

    def n_tokens(self, text: str) -> int:
        """Number of tokens of one model text."""

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Token counts of many texts."""

    def forward(
        self,
        texts: Sequence[str],
        capture: bool = False,
        sites: Sequence[str] = ("resid_post",),
        positions: Sequence[str] = ("last",),
        demographic_positions: Sequence[Sequence[int]] | None = None,
    ):
        """P(Yes), option mass and (with ``capture``) activations: an ``extract.hf_runner.BatchOutput``."""
