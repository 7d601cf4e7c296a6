"""The value axis: the direction of the model's own Yes/No decision (spec B1).

On BASE prompts only, at each layer ℓ, with y_i ∈ {0, 1} the class of prompt i,

    v_ℓ = mean(h_ℓ | y = 1) − mean(h_ℓ | y = 0),        v̂_ℓ = v_ℓ / ‖v_ℓ‖,

so ⟨h, v̂_ℓ⟩ grows towards "Yes". y is the model's own BASE decision
1[p_yes ≥ 0.5] (``target="model"``) or the ground-truth label
(``target="label"``); if either leaves one class empty, y = 1[logit p_yes >
median] instead (``target`` is then recorded as ``"median"``).

Quality per layer:

- ``auroc``: cross-validated AUROC of ⟨h, v̂_ℓ⟩ for y. Folds are grouped by case
  (:func:`probes.folds.group_folds`); v̂_ℓ is refitted on each training split and
  the held-out projections of all folds are POOLED into one AUROC per layer
  (rather than averaging per-fold AUROCs, which are undefined when a small
  held-out fold holds a single class and noisy with few cases per fold).
- ``spearman``: Spearman ρ between ⟨h, v̂_ℓ⟩ (v̂_ℓ fitted on all BASE prompts)
  and logit(p_yes) over all prompts (``h_all``/``p_yes_all``, else the BASE
  ones). logit is strictly increasing, so the ranks of p_yes are used directly
  (no clipping of p = 0 or 1 needed).

The value layer ℓ* is the layer with the highest held-out AUROC, the earliest
on ties, unless given.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from .errors import ProbeInputError
from .folds import group_folds

logger = logging.getLogger(__name__)

TARGETS = ("model", "label")


@dataclass(frozen=True)
class ValueAxis:
    """Decision directions per layer and their quality; see the module docstring."""

    directions: np.ndarray  # (n_layers, d) unit vectors v̂_ℓ (zero where v_ℓ = 0)
    auroc: np.ndarray  # (n_layers,) held-out AUROC, pooled over folds
    spearman: np.ndarray  # (n_layers,) Spearman ρ with logit(p_yes)
    layer: int  # ℓ*
    target: str  # "model", "label" or "median"
    held_out: np.ndarray | None = None  # (n_layers, n_base) pooled held-out projections (NaN: not scored)
    classes: np.ndarray | None = None  # (n_base,) the class y of each BASE prompt

    def auroc_interval(self, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> list[float | None]:
        """Percentile interval of the held-out AUROC at ℓ*, resampling BASE prompts (= cases) with replacement.

        A resample with one class only has no AUROC and is left out.
        """
        if n_boot == 0 or self.held_out is None or self.classes is None:
            return [None, None]
        scores = self.held_out[self.layer]
        keep = np.isfinite(scores)
        scores, y = scores[keep], self.classes[keep].astype(bool)
        if len(scores) < 2 or y.all() or not y.any():
            return [None, None]
        idx = np.random.default_rng(seed).integers(0, len(scores), size=(n_boot, len(scores)))
        values = np.array([_auroc(scores[i][None, :], y[i])[0] for i in idx])
        values = values[np.isfinite(values)]
        if not len(values):
            return [None, None]
        tail = (1 - level) / 2 * 100
        lo, hi = np.percentile(values, [tail, 100 - tail])
        return [float(lo), float(hi)]

    @property
    def n_layers(self) -> int:
        return self.directions.shape[0]

    @property
    def direction(self) -> np.ndarray:
        """v̂ at the value layer ℓ*."""
        return self.directions[self.layer]

    @classmethod
    def fit(
        cls,
        h_base,
        p_yes_base,
        case_ids_base,
        labels_base=None,
        target: str = "model",
        n_folds: int = 5,
        seed: int = 0,
        layer: int | None = None,
        h_all=None,
        p_yes_all=None,
    ) -> "ValueAxis":
        """Fit v̂_ℓ at every layer from BASE activations.

        Parameters
        ----------
        h_base : array (n_layers, n_base, d)
            Activations of the BASE prompts at the decision position.
        p_yes_base : array (n_base,)
            P(Yes) of each BASE prompt.
        case_ids_base : array (n_base,)
            Case of each BASE prompt (folds never split a case).
        labels_base : array (n_base,) of 0/1, optional
            Ground truth, used when ``target="label"``.
        target : "model" or "label"
        n_folds, seed
            Folds for the held-out AUROC; ``n_folds`` is capped at the number of cases.
        layer : int, optional
            Use this layer as ℓ* instead of the best held-out AUROC.
        h_all : array (n_layers, N, d), optional; p_yes_all : array (N,)
            All prompts, for the Spearman check (default: the BASE prompts).
        """
        h = np.asarray(h_base)
        if h.ndim != 3:
            raise ProbeInputError(f"h_base: expected shape (n_layers, n_base, d), got {h.shape}")
        L, n, d = h.shape
        p = np.asarray(p_yes_base, dtype=np.float64)
        cases = np.asarray(case_ids_base)
        if p.shape != (n,) or cases.shape != (n,):
            raise ProbeInputError(
                f"p_yes_base and case_ids_base: expected shape ({n},), got {p.shape} and {cases.shape}"
            )
        if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
            raise ProbeInputError("p_yes_base: values must be finite probabilities in [0, 1]")
        if target not in TARGETS:
            raise ProbeInputError(f"target: expected one of {TARGETS}, got {target!r}")

        y, used = _decision_classes(p, labels_base, target)
        h64 = h.astype(np.float64, copy=False)
        directions = _mean_difference_directions(h64, y, np.ones(n, dtype=bool))

        n_groups = len(np.unique(cases))
        k = min(int(n_folds), n_groups)
        if k < 2:
            raise ProbeInputError(f"case_ids_base: need at least 2 cases for held-out AUROC, got {n_groups}")
        fold = group_folds(cases, k, seed)
        held_out = np.full((L, n), np.nan)
        for f in range(k):
            tr, te = fold != f, fold == f
            if y[tr].all() or not y[tr].any():
                logger.warning(
                    "value axis: training split %d has a single class; its %d held-out prompts are skipped",
                    f, int(te.sum()),
                )
                continue
            v = _mean_difference_directions(h64, y, tr)
            held_out[:, te] = np.einsum("lnd,ld->ln", h64[:, te], v)
        scored = np.isfinite(held_out[0])
        auroc = _auroc(held_out[:, scored], y[scored])

        if h_all is None:
            h_rho, p_rho = h64, p
        else:
            if p_yes_all is None:
                raise ProbeInputError("p_yes_all: required when h_all is given")
            h_rho, p_rho = h_all, np.asarray(p_yes_all, dtype=np.float64)
            if len(h_rho.shape) != 3 or h_rho.shape[0] != L or h_rho.shape[2] != d:
                raise ProbeInputError(f"h_all: expected shape ({L}, N, {d}), got {h_rho.shape}")
            if p_rho.shape != (h_rho.shape[1],):
                raise ProbeInputError(f"p_yes_all: expected shape ({h_rho.shape[1]},), got {p_rho.shape}")
        spearman = _spearman_rows(_project_layers(h_rho, directions), p_rho)

        if layer is None:
            best = int(np.argmax(np.where(np.isfinite(auroc), auroc, -np.inf)))
        else:
            if not -L <= int(layer) < L:
                raise ProbeInputError(f"layer: expected an index in [0, {L}), got {layer}")
            best = int(layer) % L
        logger.info(
            "value axis: target %s, %d/%d BASE prompts in class 1, layer %d (held-out AUROC %.3f, ρ %.3f)",
            used, int(y.sum()), n, best, auroc[best], spearman[best],
        )
        return cls(
            directions=directions, auroc=auroc, spearman=spearman, layer=best, target=used,
            held_out=held_out, classes=np.asarray(y),
        )

    def project(self, h, layer: int | None = None) -> np.ndarray:
        """Scores ⟨h, v̂⟩.

        ``h`` of shape (n_layers, N, d) gives (n_layers, N), each layer on its own
        direction; (N, d) gives (N,) and (d,) a scalar, on v̂ of ``layer``
        (default ℓ*).
        """
        h = np.asarray(h)
        if h.ndim == 3:
            if h.shape[0] != self.n_layers or h.shape[2] != self.directions.shape[1]:
                raise ProbeInputError(
                    f"h: expected shape ({self.n_layers}, N, {self.directions.shape[1]}), got {h.shape}"
                )
            return _project_layers(h, self.directions)
        v = self.directions[self.layer if layer is None else layer]
        if h.shape[-1] != v.shape[0]:
            raise ProbeInputError(f"h: last dimension must be {v.shape[0]}, got {h.shape}")
        return h.astype(np.float64, copy=False) @ v


def _decision_classes(p: np.ndarray, labels, target: str) -> tuple[np.ndarray, str]:
    """y (bool) and the target actually used ("model", "label" or "median")."""
    if target == "label":
        if labels is None:
            raise ProbeInputError('labels_base: required when target="label"')
        lab = np.asarray(labels)
        if lab.shape != p.shape:
            raise ProbeInputError(f"labels_base: expected shape {p.shape}, got {lab.shape}")
        if not np.isin(lab, [0, 1]).all():
            raise ProbeInputError("labels_base: values must be 0 or 1 (drop unlabelled cases first)")
        y = lab.astype(bool)
    else:
        y = p >= 0.5
    if y.any() and not y.all():
        return y, target
    # One class is empty: split at the median of logit(p), i.e. of p.
    med = np.median(p)
    y = p > med
    if not y.any():
        y = p >= med
    if y.all() or not y.any():
        raise ProbeInputError("p_yes_base: all values are equal, the decision classes cannot be split")
    logger.info("value axis: one %s class is empty; split at the median of logit(p_yes)", target)
    return y, "median"


def _mean_difference_directions(h: np.ndarray, y: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Unit v_ℓ = mean(h | y=1) − mean(h | y=0) over ``rows``, all layers at once: (L, d)."""
    w = np.where(y, 1.0 / (y & rows).sum(), -1.0 / (~y & rows).sum()) * rows
    v = np.einsum("lnd,n->ld", h, w)
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    if np.any(norm == 0):
        logger.warning("value axis: the class means coincide at %d layers", int((norm == 0).sum()))
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)


def _project_layers(h, directions: np.ndarray) -> np.ndarray:
    """⟨h_ℓ, v̂_ℓ⟩ for every layer: (L, N). Array-likes (e.g. HDF5) are read a layer at a time."""
    if isinstance(h, np.ndarray):
        return np.einsum("lnd,ld->ln", h, directions.astype(np.result_type(h.dtype, np.float32)))
    return np.stack([np.asarray(h[ell], dtype=np.float64) @ v for ell, v in enumerate(directions)])


def _auroc(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """AUROC of each row of ``scores`` (L, n) for bool ``y``: the Mann–Whitney U / (n₁ n₀), ties halved."""
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return np.full(scores.shape[0], np.nan)
    ranks = rankdata(scores, axis=1)
    return (ranks[:, y].sum(1) - n1 * (n1 + 1) / 2.0) / (n1 * n0)


def _spearman_rows(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Spearman ρ of each row of ``x`` (L, N) with ``p`` (N,); 0 where a side is constant."""
    rx = rankdata(x, axis=1)
    rp = rankdata(p)
    rx -= rx.mean(1, keepdims=True)
    rp = rp - rp.mean()
    den = np.sqrt((rx * rx).sum(1) * (rp * rp).sum())
    num = rx @ rp
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)
