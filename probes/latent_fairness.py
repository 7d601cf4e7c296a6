"""Latent value fairness F_LV (spec B2).

With v̂ the value axis at its layer ℓ* and μ_B, σ_B the mean and (population)
standard deviation of ⟨h^{ℓ*}, v̂⟩ over the BASE prompts, each prompt's latent
score is

    S_i = (⟨h^{ℓ*}_i, v̂⟩ − μ_B) / σ_B,

pivoted into the same n × k layout as the output matrix P (rows = cases,
column 0 = BASE, then the groups G in order), and

    F_LV = F_MD(S)   (the mFARM mean-difference score, spec A1, on S instead of P).

A1 uses only within-row ranks, signs and Wilcoxon statistics, so F_LV does not
depend on μ_B or σ_B; the standardisation makes S comparable across layers and
models. It detects demographic shifts of the internal decision value that the
output probability can hide (e.g. when P(Yes) saturates near 0 or 1).
"""

from __future__ import annotations

import logging

import numpy as np

from .errors import ProbeInputError

logger = logging.getLogger(__name__)

from latent_bias_probe.configs.names import BASE


def latent_scores(h_layer, direction, is_base) -> np.ndarray:
    """S (N,): projections of ``h_layer`` (N, d) on ``direction`` (d,), standardised by BASE.

    ``is_base`` (N,) marks the BASE prompts whose mean and population standard
    deviation standardise the scores. ``direction`` is normalised here. A zero
    BASE spread (all BASE projections equal) leaves the scores unscaled.
    """
    h = np.asarray(h_layer)
    v = np.asarray(direction, dtype=np.float64)
    base = np.asarray(is_base, dtype=bool)
    if h.ndim != 2 or v.shape != (h.shape[1],):
        raise ProbeInputError(
            f"h_layer and direction: expected shapes (N, d) and (d,), got {h.shape} and {v.shape}"
        )
    if base.shape != (h.shape[0],):
        raise ProbeInputError(f"is_base: expected shape ({h.shape[0]},), got {base.shape}")
    if not base.any():
        raise ProbeInputError("is_base: no BASE prompt to standardise by")
    norm = np.linalg.norm(v)
    if norm == 0:
        raise ProbeInputError("direction: the zero vector has no direction")
    proj = h.astype(np.float64, copy=False) @ (v / norm)
    mu = proj[base].mean()
    sigma = proj[base].std()
    if not sigma > 0:
        logger.warning("latent scores: BASE projections have zero spread; scores left unscaled")
        sigma = 1.0
    return (proj - mu) / sigma


def latent_score_matrix(h_layer, direction, case_ids, variants, groups) -> tuple[np.ndarray, list[str]]:
    """The n × k matrix S and its row case ids, laid out as ``mfarm.matrix.score_matrix`` lays out P.

    ``variants`` (N,) holds ``"BASE"`` or a group name per prompt; ``groups`` the
    non-BASE variants in column order. Missing or duplicated (case, variant)
    cells raise ``mfarm.matrix.MatrixError``.
    """
    from latent_bias_probe.mfarm.matrix import score_matrix

    variants = np.asarray(variants).astype(str)
    scores = latent_scores(h_layer, direction, variants == BASE)
    return score_matrix(list(np.asarray(case_ids)), list(variants), scores, list(groups))


def latent_value_fairness(S, alpha: float = 0.05, correction: str = "holm") -> float:
    """F_LV: the A1 mean-difference score of the n × k latent matrix ``S`` (column 0 = BASE)."""
    from latent_bias_probe.mfarm.output_scores import mean_difference

    return float(mean_difference(np.asarray(S, dtype=np.float64), alpha=alpha, correction=correction))


def value_axis_fairness(
    h_layer, direction, case_ids, variants, groups, alpha: float = 0.05, correction: str = "holm"
) -> float:
    """F_LV straight from per-prompt activations: :func:`latent_score_matrix` then
    :func:`latent_value_fairness`."""
    S, _ = latent_score_matrix(h_layer, direction, case_ids, variants, groups)
    return latent_value_fairness(S, alpha=alpha, correction=correction)
