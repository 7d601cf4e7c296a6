"""Steering vectors: each group's mean displacement from BASE (spec B3).

At every layer ℓ and for every group g (a demographic variant, or any label
such as a race),

    δ_{ℓ,g} = mean_{i ∈ g} h_ℓ,i − mean_{i ∈ BASE} h_ℓ,i,

with its norm ‖δ_{ℓ,g}‖ and, given the value axis, its cosine with v̂_ℓ:
cos = ⟨δ_{ℓ,g}, v̂_ℓ⟩ / (‖δ_{ℓ,g}‖ ‖v̂_ℓ‖) (0 where either is the zero vector).
A cosine near ±1 means the group moves the decision value itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ProbeInputError

from latent_bias_probe.configs.names import BASE


@dataclass(frozen=True)
class SteeringVectors:
    """δ_{ℓ,g} for every layer and group."""

    vectors: np.ndarray  # (n_layers, n_groups, d)
    norms: np.ndarray  # (n_layers, n_groups)
    cos_value_axis: np.ndarray | None  # (n_layers, n_groups), None without a value axis
    groups: tuple[str, ...]

    @classmethod
    def fit(cls, h, variants, groups=None, value_axis_directions=None, base: str = BASE) -> "SteeringVectors":
        """Mean differences from BASE, all layers at once.

        Parameters
        ----------
        h : array (n_layers, N, d)
        variants : array (N,)
            The group of each prompt; ``base`` marks the BASE prompts.
        groups : sequence of str, optional
            Groups to compute, in order (default: every non-BASE value, in order of
            first appearance).
        value_axis_directions : array (n_layers, d), optional
            v̂_ℓ (e.g. ``ValueAxis.directions``) for ``cos_value_axis``.
        """
        h = np.asarray(h)
        if h.ndim != 3:
            raise ProbeInputError(f"h: expected shape (n_layers, N, d), got {h.shape}")
        L, N, d = h.shape
        variants = np.asarray(variants).astype(str)
        if variants.shape != (N,):
            raise ProbeInputError(f"variants: expected shape ({N},), got {variants.shape}")
        if groups is None:
            _, first = np.unique(variants, return_index=True)
            groups = [variants[i] for i in sorted(first) if variants[i] != base]
        groups = tuple(str(g) for g in groups)
        if base in groups:
            raise ProbeInputError(f"groups: must not contain the base label {base!r}")
        # Row 0 averages the BASE prompts; row 1 + j averages group j, minus BASE.
        member = np.stack([variants == base] + [variants == g for g in groups]).astype(np.float64)
        counts = member.sum(1)
        empty = [name for name, c in zip((base, *groups), counts) if c == 0]
        if empty:
            raise ProbeInputError(f"variants: no prompt of {', '.join(map(repr, empty))}")
        weights = member[1:] / counts[1:, None] - member[0] / counts[0]  # (G, N)
        vectors = np.matmul(weights, h.astype(np.float64, copy=False))  # (L, G, d)
        norms = np.linalg.norm(vectors, axis=2)
        cos = None
        if value_axis_directions is not None:
            v = np.asarray(value_axis_directions, dtype=np.float64)
            if v.shape != (L, d):
                raise ProbeInputError(f"value_axis_directions: expected shape ({L}, {d}), got {v.shape}")
            vn = np.linalg.norm(v, axis=1)
            num = np.einsum("lgd,ld->lg", vectors, v)
            den = norms * vn[:, None]
            cos = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        return cls(vectors=vectors, norms=norms, cos_value_axis=cos, groups=groups)

    @property
    def n_layers(self) -> int:
        return self.vectors.shape[0]

    def unit(self) -> np.ndarray:
        """δ̂_{ℓ,g} = δ / ‖δ‖ (zero where δ = 0): (n_layers, n_groups, d)."""
        n = self.norms[..., None]
        return np.divide(self.vectors, n, out=np.zeros_like(self.vectors), where=n > 0)

    def vector(self, layer: int, group: str) -> np.ndarray:
        """δ_{layer, group} (d,)."""
        try:
            j = self.groups.index(group)
        except ValueError:
            raise ProbeInputError(f"group: {group!r} is not one of {self.groups}") from None
        return self.vectors[layer, j]
