"""Attribution patching: the first-order estimate of patching each component, and its pooling.

For a traced pair (source s, target t; :func:`probes.trace.plan_pairs`), patching a
component c of block ℓ (attention output, MLP output, or one head's output: its slice
of the output projection's input) at the positions P of one kind from s into t moves
the target's P(Yes) by approximately (Nanda 2023, "attribution patching")

    Δ̂_c = Σ_{p ∈ P} (a_s[p] − a_t[p]) · ∂P_t(Yes)/∂a[p]  (evaluated on the target),

one forward per variant and one backward per target giving every component at once.
Since the output projection is linear, the attention output's estimate is the sum of
its heads' estimates. Position kinds (disjoint; together every position from the first
demographic token, before which source and target are identical):

- ``demographic``: the race and gender word tokens;
- ``after``: every position after the last demographic token except the last;
- ``decision``: the last position.

Pooled like the causal trace's F (:func:`probes.trace.gap_closed`): per attribute or pair
of groups, share = Σ_i σ_i Δ_i / Σ_i |p_{s,i} − p_{t,i}| over cases i (a case's pairs
summed), σ_i = sign of the pair's gap, with a case-bootstrap percentile interval. Share 1:
the component at those positions carries the whole gap; 0: none of it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .trace import gap_closed

#: the component position kinds (the module docstring), and the :func:`probes.causal.position_kinds` entry each reads
COMPONENT_POSITIONS = ("demographic", "after", "decision")
KIND_SOURCE = {"demographic": "demographic", "after": "later", "decision": "decision"}


def component_index(n_heads: int) -> list[tuple[str, int | None]]:
    """The components of one block, in the order of every attribution array's second axis."""
    return [("attn", None), ("mlp", None)] + [("head", h) for h in range(n_heads)]


def pair_attribution(
    z_s: torch.Tensor, z_t: torch.Tensor, grad_z: torch.Tensor,
    m_s: torch.Tensor, m_t: torch.Tensor, grad_m: torch.Tensor,
    positions: dict[str, Sequence[int]], n_heads: int,
) -> np.ndarray:
    """Attribution estimates of one aligned pair: ``(n_layers, 2 + n_heads, 3)`` (layer, component, position kind).

    ``z_*``, ``grad_z``: ``(L, T, H·d_head)`` output-projection inputs of source and target and
    the target's gradient; ``m_*``, ``grad_m``: ``(L, T, d)`` MLP outputs likewise, all unpadded
    (the same T: the pair is aligned). ``positions``: token indices per kind
    (:func:`probes.causal.position_kinds`).
    """
    L, T, D = z_t.shape
    heads = ((z_s - z_t) * grad_z).double().reshape(L, T, n_heads, D // n_heads).sum(-1)  # (L, T, H)
    mlp = ((m_s - m_t) * grad_m).double().sum(-1)  # (L, T)
    out = np.zeros((L, 2 + n_heads, len(COMPONENT_POSITIONS)))
    for k, name in enumerate(COMPONENT_POSITIONS):
        idx = torch.as_tensor(list(positions[KIND_SOURCE[name]]), dtype=torch.long)
        if idx.numel() == 0:
            continue
        per_head = heads[:, idx].sum(1)  # (L, H)
        out[:, 2:, k] = per_head.numpy()
        out[:, 0, k] = per_head.sum(-1).numpy()
        out[:, 1, k] = mlp[:, idx].sum(1).numpy()
    return out


def pool_shares(items: Sequence[tuple[str, float, np.ndarray]], n_boot: int, ci_level: float, seed: int) -> dict[str, Any]:
    """Share of the gap per feature, with a case-bootstrap interval.

    ``items``: ``(case, gap p_s − p_t, effects (n_features,))`` per aligned pair; a case's
    pairs are summed (sign-aligned) before resampling. Returns ``{"n_cases", "share",
    "lo", "hi"}`` (lists over features; ``None`` where undefined).
    """
    cases = list(dict.fromkeys(c for c, _, _ in items))
    if not cases:
        return {"n_cases": 0, "share": [], "lo": [], "hi": []}
    width = len(items[0][2])
    num, den = np.zeros((len(cases), width)), np.zeros(len(cases))
    for c, gap, effects in items:
        i = cases.index(c)
        num[i] += np.sign(gap) * np.asarray(effects, dtype=float)
        den[i] += abs(gap)
    got = gap_closed(num, den, n_boot, ci_level, seed)
    return {"n_cases": len(cases), "share": got["fraction"], "lo": got["lo"], "hi": got["hi"]}


def select_components(shares: Sequence[float | None], k: int, n_random: int, seed: int) -> tuple[list[int], list[int]]:
    """``(top, control)``: the ``k`` features of largest |share|, and ``n_random`` others drawn with ``seed``."""
    mag = np.array([abs(s) if s is not None and np.isfinite(s) else -1.0 for s in shares])
    order = np.argsort(-mag, kind="stable")
    top = [int(i) for i in order[:k] if mag[i] >= 0]
    rest = np.array([i for i in range(len(mag)) if i not in set(top) and mag[i] >= 0], dtype=int)
    rng = np.random.default_rng(seed)
    control = sorted(int(i) for i in rng.choice(rest, size=min(n_random, len(rest)), replace=False)) if len(rest) else []
    return top, control


def is_verified(estimate: float | None, patched: float | None, lo: float | None, hi: float | None) -> bool:
    """The patched effect has the estimate's sign and its interval excludes 0."""
    if estimate is None or patched is None or lo is None or hi is None or estimate == 0:
        return False
    if np.sign(patched) != np.sign(estimate):
        return False
    return bool(lo > 0 or hi < 0)


def agreement(estimates: Sequence[float], patched: Sequence[float], k: int) -> dict[str, Any]:
    """Spearman ρ between estimated and patched shares over the patched components, and the top-k overlap.

    ``top_k_overlap``: the fraction of the ``k`` components of largest |estimate| that are
    among the ``k`` of largest |patched share| (both ranked over the patched components).
    """
    from scipy.stats import spearmanr

    est, pat = np.asarray(estimates, dtype=float), np.asarray(patched, dtype=float)
    ok = np.isfinite(est) & np.isfinite(pat)
    est, pat = est[ok], pat[ok]
    rho = spearmanr(est, pat).statistic if len(est) > 2 and np.ptp(est) > 0 and np.ptp(pat) > 0 else float("nan")
    k = min(k, len(est))
    top_e = set(np.argsort(-np.abs(est), kind="stable")[:k].tolist())
    top_p = set(np.argsort(-np.abs(pat), kind="stable")[:k].tolist())
    return {
        "spearman": None if not np.isfinite(rho) else float(rho),
        "top_k_overlap": None if k == 0 else len(top_e & top_p) / k,
        "k": int(k),
    }
