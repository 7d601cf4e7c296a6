"""The report's masked-LM section: view data from ``results.json``'s ``masked`` mapping (pure).

:func:`masked_view` returns what ``templates/section_masked.html`` shows: the template
set, one interval chart per analysis (the association of Kurita et al. with its prior
correction, the raw log p_tgt without it, the pseudo-log-likelihood), a table of the
significant findings, and the corpus comparison with its shares.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from . import figures
from .fmt import MISSING, num, p_value, pct, signed

#: analysis key -> (heading, what the difference measures)
ANALYSES = {
    "association": ("Log-probability bias (prior-corrected)",
                    "log(p_tgt/p_prior) of the group's target words, minus the template's mean over groups"),
    "log_p_target": ("Raw log P(target) without the prior correction",
                     "log p_tgt alone: includes how frequent the target words are anywhere"),
    "pll": ("Pseudo-log-likelihood of the whole sentence",
            "sum of log P of every shared token, each masked in turn, minus the template's mean over groups"),
}


def _ci_text(ci: Any) -> str:
    return f"[{signed(ci[0])}, {signed(ci[1])}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else MISSING


def masked_view(masked: Any, make_table: Callable, make_span: Callable, make_fig: Callable, uid: Callable[[str], str]) -> dict[str, Any] | None:
    """The section's context, or None when results.json has no ``masked`` mapping.

    ``make_table(head, rows, numeric_from=1)``, ``make_span(text, sig=...)``, ``make_fig(svg, title, caption, wide)``
    and ``uid(prefix)`` come from :mod:`report.html` (its Table, Span, svg_figure and figure ids).
    """
    if not isinstance(masked, Mapping):
        return None
    tpl = masked.get("templates") or {}
    counts = tpl.get("counts") or {}
    desc = tpl.get("descriptions") or {}
    templates = make_table(["Category", "Attribute words describe", "Templates"],
                           [[c, desc.get(c, ""), str(n)] for c, n in counts.items()], numeric_from=2)
    blocks, findings = [], []
    for key, (heading, what) in ANALYSES.items():
        a = (masked.get("analyses") or {}).get(key)
        if not isinstance(a, Mapping):
            continue
        labels, vals, lo, hi, flag, rows = [], [], [], [], [], []
        for cat, entry in (a.get("categories") or {}).items():
            for g, cell in (entry.get("groups") or {}).items():
                ci = cell.get("ci") or [None, None]
                labels.append(f"{cat} · {g}")
                vals.append(cell.get("difference"))
                lo.append(ci[0])
                hi.append(ci[1])
                flag.append(bool(cell.get("significant")))
                sig = bool(cell.get("significant"))
                rows.append([f"{cat} · {g}", num(cell.get("mean_score")),
                             make_span(signed(cell.get("difference")), sig=sig), _ci_text(cell.get("ci")),
                             num(cell.get("effect_size"), 2), p_value(cell.get("p_value")), p_value(cell.get("p_adjusted"))])
                if sig and key == "association":
                    findings.append([cat, g, signed(cell.get("difference")), _ci_text(cell.get("ci")), num(cell.get("effect_size"), 2),
                                     p_value(cell.get("p_adjusted"))])
        svg = figures.interval_chart(
            labels, [figures.IntervalSeries("difference", vals, lo, hi, flag)], uid=uid("masked"), title=heading,
            desc=f"{what}; filled dots: significant after {a.get('correction')} correction beyond the margin",
            x_label="difference from the template's group mean (nats)", flag_legend="significant (corrected)",
        )
        omnibus = make_table(["Category", "Templates", "Friedman χ²", "Friedman p"], [
            [c, str(e.get("n_templates")), num((e.get("friedman") or {}).get("statistic"), 2), p_value((e.get("friedman") or {}).get("p_value"))]
            for c, e in (a.get("categories") or {}).items()
        ])
        blocks.append({
            "key": key, "heading": heading,
            "fig": make_fig(svg, heading, f"{what}. Whiskers: percentile bootstrap interval over templates (scoring.ci_level).", True),
            "summary": f"{a.get('n_significant', 0)} of {len(labels)} category × group differences significant "
                       f"({a.get('correction')} correction, α = {a.get('alpha')}, margin {a.get('margin')} nats)",
            "table": make_table(["Category · group", "Mean score", "Difference", "CI", "d_z", "p", "p (corrected)"], rows),
            "omnibus": omnibus,
        })
    corpus = masked.get("corpus")
    corpus_view = None
    if isinstance(corpus, Mapping):
        corpus_view = {
            "source": corpus.get("source"),
            "line": (f"{corpus.get('n_documents')} documents, {corpus.get('n_sentences')} sentences; "
                     f"{corpus.get('n_findings')} significant findings: {corpus.get('n_consistent')} consistent with the corpus "
                     f"({pct(corpus.get('share_consistent'))}), {corpus.get('n_contradicts')} contradict it "
                     f"({pct(corpus.get('share_contradicts'))})"),
            "table": make_table(["Category", "Group", "Verdict", "Model difference", "Corpus log-odds (centred)", "Size ratio"], [
                [f.get("category"), f.get("group"), make_span(f.get("label") or MISSING, sig=f.get("label") == "contradicts the corpus"),
                 signed(f.get("difference")), signed(f.get("corpus")), num(f.get("size_ratio"), 2)]
                for f in corpus.get("findings") or []
            ], numeric_from=3),
        }
    return {
        "n_templates": masked.get("n_templates"),
        "groups": ", ".join(masked.get("groups") or []),
        "target_format": masked.get("target_format"),
        "example": masked.get("example") or MISSING,
        "templates": templates,
        "template_name": tpl.get("name") or MISSING,
        "blocks": blocks,
        "findings": make_table(["Category", "Group", "Difference", "CI", "d_z", "p (corrected)"], findings, numeric_from=2)
        if findings else None,
        "corpus": corpus_view,
    }
