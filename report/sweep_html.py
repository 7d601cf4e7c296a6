"""The sweep report: one self-contained page over a whole sweep (``sweep.html``).

For each model (and adapter) it draws four charts from ``sweep.csv``:

- mFARM against context tier (high → medium → low), one line per precision;
- FAB against context tier, one line per precision;
- mFARM against precision (in the sweep's order), one line per tier;
- FAB against precision, one line per tier.

Where the latent stage ran, the "full" variants (mFARM full, FAB full) are drawn as
dashed lines of the same colour beside the solid output-level ("paper") ones.
Then the plain-language answers of :func:`report.sweep.sweep_summary`, the whole
table, and links to each combination's own ``report.html``. Same page rules as
the run report (:mod:`report.html`; template ``report/templates/sweep.html``):
inline SVG, no scripts, nothing fetched. Writing the file is
:func:`pipeline.report.write_sweep_report`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Sequence

from configs.names import SCORE_KEYS, TIERS as TIER_ORDER
from report import figures
from report.fmt import MISSING, finite
from report.html import Span, Table, render_page, svg_figure
from report.sweep import sweep_summary

log = logging.getLogger(__name__)

__all__ = ["render_sweep_report"]

SCORE_ABBR = ("F_MD", "F_AD", "F_VH", "F_KS", "F_CD")


def _cell(v: Any) -> str:
    f = finite(v)
    return MISSING if f is None else f"{f:.3f}"


def _small(v: Any) -> str:
    f = finite(v)
    return MISSING if f is None else f"{f:.2g}"


def _ordered(values: Sequence[str], order: Sequence[str] = ()) -> list[str]:
    seen = list(dict.fromkeys(values))
    return [v for v in order if v in seen] + [v for v in seen if v not in order]


def _unit_name(model: str, adapter: str, n_adapters: int) -> str:
    if n_adapters < 2:
        return model
    return f"{model} with adapter {Path(adapter).name}" if adapter else f"{model} without adapter"


def _relative(link: str | None) -> str | None:
    """``link`` when it is a relative path (no scheme, not protocol-relative), else None."""
    if not link or link.startswith(("/", "\\")) or re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", link):
        return None
    return link


def _chart(
    rows: list[dict[str, Any]],
    metric: str,
    full_metric: str,
    x_key: str,
    x_values: list[str],
    line_key: str,
    line_values: list[str],
    *,
    uid: str,
    title: str,
    y_label: str,
) -> str:
    """Lines of ``metric`` over the categories ``x_values`` of ``x_key``, one per ``line_key`` value."""
    index = {(r[x_key], r[line_key]): r for r in rows}
    series: list[figures.Series] = []
    for i, line in enumerate(line_values):
        color = figures.PALETTE[i % len(figures.PALETTE)]
        cells = [index.get((x, line)) for x in x_values]
        y = [finite(c[metric]) if c else None for c in cells]
        series.append(figures.Series(name=f"{line}", x=list(range(len(x_values))), y=y, color=color))
        y_full = [finite(c[full_metric]) if c else None for c in cells]
        if any(v is not None for v in y_full):
            series.append(figures.Series(name=f"{line} (full)", x=list(range(len(x_values))), y=y_full,
                                         color=color, dash="7 4"))
    return figures.line_chart(
        series,
        uid=uid,
        title=title,
        desc=f"{y_label} for each {x_key} ({', '.join(x_values)}), one line per {line_key}.",
        x_label=x_key,
        y_label=y_label,
        y_min=0.0,
        y_max=1.0,
        x_categories=x_values,
    )


def _unit(n: int, name: str, rows: list[dict[str, Any]], precisions: list[str]) -> dict[str, Any]:
    tiers = _ordered([r["tier"] for r in rows], TIER_ORDER)
    precs = [p for p in precisions if any(r["precision"] == p for r in rows)]
    figs = []
    axes = (("tier", tiers, "precision", precs, "context tier"), ("precision", precs, "tier", tiers, "precision"))
    for x_key, x_values, line_key, line_values, against in axes:
        for metric, label in (("mfarm", "mFARM"), ("fab", "FAB")):
            chart = _chart(rows, metric, f"{metric}_full", x_key, x_values, line_key, line_values,
                           uid=f"m{n}-{metric}-{x_key}", title=f"{label} against {against}, {name}", y_label=label)
            figs.append(svg_figure(chart, f"{label} against {against}",
                             f"One line per {line_key}; dashed: the full score with the latent term, where the probes ran."))
    return {"id": f"model-{n}", "name": name, "figs": figs}


def render_sweep_report(rows: list[dict[str, Any]], title: str = "Sweep", run_links: dict[tuple, str] | None = None) -> str:
    """The sweep report as one HTML string (pure: no I/O).

    ``rows`` are the records of ``sweep.csv`` (:func:`pipeline.sweep.sweep_table`);
    ``run_links`` maps ``(model, precision, adapter)`` to a relative link to that
    combination's own report.
    """
    import pandas as pd

    rows = [dict(r) for r in rows]
    for r in rows:
        r["adapter"] = "" if r.get("adapter") is None or (isinstance(r.get("adapter"), float)) else str(r["adapter"])
    models = _ordered([r["model"] for r in rows])
    adapters = _ordered([r["adapter"] for r in rows])
    precisions = _ordered([r["precision"] for r in rows])
    units = [(m, a) for m in models for a in adapters if any(r["model"] == m and r["adapter"] == a for r in rows)]
    context: dict[str, Any] = {
        "title": title,
        "sources": "sweep.csv",
        "n_models": len(models),
        "precisions": ", ".join(precisions) or MISSING,
        "adapters": ", ".join(Path(a).name if a else "none" for a in adapters) or MISSING,
        "answers": [],
        "units": [],
        "combos": None,
    }
    if rows:
        context["answers"] = sweep_summary(pd.DataFrame(rows))
        context["units"] = [
            _unit(n, _unit_name(model, adapter, len(adapters)),
                  [r for r in rows if r["model"] == model and r["adapter"] == adapter], precisions)
            for n, (model, adapter) in enumerate(units, 1)
        ]
        head = ["Model", "Precision", "Adapter", "Tier", "Cases", "Accuracy", *SCORE_ABBR, "mFARM", "mFARM full", "FAB",
                "FAB full", Span("Max |shift|", title="largest |mean shift of P(Yes)| of a group from BASE"),
                Span("Batch noise", title="largest |change of P(Yes)| of a prompt run alone instead of in its batch")]
        table_rows = []
        for r in rows:
            link = _relative((run_links or {}).get((r["model"], r["precision"], r["adapter"])))
            n_cases = finite(r.get("n_cases"))
            table_rows.append(
                [Span(r["model"], href=link) if link else r["model"], r["precision"],
                 Path(r["adapter"]).name if r["adapter"] else "none", r["tier"],
                 MISSING if n_cases is None else str(int(n_cases)), _cell(r.get("accuracy"))]
                + [_cell(r.get(k)) for k in SCORE_KEYS]
                + [_cell(r.get(k)) for k in ("mfarm", "mfarm_full", "fab", "fab_full", "max_abs_shift")]
                + [_small(r.get("batch_noise"))]
            )
        context["combos"] = Table(head, table_rows, numeric_from=4)
    return render_page("sweep.html", **context)
