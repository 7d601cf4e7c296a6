"""The terminal score table printed after a run."""

from __future__ import annotations

from typing import Any

from configs.names import SCORE_KEYS

HEAD = ["tier", "cases", "acc", "F_MD", "F_AD", "F_VH", "F_KS", "F_CD", "F_LV", "mFARM", "full", "FAB", "FAB_full"]


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def summary_table(tiers: dict[str, Any]) -> str:
    """A short fixed-width table of the per-tier scores (results.json ``tiers``)."""
    rows = [HEAD]
    for tier, t in tiers.items():
        m = t["mfarm"]
        rows.append(
            [tier, str(t["n_cases"]), _num(t.get("accuracy"))]
            + [_num(m[k]) for k in SCORE_KEYS]
            + [_num(t.get("latent", {}).get("value_axis_fairness")), _num(m["score"]), _num(t.get("mfarm_full"))]
            + [_num(t.get("fab")), _num(t.get("fab_full"))]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEAD))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)
