"""The sweep report: one self-contained page over a whole sweep (``sweep.html``).

For each model (and adapter) it draws four charts from ``sweep.csv``:

- mFARM against context tier (high → medium → low), one line per precision;
- FAB against context tier, one line per precision;
- mFARM against precision (in the sweep's order), one line per tier;
- FAB against precision, one line per tier.

Where the latent stage ran, the "full" variants (mFARM full, FAB full) are drawn as
dashed lines of the same colour beside the solid output-level ("paper") ones.
Where sweep.csv carries a score's interval (``<score>_lo``, ``<score>_hi``), every
point gets its error bar (lines dodge sideways so the bars do not overlap).

The page leads with a table of the paired differences against each model's
reference row (``diff_mfarm``, ``diff_max_abs_shift`` with their ``_lo``/``_hi`` and
``reference``): only a paired interval that excludes zero lets it say one
combination scores higher or lower than another ("fairer by this benchmark's
mFARM"); otherwise it says the benchmark cannot tell them apart. Then the plain-language answers of
:func:`report.sweep.sweep_summary` (point estimates), the whole table with the
intervals, and links to each combination's own ``report.html``. Every interval
column is optional: absent, None or NaN leaves it out. Same page rules as
the run report (:mod:`report.html`; template ``report/templates/sweep.html``):
inline SVG, no scripts, nothing fetched. Writing the file is
:func:`pipeline.report.write_sweep_report`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Sequence

from latent_bias_probe.configs.names import SCORE_KEYS, TIERS as TIER_ORDER
from . import figures
from .fmt import MISSING, finite
from .html import Span, Table, render_page, svg_figure
from .summary import fmt_interval
from .sweep import sweep_summary

log = logging.getLogger(__name__)

__all__ = ["render_sweep_report"]

SCORE_ABBR = ("F_MD", "F_AD", "F_VH", "F_KS", "F_CD")


def _cell(v: Any) -> str:
    f = finite(v)
    return MISSING if f is None else f"{f:.3f}"


def _ci_cell(r: dict[str, Any], key: str) -> Any:
    """``0.900`` with its interval ``[0.85, 0.95]`` (class ``ci``) when sweep.csv has ``key_lo``/``key_hi``."""
    text = _cell(r.get(key))
    bounds = fmt_interval((r.get(f"{key}_lo"), r.get(f"{key}_hi")))
    return [text, " ", Span(bounds, cls="ci")] if bounds and text != MISSING else text


def _diff_cell(r: dict[str, Any], key: str) -> Any:
    """A paired difference ``+0.012`` with its interval, bold when the interval excludes 0."""
    d = finite(r.get(key))
    if d is None:
        return MISSING
    lo, hi = finite(r.get(f"{key}_lo")), finite(r.get(f"{key}_hi"))
    text = f"{d:+.3f}"
    if lo is None or hi is None:
        return text
    return [Span(text, sig=True) if lo > 0 or hi < 0 else text, " ", Span(f"[{lo:+.3f}, {hi:+.3f}]", cls="ci")]


def _label(v: Any) -> str:
    """A text cell of sweep.csv ("" for None / NaN)."""
    if v is None or (isinstance(v, float) and v != v):
        return ""
    return str(v)


def _reading(d: float | None, lo: float | None, hi: float | None) -> str:
    """"higher" / "lower" when the paired interval excludes 0, "cannot tell apart" when it includes 0."""
    if d is None:
        return MISSING
    if lo is None or hi is None:
        return "no paired interval: no verdict"
    if lo > 0:
        return "higher"
    if hi < 0:
        return "lower"
    return "includes 0: cannot tell apart"


def _paired_table(rows: list[dict[str, Any]], n_adapters: int) -> Table | None:
    """One row per combination and tier with a paired difference against its model's reference row.

    The reading says "higher"/"lower" (and, for mFARM, "fairer"/"less fair by this
    benchmark's mFARM") only when the paired interval excludes 0; a higher mFARM whose
    largest group shift did not measurably shrink is flagged as possibly noise.
    """
    out = []
    for r in rows:
        d, lo, hi = (finite(r.get(k)) for k in ("diff_mfarm", "diff_mfarm_lo", "diff_mfarm_hi"))
        sd, slo, shi = (finite(r.get(k)) for k in ("diff_max_abs_shift", "diff_max_abs_shift_lo", "diff_max_abs_shift_hi"))
        if d is None and sd is None:
            continue
        ref = _label(r.get("reference"))
        adapter = Path(r["adapter"]).name if r["adapter"] else "none"
        if ref and ref in (r["precision"], r["adapter"], adapter):
            continue  # the reference row itself
        if all(v in (None, 0.0) for v in (d, lo, hi, sd, slo, shi)):
            continue
        who = f"{r['model']} at {r['precision']}" + (f", adapter {adapter}" if n_adapters >= 2 else "")
        reading = _reading(d, lo, hi)
        if reading == "higher":
            reading = "higher: fairer by this benchmark's mFARM"
            if slo is not None and shi is not None and not shi < 0:
                reading += " – but the largest group shift is not measurably smaller, so this may be noise"
        elif reading == "lower":
            reading = "lower: less fair by this benchmark's mFARM"
        shift_reading = _reading(sd, slo, shi)
        if shift_reading in ("higher", "lower"):
            shift_reading = "larger" if shift_reading == "higher" else "smaller"
        shown = lo is not None and hi is not None and (lo > 0 or hi < 0)
        out.append([who, ref or MISSING, r["tier"],
                    _with_reading(_diff_cell(r, "diff_mfarm"), reading, "reading shown" if shown else "reading"),
                    _with_reading(_diff_cell(r, "diff_max_abs_shift"), shift_reading, "reading")])
    if not out:
        return None
    head = ["Combination", "Reference", "Tier",
            Span("Δ mFARM", title="this combination minus its reference, with the paired bootstrap interval"),
            Span("Δ max |shift|", title="largest |mean shift of P(Yes)| of a group from BASE: this minus the reference")]
    return Table(head, out, numeric_from=3)


def _depth_cell(r: dict[str, Any]) -> str:
    """``layer 11 of 30 (0.40)``: the value-axis layer and where it sits as a fraction of depth."""
    layer, n, depth = finite(r.get("value_axis_layer")), finite(r.get("n_layers")), finite(r.get("value_axis_depth"))
    if layer is None or n is None or depth is None:
        return MISSING
    return f"layer {int(layer)} of {int(n)} ({depth:.2f})"


def _models_tables(rows: list[dict[str, Any]], models: list[str], precisions: list[str],
                   adapters: list[str]) -> list[dict[str, Any]]:
    """With two or more models: per precision and adapter, the models side by side at each tier.

    Each row is one model at one tier: mFARM (with its interval), FAB, F_LV, the
    largest group shift, where the value axis sits (layer, and (layer + 1) / depth),
    the median option mass, and for every model but the first its paired difference
    from the first model (``diff_model_*``).
    """
    if len(models) < 2:
        return []
    out = []
    for adapter in adapters:
        for prec in precisions:
            here = [r for r in rows if r["precision"] == prec and r["adapter"] == adapter]
            present = [m for m in models if any(r["model"] == m for r in here)]
            if len(present) < 2:
                continue
            index = {(r["model"], r["tier"]): r for r in here}
            tiers = _ordered([r["tier"] for r in here], TIER_ORDER)
            body = []
            for tier in tiers:
                for model in present:
                    r = index.get((model, tier))
                    if r is None:
                        continue
                    d, lo, hi = (finite(r.get(k)) for k in ("diff_model_mfarm", "diff_model_mfarm_lo", "diff_model_mfarm_hi"))
                    reading = _reading(d, lo, hi)
                    if reading in ("higher", "lower"):
                        reading += " than " + _label(r.get("vs_model"))
                    shown = lo is not None and hi is not None and (lo > 0 or hi < 0)
                    body.append([
                        tier, model, _ci_cell(r, "mfarm"), _cell(r.get("fab")), _cell(r.get("f_lv")),
                        _cell(r.get("max_abs_shift")), _depth_cell(r), _cell(r.get("option_mass")),
                        _with_reading(_diff_cell(r, "diff_model_mfarm"), reading, "reading shown" if shown else "reading"),
                        _diff_cell(r, "diff_model_max_abs_shift"),
                    ])
            head = ["Tier", "Model", "mFARM", "FAB", Span("F_LV", title="value-axis fairness (latent, spec B3)"),
                    Span("Max |shift|", title="largest |mean shift of P(Yes)| of a group from BASE"),
                    Span("Value axis", title="the layer the value axis was read at, and (layer + 1) / number of layers"),
                    Span("Option mass", title="median share of the next-token probability on the Yes and No tokens"),
                    Span(f"Δ mFARM vs {present[0]}", title="this model minus the first model, paired bootstrap interval over the same cases"),
                    Span(f"Δ max |shift| vs {present[0]}", title="this model minus the first model, paired bootstrap interval")]
            name = f"at {prec}" + (f", adapter {Path(adapter).name}" if len(adapters) >= 2 and adapter else "")
            out.append({"name": name, "table": Table(head, body, numeric_from=2)})
    return out


def _with_reading(cell: Any, reading: str, cls: str) -> Any:
    if cell == MISSING:
        return cell
    return (cell if isinstance(cell, list) else [cell]) + [" ", Span(reading, cls=cls)]


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
    """Lines of ``metric`` over the categories ``x_values`` of ``x_key``, one per ``line_key`` value,
    with error bars from ``<metric>_lo``/``<metric>_hi`` where sweep.csv has them."""
    index = {(r[x_key], r[line_key]): r for r in rows}
    series: list[figures.Series] = []

    def column(cells: list, key: str) -> list[float | None]:
        return [finite(c.get(key)) if c else None for c in cells]

    for i, line in enumerate(line_values):
        color = figures.PALETTE[i % len(figures.PALETTE)]
        cells = [index.get((x, line)) for x in x_values]
        for key, name, dash in ((metric, f"{line}", ""), (full_metric, f"{line} (full)", "7 4")):
            y = column(cells, key)
            if key == full_metric and not any(v is not None for v in y):
                continue
            lo, hi = column(cells, f"{key}_lo"), column(cells, f"{key}_hi")
            bars = any(a is not None and b is not None for a, b in zip(lo, hi))
            series.append(figures.Series(name=name, x=list(range(len(x_values))), y=y, color=color, dash=dash,
                                         lo=lo if bars else None, hi=hi if bars else None, bars=bars))
    if any(s.bars for s in series):  # dodge: bars of lines at the same category side by side
        step = min(0.06, 0.36 / max(1, len(series) - 1))
        for k, s in enumerate(series):
            s.x_offset = (k - (len(series) - 1) / 2) * step
    has_bars = any(s.bars for s in series)
    return figures.line_chart(
        series,
        uid=uid,
        title=title,
        desc=f"{y_label} for each {x_key} ({', '.join(x_values)}), one line per {line_key}"
             + ("; error bars: bootstrap intervals." if has_bars else "."),
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
            bars = any(finite(r.get(f"{metric}_lo")) is not None for r in rows)
            figs.append(svg_figure(chart, f"{label} against {against}",
                             f"One line per {line_key}; dashed: the full score with the latent term, where the probes ran."
                             + (" Error bars: bootstrap intervals of each point (lines are shifted sideways so they "
                                "do not overlap); overlapping bars do not tell points apart, and only the paired "
                                "differences above do." if bars else "")))
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
        "paired": None,
        "units": [],
        "combos": None,
        "models": [],
    }
    if rows:
        context["answers"] = sweep_summary(pd.DataFrame(rows))
        context["paired"] = _paired_table(rows, len(adapters))
        context["models"] = _models_tables(rows, models, precisions, adapters)
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
                 MISSING if n_cases is None else str(int(n_cases)), _ci_cell(r, "accuracy")]
                + [_cell(r.get(k)) for k in SCORE_KEYS]
                + [_ci_cell(r, k) for k in ("mfarm", "mfarm_full", "fab", "fab_full")] + [_cell(r.get("max_abs_shift"))]
                + [_small(r.get("batch_noise"))]
            )
        context["combos"] = Table(head, table_rows, numeric_from=4)
    return render_page("sweep.html", **context)
