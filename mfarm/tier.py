"""Score one context tier: the results.json ``tiers[<tier>]`` mapping for Parts A and C."""

from __future__ import annotations

from typing import Any, Sequence

from .accuracy import accuracy, fab
from .diagnostics import group_shifts, intersectional_residual_share, omnibus
from .matrix import score_matrix
from .metrics import output_scores

__all__ = ["score_tier"]


def score_tier(
    case_ids: Sequence[Any],
    variants: Sequence[str],
    p_yes: Sequence[float],
    labels: Sequence[Any],
    groups: Sequence[str],
    alpha: float = 0.05,
    correction: str = "holm",
    accuracy_method: str = "threshold",
    n_boot: int = 1000,
    seed: int = 0,
    *,
    races: Sequence[str] | None = None,
    genders: Sequence[str] | None = None,
) -> dict[str, Any]:
    """All Part A / Part C results of one tier from per-prompt parallel sequences.

    P = ``score_matrix(case_ids, variants, p_yes, groups)``; ``labels`` is per
    prompt (1, 0, or -1 / NaN / None for unknown).  Returns plain-Python

        {"n_cases", "n_prompts", "accuracy", "n_unlabelled",
         "mfarm": {five scores + "score"},        # mFARM (paper) = geometric mean
         "fab": 2 m a / (m + a),                  # None when no prompt is labelled
         "diagnostics": {"omnibus": ..., "group_shifts": [...], "ibd": ...}}

    ``races`` / ``genders`` only help split hyphenated group names for the IBD.
    """
    if len(labels) != len(p_yes):
        raise ValueError(f"labels and p_yes differ in length ({len(labels)} vs {len(p_yes)})")
    P, cases = score_matrix(case_ids, variants, p_yes, groups)
    acc, n_unlabelled = accuracy(p_yes, labels, accuracy_method)
    scores = output_scores(P, alpha, correction)
    return {
        "n_cases": len(cases),
        "n_prompts": int(len(p_yes)),
        "accuracy": acc,
        "n_unlabelled": n_unlabelled,
        "mfarm": scores,
        "fab": fab(scores["score"], acc),
        "diagnostics": {
            "omnibus": omnibus(P, alpha),
            "group_shifts": group_shifts(P, groups, n_boot=n_boot, seed=seed),
            "ibd": intersectional_residual_share(P, groups, races=races, genders=genders),
        },
    }
