"""The terminal score table printed after a run.

Below the fixed-width table, one line per tier gives what needs more room: mFARM
with its bootstrap interval, the TOST verdict counts against the margin, the
smallest detectable shift when some verdicts are inconclusive, and the tier's
warnings. Tiers without these keys (older results, bootstrap 0) add no line.
"""

from __future__ import annotations

from typing import Any

from latent_bias_probe.configs.names import SCORE_KEYS

HEAD = ["tier", "cases", "acc", "F_MD", "F_AD", "F_VH", "F_KS", "F_CD", "F_LV", "mFARM", "full", "FAB", "FAB_full"]


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def _details(tier: str, t: dict[str, Any]) -> list[str]:
    """The extra lines of one tier (empty without intervals, verdicts or warnings)."""
    parts = []
    ci = (t.get("ci") or {}).get("score")
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_is_num(v) for v in ci):
        level = (t.get("ci") or {}).get("level")
        parts.append(f"mFARM {_num(t['mfarm'].get('score'))} [{ci[0]:.2f}, {ci[1]:.2f}]"
                     + (f" ({level:.0%})" if _is_num(level) else ""))
    eq = t.get("equivalence")
    if isinstance(eq, dict):
        verdicts = [r.get("verdict") for g, r in eq.items() if isinstance(r, dict)]
        if verdicts:
            counts = {v: sum(1 for x in verdicts if x == v) for v in ("equivalent", "different", "inconclusive")}
            margin = eq.get("margin")
            parts.append(f"TOST{f' ±{margin:g}' if _is_num(margin) else ''}: "
                         + ", ".join(f"{n} {v}" for v, n in counts.items()))
            ds = t.get("detectable_shift")
            if counts["inconclusive"] and _is_num(ds):
                parts.append(f"detectable shift ~{ds:.3f}")
    lines = [f"{tier}: " + "; ".join(parts)] if parts else []
    for w in t.get("warnings") or []:
        if isinstance(w, str) and w.strip():
            lines.append(f"{tier}: warning: {w}")
    return lines


def summary_table(tiers: dict[str, Any]) -> str:
    """A short fixed-width table of the per-tier scores (results.json ``tiers``), then per-tier detail lines."""
    rows = [HEAD]
    details: list[str] = []
    for tier, t in tiers.items():
        m = t["mfarm"]
        rows.append(
            [tier, str(t["n_cases"]), _num(t.get("accuracy"))]
            + [_num(m[k]) for k in SCORE_KEYS]
            + [_num(t.get("latent", {}).get("value_axis_fairness")), _num(m["score"]), _num(t.get("mfarm_full"))]
            + [_num(t.get("fab")), _num(t.get("fab_full"))]
        )
        details += _details(str(tier), t)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEAD))]
    table = "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)
    return table + ("\n" + "\n".join(details) if details else "")
