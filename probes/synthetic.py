"""Synthetic residual-stream activations with planted, known signals.

Used by the tests and ``bench/probe_sweep.py``: a benchmark laid out as real runs
are (every case rendered as BASE plus one prompt per race × gender variant), with
activations ``h`` of shape ``(n_layers, N, d)`` built as

    h[ℓ, i] = μ_ℓ + A f_case(i) + ε[ℓ, i]                 (case identity, prompt noise)
              + 1[ℓ ≥ ℓ_race]   · a_race   · r_race(i)     (race, non-BASE prompts)
              + 1[ℓ ≥ ℓ_gender] · a_gender · g_gender(i)   (gender, non-BASE prompts)
              + w_ℓ · z_case(i) · u                        (decision value)

with u, r_·, g_· orthonormal (QR of a Gaussian matrix); case loadings ``A``
orthogonal to all of them (``n_factors`` case factors of norm ``case_scale``/√j;
a large ``case_scale`` makes the features strongly correlated, as in real
residual streams, where prompts differ far more between cases than between the
variants of one case); anisotropic prompt noise ε (per-dimension scales from
0.5 to 2 plus a rank-4 part of norm 0.7, half of it shared across layers); a
few "massive" dimensions in μ_ℓ; and P(Yes) = sigmoid(2.5 z_case + 0.3 η_prompt).
The decision weight w_ℓ is a Gaussian bump of width 1 centred on ``decision_layer``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RACES = ("White", "Black", "Hispanic", "Asian")
GENDERS = ("Female", "Male", "Intersex")
from latent_bias_probe.configs.names import BASE


@dataclass(frozen=True)
class SyntheticActivations:
    """A synthetic activation set; prompts are ordered case by case, BASE first."""

    h: np.ndarray  # (n_layers, N, d) float32
    case_ids: np.ndarray  # (N,) str
    variants: np.ndarray  # (N,) str, "BASE" or "{Race}-{Gender}"
    race: np.ndarray  # (N,) str, "BASE" on BASE prompts
    gender: np.ndarray  # (N,) str
    p_yes: np.ndarray  # (N,) float64
    decision_direction: np.ndarray  # (d,) unit vector u
    race_directions: np.ndarray  # (n_races, d)
    gender_directions: np.ndarray  # (n_genders, d)
    groups: tuple[str, ...]  # the non-BASE variants, in column order

    @property
    def is_base(self) -> np.ndarray:
        return self.variants == BASE


def make_synthetic_activations(
    n_cases: int = 25,
    n_layers: int = 6,
    d: int = 32,
    *,
    race_from_layer: int | None = 3,
    race_strength: float = 4.0,
    gender_from_layer: int | None = None,
    gender_strength: float = 4.0,
    decision_layer: int | None = None,
    decision_strength: float = 4.0,
    noise: float = 1.0,
    n_factors: int = 8,
    case_scale: float = 3.0,
    races: tuple[str, ...] = RACES,
    genders: tuple[str, ...] = GENDERS,
    seed: int = 0,
) -> SyntheticActivations:
    """Build a :class:`SyntheticActivations` (see the module docstring for the model).

    ``race_from_layer`` / ``gender_from_layer`` = None plant no race / gender
    signal; ``decision_layer`` = None puts the decision bump on the middle layer.
    """
    n_planted = 1 + len(races) + len(genders)
    if d < n_planted + n_factors:
        raise ValueError(f"d: need at least {n_planted + n_factors} dimensions, got {d}")
    rng = np.random.default_rng(seed)
    groups = tuple(f"{r}-{g}" for r in races for g in genders)
    k = len(groups) + 1
    n = n_cases * k

    case_idx = np.repeat(np.arange(n_cases), k)
    col = np.tile(np.arange(k), n_cases)
    variants = np.array([BASE, *groups], dtype=object)[col].astype(str)
    race = np.array([BASE, *[r for r in races for _ in genders]], dtype=object)[col].astype(str)
    gender = np.array([BASE, *[g for _ in races for g in genders]], dtype=object)[col].astype(str)
    width = len(str(n_cases - 1))
    case_ids = np.array([f"case{c:0{width}d}" for c in range(n_cases)])[case_idx]

    q, _ = np.linalg.qr(rng.standard_normal((d, n_planted)))
    u = q[:, 0]
    race_dirs = q[:, 1 : 1 + len(races)].T
    gender_dirs = q[:, 1 + len(races) :].T

    loadings = rng.standard_normal((d, n_factors))
    loadings -= q @ (q.T @ loadings)
    loadings *= case_scale / np.sqrt(np.arange(1, n_factors + 1)) / np.linalg.norm(loadings, axis=0)
    case_part = (rng.standard_normal((n_cases, n_factors)) @ loadings.T)[case_idx]

    z = rng.standard_normal(n_cases)
    p_yes = 1.0 / (1.0 + np.exp(-(2.5 * z[case_idx] + 0.3 * rng.standard_normal(n))))

    scales = np.exp(rng.uniform(np.log(0.5), np.log(2.0), d))
    low_rank = rng.standard_normal((4, d))
    low_rank *= 0.7 / np.linalg.norm(low_rank, axis=1, keepdims=True)
    shared = rng.standard_normal((n, d)) * scales + rng.standard_normal((n, 4)) @ low_rank

    centre = n_layers // 2 if decision_layer is None else decision_layer
    layer = np.arange(n_layers)
    w_dec = decision_strength * np.exp(-0.5 * (layer - centre) ** 2)
    massive = np.zeros(d)
    massive[rng.choice(d, size=2, replace=False)] = [40.0, -25.0]

    is_demo = col > 0
    r_of = np.where(is_demo, (col - 1) // len(genders), 0)
    g_of = np.where(is_demo, (col - 1) % len(genders), 0)
    h = np.empty((n_layers, n, d), dtype=np.float32)
    for ell in range(n_layers):
        own = rng.standard_normal((n, d)) * scales + rng.standard_normal((n, 4)) @ low_rank
        x = case_part + noise * np.sqrt(0.5) * (shared + own)
        x += massive * (1.0 + 0.1 * ell) + rng.standard_normal(d) * 0.1
        if race_from_layer is not None and ell >= race_from_layer:
            x += is_demo[:, None] * race_strength * race_dirs[r_of]
        if gender_from_layer is not None and ell >= gender_from_layer:
            x += is_demo[:, None] * gender_strength * gender_dirs[g_of]
        x += w_dec[ell] * z[case_idx][:, None] * u
        h[ell] = x
    return SyntheticActivations(
        h=h,
        case_ids=case_ids,
        variants=variants,
        race=race,
        gender=gender,
        p_yes=p_yes,
        decision_direction=u,
        race_directions=race_dirs,
        gender_directions=gender_dirs,
        groups=groups,
    )
