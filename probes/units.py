"""Shape checks of the explain stage's finished units (what a resumed run reads back from a checkpoint).

A unit read from a store that persists (``DIR/.explain.partial.json``) can be
anything a file can hold. Each check below says whether a unit has exactly the
layout the code that wrote it produces, for the current inputs (number of α values,
layers, rows of a batch, traced pairs); a unit that fails is recomputed, never used.
Pure functions of JSON-like values.
"""

from __future__ import annotations

from typing import Any, Sequence


def is_number(x: Any) -> bool:
    """An int or float (NaN allowed: JSON with ``allow_nan``), not a bool."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _numbers(x: Any, n: int) -> bool:
    return isinstance(x, list) and len(x) == n and all(is_number(v) for v in x)


def valid_dose(unit: Any, layer: int, alphas: Sequence[float]) -> bool:
    """A dose–response unit (:func:`probes.causal.dose_response`) at ``layer`` over ``alphas``."""
    if not isinstance(unit, dict) or set(unit) != {"layer", "alphas", "p_yes_mean", "logit_mean", "logit_slope", "spearman"}:
        return False
    n = len(alphas)
    return (
        unit["layer"] == int(layer) and not isinstance(unit["layer"], bool)
        and _numbers(unit["alphas"], n) and [float(a) for a in unit["alphas"]] == [float(a) for a in alphas]
        and _numbers(unit["p_yes_mean"], n) and _numbers(unit["logit_mean"], n)
        and all(unit[k] is None or is_number(unit[k]) for k in ("logit_slope", "spearman"))
    )


def valid_ranks(unit: Any, layers: Sequence[int]) -> bool:
    """The erasers' ranks: ``{str(layer): int}`` for exactly ``layers``."""
    return (
        isinstance(unit, dict) and set(unit) == {str(int(layer)) for layer in layers}
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in unit.values())
    )


def valid_mediation_batch(unit: Any, names: Sequence[str], n_layers: int, n_rows: int) -> bool:
    """One batch of erased forwards: ``{name: [per layer: [per row: P(Yes)]]}``."""
    return (
        isinstance(unit, dict) and set(unit) == set(names)
        and all(isinstance(v, list) and len(v) == n_layers and all(_numbers(row, n_rows) for row in v) for v in unit.values())
    )


def valid_trace_case(unit: Any, pair_keys: Sequence[str], kinds: Sequence[str], n_layers: int) -> bool:
    """One case of the causal trace: ``{"source>target": {"aligned": False} or the patched P(Yes)}``."""
    if not isinstance(unit, dict) or set(unit) != set(pair_keys):
        return False
    for entry in unit.values():
        if not isinstance(entry, dict) or not isinstance(entry.get("aligned"), bool):
            return False
        if not entry["aligned"]:
            if set(entry) != {"aligned"}:
                return False
            continue
        patched = entry.get("patched")
        if set(entry) != {"aligned", "p_target", "p_source", "patched"} or not is_number(entry["p_target"]) \
                or not is_number(entry["p_source"]) or not isinstance(patched, dict) or set(patched) != set(kinds) \
                or not all(_numbers(v, n_layers) for v in patched.values()):
            return False
    return True
