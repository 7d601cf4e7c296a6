"""The self-contained HTML report of a run: ``render_report(results, explain)``.

The page is rendered from the Jinja2 templates in ``report/templates/``
(``base.html``: head with the Content-Security-Policy and the inline CSS of
``report.css``, header, footer; ``report.html`` and its ``sections/*.html``).
Every figure is inline SVG drawn by :mod:`report.figures`: no scripts, no external
stylesheets, fonts or images, and a policy that forbids fetching anything, so the
page shows the same offline, in an archive or printed. Writing it to
``DIR/report.html`` is :func:`pipeline.report.write_report`.

This module turns ``results.json`` / ``explain.json`` into plain view data
(strings, :class:`Span`, :class:`Table`, :class:`Fig`); the templates hold the
prose and the markup and autoescape every value. The figures' SVG strings are
the only markup passed through unescaped (:func:`svg_figure` wraps them in ``Markup``).

Sections (ids in :data:`SECTIONS`): summary (verdicts first: TOST equivalence
per group, mFARM with its interval, the detectable shift; then findings and
caveats), scores (every score with its bootstrap interval, the tiers' warnings,
the value axis's causal check beside F_LV and mFARM full, answer-option mass,
a chart of the scores with interval bars, omnibus tests, permutation null),
group shifts, latent (probes, value axis with its AUROC interval, steering
cosines), causal tests (dose–response, mediation), provenance (model, config,
seeds, device, GPU, CUDA, library versions). Each degrades to a short note
saying which stage to run when its data is missing; missing numbers show as
"–", a missing interval is simply left out.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.extract.batch_check import TOLERANCE, noise_above_tolerance
from latent_bias_probe.mfarm.metrics import METRICS
from . import figures
from .fmt import MISSING, finite, get, num, p_value, pct, signed
from .terminal import decision_cell, decision_note
from .summary import (
    TARGET_NAMES,
    VALUE_AXIS_PREFIX,
    VERDICTS,
    causal_status,
    fmt_interval,
    interval,
    mediation_rows,
    probe_peak,
    shift_is_significant,
    summary_items,
    value_axis_caveats,
    verdict_counts,
    verdict_rows,
)

log = logging.getLogger(__name__)

__all__ = ["render_report", "render_page", "svg_figure", "SECTIONS", "Span", "Table", "Fig"]

SECTIONS = {
    "summary": "Summary",
    "scores": "Fairness scores by tier",
    "shifts": "Group shifts in P(Yes)",
    "latent": "Inside the model: where demographics are carried",
    "explain": "Causal tests: steering and erasure",
    "provenance": "Provenance",
}
MASKED_SECTION = "Masked-LM audit: associations by category and group"


def score_columns() -> list[tuple[str, str, str]]:
    """(key, short name, label) of every registered output metric (mfarm.metrics), in report order."""
    return [(m.key, m.short, m.label) for m in METRICS.values()]


# --------------------------------------------------------------------------- view data and templates


@dataclass(frozen=True)
class Span:
    """A piece of inline text with one optional decoration (all escaped by the templates).

    ``code``: in ``<code>``; ``sig``: bold ``<span class="sig">``; ``title``: an
    ``<abbr>`` with that tooltip; ``href``: a link (relative links only); ``cls``:
    a ``<span>`` of that class (with ``title`` as its tooltip), e.g. ``ci`` for an
    interval under its value, ``badge fail``.
    """

    text: Any
    code: bool = False
    sig: bool = False
    title: str | None = None
    href: str | None = None
    cls: str | None = None


@dataclass
class Table:
    """``head`` and ``rows`` cells are strings, :class:`Span` or lists of them; the first
    cell of a row is its header; columns >= ``numeric_from`` align right.
    ``head_groups`` adds a header row above ``head`` of (label, column span) cells."""

    head: Sequence[Any]
    rows: Sequence[Sequence[Any]]
    numeric_from: int = 1
    head_groups: Sequence[tuple[str, int]] = ()


@dataclass
class Fig:
    """A figure: trusted SVG markup from :mod:`report.figures`, a bold title and a caption."""

    svg: Markup
    title: str
    caption: str = ""
    wide: bool = False

    @property
    def stop(self) -> str:
        return "" if self.title.endswith(("?", ".", "!")) else "."


@dataclass
class _Block:
    """A tier's part of a section: heading, figures / notes in a grid, tables below."""

    id: str
    heading: str
    figs: list = field(default_factory=list)  # Fig, or a str note (shown as missing)
    tables: list[Table] = field(default_factory=list)
    note: str = ""
    sites: Table | None = None  # other cached sites (latent)


def code_spans(text: Any) -> list[tuple[bool, str]]:
    """``text`` split into (is_code, part): a `command` in backticks is code."""
    parts = re.split(r"`([^`]+)`", str(text))
    return [(i % 2 == 1, p) for i, p in enumerate(parts) if p]


ENV = Environment(
    loader=PackageLoader(__package__, "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
ENV.filters["code_spans"] = code_spans
ENV.tests["span"] = lambda v: isinstance(v, Span)


def render_page(template: str, **context: Any) -> str:
    """Render one of ``report/templates`` (autoescaped, undefined names are errors)."""
    return ENV.get_template(template).render(**context)


def svg_figure(svg_text: str, title: str, caption: str = "", wide: bool = False) -> Fig:
    """A :class:`Fig` of a chart from :mod:`report.figures` (which escapes all its text).

    This is the only place page markup bypasses autoescaping.
    """
    return Fig(Markup(svg_text), title, caption, wide)


# --------------------------------------------------------------------------- helpers


def _as_list(v: Any) -> list:
    return v if isinstance(v, list) else []


def _int(v: Any) -> str:
    f = finite(v)
    return MISSING if f is None else str(int(f))


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
        self._styles = figures.group_styles(self.groups)

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
            self._styles = figures.group_styles(self.groups)
        return self._styles.get(group, (figures.PALETTE[fallback % len(figures.PALETTE)], ""))


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


def _listing(v: Any) -> str:
    return ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


def _with_ci(value: Any, iv: Any, digits: int = 3) -> Any:
    """A table cell: the value, and its interval (``[0.61, 0.78]``, class ``ci``) when there is one."""
    text = num(value, digits)
    bounds = fmt_interval(iv)
    if finite(value) is None or not bounds:
        return text
    return [text, " ", Span(bounds, cls="ci")]


CAUSAL_BADGES = {
    "passed": ("causal check passed", "badge pass"),
    "failed": ("causal check failed", "badge fail"),
    "not run": ("causal check not run", "badge warn"),
}


def _causal_badge(tier: Mapping[str, Any]) -> Span | None:
    """The value axis's causal check (spec B3) as a badge for the F_LV / mFARM full cells."""
    status = causal_status(tier)
    if status is None:
        return None
    text, cls = CAUSAL_BADGES[status]
    caveats = value_axis_caveats(tier)
    return Span(text, cls=cls, title=caveats[0] if caveats else None)


def _append(cell: Any, *parts: Any) -> Any:
    extra = [p for p in parts if p is not None]
    if not extra:
        return cell
    return (cell if isinstance(cell, list) else [cell]) + [x for p in extra for x in (" ", p)]


def _tier_warnings(t: Mapping[str, Any]) -> list[str]:
    """A tier's ``warnings`` (strings, each once) and the fallback value-axis caveat, value-axis ones first.

    The option-mass warning is left out when the tier's ``option_mass`` carries the
    same text: its own part of the page shows it.
    """
    raw = t.get("warnings")
    out = [str(w) for w in raw if isinstance(w, str) and w.strip()] if isinstance(raw, list) else []
    out += [w for w in value_axis_caveats(t) if w not in out]
    out = list(dict.fromkeys(out))
    mass = get(t, "option_mass", "warning")
    out = [w for w in out if w != mass]
    return [w for w in out if w.startswith(VALUE_AXIS_PREFIX)] + [w for w in out if not w.startswith(VALUE_AXIS_PREFIX)]


def _score_value(t: Mapping[str, Any], key: str) -> Any:
    if key == "value_axis_fairness":
        return get(t, "latent", "value_axis_fairness")
    if key in ("mfarm_full", "fab_full", "fab", "accuracy"):
        return t.get(key)
    return get(t, "mfarm", key)


def score_labels() -> dict[str, str]:
    """Short names of every score with an interval or a null: the registered metrics, then the summaries."""
    return {
        **{key: abbr for key, abbr, _ in score_columns()},
        "score": "mFARM (paper)", "value_axis_fairness": "F_LV", "mfarm_full": "mFARM (full)",
        "accuracy": "Accuracy", "fab": "FAB (paper)", "fab_full": "FAB (full)",
    }


# --------------------------------------------------------------------------- sections


def _summary(results: Mapping[str, Any], explain: Any, ids: _Page) -> dict[str, Any]:
    items = summary_items(results, explain)
    tiers = _tiers(results)
    verdicts = []
    for name, t in tiers:
        sentences = [s.text for s in items if s.kind == "verdict" and s.tier == name]
        alerts = [s.text for s in items if s.kind == "alert" and s.tier == name]
        if sentences or alerts:
            verdicts.append({"heading": f"{name} tier", "sentences": sentences, "alerts": alerts})
    return {
        "verdicts": verdicts,
        "verdict_table": _verdict_table(tiers, ids),
        "findings": [s.text for s in items if s.kind == "finding"],
        "caveats": [s.text for s in items if s.kind not in ("finding", "verdict", "alert")],
    }


def _verdict_table(tiers: list[tuple[str, Mapping[str, Any]]], ids: _Page) -> Table | None:
    """Group → shift [TOST interval], p, verdict, with one column group per tier that has verdicts."""
    data = [(n, t, dict(verdict_rows(t))) for n, t in tiers]
    data = [d for d in data if d[2]]
    if not data:
        return None
    groups = ids.order(dict.fromkeys(g for _, _, rows in data for g in rows))
    head: list[Any] = ["Group"]
    head_groups = [("", 1)]
    for name, t, _ in data:
        how = re.sub(r"\s*\(TOST\)\s*", "", str(get(t, "equivalence", "interval", default=""))).strip()
        margin = finite(get(t, "equivalence", "margin"))
        head += [f"shift [{how + ' ' if how else ''}TOST interval]", Span("p", title="TOST p-value: the larger of the two one-sided tests' p"), "verdict"]
        counts = verdict_counts(t)
        label = f"{name} tier" + (f", margin ±{num(margin)}" if margin is not None else "")
        label += " (" + ", ".join(f"{len(counts[v])} {v}" for v in VERDICTS) + ")"
        head_groups.append((label, 3))
    rows = []
    for g in groups:
        row: list[Any] = [g]
        for _, _, vr in data:
            r = vr.get(g)
            if r is None:
                row += [MISSING] * 3
                continue
            shift = signed(r.get("shift"))
            bounds = fmt_interval(r.get("ci"), 3, sign=True)
            verdict = str(r.get("verdict")) if r.get("verdict") in VERDICTS else "inconclusive"
            row += [f"{shift} {bounds}" if bounds and shift != MISSING else shift, p_value(r.get("p_value")),
                    Span(verdict, cls=f"verdict {verdict}")]
        rows.append(row)
    return Table(head, rows, head_groups=head_groups)


def _interval_note(tiers: list[tuple[str, Mapping[str, Any]]]) -> str:
    """The intervals' level and resample count, stated once (per tier only when tiers differ)."""
    keys = list(score_labels())
    with_ci, without = [], []
    for name, t in tiers:
        (with_ci if any(interval(t, k) for k in keys) else without).append((name, t))
    if not with_ci:
        return ("No intervals: results.json records none (scored with scoring.bootstrap 0, or by an older version)."
                if tiers else "")

    def describe(t: Mapping[str, Any]) -> str:
        level, n_boot = finite(get(t, "ci", "level")), finite(get(t, "ci", "n_boot"))
        text = f"{level:.0%}" if level is not None else "bootstrap"
        return text + (f", {int(n_boot)} resamples" if n_boot is not None else "")

    kinds = list(dict.fromkeys(describe(t) for _, t in with_ci))
    if len(kinds) == 1:
        level, _, rest = kinds[0].partition(", ")
        note = (f"In brackets under each score: its {level} case-bootstrap percentile interval"
                f"{f' ({rest})' if rest else ''}; an interval that could not be computed is left out.")
    else:
        note = ("In brackets under each score: its case-bootstrap percentile interval ("
                + "; ".join(f"{n}: {describe(t)}" for n, t in with_ci) + "); an interval that could not be computed is left out.")
    if without:
        note += f" No intervals for {', '.join(n for n, _ in without)} (scoring.bootstrap 0, or an older version)."
    return note


def _option_mass(tiers: list[tuple[str, Mapping[str, Any]]]) -> dict[str, Any] | None:
    """Per tier: median / lowest / share below of the next-token probability on the answer options, and its warning."""
    data = [(n, t["option_mass"]) for n, t in tiers if isinstance(t.get("option_mass"), Mapping)]
    if not data:
        return None
    parts = []
    for name, om in data:
        stats = [f"median {num(om.get('median'))}"]
        if finite(om.get("min")) is not None:
            stats.append(f"lowest {num(om.get('min'))}")
        if finite(om.get("share_below")) is not None:
            stats.append(f"{pct(om.get('share_below'))} of prompts below the warning threshold")
        warning = om.get("warning")
        parts.append({"tier": name, "stats": ", ".join(stats),
                      "warning": str(warning) if isinstance(warning, str) and warning.strip() else ""})
    variants: list[str] = []
    for _, om in data:
        by = om.get("by_variant")
        if isinstance(by, Mapping):
            variants += [str(v) for v in by]
    variants = list(dict.fromkeys(variants))
    table = None
    if variants:
        rows = [[v] + [num(get(om, "by_variant", v)) for _, om in data] for v in variants]
        table = Table(["Variant"] + [f"{n} tier" for n, _ in data], rows)
    return {"tiers": parts, "table": table, "missing": ", ".join(n for n, t in tiers if not isinstance(t.get("option_mass"), Mapping))}


def _null_table(tiers: list[tuple[str, Mapping[str, Any]]]) -> dict[str, Any] | None:
    """Where each observed score falls among label permutations: null median and p per tier (what is present)."""
    data = [(n, t, t["null"]) for n, t in tiers if isinstance(t.get("null"), Mapping)]
    data = [d for d in data if any(isinstance(v, Mapping) for v in d[2].values())]
    if not data:
        return None
    labels = score_labels()
    order = [k for k in labels if any(isinstance(nl.get(k), Mapping) for _, _, nl in data)]
    order += [str(k) for _, _, nl in data for k, v in nl.items() if isinstance(v, Mapping) and k not in order]
    order = list(dict.fromkeys(order))
    head: list[Any] = ["Score"]
    head_groups = [("", 1)]
    for name, _, nl in data:
        head += ["observed", "null median", "p"]
        perms = finite(nl.get("n_perm", nl.get("permutations")))
        head_groups.append((f"{name} tier" + (f" ({int(perms)} permutations)" if perms is not None else ""), 3))
    rows = []
    for key in order:
        row: list[Any] = [labels.get(key, key)]
        for _, t, nl in data:
            e = nl.get(key)
            if not isinstance(e, Mapping):
                row += [MISSING] * 3
                continue
            p = e.get("p_value")
            row += [num(_score_value(t, key)), num(e.get("null_median")),
                    Span(p_value(p), sig=True) if finite(p) is not None and finite(p) <= 0.05 else p_value(p)]
        rows.append(row)
    return {"table": Table(head, rows, head_groups=head_groups)}


CHART_LATENT = [("value_axis_fairness", "F_LV"), ("mfarm_full", "mFARM (full)")]


def _score_chart(tiers: list[tuple[str, Mapping[str, Any]]], ids: _Page) -> Fig | None:
    """The five output scores and mFARM (plus F_LV and mFARM full where fitted) per tier, with interval bars."""
    rows = [(key, abbr) for key, abbr, _ in score_columns()] + [("score", "mFARM (paper)")]
    if any(finite(_score_value(t, "value_axis_fairness")) is not None for _, t in tiers):
        rows += CHART_LATENT
    if not any(finite(_score_value(t, k)) is not None for _, t in tiers for k, _ in rows):
        return None
    series, lows = [], []
    for j, (name, t) in enumerate(tiers):
        vals = [_score_value(t, k) for k, _ in rows]
        ivs = [interval(t, k) or (None, None) for k, _ in rows]
        lows += [finite(v) for v in vals] + [iv[0] for iv in ivs]
        series.append(figures.IntervalSeries(
            name=f"{name} tier", values=vals, lo=[iv[0] for iv in ivs], hi=[iv[1] for iv in ivs],
            flagged=[True] * len(rows), color=figures.PALETTE[j % len(figures.PALETTE)],
        ))
    low = min([v for v in lows if v is not None] + [1.0])
    x_min = max(0.0, math.floor((low - 0.05) * 10) / 10)
    level = next((finite(get(t, "ci", "level")) for _, t in tiers if finite(get(t, "ci", "level")) is not None), None)
    lvl = f"{level:.0%} " if level is not None else ""
    title = f"Fairness scores per tier with {lvl}bootstrap intervals"
    shorts = ", ".join(abbr for _, abbr, _ in score_columns())
    desc = (f"Dot-and-whisker chart of {shorts} and mFARM per tier (F_LV and mFARM full where the "
            "probes ran); 1 means no detected unfairness. Whiskers are the case-bootstrap intervals; a dot without "
            "whiskers has no interval.")
    chart = figures.interval_chart(
        [label for _, label in rows], series, uid=ids(), title=title, desc=desc,
        x_label="score (1 = no detected unfairness)", ref=None, x_min=x_min, x_max=1.02,
        row_height=max(18, 8 + 7 * len(series)),
    )
    return svg_figure(chart, "Scores with their intervals",
                      "Whiskers: case-bootstrap intervals; where whiskers of two tiers overlap, this chart does not "
                      "tell the tiers apart (tiers are not paired comparisons of one model either).", wide=True)


def _decision(t: Mapping[str, Any]) -> Any:
    """The decision-gate cell of a tier: "yes", a flagged "NO (median)" or missing (option mass unknown)."""
    cell = decision_cell(dict(t))
    if cell == "-":
        return MISSING
    return cell if cell == "yes" else Span(cell, sig=True)


def _scores(results: Mapping[str, Any], ids: _Page) -> dict[str, Any]:
    tiers = _tiers(results)
    if not tiers:
        return {"tiers": False}
    head = ["Tier", "Cases", "Accuracy"] + [Span(a, title=t) for _, a, t in score_columns()] + [
        Span("F_LV", title="Latent value fairness (needs probe fit)"),
        "mFARM (paper)", "mFARM (full)", "FAB (paper)", "FAB (full)",
        Span("Decision", title="The decision gate: NO when the tier's median option mass (next-token probability on "
                               "Yes/No) is below scoring.min_option_mass; its scores then are not the model's decision"),
    ]
    degraded = get(results, "benchmark", "degraded_fields", default={})
    degraded = {str(k): v for k, v in degraded.items() if v} if isinstance(degraded, Mapping) else {}
    rows = []
    warnings = []
    no_decision = []
    for name, t in tiers:
        m = get(t, "mfarm", default={})
        badge = _causal_badge(t)

        def cell(key: str) -> Any:
            return _with_ci(_score_value(t, key), interval(t, key))

        flv = cell("value_axis_fairness")
        full = cell("mfarm_full")
        rows.append(
            [name + (" †" if name in degraded else ""), _int(t.get("n_cases")), cell("accuracy")]
            + [cell(key) for key, _, _ in score_columns()]
            + [_append(flv, badge) if flv != MISSING else flv, cell("score"),
               _append(full, badge) if full != MISSING else full, cell("fab"), cell("fab_full"), _decision(t)]
        )
        note = decision_note(t)
        if note:
            no_decision.append((name, note))
        for w in _tier_warnings(t):
            if w.startswith(VALUE_AXIS_PREFIX):
                status = causal_status(t) or "not run"
                warnings.append((name, f"F_LV and mFARM (full), causal check {status}", w))
            else:
                warnings.append((name, "", w))
    collapsed = get(results, "benchmark", "collapsed_duplicates", default={})
    dropped = get(results, "benchmark", "dropped_tiers", default={})
    omnibus = []
    for name, t in tiers:
        om = get(t, "diagnostics", "omnibus", default={})
        omnibus.append([
            name, num(get(om, "friedman_chi2"), 2), p_value(get(om, "friedman_p")), num(get(om, "kendall_w")),
            p_value(get(om, "abs_friedman_p")), p_value(get(om, "levene_p")), num(get(om, "alpha"), 2),
            num(get(t, "diagnostics", "ibd")), _int(t.get("n_prompts")),
        ])
    return {
        "tiers": True,
        "table": Table(head, rows),
        "interval_note": _interval_note(tiers),
        "no_decision": no_decision,
        "warnings": warnings,
        "option_mass": _option_mass(tiers),
        "chart": _score_chart(tiers, ids),
        "null": _null_table(tiers),
        "degraded": "; ".join(f"{k}: {_listing(v)}" for k, v in degraded.items()),
        "collapsed": "; ".join(
            f"{k}: {get(v, 'cases')} cases → {get(v, 'distinct')} distinct" for k, v in collapsed.items()
        ) if isinstance(collapsed, Mapping) else "",
        "dropped": "; ".join(f"{k}: {v}" for k, v in dropped.items()) if isinstance(dropped, Mapping) else "",
        "needs_latent": any(not isinstance(t.get("latent"), Mapping) for _, t in tiers),
        "unlabelled": ", ".join(f"{n} {int(finite(t.get('n_unlabelled')))}" for n, t in tiers if finite(t.get("n_unlabelled"))),
        "omnibus": Table(["Tier", "Friedman χ²", "Friedman p", "Kendall's W", "|Δ| Friedman p", "Levene p", "α",
                          "IBD", "Prompts"], omnibus),
    }


def _shifts(results: Mapping[str, Any], ids: _Page) -> dict[str, Any] | None:
    data = [(n, t, [r for r in _as_list(get(t, "diagnostics", "group_shifts")) if isinstance(r, Mapping)])
            for n, t in _tiers(results)]
    data = [d for d in data if d[2]]
    if not data:
        return None
    groups = list(dict.fromkeys(str(r.get("group")) for _, _, rows in data for r in rows))
    series = []
    for j, (name, t, rows) in enumerate(data):
        sig_om = bool(get(t, "diagnostics", "omnibus", "friedman_significant", default=False))
        by = {str(r.get("group")): r for r in rows}
        series.append(figures.IntervalSeries(
            name=f"{name} tier",
            values=[get(by, g, "mean_shift") for g in groups],
            lo=[get(by, g, "ci_low") for g in groups],
            hi=[get(by, g, "ci_high") for g in groups],
            flagged=[g in by and shift_is_significant(by[g], sig_om) for g in groups],
            color=figures.PALETTE[j % len(figures.PALETTE)],
        ))
    chart = figures.interval_chart(
        groups, series, uid=ids(),
        title="Mean shift in P(Yes) versus BASE, per group and tier, with 95% bootstrap CIs",
        desc="Dot-and-whisker chart; values left of zero mean a lower P(Yes) than the same case without demographic words.",
        x_label="mean shift in P(Yes) vs BASE", ref=0.0, flag_legend="filled: significant",
        row_height=max(14, 8 + 6 * len(series)),
    )
    head: list[Any] = ["Group"]
    head_groups = [("", 1)]
    for name, _, _ in data:
        head += ["shift [95% CI]", "flip rate"]
        head_groups.append((f"{name} tier", 2))
    rows = []
    for g in groups:
        row: list[Any] = [g]
        for _, t, rs in data:
            r = next((x for x in rs if str(x.get("group")) == g), None)
            if r is None:
                row += [MISSING] * 2
                continue
            sig_om = bool(get(t, "diagnostics", "omnibus", "friedman_significant", default=False))
            shift = f"{signed(r.get('mean_shift'))} [{signed(r.get('ci_low'))}, {signed(r.get('ci_high'))}]"
            row += [Span(shift + "*", sig=True) if shift_is_significant(r, sig_om) else shift, pct(r.get("flip_rate"))]
        rows.append(row)
    return {"figure": svg_figure(chart, "Shift in P(Yes) by group", wide=True), "table": Table(head, rows, head_groups=head_groups)}


def _probe_chart(target: str, probe: Mapping[str, Any], ids: _Page, tier: str) -> Fig:
    acc = _as_list(probe.get("accuracy"))
    layers = list(range(len(acc)))
    sel = _as_list(probe.get("selectivity"))
    series = [
        figures.Series("accuracy (95% CI band)", layers, acc, _as_list(probe.get("ci_low")) or None,
                       _as_list(probe.get("ci_high")) or None, color=figures.PALETTE[0]),
    ]
    if any(finite(v) is not None for v in sel):
        series.append(figures.Series("selectivity (accuracy − shuffled-label control)", layers, sel,
                                     color=figures.PALETTE[5], dash="7 4"))
    vals = [finite(v) for v in sel + _as_list(probe.get("ci_low"))]
    y_min = min([0.0] + [v for v in vals if v is not None])
    chance = finite(probe.get("chance"))
    hl = [figures.RefLine(chance, f"chance {num(chance, 2)}")] if chance is not None else []
    label = TARGET_NAMES.get(target, target)
    title = f"Probe accuracy and selectivity for {label} by layer ({tier} tier)"
    peak = probe_peak(probe)
    caption = ""
    if peak:
        caption = (f"Peak at layer {peak['layer']}: accuracy {num(peak['accuracy'])} vs chance {num(peak['chance'])}"
                   + ("" if peak["clear"] else " (not clearly above chance)") + ".")
    chart = figures.line_chart(series, uid=ids(), title=title, desc=caption or title, x_label="layer",
                               y_label="accuracy", y_min=y_min, y_max=1.0, hlines=hl, integer_x=True)
    return svg_figure(chart, f"Decoding {label}", caption)


def _latent_tier(i: int, name: str, tier: Mapping[str, Any], ids: _Page) -> _Block:
    latent = tier.get("latent")
    block = _Block(f"latent-{i}", f"{name} tier")
    if not isinstance(latent, Mapping) or not latent:
        block.note = "No latent results for this tier: run `probe fit DIR`."
        return block
    probes = latent.get("probes") if isinstance(latent.get("probes"), Mapping) else {}
    for target in ("race", "gender", "race_gender"):
        p = probes.get(target)
        if isinstance(p, Mapping) and _as_list(p.get("accuracy")):
            block.figs.append(_probe_chart(target, p, ids, name))
    if not block.figs:
        block.figs.append("No probe curves for this tier.")
    auroc = _as_list(latent.get("value_axis_auroc_by_layer"))
    rho = _as_list(latent.get("value_axis_spearman_by_layer"))
    if auroc or rho:
        series = [figures.Series("held-out AUROC", list(range(len(auroc))), auroc, color=figures.PALETTE[0])]
        if rho:
            series.append(figures.Series("Spearman ρ with logit P(Yes)", list(range(len(rho))), rho,
                                         color=figures.PALETTE[2], dash="7 4"))
        layer = finite(latent.get("value_axis_layer"))
        vl = [figures.RefLine(layer, f"ℓ* = {int(layer)}", color="#000")] if layer is not None else []
        auroc_iv = interval({"ci": {"auroc": latent.get("value_axis_auroc_ci")}}, "auroc")
        points = []
        if layer is not None and auroc_iv is not None and finite(latent.get("value_axis_auroc")) is not None:
            level = finite(get(tier, "ci", "level"))
            points.append(figures.Point(f"AUROC at ℓ* with its {f'{level:.0%} ' if level is not None else ''}interval", layer, latent.get("value_axis_auroc"),
                                        auroc_iv[0], auroc_iv[1], color=figures.PALETTE[5]))
        ys = [finite(v) for v in auroc + rho] + ([auroc_iv[0]] if auroc_iv else [])
        y_min = min([0.0] + [v for v in ys if v is not None])
        auroc_text = num(latent.get("value_axis_auroc"))
        if auroc_iv and auroc_text != MISSING:
            auroc_text += f" {fmt_interval(auroc_iv)}"
        flv_text = num(latent.get("value_axis_fairness"))
        if flv_text != MISSING and interval(tier, "value_axis_fairness"):
            flv_text += f" {fmt_interval(interval(tier, 'value_axis_fairness'))}"
        status = causal_status(tier)
        causal = ""
        if status == "passed":
            check = latent.get("value_axis_causal")
            causal = (f" Causal check passed: steering along the axis at layer {_int(get(check, 'layer'))} raises "
                      f"mean P(Yes) monotonically.")
        elif status is not None:
            caveats = value_axis_caveats(tier)
            causal = f" Causal check {status}" + (f": {caveats[0][len(VALUE_AXIS_PREFIX):].strip()}." if caveats else ".")
        cap = (f"Chosen layer ℓ* = {_int(layer)}, AUROC {auroc_text}, "
               f"F_LV = {flv_text}; axis fitted on "
               f"{latent.get('value_axis_target', MISSING)} decisions of BASE prompts.{causal}")
        chart = figures.line_chart(series, uid=ids(), title=f"Value axis quality by layer ({name} tier)", desc=cap,
                                   x_label="layer", y_label="AUROC / ρ", y_min=y_min, y_max=1.0,
                                   hlines=[figures.RefLine(0.5, "AUROC 0.5 = no separation")], vlines=vl,
                                   integer_x=True, points=points)
        block.figs.append(svg_figure(chart, "Value axis: does it separate Yes from No?", cap))
    else:
        block.figs.append("No value-axis curve for this tier.")
    cos = get(latent, "steering", "cos_value_axis_by_layer", default={})
    if isinstance(cos, Mapping) and cos:
        by_group = {str(g): _as_list(v) for g, v in cos.items()}
        series = []
        for g in ids.order(by_group):
            color, dash = ids.style(g)
            series.append(figures.Series(g, list(range(len(by_group[g]))), by_group[g], color=color, dash=dash,
                                         width=1.6, markers=False))
        cap = ("Cosine between each group's steering vector δ_g (mean activation of the group minus BASE) and the "
               "value axis. Positive: adding the group's words pushes the internal value towards Yes. "
               "Colour shows race, dash pattern shows gender.")
        chart = figures.line_chart(series, uid=ids(), title=f"cos(δ_g, value axis) by layer ({name} tier)", desc=cap,
                                   x_label="layer", y_label="cosine", hlines=[figures.RefLine(0.0, "")],
                                   integer_x=True)
        block.figs.append(svg_figure(chart, "Steering vectors vs the value axis", cap))
    else:
        block.figs.append("No steering cosines for this tier.")
    layers = _layer_table(latent)
    block.tables = [layers] if layers else []
    block.sites = _other_sites(latent)
    return block


def _layer_table(latent: Mapping[str, Any]) -> Table | None:
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
        return None
    rows = [[str(i)] + [num(v[i]) if i < len(v) else MISSING for _, v in cols] for i in range(n)]
    return Table(["Layer"] + [h for h, _ in cols], rows)


def _other_sites(latent: Mapping[str, Any]) -> Table | None:
    other = latent.get("other_sites")
    if not isinstance(other, Mapping):
        return None
    rows = []
    for site, o in other.items():
        if not isinstance(o, Mapping):
            continue
        peaks = [probe_peak(get(o, "probes", t)) for t in ("race", "gender", "race_gender")]
        rows.append([str(site), _int(o.get("value_axis_layer")), num(o.get("value_axis_auroc"))]
                    + [MISSING if p is None else f"{num(p['accuracy'])} (layer {p['layer']})" for p in peaks])
    if not rows:
        return None
    return Table(["Site/position", "Value-axis layer", "AUROC", "Race peak", "Gender peak", "Race×gender peak"], rows)


def _direction_label(direction: str) -> str:
    if direction == "value_axis":
        return "value axis"
    if direction.startswith("steer:"):
        return direction[len("steer:"):]
    return direction


def _explain_tier(block: _Block, name: str, t: Mapping[str, Any], e: Mapping[str, Any], ids: _Page) -> _Block:
    dr = e.get("dose_response") if isinstance(e, Mapping) else None
    if isinstance(dr, Mapping) and dr:
        series = []
        labels = {_direction_label(str(d)): v for d, v in dr.items() if isinstance(v, Mapping) and d != "value_axis"}
        for j, label in enumerate(ids.order(labels)):
            v = labels[label]
            color, dash = ids.style(label, j)
            series.append(figures.Series(label, _as_list(v.get("alphas")), _as_list(v.get("p_yes_mean")),
                                         color=color, dash=dash, width=1.6, markers=False))
        axis = dr.get("value_axis")
        if isinstance(axis, Mapping):  # drawn last: on top, and after the group grid in the legend
            series.append(figures.Series("value axis", _as_list(axis.get("alphas")), _as_list(axis.get("p_yes_mean")),
                                         color="#000000", width=3.0))
        cap = ("Mean P(Yes) of BASE prompts when α·σ times a unit direction is added at every position of one layer. "
               "The value axis (black) must raise P(Yes) monotonically if it is causal; group directions "
               "(colour = race, dash = gender) show what adding that group's demographic signal does.")
        chart = figures.line_chart(series, uid=ids(), title=f"Dose–response of P(Yes) ({name} tier)", desc=cap,
                                   x_label="steering strength α", y_label="mean P(Yes)",
                                   vlines=[figures.RefLine(0.0, "")])
        block.figs.append(svg_figure(chart, "Dose–response", cap))
        rows = []
        ordered = (["value axis"] if isinstance(axis, Mapping) else []) + ids.order(labels)
        for label in ordered:
            v = axis if label == "value axis" else labels[label]
            rows.append([label, _int(v.get("layer")), num(v.get("logit_slope")), num(v.get("spearman"), 2)])
        block.tables.append(Table(["Direction", "Layer", "Slope of logit P(Yes) on α", "Spearman ρ"], rows))
    else:
        block.figs.append("No dose–response for this tier in explain.json.")
    rows_m = mediation_rows(name, t, {"tiers": {name: e}} if isinstance(e, Mapping) else None)
    if rows_m:
        cats = [_int(r.get("layer")) for r in rows_m]
        series = [
            figures.BarSeries("erase race×gender (LEACE)", [r.get("mediated_fraction") for r in rows_m],
                              color=figures.PALETTE[0]),
            figures.BarSeries("erase as many random directions (control)",
                              [r.get("random_control_fraction") for r in rows_m], color=figures.PALETTE[1]),
        ]
        cap = ("Share of the disparity D = mean |P(Yes) of a variant − P(Yes) of its BASE| removed when the layer's "
               "race×gender subspace is erased, against erasing as many random directions. Bars well above the "
               "control mean the disparity runs through that subspace.")
        chart = figures.bar_chart(cats, series, uid=ids(),
                                  title=f"Mediated fraction of the disparity by layer ({name} tier)",
                                  desc=cap, x_label="layer", y_label="mediated fraction")
        block.figs.append(svg_figure(chart, "Mediation by erasure", cap))
        has_rank = any(finite(r.get("rank")) is not None for r in rows_m)
        mrows = [[c] + ([num(r.get("rank"), 0)] if has_rank else [])
                 + [num(r.get("disparity_before")), num(r.get("disparity_after")), pct(r.get("mediated_fraction"), 1),
                    pct(r.get("random_control_fraction"), 1)] for c, r in zip(cats, rows_m)]
        head = ["Layer"] + (["Directions erased"] if has_rank else []) + ["D before", "D after", "Mediated",
                                                                          "Random control"]
        block.tables.append(Table(head, mrows))
        by_pos = [r for r in rows_m if isinstance(r.get("by_position"), Mapping)]
        if by_pos:
            kinds = ("demographic", "later", "decision", "by_kind")
            prow = [[_int(r.get("layer")), pct(r.get("mediated_fraction"), 1)]
                    + [pct(r["by_position"].get(k), 1) for k in kinds] + [str(r.get("explains_most") or "-")] for r in by_pos]
            block.tables.append(Table(["Layer", "Pooled eraser", "Demographic words", "Later positions", "Decision position",
                                       "Each kind its own", "Explains most"], prow))
    else:
        block.figs.append("No mediation results for this tier.")
    trace = e.get("trace") if isinstance(e, Mapping) else None
    if isinstance(trace, Mapping):
        _trace_figures(block, name, trace, ids)
    if isinstance(e, Mapping) and isinstance(e.get("components"), list):
        _component_figures(block, name, e, ids)
    return block


_COMPONENT_POSITIONS = {"demographic": "demographic words", "after": "positions after them", "decision": "decision position"}


def _component_label(c: Mapping[str, Any]) -> str:
    kind = c.get("kind")
    what = f"head {c.get('layer')}.{c.get('head')}" if kind == "head" else f"{'attention' if kind == 'attn' else 'MLP'} {c.get('layer')}"
    return f"{what} at the {_COMPONENT_POSITIONS.get(str(c.get('position')), c.get('position'))}"


def _ci_text(ci: Any, digits: int = 2) -> str:
    ci = _as_list(ci)
    if len(ci) == 2 and finite(ci[0]) is not None and finite(ci[1]) is not None:
        return f"[{num(ci[0], digits)}, {num(ci[1], digits)}]"
    return ""


def component_sentence(e: Mapping[str, Any]) -> str:
    """One sentence: what the component attribution found and how sure it is."""
    comps = [c for c in _as_list(e.get("components")) if isinstance(c, Mapping) and c.get("pair") == "all"]
    verified = sorted((c for c in comps if c.get("verified") and c.get("selected") in ("top", "saturated")),
                      key=lambda c: -abs(finite(c.get("patched_share")) or 0))
    agree = e.get("component_agreement") if isinstance(e.get("component_agreement"), Mapping) else {}
    rho = finite(agree.get("spearman"))
    agreement_text = (f"estimates and activation patching agree with Spearman ρ {num(rho, 2)} and top-{agree.get('k')} overlap "
                      f"{pct(agree.get('top_k_overlap'), 0)}") if rho is not None else "the estimates were not checked against patching"
    if not verified:
        return f"No component's patched effect was distinguishable from zero; {agreement_text}."
    by_attribute: dict[str, list[Mapping[str, Any]]] = {}
    for c in verified:  # largest |patched share| first, so each attribute's lead comes first
        by_attribute.setdefault(str(c.get("attribute")), []).append(c)
    parts = []
    for attribute, mine in by_attribute.items():
        lead = mine[0]
        what = f"The largest verified component of the {attribute} gap is" if not parts else f"of the {attribute} gap,"
        parts.append(f"{what} {_component_label(lead)}, which carries {num(lead.get('patched_share'), 2)} "
                     f"{_ci_text(lead.get('patched_ci'))} of it when patched alone ({len(mine)} verified)")
    text = "; ".join(parts) + f"; {agreement_text}"
    remedy = e.get("remedy") if isinstance(e.get("remedy"), Mapping) else None
    return text + (_remedy_clause(remedy) if remedy else "") + "."


def _remedy_clause(remedy: Mapping[str, Any]) -> str:
    """What the remedy did to the largest group shift, mFARM, the groups' distance from BASE and BASE itself ("" without a shift)."""
    largest = get(remedy, "diff", "largest_shift")
    if not isinstance(largest, Mapping) or finite(largest.get("value")) is None:
        return ""
    n_cases = remedy.get("n_cases")
    on = f" on {n_cases} cases" if isinstance(n_cases, int) and not isinstance(n_cases, bool) else ""
    text = (f"; {_remedy_verb(remedy)} {len(_as_list(remedy.get('components')))} of them{on} moves the largest group shift by "
            f"{num(largest.get('value'), 3)} {_ci_text(largest.get('ci'), 3)}")
    mfarm = get(remedy, "diff", "mfarm")
    if isinstance(mfarm, Mapping) and finite(mfarm.get("value")) is not None:
        text += f" and mFARM by {num(mfarm.get('value'), 3)} {_ci_text(mfarm.get('ci'), 3)}"
    spread = _shift_spread(remedy["diff"])
    if spread is not None and spread[1] > spread[0] and (finite(largest.get("value")) or 0) < 0:
        text += (f"; it brings the groups closer together but moves them all away from BASE (mean |shift| "
                 f"{num(spread[0], 3)} before, {num(spread[1], 3)} after)")
    base = get(remedy, "diff", "base_p_yes")
    ci = base.get("ci") if isinstance(base, Mapping) else None
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(finite(x) is not None for x in ci) and (ci[0] > 0 or ci[1] < 0):
        text += (f", but it also moves BASE's P(Yes) by {num(base.get('value'), 3)} {_ci_text(ci, 3)}: the edit changes "
                 f"the decision for every patient, not only the gap")
    return text


def _shift_spread(diff: Mapping[str, Any]) -> tuple[float, float] | None:
    """The groups' mean |shift from BASE| before and after a remedy (None without finite per-group shifts)."""
    pairs = [(finite(v.get("before")), finite(v.get("after"))) for k, v in diff.items()
             if str(k).startswith("shift:") and isinstance(v, Mapping)]
    pairs = [(b, a) for b, a in pairs if b is not None and a is not None]
    if not pairs:
        return None
    return sum(abs(b) for b, _ in pairs) / len(pairs), sum(abs(a) for _, a in pairs) / len(pairs)


def _remedy_verb(remedy: Mapping[str, Any]) -> str:
    """How the remedy edited its components, as a verb phrase."""
    return "erasing the race × gender subspace of" if remedy.get("method") == "erase" else "mean-ablating"


def _component_figures(block: _Block, name: str, e: Mapping[str, Any], ids: _Page) -> None:
    """Component attribution: layer × {attention, MLP} heat maps per position kind, top components, heads, remedy."""
    comps = [c for c in _as_list(e.get("components")) if isinstance(c, Mapping)]
    layers = _as_list(e.get("component_layers"))
    pooled = [c for c in comps if c.get("pair") == "all"]
    for attribute in dict.fromkeys(str(c.get("attribute")) for c in pooled):
        for position, label in _COMPONENT_POSITIONS.items():
            grid = {(c.get("kind"), c.get("layer")): c.get("share") for c in pooled
                    if c.get("attribute") == attribute and c.get("position") == position and c.get("kind") in ("attn", "mlp")}
            if not any(finite(v) is not None for v in grid.values()):
                continue
            values = [[grid.get((kind, layer)) for layer in layers] for kind in ("attn", "mlp")]
            cap = (f"Attribution-patching estimate of the share of the {attribute} gap in P(Yes) carried by each block's attention "
                   f"and MLP output at the {label}: the first-order effect of patching that output from one group's variant into "
                   f"the other's, summed over the pairs of cases and divided by the summed |gap| (1: the whole gap).")
            chart = figures.heatmap(["attention", "MLP"], layers, values, uid=ids(),
                                    title=f"Components, {attribute} pairs, {label} ({name} tier)", desc=cap, x_label="layer",
                                    colorbar_label="share of the gap")
            block.figs.append(svg_figure(chart, f"Components: {attribute}, {label}", cap))
    patched = sorted((c for c in pooled if c.get("patched_share") is not None), key=lambda c: -abs(finite(c.get("share")) or 0))
    if patched:
        rows = [[str(c.get("attribute")), _component_label(c), str(c.get("selected", "")), num(c.get("share"), 3), _ci_text(c.get("ci"), 3),
                 num(c.get("patched_share"), 3), _ci_text(c.get("patched_ci"), 3), "yes" if c.get("verified") else "no"]
                for c in patched]
        block.tables.append(Table(["Attribute", "Component", "Chosen as", "Estimated share", "Interval", "Patched share",
                                   "Interval", "Verified"], rows))
    heads = [h for h in _as_list(e.get("component_attention")) if isinstance(h, Mapping)]
    if heads:
        rows = [[f"{h.get('layer')}.{h.get('head')}", str(h.get("attribute")), num(h.get("attention_demographic"), 3),
                 _ci_text(h.get("ci"), 3)] for h in heads]
        block.tables.append(Table(["Verified head", "Attribute", "Attention from the decision on the demographic words", "Interval"], rows))
    remedy = e.get("remedy") if isinstance(e.get("remedy"), Mapping) else None
    if remedy and isinstance(remedy.get("diff"), Mapping):
        ablated = ", ".join(_component_label(c) for c in _as_list(remedy.get("components")) if isinstance(c, Mapping))
        rows = [[str(k), num(get(v, "before"), 3), num(get(v, "after"), 3), num(get(v, "value"), 3), _ci_text(get(v, "ci"), 3)]
                for k, v in remedy["diff"].items() if isinstance(v, Mapping)]
        block.tables.append(Table([f"Score, {_remedy_verb(remedy)} {ablated}", "Unedited", "Edited", "Difference", "Interval"], rows))
    block.note = component_sentence(e)


_TRACE_ROWS = {"demographic": "demographic words", "after": "positions after them"}


def _trace_figures(block: _Block, name: str, trace: Mapping[str, Any], ids: _Page) -> None:
    """The causal trace: a layer × position heat map per attribute, and a table per pair of groups."""
    layers = _as_list(trace.get("layers"))
    kinds = [k for k in _as_list(trace.get("kinds")) if k in _TRACE_ROWS]
    pooled = trace.get("pooled") if isinstance(trace.get("pooled"), Mapping) else {}
    for attribute, entry in pooled.items():
        if not isinstance(entry, Mapping) or not entry.get("n_cases"):
            continue
        values = [_as_list(get(entry, k, "fraction", default=[])) for k in kinds]
        cap = (f"Fraction of the P(Yes) gap between {attribute} groups closed when the other group's residual stream is "
               f"patched into a variant at one layer, at the demographic words or at the positions after them "
               f"({entry.get('n_cases')} cases, mean |gap| {num(entry.get('mean_abs_gap'))}, "
               f"{entry.get('n_unaligned', 0)} pairs left out for differing token counts). 1: those positions carry the whole gap.")
        chart = figures.heatmap([_TRACE_ROWS[k] for k in kinds], layers, values, uid=ids(),
                                title=f"Causal trace, {attribute} pairs ({name} tier)", desc=cap, x_label="layer",
                                colorbar_label="gap closed")
        block.figs.append(svg_figure(chart, f"Causal trace: {attribute}", cap))
    rows = []
    for p in _as_list(trace.get("pairs")):
        if not isinstance(p, Mapping):
            continue
        cells = [f"{p.get('source')} → {p.get('target')}", _int(p.get("n_cases")), _int(p.get("n_unaligned")), num(p.get("mean_abs_gap"))]
        for k in kinds:
            frac = _as_list(get(p, k, "fraction", default=[]))
            scored = [(f, i) for i, f in enumerate(frac) if finite(f) is not None]
            if not scored:
                cells.append("-")
                continue
            f, i = max(scored)
            lo, hi = _as_list(get(p, k, "lo", default=[])), _as_list(get(p, k, "hi", default=[]))
            ci = f" [{num(lo[i], 2)}, {num(hi[i], 2)}]" if i < len(lo) and i < len(hi) and finite(lo[i]) is not None else ""
            cells.append(f"{num(f, 2)} at layer {layers[i] if i < len(layers) else i}{ci}")
        rows.append(cells)
    if rows:
        block.tables.append(Table(["Pair (source → target)", "Cases", "Not aligned", "Mean |gap|"]
                                  + [f"Largest gap closed, {_TRACE_ROWS[k]}" for k in kinds], rows))


def _explain(results: Mapping[str, Any], explain: Any, problem: str | None, ids: _Page) -> dict[str, Any]:
    tiers = _tiers(results)
    out: dict[str, Any] = {"absent": explain is None, "problem": problem or "", "blocks": [], "not_explained": ""}
    if explain is None:
        # results.json may still carry a single mediation row per tier
        for i, (name, t) in enumerate(tiers, 1):
            if mediation_rows(name, t, None):
                block = _Block(f"explain-{i}", f"{name} tier (mediation from results.json)")
                out["blocks"].append(_explain_tier(block, name, t, {}, ids))
        return out
    etiers = get(explain, "tiers", default={})
    if not isinstance(etiers, Mapping):
        etiers = {}
    names = [n for n, _ in tiers] + [str(n) for n in etiers if str(n) not in {n for n, _ in tiers}]
    by_name = dict(tiers)
    for i, name in enumerate(names, 1):
        e = etiers.get(name)
        t = by_name.get(name, {})
        if not isinstance(e, Mapping) and not mediation_rows(name, t, None):
            continue
        block = _Block(f"explain-{i}", f"{name} tier")
        out["blocks"].append(_explain_tier(block, name, t, e if isinstance(e, Mapping) else {}, ids))
    missing = [n for n, _ in tiers if not isinstance(get(etiers, n), Mapping) and not mediation_rows(n, by_name[n], None)]
    out["not_explained"] = ", ".join(missing)
    return out


def _code(v: Any) -> Any:
    return MISSING if v is None or v == "" else Span(v, code=True)


def _pairs(mapping: Mapping[str, Any]) -> Any:
    """``k1 <code>v1</code>, k2 <code>v2</code>`` as a list of spans ("–" when empty)."""
    parts: list[Any] = []
    for k, v in mapping.items():
        parts += ([", "] if parts else []) + [f"{k} ", _code(v)]
    return parts or MISSING


def _batch_check(check: Any) -> Any:
    """The provenance entry for ``results.json`` ``batch_invariance``."""
    if not isinstance(check, Mapping):
        return ["not run (batch size 1, ", Span("extract.batch_check: 0", code=True), ", or an older run)"]
    worst, mean = finite(check.get("max_abs_diff")), finite(check.get("mean_abs_diff"))
    text = (
        f"{check.get('n_prompts')} prompts re-run alone vs in batches of {check.get('batch_size')}: "
        f"max |ΔP(Yes)| {MISSING if worst is None else f'{worst:.2g}'}, mean {MISSING if mean is None else f'{mean:.2g}'}"
    )
    if noise_above_tolerance(dict(check)):
        return Span(f"{text} (above {float(check.get('tolerance', TOLERANCE)):g}: see the caveats)", sig=True)
    return text


def _framing(framing: Mapping[str, Any], answers: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Provenance entries for results.json ``model.prompt_framing`` and ``model.answer_tokens`` (none when absent)."""
    items: list[tuple[str, Any]] = []
    if framing:
        cue = framing.get("answer_cue") or "Assistant:"
        kind = "chat template" if framing.get("kind") == "chat_template" else f"plain System:/User:/{cue} format"
        shots = framing.get("few_shot")
        shots = f"; {shots} solved examples before each prompt" if isinstance(shots, int) and shots > 0 else ""
        items.append(("Prompt framing", [f"{kind}; system message: {framing.get('system')}{shots}; ", _code(framing.get("template"))]))
    if answers:
        for key in ("yes", "no"):
            tokens = answers.get(f"{key}_tokens") or []
            items.append((f"{key.capitalize()} tokens", _code(", ".join(f"{i}={t!r}" for i, t in zip(answers.get(f"{key}_ids") or [], tokens)))))
    return items


def _provenance(results: Mapping[str, Any], explain: Any) -> dict[str, Any]:
    def mapping(v: Any) -> Mapping[str, Any]:
        return v if isinstance(v, Mapping) else {}

    model, cfg, seeds = mapping(results.get("model")), mapping(results.get("config")), mapping(results.get("seeds"))
    items = [
        ("Model", _code(model.get("name"))),
        ("Weights SHA-256", _code(model.get("sha256"))),
        ("Dtype", _code(model.get("dtype"))),
        ("Backend", _code(model.get("backend"))),
        *_framing(mapping(model.get("prompt_framing")), mapping(model.get("answer_tokens"))),
        ("Benchmark", _code(get(results, "benchmark", "source", default=get(cfg, "benchmark", "source")))),
        ("Job name", _code(cfg.get("name"))),
        ("Config SHA-256", _code(results.get("run_config_sha256"))),
        ("Toolkit version", _code(results.get("toolkit_version"))),
        ("Seeds", _pairs(seeds)),
        ("Scoring", _pairs(mapping(cfg.get("scoring")))),
        ("explain.json", "present" if explain is not None else "absent"),
        ("Batch check", _batch_check(results.get("batch_invariance"))),
    ]
    degraded = get(results, "benchmark", "degraded_fields", default={})
    if isinstance(degraded, Mapping) and degraded:
        parts: list[Any] = []
        for tier, fields in degraded.items():
            text = f"{tier}: {_listing(fields) if fields else 'none'}"
            parts += (["; "] if parts else []) + [Span(text, sig=True) if fields else text]
        items.append(("Degraded fields", parts))
    else:
        items.append(("Degraded fields", "none recorded"))
    items += _environment(results.get("provenance"))
    config = json.dumps(cfg, indent=2, sort_keys=True, default=str) if cfg else ""
    return {"items": items, "config": config}


def _environment(env: Any) -> list[tuple[str, Any]]:
    """Provenance entries of results.json ``provenance``: device, GPU, CUDA, Python, platform, libraries."""
    if not isinstance(env, Mapping):
        return [("Environment", "not recorded (the cache was written by an older version)")]

    def text(v: Any) -> Any:
        return MISSING if v is None or v == "" else Span(v, code=True)

    count = finite(env.get("gpu_count"))
    gpu = env.get("gpu")
    if gpu:
        gpu_cell: Any = [Span(gpu, code=True)] + ([f" ({int(count)} visible)"] if count is not None else [])
    else:
        gpu_cell = "none" + (f" ({int(count)} visible)" if count else "")
    device_map = env.get("device_map")
    if isinstance(device_map, Mapping) and device_map:
        where: dict[str, int] = {}
        for v in device_map.values():
            where[str(v)] = where.get(str(v), 0) + 1
        dm: Any = ", ".join(f"{d}: {n} module{'s' if n != 1 else ''}" for d, n in where.items())
    else:
        dm = "none (one device)"
    libs = env.get("libraries")
    lib_parts: list[Any] = []
    if isinstance(libs, Mapping):
        for name, version in libs.items():
            lib_parts += ([", "] if lib_parts else []) + [f"{name} ", Span(version, code=True) if version else "not installed"]
    return [
        ("Device", text(env.get("device"))),
        ("GPU", gpu_cell),
        ("Device map", dm),
        ("CUDA", text(env.get("cuda")) if env.get("cuda") else "none (no CUDA build of torch)"),
        ("Python", text(env.get("python"))),
        ("Platform", text(env.get("platform"))),
        ("Libraries", lib_parts or MISSING),
        *([("Lock", _lock_cell(env))] if "lock_sha256" in env else []),
    ]


def _lock_cell(env: Mapping[str, Any]) -> Any:
    """The requirements.lock hash of the run's environment, and the libraries that were not at their pins."""
    sha = env.get("lock_sha256")
    if not sha:
        return "none shipped (installed without the repository's requirements.lock)"
    differs = env.get("lock_differs")
    cell: list[Any] = [Span(f"sha256 {sha}", code=True)]
    if isinstance(differs, Mapping) and differs:
        parts = [f"{name} {(v or {}).get('installed')} (locked {(v or {}).get('locked')})" for name, v in differs.items()]
        return cell + [Span("; not at the lock: " + ", ".join(parts), sig=True)]
    return cell + ["; every library at its locked version"]


# --------------------------------------------------------------------------- the page


def render_report(results: Mapping[str, Any], explain: Mapping[str, Any] | None = None, *, explain_problem: str | None = None) -> str:
    """The report as one HTML string (pure: no I/O)."""
    if not isinstance(results, Mapping):
        raise InputError("results: expected a JSON object")
    from .masked import masked_view

    ids = _Page(_canonical_groups(results, explain))
    tiers = _tiers(results)
    masked = masked_view(results.get("masked"), Table, Span, svg_figure, ids)
    sections = dict(SECTIONS)
    if masked is not None:  # after the summary, as in the page
        sections = {"summary": SECTIONS["summary"], "masked": MASKED_SECTION, **SECTIONS}
    # sections in page order, so figure ids count down the page
    context = {
        "sections": sections,
        "masked": masked,
        "title": f"Latent-bias report: {get(results, 'model', 'name', default=MISSING)}",
        "bench": (f"masked-LM templates {get(results, 'masked', 'templates', 'name', default=MISSING)}" if masked is not None
                  else get(results, "benchmark", "source", default=get(results, "config", "benchmark", "source", default=MISSING))),
        "tier_names": ", ".join(n for n, _ in tiers) or MISSING,
        "toolkit": get(results, "toolkit_version", default=MISSING),
        "sources": "results.json" + (" and explain.json" if explain is not None else ""),
        "summary": _summary(results, explain, ids),
        "scores": _scores(results, ids),
        "shifts": _shifts(results, ids),
        "latent": [_latent_tier(i, name, t, ids) for i, (name, t) in enumerate(tiers, 1)],
        "explain": _explain(results, explain, explain_problem, ids),
        "provenance": _provenance(results, explain),
    }
    return render_page("report.html", **context)
