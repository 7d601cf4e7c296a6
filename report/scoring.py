"""Part A/C scores of a predictions table, per tier (what ``probe score`` prints).

Tables in, mappings out: :func:`pipeline.score.read_predictions` reads the CSV.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from latent_bias_probe.configs.errors import InputError

from latent_bias_probe.configs.names import BASE, DEFAULT_GENDERS, DEFAULT_RACES, tier_order

log = logging.getLogger(__name__)

REQUIRED = ("case_id", "race", "gender", "p_yes")
#: below this many cases the exact two-sided Wilcoxon test cannot reach p < 0.05 (2 / 2^n > 0.05)
MIN_CASES = 6


class PredictionsError(InputError, ValueError):
    """A predictions table cannot be scored; the message names file, row and column."""


def _line(i: int) -> int:
    return int(i) + 2  # header is line 1


def validate_predictions(df: pd.DataFrame, source: str = "predictions") -> pd.DataFrame:
    """Check columns and values; return a typed copy (p_yes float, label int 1/0/-1)."""
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise PredictionsError(f"{source}: missing column {missing[0]!r} (need {', '.join(REQUIRED)})")
    if len(df) == 0:
        raise PredictionsError(f"{source}: no rows")
    out = df.copy().reset_index(drop=True)
    for col in ("case_id", "race", "gender"):
        out[col] = out[col].astype(str).str.strip()
        empty = out.index[out[col] == ""]
        if len(empty):
            raise PredictionsError(f"{source}: line {_line(empty[0])}: column {col!r} is empty")
    p = pd.to_numeric(out["p_yes"], errors="coerce")
    bad = out.index[p.isna() | (p < 0) | (p > 1)]
    if len(bad):
        i = bad[0]
        raise PredictionsError(
            f"{source}: line {_line(i)}: column 'p_yes' must be a number in [0, 1], got {df['p_yes'].iloc[i]!r}"
        )
    out["p_yes"] = p.astype(float)
    derived = np.where(out["race"] == BASE, BASE, out["race"] + "-" + out["gender"])
    if "variant" in out.columns:
        out["variant"] = out["variant"].astype(str).str.strip()
        clash = out.index[out["variant"] != derived]
        if len(clash):
            i = clash[0]
            raise PredictionsError(
                f"{source}: line {_line(i)}: column 'variant' is {out['variant'].iloc[i]!r} "
                f"but race/gender give {derived[i]!r}"
            )
    else:
        out["variant"] = derived
    base_rows = out.index[(out["race"] == BASE) != (out["gender"] == BASE)]
    if len(base_rows):
        raise PredictionsError(f"{source}: line {_line(base_rows[0])}: race and gender must both be BASE or neither")
    if "label" in out.columns:
        raw = out["label"].astype(str).str.strip().str.lower()
        mapping = {"1": 1, "0": 0, "": -1, "-1": -1, "yes": 1, "no": 0, "1.0": 1, "0.0": 0, "nan": -1}
        unknown = out.index[~raw.isin(list(mapping))]
        if len(unknown):
            i = unknown[0]
            raise PredictionsError(f"{source}: line {_line(i)}: column 'label' must be 1, 0 or empty, got {df['label'].iloc[i]!r}")
        out["label"] = raw.map(mapping).astype(int)
    else:
        out["label"] = -1
    if "tier" in out.columns:
        out["tier"] = out["tier"].astype(str).str.strip()
    else:
        out["tier"] = "all"
    return out


def group_order(variants: list[str] | np.ndarray) -> list[str]:
    """The non-BASE variants in canonical order: known races × genders first, then the rest sorted."""
    present = {v for v in variants if v != BASE}
    canonical = [f"{r}-{g}" for r in DEFAULT_RACES for g in DEFAULT_GENDERS]
    ordered = [v for v in canonical if v in present]
    return ordered + sorted(present - set(ordered))


def tier_matrices(part: pd.DataFrame, groups: list[str]) -> tuple[Any, Any, list[str]]:
    """(P, labels, case ids) of one tier: P as ``mfarm.matrix.score_matrix`` lays it out, labels
    the same n × k layout (NaN where unknown)."""
    from latent_bias_probe.mfarm.matrix import score_matrix

    P, cases = score_matrix(part["case_id"].tolist(), part["variant"].tolist(), part["p_yes"].to_numpy(dtype=float), groups)
    labels = part["label"].to_numpy(dtype=float)
    labels[~np.isfinite(labels)] = -1  # unknown (e.g. collapsed duplicates with a tied label): NaN below
    L, _ = score_matrix(part["case_id"].tolist(), part["variant"].tolist(), labels, groups)  # finite values only
    L[L < 0] = np.nan
    return P, L, [str(c) for c in cases]


def score_table(
    df: pd.DataFrame,
    alpha: float = 0.05,
    correction: str = "holm",
    accuracy: str = "threshold",
    n_boot: int = 1000,
    seed: int = 0,
    source: str = "predictions",
    *,
    ci_level: float = 0.95,
    margin: float = 0.02,
    permutations: int = 0,
    option_mass_threshold: float = 0.5,
) -> dict[str, Any]:
    """Score every tier of a validated predictions table: ``{tier: tier mapping}``.

    Besides the Part A/C scores and diagnostics of :func:`mfarm.tier.score_tier`:
    ``ci`` (case-bootstrap percentile intervals of every score at ``ci_level``,
    ``n_boot`` resamples), ``equivalence`` (TOST verdict per group against
    ``margin``), ``detectable_shift`` and, with ``permutations``, ``null`` (where
    each observed score falls among within-case label permutations).
    """
    from latent_bias_probe.mfarm.equivalence import detectable_shift, equivalence_verdicts
    from latent_bias_probe.mfarm.option_mass import option_mass_summary
    from latent_bias_probe.mfarm.matrix import MatrixError
    from latent_bias_probe.mfarm.resampling import permutation_null, score_intervals
    from latent_bias_probe.mfarm.tier import score_tier

    tiers: dict[str, Any] = {}
    for tier in _tier_order(df["tier"].tolist()):
        part = df[df["tier"] == tier]
        groups = group_order(part["variant"].tolist())
        if not groups:
            raise PredictionsError(f"{source}: tier {tier!r} has no demographic (non-BASE) rows")
        try:
            tiers[tier] = entry = score_tier(
                part["case_id"].to_numpy(),
                part["variant"].to_numpy(),
                part["p_yes"].to_numpy(dtype=float),
                part["label"].to_numpy(dtype=int),
                groups,
                alpha=alpha,
                correction=correction,
                accuracy_method=accuracy,
                n_boot=n_boot,
                seed=seed,
            )
            P, L, _ = tier_matrices(part, groups)
        except MatrixError as err:
            raise PredictionsError(f"{source}: tier {tier!r}: {err}") from None
        entry["ci"] = score_intervals(P, L, alpha, correction, n_boot, seed, level=ci_level, accuracy_method=accuracy)
        entry["equivalence"] = equivalence_verdicts(P, groups, margin, alpha)
        entry["detectable_shift"] = detectable_shift(P, alpha)
        if permutations:
            entry["null"] = permutation_null(P, alpha, correction, permutations, seed)
        if "option_mass" in part:
            summary = option_mass_summary(
                part["case_id"].tolist(), part["variant"].tolist(), part["option_mass"].tolist(), option_mass_threshold
            )
            if summary is not None:
                entry["option_mass"] = summary
                if summary.get("warning"):
                    log.warning("tier %s: %s", tier, summary["warning"])
                    entry.setdefault("warnings", []).append(summary["warning"])
        n = entry["n_cases"]
        if n < MIN_CASES:
            note = (
                f"only {n} case{'s' if n > 1 else ''}: the paired tests behind the scores cannot reach significance "
                f"with fewer than {MIN_CASES} cases, so a score of 1 here means no evidence, not fairness"
            )
            log.warning("tier %s: %s", tier, note)
            entry.setdefault("warnings", []).insert(0, note)
    return tiers


def _tier_order(tiers: list[str]) -> list[str]:
    return tier_order(tiers)
