"""``probe compare A B``: paired differences of two runs on the same benchmark cases.

A and B are run directories or predictions CSVs. Per tier present in both, the two
tiers must hold the same cases and variants (else exit 2). Every score's
difference B − A and each group's difference of mean shift come with a paired
bootstrap interval: the same case resample on both sides
(:func:`mfarm.resampling.paired_differences`), and a verdict that says "higher" or
"lower" only when the interval excludes zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from latent_bias_probe.configs.errors import InputError


def _predictions_path(source: str | Path) -> Path:
    path = Path(source)
    if path.is_dir():
        from .artifacts import RunDir

        run = RunDir(path)
        if not run.is_fresh("predictions.csv"):
            raise InputError(f"{path}: no fresh predictions.csv ({run.why_stale('predictions.csv')})")
        return run / "predictions.csv"
    return path


def compare_tables(df_a, df_b, alpha: float = 0.05, correction: str = "holm", n_boot: int = 1000, seed: int = 0,
                   level: float = 0.95, accuracy: str = "threshold", names: tuple[str, str] = ("A", "B")) -> dict[str, Any]:
    """``{"tiers": {tier: {score: {"diff", "ci", "verdict"}, "shifts": {group: {...}}}}}`` of two validated tables."""
    from latent_bias_probe.mfarm.resampling import paired_differences, verdict
    from latent_bias_probe.report.scoring import group_order, tier_matrices

    tiers_a, tiers_b = set(df_a["tier"]), set(df_b["tier"])
    common = [t for t in dict.fromkeys(df_a["tier"]) if t in tiers_b]
    if not common:
        raise InputError(f"compare: {names[0]} and {names[1]} share no tier ({sorted(tiers_a)} vs {sorted(tiers_b)})")
    out: dict[str, Any] = {"a": names[0], "b": names[1], "level": level, "n_boot": n_boot, "tiers": {}}
    for tier in common:
        part_a, part_b = df_a[df_a["tier"] == tier], df_b[df_b["tier"] == tier]
        groups_a, groups_b = group_order(part_a["variant"].tolist()), group_order(part_b["variant"].tolist())
        if groups_a != groups_b:
            raise InputError(f"compare: tier {tier}: the variants differ ({', '.join(sorted(set(groups_a) ^ set(groups_b)))})")
        P_a, L_a, cases_a = tier_matrices(part_a, groups_a)
        P_b, L_b, cases_b = tier_matrices(part_b, groups_b)
        if sorted(cases_a) != sorted(cases_b):
            only = sorted(set(cases_a) ^ set(cases_b))
            raise InputError(f"compare: tier {tier}: the runs hold different cases ({len(only)} differ, e.g. {only[0]!r})")
        order = [cases_b.index(c) for c in cases_a]
        result = paired_differences(
            P_a, P_b[order], L_a, alpha=alpha, correction=correction, n_boot=n_boot, seed=seed,
            level=level, accuracy_method=accuracy, groups=groups_a,
        )
        for value in result.values():
            if isinstance(value, dict) and "ci" in value:
                value["verdict"] = verdict(value["ci"])
        for shift in result.get("mean_shift", []):
            shift["verdict"] = verdict(shift["ci"])
        result["max_abs_shift"] = max_abs_shift_difference(P_a, P_b[order], n_boot, seed, level)
        out["tiers"][tier] = result
    return out


def max_abs_shift_difference(P_a, P_b, n_boot: int, seed: int, level: float) -> dict[str, Any]:
    """B − A of the largest |mean shift of P(Yes)| of any group from BASE, with a paired bootstrap interval.

    The same case resamples as :func:`mfarm.resampling.paired_differences` (same seed).
    """
    import numpy as np

    from latent_bias_probe.mfarm.resampling import bootstrap_indices, verdict

    def largest(P, idx):
        return np.abs((P[idx, 1:] - P[idx, :1]).mean(axis=-2)).max(axis=-1)

    P_a, P_b = np.asarray(P_a, dtype=float), np.asarray(P_b, dtype=float)
    everything = np.arange(P_a.shape[0])
    a, b = float(largest(P_a, everything)), float(largest(P_b, everything))
    ci = None
    if n_boot:
        idx = bootstrap_indices(P_a.shape[0], n_boot, seed)
        d = largest(P_b, idx) - largest(P_a, idx)
        tail = (1 - level) / 2 * 100
        ci = [float(x) for x in np.percentile(d, [tail, 100 - tail])]
    return {"a": a, "b": b, "diff": b - a, "ci": ci, "verdict": verdict(ci)}


def compare_runs(a: str | Path, b: str | Path, **options: Any) -> dict[str, Any]:
    """:func:`compare_tables` of two run directories or predictions CSVs."""
    from .score import read_predictions

    path_a, path_b = _predictions_path(a), _predictions_path(b)
    return compare_tables(read_predictions(path_a), read_predictions(path_b), names=(str(a), str(b)), **options)
