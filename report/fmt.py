"""Number formatting shared by the report and its plain-language summary.

Missing values (None, NaN, ±inf, non-numbers) are shown as an en dash "–".
"""

from __future__ import annotations

import math
from typing import Any, Mapping

__all__ = ["MISSING", "finite", "num", "signed", "pct", "p_value", "get"]

MISSING = "\u2013"


def finite(v: Any) -> float | None:
    """``v`` as a float when it is a finite real number, else None (bools excluded)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def num(v: Any, digits: int = 3) -> str:
    """``0.812``; "–" when missing."""
    f = finite(v)
    return MISSING if f is None else f"{f:.{digits}f}"


def signed(v: Any, digits: int = 3) -> str:
    """``+0.031`` / ``-0.052``; "–" when missing."""
    f = finite(v)
    if f is None:
        return MISSING
    text = f"{f:+.{digits}f}"
    return text.replace("+", "") if float(text) == 0 else text


def pct(v: Any, digits: int = 0) -> str:
    """A fraction as a percentage: ``0.4512`` → ``45%``; "–" when missing."""
    f = finite(v)
    return MISSING if f is None else f"{100 * f:.{digits}f}%"


def p_value(v: Any) -> str:
    """A p-value: three significant places, ``<0.001`` below that."""
    f = finite(v)
    if f is None:
        return MISSING
    return "<0.001" if f < 0.001 else f"{f:.3f}"


def get(mapping: Any, *keys: Any, default: Any = None) -> Any:
    """``mapping[k1][k2]...`` or ``default`` when any step is missing or not a mapping/list."""
    cur = mapping
    for key in keys:
        if isinstance(cur, Mapping):
            if key not in cur:
                return default
            cur = cur[key]
        elif isinstance(cur, (list, tuple)) and isinstance(key, int) and -len(cur) <= key < len(cur):
            cur = cur[key]
        else:
            return default
    return default if cur is None else cur
