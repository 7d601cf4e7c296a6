"""Mechanistic probes over cached activations (spec ``mfarm-spec.md`` Part B).

Functions here take arrays — activations ``h`` of shape ``(n_layers, N, d)``
and per-prompt metadata — and never read files; the fit and explain stages
(``pipeline/``) wire them to the HDF5 cache.

- :class:`ValueAxis` — the decision direction v̂_ℓ per layer, its held-out AUROC
  and Spearman ρ, and the value layer ℓ* (B1).
- :func:`latent_scores`, :func:`latent_score_matrix`, :func:`latent_value_fairness`,
  :func:`value_axis_fairness` — the latent matrix S and F_LV (B2).
- :func:`probe_sweep` / :class:`ProbeSweep` — linear-probe decodability with
  selectivity at every layer, batched in torch (B3).
- :class:`SteeringVectors` — group-minus-BASE mean differences and their cosine
  with the value axis (B3).
- :func:`fit_tier` — all of Part B for one tier (what ``probe fit`` runs per tier).

Importing this package does not import torch; :func:`probe_sweep` does, when called.
"""

from .errors import ProbeInputError
from .folds import group_folds
from .latent_fairness import (
    latent_score_matrix,
    latent_scores,
    latent_value_fairness,
    value_axis_fairness,
)
from .linear_probe import ProbeSweep, probe_sweep
from .steering import SteeringVectors
from .value_axis import ValueAxis
from .fit import fit_tier

__all__ = [
    "ProbeInputError",
    "ProbeSweep",
    "SteeringVectors",
    "ValueAxis",
    "fit_tier",
    "group_folds",
    "latent_score_matrix",
    "latent_scores",
    "latent_value_fairness",
    "probe_sweep",
    "value_axis_fairness",
]
