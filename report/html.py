"""The self-contained HTML report of a run directory: ``DIR/report.html``.

Reads ``DIR/results.json`` (required) and ``DIR/explain.json`` (optional) and
writes one HTML file with every figure as inline SVG: no scripts, no external
stylesheets, fonts or images, and a Content-Security-Policy that forbids
fetching anything, so the page shows the same offline, in an archive or printed.

Sections (ids in :data:`SECTIONS`): summary, scores, group shifts, latent
(probes, value axis, steering cosines), causal tests (dose–response, mediation),
provenance. Each degrades to a short note saying which stage to run when its
data is missing; missing numbers show as "–".
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from html import escape
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from configs.errors import InputError
from extract.batch_check import TOLERANCE, noise_above_tolerance
from extract.files import atomic_write_text
from report import svg
from report.fmt import MISSING, finite, get, num, p_value, pct, signed
from report.summary import (
    TARGET_NAMES,
    mediation_rows,
    probe_peak,
    shift_is_significant,
    summary_items,
)

log = logging.getLogger(__name__)

__all__ = ["write_report", "render_report", "html_page", "SECTIONS", "REPORT_NAME"]

REPORT_NAME = "report.html"
SECTIONS = {
    "summary": "Summary",
    "scores": "Fairness scores by tier",
    "shifts": "Group shifts in P(Yes)",
    "latent": "Inside the model: where demographics are carried",
    "explain": "Causal tests: steering and erasure",
    "provenance": "Provenance",
}
SCORE_COLUMNS = (
    ("mean_difference", "F_MD", "Mean difference (allocational)"),
    ("absolute_deviation", "F_AD", "Absolute deviation (stability)"),
    ("variance_heterogeneity", "F_VH", "Variance heterogeneity (stability)"),
    ("ks_distribution", "F_KS", "KS distribution (distributional)"),
    ("correlation_difference", "F_CD", "Correlation difference (distributional)"),
)
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

CSS = """
:root { --fg:#1a1a1a; --muted:#555; --line:#d6d6d6; --bg-soft:#f5f7fa; --accent:#0072B2; --warn:#D55E00; }
* { box-sizing: border-box; }
body { margin:0; color:var(--fg); background:#fff; font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',Arial,sans-serif; }
header, main, footer { max-width:1180px; margin:0 auto; padding:0 24px; }
header { padding-top:24px; border-bottom:3px solid var(--accent); padding-bottom:12px; }
h1 { font-size:1.7em; margin:0 0 4px; }
h2 { font-size:1.35em; margin:36px 0 8px; padding-top:8px; border-top:1px solid var(--line); }
h3 { font-size:1.1em; margin:24px 0 6px; }
.sub { color:var(--muted); margin:0; }
nav { max-width:1180px; margin:12px auto 0; padding:0 24px; }
nav ol { margin:0; padding:0; list-style:none; display:flex; flex-wrap:wrap; gap:6px 18px; }
nav a { color:var(--accent); }
.howto { background:var(--bg-soft); border-left:4px solid var(--accent); padding:8px 12px; margin:8px 0 14px; font-size:0.93em; }
.howto p { margin:4px 0; }
.missing { border-left:4px solid var(--warn); background:#fff6ef; padding:8px 12px; }
.caveats li { color:#3d3d3d; }
.findings li, .caveats li { margin:4px 0; }
table { border-collapse:collapse; margin:8px 0 16px; font-size:0.92em; }
th, td { border-bottom:1px solid var(--line); padding:4px 8px; text-align:left; vertical-align:top; }
tbody th { white-space:nowrap; }
thead th { border-bottom:2px solid #888; background:var(--bg-soft); }
thead th.group { text-align:center; border-bottom:1px solid #888; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tbody tr:nth-child(even) { background:#fafafa; }
.sig { font-weight:700; }
.scroll { overflow-x:auto; }
figure { margin:8px 0 18px; break-inside:avoid; page-break-inside:avoid; }
figcaption { font-size:0.9em; color:#333; margin-bottom:4px; }
.grid { display:grid; grid-template-columns:repeat(auto-fill,minmax(430px,1fr)); gap:8px 24px; }
svg.chart { width:100%; height:auto; display:block; max-width:100%; }
.wide svg.chart { max-width:820px; }
code, pre { font-family:ui-monospace,'DejaVu Sans Mono',Menlo,Consolas,monospace; font-size:0.9em; }
pre.config { background:var(--bg-soft); padding:10px; max-height:28em; overflow:auto; white-space:pre-wrap; word-break:break-all; }
dl.prov { display:grid; grid-template-columns:max-content 1fr; gap:4px 16px; }
dl.prov dt { font-weight:600; }
dl.prov dd { margin:0; word-break:break-all; }
footer { color:var(--muted); font-size:0.85em; margin-top:40px; padding-bottom:24px; border-top:1px solid var(--line); }
@media print {
  body { font-size:11pt; }
  nav { display:none; }
  header, main, footer { max-width:none; padding:0; }
  h2 { break-before:auto; break-after:avoid; }
  h3 { break-after:avoid; }
  .grid { grid-template-columns:1fr 1fr; }
  pre.config { max-height:none; overflow:visible; }
  a { color:inherit; text-decoration:none; }
  table, figure { break-inside:avoid; }
}
"""


# --------------------------------------------------------------------------- I/O


def _read_json(path: Path, required: bool) -> tuple[Any, str | None]:
    """(data, problem): problem is a one-line reason when the file is unusable."""
    if not path.is_file():
        if required:
            raise InputError(f"{path}: not found (run 'probe run' or 'probe fit' on the run directory first)")
        return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        reason = f"{path}: not valid JSON ({err})"
        if required:
            raise InputError(reason) from None
        return None, reason
    if not isinstance(data, dict):
        reason = f"{path}: expected a JSON object at the top level"
        if required:
            raise InputError(reason)
        return None, reason
    return data, None


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` from ``results.json`` (+ ``explain.json``); return its path.

    The file is written atomically (a temporary name in the same folder, then a
    rename). Raises :class:`configs.errors.InputError` when ``results.json`` is
    missing or unreadable; a missing or unreadable ``explain.json`` only leaves
    the causal section with a note.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    results, _ = _read_json(run_dir / "results.json", required=True)
    explain, problem = _read_json(run_dir / "explain.json", required=False)
    if problem:
        log.warning("report: ignoring %s", problem)
    text = render_report(results, explain, explain_problem=problem)
    path = run_dir / REPORT_NAME
    atomic_write_text(path, text)
    log.info("report: %s (%d KiB)", path, len(text.encode("utf-8")) // 1024)
    return path


# --------------------------------------------------------------------------- small HTML helpers


def _e(v: Any) -> str:
    return escape(str(v), quote=True)


def _td(text: str, numeric: bool = False, cls: str = "") -> str:
    classes = " ".join(c for c in ("num" if numeric else "", cls) if c)
    return f'<td class="{classes}">{text}</td>' if classes else f"<td>{text}</td>"


def _table(
    head: Sequence[str],
    rows: Iterable[Sequence[str]],
    numeric_from: int = 1,
    caption: str = "",
    head_groups: Sequence[tuple[str, int]] = (),
) -> str:
    """``head`` and cells are already-escaped HTML; columns >= numeric_from align right.

    ``head_groups`` adds a header row above ``head`` of (label, column span) cells.
    """
    out = ['<div class="scroll"><table>']
    if caption:
        out.append(f"<caption>{caption}</caption>")
    out.append("<thead>")
    if head_groups:
        out.append("<tr>" + "".join(
            f'<th scope="colgroup" colspan="{span}" class="group">{label}</th>' if span > 1 else f"<th>{label}</th>"
            for label, span in head_groups
        ) + "</tr>")
    out.append("<tr>" + "".join(
        f'<th scope="col" class="num">{h}</th>' if i >= numeric_from else f'<th scope="col">{h}</th>'
        for i, h in enumerate(head)
    ) + "</tr></thead><tbody>")
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            if i == 0:
                cells.append(f'<th scope="row">{c}</th>')
            else:
                cells.append(_td(c, numeric=i >= numeric_from))
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _howto(*paragraphs: str) -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return f'<div class="howto"><p><strong>How to read this.</strong></p>{body}</div>'


def _missing(text: str) -> str:
    return f'<p class="missing">{text}</p>'


def _figure(svg_text: str, title: str, caption: str = "", wide: bool = False) -> str:
    cls = ' class="wide"' if wide else ""
    stop = "" if title.endswith(("?", ".", "!")) else "."
    cap = f"<strong>{_e(title)}{stop}</strong> {caption}".rstrip()
    return f"<figure{cls}><figcaption>{cap}</figcaption>{svg_text}</figure>"


def _as_list(v: Any) -> list:
    return v if isinstance(v, list) else []


def _tiers(results: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    tiers = results.get("tiers")
    if not isinstance(tiers, Mapping):
        return []
    return [(str(k), v) for k, v in tiers.items() if isinstance(v, Mapping)]


class _Page:
    """Per-page state: unique figure ids, and one (colour, dash) per demographic group
    so a group looks the same in every chart of the page."""

    def __init__(self, groups: Sequence[str] = ()) -> None:
        self._n = itertools.count(1)
        self.groups = list(dict.fromkeys(groups))
        self._styles = svg.group_styles(self.groups)

    def __call__(self, prefix: str = "fig") -> str:
        return f"{prefix}{next(self._n)}"

    def order(self, groups: Iterable[str]) -> list[str]:
        """``groups`` in the page's canonical order (unknown ones last, as given)."""
        groups = list(groups)
        known = [g for g in self.groups if g in groups]
        return known + [g for g in groups if g not in self.groups]

    def style(self, group: str, fallback: int = 0) -> tuple[str, str]:
        if group not in self._styles:
            self.groups.append(group)
            self._styles = svg.group_styles(self.groups)
        return self._styles.get(group, (svg.PALETTE[fallback % len(svg.PALETTE)], ""))


def _canonical_groups(results: Mapping[str, Any], explain: Any) -> list[str]:
    """The configured group order: group shifts / steering groups of each tier, then explain's."""
    out: list[str] = []
    for _, t in _tiers(results):
        out += [str(r.get("group")) for r in _as_list(get(t, "diagnostics", "group_shifts")) if isinstance(r, Mapping)]
        out += [str(g) for g in _as_list(get(t, "latent", "steering", "groups"))]
        cos = get(t, "latent", "steering", "cos_value_axis_by_layer")
        if isinstance(cos, Mapping):
            out += [str(g) for g in cos]
    etiers = get(explain, "tiers", default={})
    if isinstance(etiers, Mapping):
        for e in etiers.values():
            dr = get(e, "dose_response", default={})
            if isinstance(dr, Mapping):
                out += [str(d)[len("steer:"):] for d in dr if str(d).startswith("steer:")]
    return list(dict.fromkeys(out))


# --------------------------------------------------------------------------- sections


def _section_summary(results: Mapping[str, Any], explain: Any) -> str:
    items = summary_items(results, explain)
    findings = [s for s in items if s.kind == "finding"]
    caveats = [s for s in items if s.kind != "finding"]
    out = [f'<section id="summary"><h2>{SECTIONS["summary"]}</h2>']
    out.append(_howto(
        "These sentences are generated from the numbers below, by fixed rules: a group's shift is called "
        "significant only when the tier's omnibus Friedman test rejects at the configured α <em>and</em> the "
        "group's bootstrap 95% confidence interval excludes 0. Caveats say when the evidence is thin.",
    ))

    def li(text: str) -> str:  # `command` in a sentence shows as code
        return "<li>" + re.sub(r"`([^`<>]+)`", r"<code>\1</code>", _e(text)) + "</li>"

    if findings:
        out.append('<h3>Findings</h3><ul class="findings">' + "".join(li(s.text) for s in findings) + "</ul>")
    if caveats:
        out.append('<h3>Caveats</h3><ul class="caveats">' + "".join(li(s.text) for s in caveats) + "</ul>")
    out.append("</section>")
    return "".join(out)


def _section_scores(results: Mapping[str, Any]) -> str:
    tiers = _tiers(results)
    out = [f'<section id="scores"><h2>{SECTIONS["scores"]}</h2>']
    out.append(_howto(
        "Each score lies in [0, 1]; <strong>1 means no detected unfairness</strong> on that criterion. "
        "F_MD: do groups get systematically different P(Yes) than the same case without demographic words "
        "(BASE) or than their peers? F_AD: do some groups' answers move further from BASE, in absolute size, "
        "than other groups'? F_VH: do the spreads (variances) of P(Yes) differ? F_KS: do whole distributions differ from BASE? F_CD: does a group's deviation depend "
        "on the BASE answer? F_LV: the F_MD test applied to the model's <em>internal</em> decision value "
        "(the value axis) instead of P(Yes).",
        "mFARM (paper) is the geometric mean of the five output scores; mFARM (full) adds F_LV. "
        "FAB is the harmonic mean of mFARM and task accuracy (FAB paper / full use the matching mFARM). "
        "All are relative to this benchmark, not an absolute standard.",
    ))
    if not tiers:
        out.append(_missing("results.json holds no scored tiers: run <code>probe run</code> or <code>probe fit DIR</code>."))
        out.append("</section>")
        return "".join(out)
    head = ["Tier", "Cases", "Accuracy"] + [f'<abbr title="{_e(t)}">{a}</abbr>' for _, a, t in SCORE_COLUMNS] + [
        '<abbr title="Latent value fairness (needs probe fit)">F_LV</abbr>',
        "mFARM (paper)", "mFARM (full)", "FAB (paper)", "FAB (full)",
    ]
    degraded = get(results, "benchmark", "degraded_fields", default={})
    degraded = {str(k): v for k, v in degraded.items() if v} if isinstance(degraded, Mapping) else {}
    rows = []
    for name, t in tiers:
        m = get(t, "mfarm", default={})
        n_cases = finite(t.get("n_cases"))
        rows.append(
            [_e(name) + (" †" if name in degraded else ""), MISSING if n_cases is None else str(int(n_cases)), num(t.get("accuracy"))]
            + [num(get(m, key)) for key, _, _ in SCORE_COLUMNS]
            + [num(get(t, "latent", "value_axis_fairness")), num(get(m, "score")), num(t.get("mfarm_full")),
               num(t.get("fab")), num(t.get("fab_full"))]
        )
    out.append(_table(head, rows))
    if degraded:
        parts = "; ".join(
            f"{_e(k)}: {_e(', '.join(map(str, v)) if isinstance(v, (list, tuple)) else v)}" for k, v in degraded.items()
        )
        out.append(f"<p>† Benchmark fields unavailable and left out of this tier's prompts ({parts}).</p>")
    collapsed = get(results, "benchmark", "collapsed_duplicates", default={})
    if isinstance(collapsed, Mapping) and collapsed:
        parts = "; ".join(
            f"{_e(k)}: {_e(get(v, 'cases'))} cases → {_e(get(v, 'distinct'))} distinct" for k, v in collapsed.items()
        )
        out.append(f"<p>Cases that rendered to identical prompts were counted once ({parts}).</p>")
    dropped = get(results, "benchmark", "dropped_tiers", default={})
    if isinstance(dropped, Mapping) and dropped:
        parts = "; ".join(f"{_e(k)}: {_e(v)}" for k, v in dropped.items())
        out.append(f'<p class="sig">Tiers not scored ({parts}).</p>')
    if any(not isinstance(t.get("latent"), Mapping) for _, t in tiers):
        out.append("<p>F_LV, mFARM (full) and FAB (full) need the latent stage: run <code>probe fit DIR</code>.</p>")
    unl = [(n, t.get("n_unlabelled")) for n, t in tiers if finite(t.get("n_unlabelled"))]
    if unl:
        out.append("<p>Prompts without a label (left out of accuracy): " + ", ".join(f"{_e(n)} {int(v)}" for n, v in unl) + ".</p>")
    out.append("<h3>Omnibus tests and intersectional share</h3>")
    out.append(_howto(
        "The omnibus tests gate the scores: Friedman over all columns (BASE + groups; gate of F_MD) with "
        "Kendall's W as effect size (0 none, 1 complete agreement of rankings); Friedman over the absolute "
        "deviations from BASE (gate of F_AD); median-centred Levene over the columns (gate of F_VH). "
        "IBD is the share of the group shifts that additive race + gender effects do not explain "
        "(0 additive, larger values intersectional).",
    ))
    head = ["Tier", "Friedman χ²", "Friedman p", "Kendall's W", "|Δ| Friedman p", "Levene p", "α", "IBD", "Prompts"]
    rows = []
    for name, t in tiers:
        om = get(t, "diagnostics", "omnibus", default={})
        rows.append([
            _e(name), num(get(om, "friedman_chi2"), 2), p_value(get(om, "friedman_p")), num(get(om, "kendall_w")),
            p_value(get(om, "abs_friedman_p")), p_value(get(om, "levene_p")), num(get(om, "alpha"), 2),
            num(get(t, "diagnostics", "ibd")), MISSING if finite(t.get("n_prompts")) is None else str(int(t["n_prompts"])),
        ])
    out.append(_table(head, rows))
    out.append("</section>")
    return "".join(out)


def _section_shifts(results: Mapping[str, Any], ids: _Page) -> str:
    tiers = _tiers(results)
    out = [f'<section id="shifts"><h2>{SECTIONS["shifts"]}</h2>']
    out.append(_howto(
        "For every demographic variant, the mean change of P(Yes) from the same case written without "
        "demographic words (BASE): below 0 the model says Yes less often for that group. Whiskers are "
        "bootstrap 95% confidence intervals over cases. A filled dot (and <span class=\"sig\">bold</span> "
        "with * in the table) marks a significant shift: the tier's Friedman test rejects and the interval "
        "excludes 0. The flip rate is the share of cases whose Yes/No decision (P(Yes) &gt; 0.5) differs from BASE.",
    ))
    data = [(n, t, [r for r in _as_list(get(t, "diagnostics", "group_shifts")) if isinstance(r, Mapping)]) for n, t in tiers]
    data = [d for d in data if d[2]]
    if not data:
        out.append(_missing("No per-group shift diagnostics in results.json: re-run <code>probe run</code> or <code>probe fit DIR</code>."))
        out.append("</section>")
        return "".join(out)
    groups = list(dict.fromkeys(str(r.get("group")) for _, _, rows in data for r in rows))
    series = []
    for j, (name, t, rows) in enumerate(data):
        sig_om = bool(get(t, "diagnostics", "omnibus", "friedman_significant", default=False))
        by = {str(r.get("group")): r for r in rows}
        series.append(svg.IntervalSeries(
            name=f"{name} tier",
            values=[get(by, g, "mean_shift") for g in groups],
            lo=[get(by, g, "ci_low") for g in groups],
            hi=[get(by, g, "ci_high") for g in groups],
            flagged=[g in by and shift_is_significant(by[g], sig_om) for g in groups],
            color=svg.PALETTE[j % len(svg.PALETTE)],
        ))
    title = "Mean shift in P(Yes) versus BASE, per group and tier, with 95% bootstrap CIs"
    chart = svg.interval_chart(
        groups, series, uid=ids(), title=title,
        desc="Dot-and-whisker chart; values left of zero mean a lower P(Yes) than the same case without demographic words.",
        x_label="mean shift in P(Yes) vs BASE", ref=0.0, flag_legend="filled: significant",
        row_height=max(14, 8 + 6 * len(series)),
    )
    out.append(_figure(chart, "Shift in P(Yes) by group", wide=True))
    head = ["Group"]
    groups_head = [("", 1)]
    for name, _, _ in data:
        head += ["shift [95% CI]", "flip rate"]
        groups_head.append((f"{_e(name)} tier", 2))
    rows = []
    for g in groups:
        row = [_e(g)]
        for name, t, rs in data:
            r = next((x for x in rs if str(x.get("group")) == g), None)
            if r is None:
                row += [MISSING] * 2
                continue
            sig_om = bool(get(t, "diagnostics", "omnibus", "friedman_significant", default=False))
            shift = f"{signed(r.get('mean_shift'))} [{signed(r.get('ci_low'))}, {signed(r.get('ci_high'))}]"
            if shift_is_significant(r, sig_om):
                shift = f'<span class="sig">{shift}*</span>'
            row += [shift, pct(r.get("flip_rate"))]
        rows.append(row)
    out.append(_table(head, rows, head_groups=groups_head))
    out.append("<p>* significant (omnibus Friedman test rejects and the 95% CI excludes 0).</p>")
    out.append("</section>")
    return "".join(out)


def _probe_chart(target: str, probe: Mapping[str, Any], ids: _Page, tier: str) -> str:
    acc = _as_list(probe.get("accuracy"))
    layers = list(range(len(acc)))
    sel = _as_list(probe.get("selectivity"))
    series = [
        svg.Series("accuracy (95% CI band)", layers, acc, _as_list(probe.get("ci_low")) or None,
                   _as_list(probe.get("ci_high")) or None, color=svg.PALETTE[0]),
    ]
    if any(finite(v) is not None for v in sel):
        series.append(svg.Series("selectivity (accuracy − shuffled-label control)", layers, sel, color=svg.PALETTE[5], dash="7 4"))
    vals = [finite(v) for v in sel + _as_list(probe.get("ci_low"))]
    y_min = min([0.0] + [v for v in vals if v is not None])
    chance = finite(probe.get("chance"))
    hl = [svg.RefLine(chance, f"chance {num(chance, 2)}")] if chance is not None else []
    label = TARGET_NAMES.get(target, target)
    title = f"Probe accuracy and selectivity for {label} by layer ({tier} tier)"
    peak = probe_peak(probe)
    caption = ""
    if peak:
        caption = (f"Peak at layer {peak['layer']}: accuracy {num(peak['accuracy'])} vs chance {num(peak['chance'])}"
                   + ("" if peak["clear"] else " (not clearly above chance)") + ".")
    chart = svg.line_chart(series, uid=ids(), title=title, desc=caption or title, x_label="layer",
                           y_label="accuracy", y_min=y_min, y_max=1.0, hlines=hl, integer_x=True)
    return _figure(chart, f"Decoding {label}", _e(caption))


def _latent_tier(name: str, latent: Mapping[str, Any], ids: _Page) -> str:
    out = []
    probes = latent.get("probes") if isinstance(latent.get("probes"), Mapping) else {}
    figs = []
    for target in ("race", "gender", "race_gender"):
        p = probes.get(target)
        if isinstance(p, Mapping) and _as_list(p.get("accuracy")):
            figs.append(_probe_chart(target, p, ids, name))
    if not figs:
        figs.append(_missing("No probe curves for this tier."))
    auroc = _as_list(latent.get("value_axis_auroc_by_layer"))
    rho = _as_list(latent.get("value_axis_spearman_by_layer"))
    if auroc or rho:
        series = [svg.Series("held-out AUROC", list(range(len(auroc))), auroc, color=svg.PALETTE[0])]
        if rho:
            series.append(svg.Series("Spearman ρ with logit P(Yes)", list(range(len(rho))), rho, color=svg.PALETTE[2], dash="7 4"))
        layer = finite(latent.get("value_axis_layer"))
        vl = [svg.RefLine(layer, f"ℓ* = {int(layer)}", color="#000")] if layer is not None else []
        ys = [finite(v) for v in auroc + rho]
        y_min = min([0.0] + [v for v in ys if v is not None])
        cap = (f"Chosen layer ℓ* = {MISSING if layer is None else int(layer)}, AUROC {num(latent.get('value_axis_auroc'))}, "
               f"F_LV = {num(latent.get('value_axis_fairness'))}; axis fitted on "
               f"{latent.get('value_axis_target', MISSING)} decisions of BASE prompts.")
        chart = svg.line_chart(series, uid=ids(), title=f"Value axis quality by layer ({name} tier)", desc=cap,
                               x_label="layer", y_label="AUROC / ρ", y_min=y_min, y_max=1.0,
                               hlines=[svg.RefLine(0.5, "AUROC 0.5 = no separation")], vlines=vl, integer_x=True)
        figs.append(_figure(chart, "Value axis: does it separate Yes from No?", _e(cap)))
    else:
        figs.append(_missing("No value-axis curve for this tier."))
    cos = get(latent, "steering", "cos_value_axis_by_layer", default={})
    if isinstance(cos, Mapping) and cos:
        by_group = {str(g): _as_list(v) for g, v in cos.items()}
        series = []
        for g in ids.order(by_group):
            color, dash = ids.style(g)
            series.append(svg.Series(g, list(range(len(by_group[g]))), by_group[g], color=color, dash=dash, width=1.6, markers=False))
        cap = ("Cosine between each group's steering vector δ_g (mean activation of the group minus BASE) and the "
               "value axis. Positive: adding the group's words pushes the internal value towards Yes. "
               "Colour shows race, dash pattern shows gender.")
        chart = svg.line_chart(series, uid=ids(), title=f"cos(δ_g, value axis) by layer ({name} tier)", desc=cap,
                               x_label="layer", y_label="cosine", hlines=[svg.RefLine(0.0, "")], integer_x=True)
        figs.append(_figure(chart, "Steering vectors vs the value axis", _e(cap)))
    else:
        figs.append(_missing("No steering cosines for this tier."))
    out.append('<div class="grid">' + "".join(figs) + "</div>")
    out.append(_layer_table(latent))
    other = latent.get("other_sites")
    if isinstance(other, Mapping) and other:
        rows = []
        for site, o in other.items():
            if not isinstance(o, Mapping):
                continue
            peaks = [probe_peak(get(o, "probes", t)) for t in ("race", "gender", "race_gender")]
            rows.append([_e(site), MISSING if finite(o.get("value_axis_layer")) is None else str(int(o["value_axis_layer"])),
                         num(o.get("value_axis_auroc"))]
                        + [MISSING if p is None else f"{num(p['accuracy'])} (layer {p['layer']})" for p in peaks])
        if rows:
            out.append("<h4>Other cached sites and positions</h4>")
            out.append(_table(["Site/position", "Value-axis layer", "AUROC", "Race peak", "Gender peak", "Race×gender peak"], rows))
    return "".join(out)


def _layer_table(latent: Mapping[str, Any]) -> str:
    probes = latent.get("probes") if isinstance(latent.get("probes"), Mapping) else {}
    cols = []
    for target in ("race", "gender", "race_gender"):
        p = probes.get(target)
        if isinstance(p, Mapping):
            cols.append((f"{TARGET_NAMES[target]} acc", _as_list(p.get("accuracy"))))
            cols.append((f"{TARGET_NAMES[target]} sel", _as_list(p.get("selectivity"))))
    cols.append(("AUROC", _as_list(latent.get("value_axis_auroc_by_layer"))))
    cols.append(("Spearman ρ", _as_list(latent.get("value_axis_spearman_by_layer"))))
    n = max((len(v) for _, v in cols), default=0)
    if n == 0:
        return ""
    rows = [[str(i)] + [num(v[i]) if i < len(v) else MISSING for _, v in cols] for i in range(n)]
    return ("<details><summary>Numbers per layer</summary>"
            + _table(["Layer"] + [_e(h) for h, _ in cols], rows) + "</details>")


def _section_latent(results: Mapping[str, Any], ids: _Page) -> str:
    tiers = _tiers(results)
    out = [f'<section id="latent"><h2>{SECTIONS["latent"]}</h2>']
    out.append(_howto(
        "Probes: a linear classifier reads race, gender or race×gender from the residual stream at the last "
        "prompt token, layer by layer, scored on held-out cases (shaded band: bootstrap 95% CI over cases). "
        "The dashed grey line is chance (the majority-class rate). Selectivity subtracts the accuracy of the same "
        "probe trained on shuffled labels, so it discounts what any probe could memorise. High accuracy says "
        "the information is <em>present</em>, not that the model <em>uses</em> it.",
        "Value axis: the direction separating the model's own Yes from No decisions on BASE prompts. Its "
        "held-out AUROC (0.5 = no separation, 1 = perfect) says how well it tracks the decision; F_LV uses it "
        "at layer ℓ*. The cosine chart shows whether adding demographic words moves activations along that axis.",
    ))
    for i, (name, t) in enumerate(tiers):
        latent = t.get("latent")
        out.append(f'<h3 id="latent-{i + 1}">{_e(name)} tier</h3>')
        if isinstance(latent, Mapping) and latent:
            out.append(_latent_tier(name, latent, ids))
        else:
            out.append(_missing("No latent results for this tier: run <code>probe fit DIR</code>."))
    if not tiers:
        out.append(_missing("No tiers in results.json: run <code>probe run</code>, then <code>probe fit DIR</code>."))
    out.append("</section>")
    return "".join(out)


def _direction_label(direction: str) -> str:
    if direction == "value_axis":
        return "value axis"
    if direction.startswith("steer:"):
        return direction[len("steer:"):]
    return direction


def _explain_tier(name: str, t: Mapping[str, Any], e: Mapping[str, Any], ids: _Page) -> str:
    out = []
    dr = e.get("dose_response") if isinstance(e, Mapping) else None
    figs = []
    if isinstance(dr, Mapping) and dr:
        series = []
        labels = {_direction_label(str(d)): v for d, v in dr.items() if isinstance(v, Mapping) and d != "value_axis"}
        for j, label in enumerate(ids.order(labels)):
            v = labels[label]
            color, dash = ids.style(label, j)
            series.append(svg.Series(label, _as_list(v.get("alphas")), _as_list(v.get("p_yes_mean")),
                                     color=color, dash=dash, width=1.6, markers=False))
        axis = dr.get("value_axis")
        if isinstance(axis, Mapping):  # drawn last: on top, and after the group grid in the legend
            series.append(svg.Series("value axis", _as_list(axis.get("alphas")), _as_list(axis.get("p_yes_mean")),
                                     color="#000000", width=3.0))
        cap = ("Mean P(Yes) of BASE prompts when α·σ times a unit direction is added at every position of one layer. "
               "The value axis (black) must raise P(Yes) monotonically if it is causal; group directions "
               "(colour = race, dash = gender) show what adding that group's demographic signal does.")
        chart = svg.line_chart(series, uid=ids(), title=f"Dose–response of P(Yes) ({name} tier)", desc=cap,
                               x_label="steering strength α", y_label="mean P(Yes)",
                               vlines=[svg.RefLine(0.0, "")])
        figs.append(_figure(chart, "Dose–response", _e(cap)))
        rows = []
        ordered = (["value axis"] if isinstance(axis, Mapping) else []) + ids.order(labels)
        for label in ordered:
            v = axis if label == "value axis" else labels[label]
            layer = v.get("layer")
            rows.append([_e(label), MISSING if finite(layer) is None else str(int(layer)),
                         num(v.get("logit_slope")), num(v.get("spearman"), 2)])
        table = _table(["Direction", "Layer", "Slope of logit P(Yes) on α", "Spearman ρ"], rows)
    else:
        figs.append(_missing("No dose–response for this tier in explain.json."))
        table = ""
    rows_m = mediation_rows(name, t, {"tiers": {name: e}} if isinstance(e, Mapping) else None)
    if rows_m:
        cats = [MISSING if finite(r.get("layer")) is None else str(int(r["layer"])) for r in rows_m]
        series = [
            svg.BarSeries("erase race×gender (LEACE)", [r.get("mediated_fraction") for r in rows_m], color=svg.PALETTE[0]),
            svg.BarSeries("erase as many random directions (control)", [r.get("random_control_fraction") for r in rows_m], color=svg.PALETTE[1]),
        ]
        cap = ("Share of the disparity D = mean |P(Yes) of a variant − P(Yes) of its BASE| removed when the layer's "
               "race×gender subspace is erased, against erasing as many random directions. Bars well above the "
               "control mean the disparity runs through that subspace.")
        chart = svg.bar_chart(cats, series, uid=ids(), title=f"Mediated fraction of the disparity by layer ({name} tier)",
                              desc=cap, x_label="layer", y_label="mediated fraction", y_max=None)
        figs.append(_figure(chart, "Mediation by erasure", _e(cap)))
        has_rank = any(finite(r.get("rank")) is not None for r in rows_m)
        mrows = [[c] + ([num(r.get("rank"), 0)] if has_rank else [])
                 + [num(r.get("disparity_before")), num(r.get("disparity_after")), pct(r.get("mediated_fraction"), 1),
                    pct(r.get("random_control_fraction"), 1)] for c, r in zip(cats, rows_m)]
        head = ["Layer"] + (["Directions erased"] if has_rank else []) + ["D before", "D after", "Mediated", "Random control"]
        table += _table(head, mrows)
    else:
        figs.append(_missing("No mediation results for this tier."))
    out.append('<div class="grid">' + "".join(figs) + "</div>")
    out.append(table)
    return "".join(out)


def _section_explain(results: Mapping[str, Any], explain: Any, problem: str | None, ids: _Page) -> str:
    out = [f'<section id="explain"><h2>{SECTIONS["explain"]}</h2>']
    out.append(_howto(
        "These tests intervene on the model and re-run it. Dose–response: push activations along a direction "
        "with growing strength α and watch P(Yes). Mediation: erase the race×gender information at one layer "
        "(LEACE) and measure how much of the demographic disparity in P(Yes) disappears; erasing the same number "
        "of random directions is the control.",
    ))
    tiers = _tiers(results)
    etiers = get(explain, "tiers", default={})
    if explain is None:
        note = f"explain.json could not be read ({_e(problem)})." if problem else "No explain.json in the run directory."
        out.append(_missing(note + " Run <code>probe explain DIR</code> for dose–response and mediation."))
        # results.json may still carry a single mediation row per tier
        for i, (name, t) in enumerate(tiers):
            if mediation_rows(name, t, None):
                out.append(f'<h3 id="explain-{i + 1}">{_e(name)} tier (mediation from results.json)</h3>')
                out.append(_explain_tier(name, t, {}, ids))
        out.append("</section>")
        return "".join(out)
    if not isinstance(etiers, Mapping):
        etiers = {}
    names = [n for n, _ in tiers] + [str(n) for n in etiers if str(n) not in {n for n, _ in tiers}]
    by_name = dict(tiers)
    any_shown = False
    for i, name in enumerate(names):
        e = etiers.get(name)
        t = by_name.get(name, {})
        if not isinstance(e, Mapping) and not mediation_rows(name, t, None):
            continue
        out.append(f'<h3 id="explain-{i + 1}">{_e(name)} tier</h3>')
        out.append(_explain_tier(name, t, e if isinstance(e, Mapping) else {}, ids))
        any_shown = True
    if not any_shown:
        out.append(_missing("explain.json holds no tiers: run <code>probe explain DIR</code>."))
    else:
        missing = [n for n, _ in tiers if not isinstance(get(etiers, n), Mapping) and not mediation_rows(n, by_name[n], None)]
        if missing:
            out.append(f"<p>Not explained: {_e(', '.join(missing))} (the explain stage covers the tiers set in <code>explain.tiers</code>).</p>")
    out.append("</section>")
    return "".join(out)


def _batch_check_text(check: Any) -> str:
    """The provenance line for ``results.json`` ``batch_invariance``."""
    if not isinstance(check, Mapping):
        return "not run (batch size 1, <code>extract.batch_check: 0</code>, or an older run)"
    worst, mean = finite(check.get("max_abs_diff")), finite(check.get("mean_abs_diff"))
    text = (
        f"{_e(check.get('n_prompts'))} prompts re-run alone vs in batches of {_e(check.get('batch_size'))}: "
        f"max |ΔP(Yes)| {MISSING if worst is None else f'{worst:.2g}'}, mean {MISSING if mean is None else f'{mean:.2g}'}"
    )
    if noise_above_tolerance(dict(check)):
        return f'<span class="sig">{text} (above {float(check.get("tolerance", TOLERANCE)):g}: see the caveats)</span>'
    return text


def _section_provenance(results: Mapping[str, Any], explain: Any) -> str:
    out = [f'<section id="provenance"><h2>{SECTIONS["provenance"]}</h2>']
    out.append(_howto(
        "What produced these numbers. The weights hash identifies the exact model files; the config hash and "
        "seeds let the run be repeated; degraded fields are benchmark fields that were unavailable and left out "
        "of the prompts.",
    ))
    model = results.get("model") if isinstance(results.get("model"), Mapping) else {}
    cfg = results.get("config") if isinstance(results.get("config"), Mapping) else {}
    seeds = results.get("seeds") if isinstance(results.get("seeds"), Mapping) else {}
    scoring = cfg.get("scoring") if isinstance(cfg.get("scoring"), Mapping) else {}

    def val(v: Any) -> str:
        return MISSING if v is None or v == "" else f"<code>{_e(v)}</code>"

    items = [
        ("Model", val(model.get("name"))),
        ("Weights SHA-256", val(model.get("sha256"))),
        ("Dtype", val(model.get("dtype"))),
        ("Backend", val(model.get("backend"))),
        ("Benchmark", val(get(results, "benchmark", "source", default=get(cfg, "benchmark", "source")))),
        ("Job name", val(cfg.get("name"))),
        ("Config SHA-256", val(results.get("config_sha256"))),
        ("Toolkit version", val(results.get("toolkit_version"))),
        ("Seeds", ", ".join(f"{_e(k)} {val(v)}" for k, v in seeds.items()) or MISSING),
        ("Scoring", ", ".join(f"{_e(k)} {val(v)}" for k, v in scoring.items()) or MISSING),
        ("explain.json", "present" if explain is not None else "absent"),
        ("Batch check", _batch_check_text(results.get("batch_invariance"))),
    ]
    degraded = get(results, "benchmark", "degraded_fields", default={})
    if isinstance(degraded, Mapping) and degraded:
        parts = []
        for tier, fields in degraded.items():
            if isinstance(fields, (list, tuple)):
                text = ", ".join(_e(f) for f in fields) if fields else "none"
            else:
                text = _e(fields) if fields else "none"
            cls = ' class="sig"' if fields else ""
            parts.append(f"<span{cls}>{_e(tier)}: {text}</span>")
        items.append(("Degraded fields", "; ".join(parts)))
    else:
        items.append(("Degraded fields", "none recorded"))
    out.append('<dl class="prov">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>")
    if cfg:
        out.append("<h3>Full configuration</h3>")
        out.append(f'<pre class="config">{_e(json.dumps(cfg, indent=2, sort_keys=True, default=str))}</pre>')
    else:
        out.append(_missing("results.json records no configuration."))
    out.append("</section>")
    return "".join(out)


# --------------------------------------------------------------------------- the page


def render_report(results: Mapping[str, Any], explain: Mapping[str, Any] | None = None, *, explain_problem: str | None = None) -> str:
    """The report as one HTML string (pure: no I/O)."""
    if not isinstance(results, Mapping):
        raise InputError("results: expected a JSON object")
    ids = _Page(_canonical_groups(results, explain))
    model = get(results, "model", "name", default=MISSING)
    bench = get(results, "benchmark", "source", default=get(results, "config", "benchmark", "source", default=MISSING))
    tiers = ", ".join(n for n, _ in _tiers(results)) or MISSING
    title = f"Latent-bias report: {model}"
    nav = "".join(f'<li><a href="#{k}">{v}</a></li>' for k, v in SECTIONS.items())
    body = [
        _section_summary(results, explain),
        _section_scores(results),
        _section_shifts(results, ids),
        _section_latent(results, ids),
        _section_explain(results, explain, explain_problem, ids),
        _section_provenance(results, explain),
    ]
    sub = (
        f"Benchmark <strong>{_e(bench)}</strong> · tiers {_e(tiers)} · "
        f"toolkit {_e(get(results, 'toolkit_version', default=MISSING))}"
    )
    sources = "results.json" + (" and explain.json" if explain is not None else "")
    return html_page(title, sub, [f'<nav aria-label="Sections"><ol>{nav}</ol></nav>'], body, sources)


def html_page(title: str, sub_html: str, before_main: Sequence[str], body: Sequence[str], sources: str) -> str:
    """A whole self-contained page: head (CSP, inline CSS), header, ``body`` in <main>, footer.

    ``sub_html`` (the line under the title) is already-escaped HTML; ``sources``
    names the files the page was generated from.
    """
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="color-scheme" content="light">',
        f"<title>{_e(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        f'<header><h1>{_e(title)}</h1><p class="sub">{sub_html}</p></header>',
        *before_main,
        "<main>",
        *body,
        "</main>",
        f"<footer><p>Generated by the latent-bias probing toolkit from {_e(sources)}. Metric definitions: mFARM "
        "(Adappanavar et al., arXiv:2509.02007) and this toolkit's mfarm-spec.md.</p></footer>",
        "</body>",
        "</html>",
        "",
    ])
