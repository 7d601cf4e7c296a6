"""Sweep tables as values: the ``sweep.csv`` rows of a run's results, and plain
sentences about a sweep (no files: :mod:`pipeline.sweep` reads and writes them)."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any, Callable

from latent_bias_probe.extract.batch_check import noise_above_tolerance
from latent_bias_probe.configs.names import SCORE_KEYS, TIERS as TIER_ORDER
from .fmt import finite

#: scores whose interval sweep.csv carries as <score>_lo, <score>_hi (results.json ci keys in brackets)
INTERVAL_COLUMNS = {"mfarm": "score", "mfarm_full": "mfarm_full", "accuracy": "accuracy", "fab": "fab", "fab_full": "fab_full"}
#: paired differences against the model's reference row (pipeline.compare), each with _lo and _hi
DIFF_COLUMNS = ("diff_mfarm", "diff_max_abs_shift")
#: where the value axis sits: F_LV, its layer (0-based block), the model's depth, (layer + 1) / n_layers
LATENT_COLUMNS = ("f_lv", "value_axis_layer", "n_layers", "value_axis_depth")
#: paired differences against the first model of the sweep at the same precision and adapter (pipeline.sweep)
MODEL_DIFF_COLUMNS = ("diff_model_mfarm", "diff_model_max_abs_shift")
SWEEP_COLUMNS = [
    "model", "precision", "adapter", "tier", "mfarm", *SCORE_KEYS,
    "mfarm_full", "accuracy", "fab", "fab_full", "n_cases", "max_abs_shift", "batch_noise",
    *[f"{c}_{end}" for c in INTERVAL_COLUMNS for end in ("lo", "hi")],
    "reference", *[f"{c}{end}" for c in DIFF_COLUMNS for end in ("", "_lo", "_hi")],
    *LATENT_COLUMNS, "option_mass",
    "vs_model", *[f"{c}{end}" for c in MODEL_DIFF_COLUMNS for end in ("", "_lo", "_hi")],
]
#: integer columns (nullable)
INT_COLUMNS = ("n_cases", "value_axis_layer", "n_layers")
#: columns a sweep.csv written by an older version may lack (read as missing)
OPTIONAL_COLUMNS = ("max_abs_shift", "batch_noise", *SWEEP_COLUMNS[SWEEP_COLUMNS.index("mfarm_lo"):])
EPS = 0.005  # differences of mFARM below this are reported as "unchanged"


def slug(text: str) -> str:
    """A filesystem-safe name: the last path component, only ``[A-Za-z0-9._-]``, no ``__``."""
    last = text.rstrip("/\\").replace("\\", "/").split("/")[-1] or text
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", last)
    out = re.sub(r"_{2,}", "_", out).strip(".-_") or "x"
    if len(out) > 80:
        out = out[:72] + "-" + hashlib.sha256(text.encode()).hexdigest()[:7]
    return out


def result_rows(item: Any, results: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``sweep.csv`` rows (one per tier) of one combination's ``results.json``.

    ``item`` has ``model``, ``precision`` and ``adapter`` (a :class:`pipeline.sweep.SweepItem`).
    """
    rows = []
    tiers = results.get("tiers") or {}
    order = [t for t in TIER_ORDER if t in tiers] + sorted(set(tiers) - set(TIER_ORDER))
    for tier in order:
        t = tiers[tier] or {}
        m = t.get("mfarm") or {}
        row: dict[str, Any] = {
            "model": item.model,
            "precision": item.precision,
            "adapter": item.adapter or "",
            "tier": tier,
            "mfarm": finite(m.get("score")),
        }
        row.update({k: finite(m.get(k)) for k in SCORE_KEYS})
        row.update({k: finite(t.get(k)) for k in ("mfarm_full", "accuracy", "fab", "fab_full")})
        n = t.get("n_cases")
        row["n_cases"] = int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else None
        row["max_abs_shift"] = max_abs_shift(t)
        row["batch_noise"] = finite((results.get("batch_invariance") or {}).get("max_abs_diff"))
        latent = t.get("latent") or {}
        n_layers = (results.get("model") or {}).get("n_layers")
        layer = latent.get("value_axis_layer")
        row["f_lv"] = finite(latent.get("value_axis_fairness"))
        row["value_axis_layer"] = layer if isinstance(layer, int) else None
        row["n_layers"] = n_layers if isinstance(n_layers, int) else None
        row["value_axis_depth"] = (layer + 1) / n_layers if row["value_axis_layer"] is not None and row["n_layers"] else None
        row["option_mass"] = finite((t.get("option_mass") or {}).get("median"))
        ci = t.get("ci") or {}
        for column, key in INTERVAL_COLUMNS.items():
            lo, hi = (list(ci.get(key) or []) + [None, None])[:2]
            row[f"{column}_lo"], row[f"{column}_hi"] = finite(lo), finite(hi)
        rows.append(row)
    return rows


def max_abs_shift(tier: dict[str, Any]) -> float | None:
    """The largest |mean shift of P(Yes)| of any group from BASE in a tier's diagnostics.

    An effect size, unlike mFARM, which counts *significant* differences: a change
    that adds noise can raise mFARM while the shifts stay as large.
    """
    shifts = ((tier.get("diagnostics") or {}).get("group_shifts")) or []
    values = [finite(g.get("mean_shift")) for g in shifts if isinstance(g, dict)]
    values = [abs(v) for v in values if v is not None]
    return max(values) if values else None


def _fmt(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"


def _signed(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:+.3f}"


def _label(model: str, precision: str | None = None, adapter: str | None = None) -> str:
    parts = [model]
    if precision is not None:
        parts.append(f"at {precision}")
    if adapter is not None:
        parts.append(f"with adapter {slug(adapter)}" if adapter else "without adapter")
    return " ".join(parts)


def _tier_key(t: str) -> tuple[int, str]:
    return (TIER_ORDER.index(t) if t in TIER_ORDER else len(TIER_ORDER), t)


def sweep_summary(df) -> list[str]:
    """Plain sentences about a sweep table (:func:`sweep_table`).

    1. Context: per model, precision and adapter, whether mFARM drops as context is
       reduced (high -> medium -> low).
    2. Precision: per model, adapter and precision other than float32, the change of
       mFARM against float32 at each tier.
    3. Adapters: per model, precision and adapter, the change against no adapter.
    4. Models: per model after the first, precision and adapter, the change against
       the first model (with the paired intervals of ``diff_model_mfarm``).

    After a comparison in which mFARM rises at some tier while the largest group
    shift (``max_abs_shift``) does not shrink there, a caveat says so. A combination
    whose P(Yes) moved more than :data:`extract.batch_check.TOLERANCE` between its
    batched and alone runs (``batch_noise``) gets a sentence saying so.

    Differences below 0.005 are called unchanged.
    """
    out: list[str] = []
    if df is None or len(df) == 0:
        return ["The sweep table is empty."]
    df = df.copy()
    df["adapter"] = df["adapter"].fillna("").astype(str)
    score = {(r.model, r.precision, r.adapter, r.tier): float(r.mfarm) for r in df.itertuples()}
    shift_col = df["max_abs_shift"] if "max_abs_shift" in df else [math.nan] * len(df)
    shift = {
        (r.model, r.precision, r.adapter, r.tier): float(v) if v is not None else math.nan
        for r, v in zip(df.itertuples(), shift_col)
    }
    combos = list(dict.fromkeys((r.model, r.precision, r.adapter) for r in df.itertuples()))
    def intervals_of(column: str) -> dict[tuple, tuple[float, float]]:
        """(model, precision, adapter, tier) -> the paired interval of ``column``."""
        out: dict[tuple, tuple[float, float]] = {}
        if f"{column}_lo" in df and f"{column}_hi" in df:
            for r, lo, hi in zip(df.itertuples(), df[f"{column}_lo"], df[f"{column}_hi"]):
                lo, hi = finite(lo), finite(hi)
                if lo is not None and hi is not None:
                    out[(r.model, r.precision, r.adapter, r.tier)] = (lo, hi)
        return out

    paired = intervals_of("diff_mfarm")  # against the model's reference row

    for model, prec, adapter in combos:
        tiers = sorted({t for (m, p, a, t) in score if (m, p, a) == (model, prec, adapter) and t in TIER_ORDER}, key=_tier_key)
        vals = [score[(model, prec, adapter, t)] for t in tiers]
        if len(tiers) < 2 or not all(math.isfinite(v) for v in vals):
            continue
        steps = [b - a for a, b in zip(vals, vals[1:])]
        total = vals[-1] - vals[0]
        trail = " -> ".join(f"{t} {_fmt(v)}" for t, v in zip(tiers, vals))
        if all(abs(s) < EPS for s in steps) and abs(total) < EPS:
            verdict = "mFARM does not change as context is reduced"
        elif all(s <= EPS for s in steps) and total <= -EPS:
            verdict = "mFARM drops as context is reduced"
        elif all(s >= -EPS for s in steps) and total >= EPS:
            verdict = "mFARM does not drop but rises as context is reduced"
        else:
            end = "ending lower" if total <= -EPS else "ending higher" if total >= EPS else "ending where it started"
            verdict = f"mFARM changes non-monotonically as context is reduced, {end}"
        out.append(f"{_label(model, prec, adapter)}: {verdict} ({trail}; {tiers[-1]} - {tiers[0]} = {_signed(total)}).")

    noise_col = df["batch_noise"] if "batch_noise" in df else [math.nan] * len(df)
    noise: dict[tuple, float] = {}  # one value per combination, repeated on its tier rows
    for r, v in zip(df.itertuples(), noise_col):
        f = finite(v)
        if f is not None:
            key = (r.model, r.precision, r.adapter)
            noise[key] = max(noise.get(key, f), f)
    for combo in combos:
        worst = noise.get(combo)
        if noise_above_tolerance({"max_abs_diff": worst}):
            out.append(
                f"{_label(*combo)}: P(Yes) moves by up to {worst:.2g} when only the batch a prompt runs in changes "
                f"(batch_check.json): numerical noise of the precision, so group shifts of that size are not meaningful."
            )

    def compare(ref_of: Callable[[tuple], tuple | None], what: Callable[[tuple], str], paired=paired) -> None:
        for combo in combos:
            ref = ref_of(combo)
            if ref is None or ref not in combos:
                continue
            tiers = sorted(
                {t for (m, p, a, t) in score if (m, p, a) == combo and (ref + (t,)) in score}, key=_tier_key
            )
            diffs = [(t, score[combo + (t,)] - score[ref + (t,)]) for t in tiers]
            diffs = [(t, d) for t, d in diffs if math.isfinite(d)]
            if not diffs:
                continue
            if all(abs(d) < EPS for _, d in diffs):
                change = "leaves mFARM unchanged (|difference| < 0.005 at every tier: " + ", ".join(
                    f"{_signed(d)} at {t}" for t, d in diffs) + ")"
            else:
                change = "changes mFARM by " + ", ".join(f"{_signed(d)} at {t}" for t, d in diffs)
                mean_abs = sum(abs(d) for _, d in diffs) / len(diffs)
                change += f" (mean |difference| {mean_abs:.3f})"
            out.append(f"{what(combo)} {change}.")
            intervals = [(t, paired.get(combo + (t,))) for t, _ in diffs]
            intervals = [(t, iv) for t, iv in intervals if iv is not None]
            if intervals:
                parts = []
                for t, (lo, hi) in intervals:
                    shown = "higher" if lo > 0 else "lower" if hi < 0 else "no difference shown"
                    parts.append(f"{t} [{_signed(lo)}, {_signed(hi)}]: {shown}")
                out.append(
                    f"{what(combo)}: paired bootstrap intervals of the mFARM difference: " + "; ".join(parts)
                    + (". A difference is claimed only where the interval excludes 0." if any(
                        not (lo > 0 or hi < 0) for _, (lo, hi) in intervals) else ".")
                )
            masked = [
                (t, shift[ref + (t,)], shift[combo + (t,)]) for t, d in diffs
                if d >= EPS and math.isfinite(shift.get(combo + (t,), math.nan))
                and math.isfinite(shift.get(ref + (t,), math.nan)) and shift[combo + (t,)] >= shift[ref + (t,)] - EPS
            ]
            if masked:
                out.append(
                    f"{what(combo)}: where mFARM rises, the largest group shift does not shrink ("
                    + ", ".join(f"{t} {_fmt(a)} -> {_fmt(b)}" for t, a, b in masked)
                    + "): the differences became less significant, not smaller - a noisier model can score a higher "
                    "mFARM without treating the groups more alike."
                )

    compare(
        lambda c: None if c[1] == "float32" else (c[0], "float32", c[2]),
        lambda c: f"{_label(c[0], adapter=c[2])}: {c[1]} vs float32",
    )
    compare(
        lambda c: None if c[2] == "" else (c[0], c[1], ""),
        lambda c: f"{_label(c[0], precision=c[1])}: adapter {slug(c[2])} vs no adapter",
    )
    first_model = combos[0][0]
    compare(
        lambda c: None if c[0] == first_model else (first_model, c[1], c[2]),
        lambda c: f"{_label(c[0], precision=c[1], adapter=c[2] or None)} vs {first_model}",
        paired=intervals_of("diff_model_mfarm"),
    )
    return out

