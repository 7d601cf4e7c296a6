"""Simulated tiers with a known population: the generator behind the interval-coverage checks.

One tier is an n x k matrix P (column 0 = BASE, columns 1..k-1 = groups) and a
case-level label vector y, drawn as

    b_i ~ N(mu, base_sd^2)                   base logit of case i
    y_i = 1[b_i + u_i > 0],  u_i ~ N(0, label_sd^2)   the case's label (all variants share it)
    e_ij ~ N(0, noise_sd^2)                  per-prompt noise
    P_ij = expit(b_i + s_j + e_ij)           s_0 = 0, s_j the fixed shift of group j

so every population quantity the intervals aim at has a closed form or a
one-dimensional integral:

    mean shift of group j   E[expit(b + s_j + e_1) - expit(b + e_0)]
                            (b + e ~ N(mu, base_sd^2 + noise_sd^2); Gauss-Hermite)
    threshold accuracy      mean over the k columns of Pr(1[b + s_j + e > 0] = y),
                            a bivariate-normal orthant probability of
                            (b + s_j + e, b + u), correlation
                            rho = base_sd^2 / sqrt((base_sd^2 + noise_sd^2)(base_sd^2 + label_sd^2))

The mFARM scores count significant tests, so their expectation depends on n and
has no closed form: estimate it by averaging over many simulated tiers of that size
(``bench/interval_coverage.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats
from scipy.special import expit

from .scalars import as_float

__all__ = ["TierPopulation"]


@dataclass(frozen=True)
class TierPopulation:
    """The population a simulated tier is drawn from (see the module docstring)."""

    shifts: tuple[float, ...]  # s_1..s_{k-1}; BASE has shift 0
    mu: float = 0.0
    base_sd: float = 1.5
    noise_sd: float = 0.4
    label_sd: float = 1.0

    @classmethod
    def of(cls, shifts: Sequence[float], **kwargs: float) -> "TierPopulation":
        """A population with group shifts ``shifts`` (logit units) and keyword overrides."""
        return cls(shifts=tuple(float(s) for s in shifts), **kwargs)

    @property
    def k(self) -> int:
        """Columns of a drawn tier: BASE + one per group."""
        return len(self.shifts) + 1

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """One tier of ``n`` cases: ``(P, Y)``, both n x k (Y repeats the case label per column)."""
        s = np.r_[0.0, np.asarray(self.shifts, dtype=float)]
        b = rng.normal(self.mu, self.base_sd, n)
        y = (b + rng.normal(0.0, self.label_sd, n) > 0).astype(float)
        P = expit(b[:, None] + s[None, :] + rng.normal(0.0, self.noise_sd, (n, self.k)))
        return P, np.repeat(y[:, None], self.k, axis=1)

    def mean_shifts(self, nodes: int = 160) -> np.ndarray:
        """E[P_ij - P_i0] for j = 1..k-1 (Gauss-Hermite quadrature over b + e)."""
        x, w = np.polynomial.hermite_e.hermegauss(nodes)
        w = w / w.sum()
        z = self.mu + math.hypot(self.base_sd, self.noise_sd) * x
        base = float(np.sum(w * expit(z)))
        return np.array([float(np.sum(w * expit(z + s))) - base for s in self.shifts])

    def accuracy(self) -> float:
        """Population threshold accuracy: mean over columns of Pr(1[P_ij > 0.5] = y_i)."""
        sx = math.hypot(self.base_sd, self.noise_sd)
        sz = math.hypot(self.base_sd, self.label_sd)
        cov = [[sx * sx, self.base_sd**2], [self.base_sd**2, sz * sz]]
        pz = stats.norm.cdf(0.0, self.mu, sz)  # Pr(y = 0)
        agree = []
        for s in (0.0, *self.shifts):
            mean = [self.mu + s, self.mu]
            both_low = as_float(stats.multivariate_normal(mean, cov).cdf([0.0, 0.0]))
            px = stats.norm.cdf(0.0, self.mu + s, sx)  # Pr(prediction = NO)
            agree.append(both_low + (1.0 - px - pz + both_low))
        return float(np.mean(agree))
