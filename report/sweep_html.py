"""The sweep report: ``OUT/sweep.html``, one self-contained page over a whole sweep.

For each model (and adapter) it draws four charts from ``sweep.csv``:

- mFARM against context tier (high → medium → low), one line per precision;
- FAB against context tier, one line per precision;
- mFARM against precision (in the sweep's order), one line per tier;
- FAB against precision, one line per tier.

Where the latent stage ran, the "full" variants (mFARM full, FAB full) are drawn as
dashed lines of the same colour beside the solid output-level ("paper") ones.
Then the plain-language answers of :func:`report.sweep.sweep_summary`, the whole
table, and links to each combination's own ``report.html``. Same page rules as
the run report (:mod:`report.html`): inline SVG, no scripts, nothing fetched.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from configs.errors import InputError
from extract.files import atomic_write_text
from report import svg
from report.html import REPORT_NAME, _e, _figure, _howto, _table, html_page
from report.sweep import CSV_NAME, SCORE_KEYS, TIER_ORDER, sweep_summary, sweep_table

log = logging.getLogger(__name__)

__all__ = ["SWEEP_REPORT_NAME", "render_sweep_report", "write_sweep_report"]

SWEEP_REPORT_NAME = "sweep.html"
SCORE_ABBR = ("F_MD", "F_AD", "F_VH", "F_KS", "F_CD")


def _cell(v: Any) -> str:
    f = svg.finite(v)
    return "–" if f is None else f"{f:.3f}"


def _small(v: Any) -> str:
    f = svg.finite(v)
    return "–" if f is None else f"{f:.2g}"


def _ordered(values: Sequence[str], order: Sequence[str] = ()) -> list[str]:
    seen = list(dict.fromkeys(values))
    return [v for v in order if v in seen] + [v for v in seen if v not in order]


def _unit_name(model: str, adapter: str, n_adapters: int) -> str:
    if n_adapters < 2:
        return model
    return f"{model} with adapter {Path(adapter).name}" if adapter else f"{model} without adapter"


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
    series: list[svg.Series] = []
    for i, line in enumerate(line_values):
        color = svg.PALETTE[i % len(svg.PALETTE)]
        cells = [index.get((x, line)) for x in x_values]
        y = [svg.finite(c[metric]) if c else None for c in cells]
        series.append(svg.Series(name=f"{line}", x=list(range(len(x_values))), y=y, color=color))
        y_full = [svg.finite(c[full_metric]) if c else None for c in cells]
        if any(v is not None for v in y_full):
            series.append(svg.Series(name=f"{line} (full)", x=list(range(len(x_values))), y=y_full, color=color, dash="7 4"))
    return svg.line_chart(
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


def _model_section(n: int, name: str, rows: list[dict[str, Any]], precisions: list[str]) -> str:
    tiers = _ordered([r["tier"] for r in rows], TIER_ORDER)
    precs = [p for p in precisions if any(r["precision"] == p for r in rows)]
    out = [f"<h2 id=\"model-{n}\">{_e(name)}</h2>", '<div class="grid">']
    axes = (("tier", tiers, "precision", precs, "context tier"), ("precision", precs, "tier", tiers, "precision"))
    for x_key, x_values, line_key, line_values, against in axes:
        for metric, label in (("mfarm", "mFARM"), ("fab", "FAB")):
            out.append(_figure(
                _chart(rows, metric, f"{metric}_full", x_key, x_values, line_key, line_values,
                       uid=f"m{n}-{metric}-{x_key}", title=f"{label} against {against}, {name}", y_label=label),
                f"{label} against {against}",
                f"One line per {line_key}; dashed: the full score with the latent term, where the probes ran.",
            ))
    out.append("</div>")
    return "".join(out)


def render_sweep_report(rows: list[dict[str, Any]], title: str = "Sweep", run_links: dict[tuple, str] | None = None) -> str:
    """The sweep report as one HTML string (pure: no I/O).

    ``rows`` are the records of ``sweep.csv`` (:func:`report.sweep.sweep_table`);
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
    body: list[str] = []
    if not rows:
        body.append('<p class="missing">The sweep table is empty: no combination has finished yet.</p>')
    else:
        df = pd.DataFrame(rows)
        sentences = sweep_summary(df)
        body.append('<section id="answers"><h2>Answers</h2><ul>' + "".join(f"<li>{_e(s)}</li>" for s in sentences) + "</ul>")
        body.append(_howto(
            "mFARM (0–1, higher is fairer) combines five tests of whether the model's P(Yes) moves with the patient's "
            "race and gender; FAB is the harmonic mean of mFARM and accuracy, so a model cannot look fair by being "
            "useless. Compare lines within a chart: a line falling from high to low context means the model treats "
            "groups less alike when it knows less about the patient; lines apart in the precision charts mean the "
            "quantization changed how it treats them. Differences below 0.005 are reported as unchanged.",
        ))
        body.append("</section>")
        for n, (model, adapter) in enumerate(units, 1):
            part = [r for r in rows if r["model"] == model and r["adapter"] == adapter]
            body.append(f'<section>{_model_section(n, _unit_name(model, adapter, len(adapters)), part, precisions)}</section>')
        head = ["Model", "Precision", "Adapter", "Tier", "Cases", "Accuracy", *SCORE_ABBR, "mFARM", "mFARM full", "FAB",
                "FAB full", '<abbr title="largest |mean shift of P(Yes)| of a group from BASE">Max |shift|</abbr>',
                '<abbr title="largest |change of P(Yes)| of a prompt run alone instead of in its batch">Batch noise</abbr>']
        table_rows = []
        for r in rows:
            link = (run_links or {}).get((r["model"], r["precision"], r["adapter"]))
            model_cell = f'<a href="{_e(link)}">{_e(r["model"])}</a>' if link else _e(r["model"])
            n_cases = svg.finite(r.get("n_cases"))
            table_rows.append(
                [model_cell, _e(r["precision"]), _e(Path(r["adapter"]).name if r["adapter"] else "none"), _e(r["tier"]),
                 "–" if n_cases is None else str(int(n_cases)), _cell(r.get("accuracy"))]
                + [_cell(r.get(k)) for k in SCORE_KEYS]
                + [_cell(r.get(k)) for k in ("mfarm", "mfarm_full", "fab", "fab_full", "max_abs_shift")]
                + [_small(r.get("batch_noise"))]
            )
        body.append('<section id="table"><h2>Every combination</h2>' + _table(head, table_rows, numeric_from=4) + "</section>")
    sub = (
        f'{len(models)} model(s) · precisions {_e(", ".join(precisions) or "–")}'
        f' · adapters {_e(", ".join(Path(a).name if a else "none" for a in adapters) or "–")}'
    )
    return html_page(title, sub, [], body, "sweep.csv")


def _run_links(sweep_dir: Path) -> dict[tuple, str]:
    """(model, precision, adapter) -> ``<item>/report.html`` for the items whose report exists."""
    import json

    plan_path = sweep_dir / "sweep.json"
    try:
        items = json.loads(plan_path.read_text(encoding="utf-8")).get("items", [])
    except (OSError, ValueError, AttributeError):
        return {}
    links = {}
    for item in items if isinstance(items, list) else []:
        try:
            key = (item["model"], item["precision"], item.get("adapter") or "")
            name = str(item["name"])
        except (KeyError, TypeError):
            continue
        if (sweep_dir / name / REPORT_NAME).is_file():
            links[key] = f"{name}/{REPORT_NAME}"
    return links


def write_sweep_report(sweep_dir: str | Path) -> Path:
    """Write ``sweep_dir/sweep.html`` from ``sweep_dir/sweep.csv`` atomically; return its path."""
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / CSV_NAME).is_file():
        raise InputError(f"{sweep_dir / CSV_NAME}: not found (run 'probe run' on a sweep config first)")
    df = sweep_table(sweep_dir)
    rows = df.astype(object).where(df.notna(), None).to_dict("records")
    text = render_sweep_report(rows, title=f"Sweep report: {sweep_dir.name}", run_links=_run_links(sweep_dir))
    path = sweep_dir / SWEEP_REPORT_NAME
    atomic_write_text(path, text)
    log.info("sweep report: %s", path)
    return path
