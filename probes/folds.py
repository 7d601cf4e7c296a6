"""Deterministic cross-validation folds grouped by case.

Every prompt of a case (its BASE and all its demographic variants) falls in the
same fold, so a probe is never scored on a case it has seen in training.
"""

from __future__ import annotations

import numpy as np

from .errors import ProbeInputError


def group_folds(groups: np.ndarray, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Assign each sample a fold index in ``[0, n_folds)``, whole groups at a time.

    The distinct groups are shuffled with ``numpy.random.default_rng(seed)``, then,
    like scikit-learn's ``GroupKFold``, taken largest first (stable, so equal-size
    groups keep the shuffled order) and each put in the fold that holds the fewest
    samples so far (lowest index on ties). With equal-size groups this is a
    round-robin over the shuffled groups, so fold sizes differ by at most one group.

    Returns an int array of shape ``(N,)``; the result depends only on ``groups``,
    ``n_folds`` and ``seed``.
    """
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise ProbeInputError(f"groups: expected a 1-D array, got shape {groups.shape}")
    if n_folds < 2:
        raise ProbeInputError(f"n_folds: must be >= 2, got {n_folds}")
    uniq, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if len(uniq) < n_folds:
        raise ProbeInputError(
            f"n_folds: {n_folds} folds need at least {n_folds} distinct cases, got {len(uniq)}"
        )
    order = np.random.default_rng(seed).permutation(len(uniq))
    order = order[np.argsort(-counts[order], kind="stable")]
    fold_of_group = np.empty(len(uniq), dtype=np.int64)
    load = np.zeros(n_folds, dtype=np.int64)
    for g in order:
        f = int(np.argmin(load))
        fold_of_group[g] = f
        load[f] += counts[g]
    return fold_of_group[inverse]
