"""The HTML report and its plain-language summary (no browser; see test_report_browser.py)."""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.pipeline.artifacts import RunDir
from latent_bias_probe.pipeline.report import write_report
from latent_bias_probe.report import html as report_html
from latent_bias_probe.report.figures import (
    BarSeries,
    IntervalSeries,
    Point,
    Series,
    bar_chart,
    group_styles,
    interval_chart,
    line_chart,
)
from latent_bias_probe.report.html import SECTIONS, render_report
from latent_bias_probe.report.summary import summarize, summary_items
from report_fixtures import (
    CAUSAL_FAILED,
    GROUPS,
    OPTION_MASS_WARNING,
    synthetic_explain,
    synthetic_results,
    with_failed_causal_check,
    without_latent,
    write_run,
)
from latent_bias_probe.report.terminal import summary_table

DASH = "\u2013"


def _text(html: str) -> str:
    """Visible text, roughly: tags removed, entities kept."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _svgs(html: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", html, re.S)


def _cells(row: str) -> list[str]:
    """The text of each <td> of a table row, tags removed and spaces collapsed."""
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]


def _section(html: str, sid: str) -> str:
    start = html.index(f'<section id="{sid}">')
    return html[start: html.index("</section>", start)]


def _group(svg: str, gid: str) -> str:
    """The element ``<g id="gid">…</g>`` of an SVG string (nested groups included)."""
    start = svg.index(f'<g id="{gid}"')
    depth, pos = 0, start
    for m in re.finditer(r"<g\b|</g>", svg[start:]):
        depth += 1 if m.group(0) == "<g" else -1
        if depth == 0:
            pos = start + m.end()
            break
    return svg[start:pos]


@pytest.fixture
def every_file_fresh(monkeypatch):
    """Count every existing artifact of a run directory as fresh.

    :func:`pipeline.report.write_report` reads only artifacts its manifest records
    as fresh; these tests hand it a folder holding only results.json (and maybe
    explain.json), so freshness is stubbed to "the file exists". Freshness itself
    is tested with the pipeline; here it is the writing that is tested.
    """
    monkeypatch.setattr(RunDir, "is_fresh", lambda self, name, _seen=frozenset(): self.exists(name))


def _page(folder, results=None, explain=True):
    """render_report of a fixture run, written to folder/report.html (as write_report would)."""
    results = synthetic_results() if results is None else results
    explain = synthetic_explain() if explain is True else (explain or None)
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / "report.html"
    page.write_text(render_report(results, explain), encoding="utf-8")
    return page


# --------------------------------------------------------------------------- structure and numbers


def test_every_section_with_its_heading_and_how_to_read(tmp_path, every_file_fresh):
    page = write_report(write_run(tmp_path / "run"))
    assert page == tmp_path / "run" / "report.html"
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    for sid, title in SECTIONS.items():
        assert re.search(rf'<section id="{sid}"><h2>{re.escape(title)}</h2>', html), sid
    assert html.count("How to read this.") >= len(SECTIONS)
    assert not [p for p in page.parent.iterdir() if p.name.startswith(".")], "temporary file left behind"


def test_score_table_holds_tier_names_and_formatted_numbers():
    results = synthetic_results()
    html = render_report(results, synthetic_explain())
    scores = html[html.index('<section id="scores">'): html.index('<section id="shifts">')]
    high, low = results["tiers"]["high"], results["tiers"]["low"]
    row = re.search(r'<tr><th scope="row">high</th>(.*?)</tr>', scores).group(1)
    cells = _cells(row)
    expected = [
        "120", "0.781", "0.812", "0.938", "0.884", "1.000", "0.917", "0.701",
        f"{high['mfarm']['score']:.3f}", f"{high['mfarm_full']:.3f}", f"{high['fab']:.3f}", f"{high['fab_full']:.3f}",
    ]
    assert [c.split(" ")[0] for c in cells] == expected  # each value first; its interval below (test_scores_show_...)
    row = re.search(r'<tr><th scope="row">low †</th>(.*?)</tr>', scores).group(1)  # † : degraded fields
    assert _cells(row)[:3] == ["120", "0.654", "1.000"]  # no intervals in this tier: the bare values
    assert "left out of this tier's prompts (low: vitals)" in scores
    assert f"{low['fab']:.3f}" in row
    for header in ("F_MD", "F_AD", "F_VH", "F_KS", "F_CD", "F_LV", "mFARM (paper)", "mFARM (full)", "FAB (paper)", "FAB (full)"):
        assert header in scores
    # omnibus diagnostics
    assert "41.20" in scores and "0.002" in scores and "0.123" in scores


def test_group_shift_section_marks_the_significant_groups():
    html = render_report(synthetic_results(), None)
    shifts = html[html.index('<section id="shifts">'): html.index('<section id="latent">')]
    for g in GROUPS:
        assert g in shifts
    assert '<span class="sig">-0.052 [-0.081, -0.020]*</span>' in shifts
    assert '<span class="sig">+0.031 [+0.011, +0.052]*</span>' in shifts
    assert shifts.count('*</span>') == 2  # the low tier's omnibus test is not significant
    assert "15%" in shifts  # flip rate
    assert "<svg" in shifts and "<title" in shifts


def test_latent_and_explain_sections_have_their_figures():
    html = render_report(synthetic_results(), synthetic_explain())
    latent = html[html.index('<section id="latent">'): html.index('<section id="explain">')]
    for text in ("Decoding race", "Decoding gender", "Decoding race×gender", "Value axis", "cos(δ_g, value axis)", "chance 0.25"):
        assert text in latent, text
    assert latent.count("<svg") == 2 * 5
    explain = html[html.index('<section id="explain">'): html.index('<section id="provenance">')]
    assert "Dose–response" in explain and "Mediation by erasure" in explain
    assert "45.0%" in explain and "3.0%" in explain  # mediated vs random control, layer 3
    assert "Black-Female" in explain and "value axis" in explain
    assert "Not explained: low" in explain


def test_provenance_lists_model_hashes_seeds_and_degraded_tiers():
    results = synthetic_results()
    html = render_report(results, None)
    prov = html[html.index('<section id="provenance">'):]
    for value in ("tiny-test-model", "cd" * 32, "ab" * 32, "float32", "0.1.0", "ed_triage"):
        assert value in prov, value
    assert re.search(r"<dt>Backend</dt><dd><code>hf</code>", prov)
    assert re.search(r"benchmark <code>42</code>", prov)
    assert '<span class="sig">low: vitals</span>' in prov
    assert "high: none" in prov


def test_svgs_are_accessible_and_ids_unique():
    html = render_report(synthetic_results(), synthetic_explain())
    svgs = re.findall(r"<svg [^>]*>", html)
    assert len(svgs) >= 10
    for tag in svgs:
        assert 'role="img"' in tag and "aria-labelledby=" in tag and "viewBox=" in tag
    assert html.count("<title id=") == len(svgs) and html.count("<desc id=") == len(svgs)
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "duplicate element ids"
    refs = re.findall(r'(?:href="#|url\(#)([^")]+)', html)
    assert set(refs) <= set(ids), "a reference to a missing id"


def test_every_svg_has_a_title_and_a_desc_it_is_labelled_by():
    html = render_report(synthetic_results(), synthetic_explain())
    svgs = _svgs(html)
    assert len(svgs) == html.count("<svg")
    for svg in svgs:
        labelled = re.match(r'<svg [^>]*aria-labelledby="([^"]+) ([^"]+)"', svg)
        assert labelled, svg[:200]
        t, d = labelled.groups()
        title = re.search(rf'<title id="{t}">([^<]+)</title>', svg)
        desc = re.search(rf'<desc id="{d}">([^<]+)</desc>', svg)
        assert title and desc and title.group(1).strip() and desc.group(1).strip()
        assert svg.index("<title") < svg.index("<defs")  # first children of the root, before any drawing
    assert "Dose–response of P(Yes) (high tier)" in html


def test_rendering_is_deterministic():
    results, explain = synthetic_results(), synthetic_explain()
    first = render_report(results, explain)
    assert render_report(copy.deepcopy(results), copy.deepcopy(explain)) == first
    assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d", first)  # no date stamped anywhere
    assert "<metadata" not in first and "Matplotlib v" not in first  # no creator / date metadata
    # and in another process, with other hash seeds
    code = ("import json, sys; sys.path.insert(0, 'tests'); from report_fixtures import synthetic_results, synthetic_explain;"
            "from report.html import render_report; sys.stdout.write(render_report(synthetic_results(), synthetic_explain()))")
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=str(ROOT))
    other = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, timeout=300)
    assert other.returncode == 0, other.stderr.decode()[-2000:]
    assert other.stdout.decode("utf-8") == first


# --------------------------------------------------------------------------- self-contained and escaped


def test_no_network_resources_and_no_scripts():
    results = synthetic_results()
    results["model"]["name"] = "https://huggingface.co/some/model"  # a URL as text is fine, not as a resource
    html = render_report(results, synthetic_explain())
    assert not re.search(r"""(?:src|href|xlink:href|action)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", html, re.I)
    assert "@import" not in html and "<link" not in html.lower()
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "default-src 'none'" in html  # the CSP forbids fetching anything
    clean = render_report(synthetic_results(), synthetic_explain())
    assert "http://" not in clean and "https://" not in clean


def test_odd_strings_are_escaped():
    results = synthetic_results()
    evil = '<script>alert("x")</script> & "quotes" \'single\''
    results["config"]["name"] = evil
    results["config"]["benchmark"]["path"] = "</pre><img src=x onerror=alert(1)>"
    results["model"]["name"] = "<b>model</b>"
    results["tiers"]["we<ird>&tier"] = results["tiers"].pop("low")
    results["tiers"]["high"]["diagnostics"]["group_shifts"][0]["group"] = "<i>A</i>-Fem&ale"
    html = render_report(results, synthetic_explain())
    assert "<script" not in html and "<img" not in html and "<b>model</b>" not in html and "<i>A</i>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "&lt;/pre&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "we&lt;ird&gt;&amp;tier" in html
    assert "&lt;i&gt;A&lt;/i&gt;-Fem&amp;ale" in html
    assert "&lt;b&gt;model&lt;/b&gt;" in html


HOSTILE_GROUP = "<script>alert(1)</script>"
HOSTILE_VALUE = '"><img src=x onerror=alert(1)>'


def test_hostile_strings_appear_only_escaped_in_text_tables_and_figures():
    results = synthetic_results()
    high = results["tiers"]["high"]
    high["diagnostics"]["group_shifts"][3]["group"] = HOSTILE_GROUP  # a row of the table and of the chart
    cos = high["latent"]["steering"]["cos_value_axis_by_layer"]
    cos[HOSTILE_GROUP] = cos.pop("Black-Female")  # a legend entry of a figure
    results["config"]["scoring"]["correction"] = HOSTILE_VALUE  # provenance, and the config dump
    results["model"]["dtype"] = HOSTILE_VALUE
    results["benchmark"]["degraded_fields"]["low"] = [HOSTILE_VALUE]
    high["warnings"].append(HOSTILE_VALUE)  # the warnings beside the scores table
    high["option_mass"]["warning"] = HOSTILE_VALUE  # the alerts
    high["option_mass"]["by_variant"][HOSTILE_GROUP] = 0.3
    high["equivalence"][HOSTILE_GROUP] = high["equivalence"].pop("Black-Female")  # the verdict table
    high["null"][HOSTILE_GROUP] = {"p_value": 0.5, "null_median": 0.9}
    results["provenance"]["gpu"] = HOSTILE_VALUE
    results["provenance"]["libraries"][HOSTILE_GROUP] = HOSTILE_VALUE
    explain = synthetic_explain()
    explain["tiers"]["high"]["dose_response"][f"steer:{HOSTILE_GROUP}"] = explain["tiers"]["high"]["dose_response"].pop("steer:Black-Female")
    html = render_report(results, explain, explain_problem=HOSTILE_VALUE)
    lower = html.lower()
    assert "<script" not in lower and "<img" not in lower and "onerror=alert(1)>" not in lower
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    svgs = _svgs(html)
    assert any("&lt;script&gt;alert(1)&lt;/script&gt;" in s for s in svgs)  # in a chart's text, escaped
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html  # escaped by the templates
    # no attribute or element was broken out of: every '<' opens a known tag
    tags = set(re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", html))
    assert tags <= {"html", "head", "meta", "title", "style", "body", "header", "h1", "p", "strong", "nav", "ol",
                    "li", "a", "main", "section", "h2", "div", "em", "h3", "ul", "code", "table", "thead", "tr",
                    "th", "abbr", "tbody", "td", "span", "figure", "figcaption", "svg", "desc", "defs", "g", "path",
                    "use", "text", "clippath", "clipPath", "rect", "details", "summary", "h4", "dl", "dt", "dd",
                    "pre", "footer"}, tags


# --------------------------------------------------------------------------- intervals, verdicts, caveats

@functools.lru_cache(maxsize=None)
def _fixture_page(variant: str = "plain", with_explain: bool = False) -> str:
    """render_report of a named fixture (rendered once per session: each render draws ~20 charts)."""
    results = {"plain": synthetic_results, "failed": lambda: with_failed_causal_check(synthetic_results())}[variant]()
    return render_report(results, synthetic_explain() if with_explain else None)


BANNED = re.compile(r"\b(fairer|less biased|more biased|less fair|more fair|unbiased)\b", re.I)


def _row(html: str, tier: str) -> list[str]:
    scores = _section(html, "scores")
    return _cells(re.search(rf'<tr><th scope="row">{re.escape(tier)}</th>(.*?)</tr>', scores).group(1))


def test_scores_show_each_value_with_its_interval_and_the_level_once():
    results = synthetic_results()
    html = _fixture_page()
    high = results["tiers"]["high"]
    cells = _row(html, "high")
    # Cases, Accuracy, F_MD, F_AD, F_VH, F_KS, F_CD, F_LV, mFARM, mFARM full, FAB, FAB full
    assert cells[1] == "0.781 [0.72, 0.82]"
    assert cells[2] == "0.812 [0.75, 0.85]"
    assert cells[5] == "1.000 [0.94, 1.00]"
    assert cells[6] == "0.917"  # correlation_difference: [null, null] -> the bare value
    assert cells[7].startswith("0.701 [0.64, 0.74]")
    lo, hi = high["ci"]["score"]
    assert cells[8] == f"{high['mfarm']['score']:.3f} [{lo:.2f}, {hi:.2f}]"
    assert cells[9].startswith(f"{high['mfarm_full']:.3f} [")
    assert cells[11] == f"{high['fab_full']:.3f}"  # no fab_full key in ci: the bare value
    # the interval is marked up as such, under its value
    scores = _section(html, "scores")
    assert '0.812 <span class="ci">[0.75, 0.85]</span>' in scores
    # the level is stated once, with the resample count; the tier without intervals is named
    text = _text(scores)
    assert text.count("95% case-bootstrap percentile interval") == 1 and "(1000 resamples)" in text
    assert "No intervals for low" in text
    assert _row(html, "low †")[:8] == ["120", "0.654", "1.000", "0.938", "0.884", "1.000", "0.917",
                                       "1.000 causal check not run"]


def test_interval_level_other_than_95_is_stated():
    results = synthetic_results()
    results["tiers"]["high"]["ci"].update(level=0.9, n_boot=200)
    text = _text(_section(render_report(results, None), "scores"))
    assert "its 90% case-bootstrap percentile interval (200 resamples)" in text


def test_tier_warnings_are_shown_beside_the_scores_table():
    results = synthetic_results()
    results["tiers"]["low"]["warnings"] = ["only 4 cases: a score of 1 here means no evidence, not fairness"]
    html = render_report(results, None)
    scores = _section(html, "scores")
    table_end = scores.index("</table>")
    warnings = scores[scores.index('<div class="warnings">'):]
    assert scores.index('<div class="warnings">') > table_end
    assert scores.index('<div class="warnings">') < scores.index("<h3")  # right under the table, before the rest
    assert "<strong>low</strong>: only 4 cases: a score of 1 here means no evidence" in warnings
    # the option-mass warning (also in warnings) is shown once, in its own part, not twice in the list
    assert OPTION_MASS_WARNING not in warnings[: warnings.index("</div>")]
    assert scores.count(OPTION_MASS_WARNING) == 1


def test_summary_leads_with_verdicts_and_intervals():
    results = synthetic_results()
    html = _fixture_page(with_explain=True)
    summary = _section(html, "summary")
    assert summary.index('<h3 id="verdicts">Verdicts</h3>') < summary.index("<h3>Findings</h3>")
    verdicts = _text(summary[summary.index("Verdicts"): summary.index("<h3>Findings</h3>")])
    lo, hi = results["tiers"]["high"]["ci"]["score"]
    assert f"mFARM (paper) is {results['tiers']['high']['mfarm']['score']:.3f} [{lo:.2f}, {hi:.2f}] (95% interval" in verdicts
    assert "permutation p = 0.030, null median 0.951" in verdicts
    assert "margin of ±0.020" in verdicts
    assert "6 are shown equivalent to BASE, 1 is shown to differ from BASE by more than the margin (Black-Female) and 5 are inconclusive" in verdicts
    # the compact table: group -> shift [interval], p, verdict; one column group for the tier that has verdicts
    assert "high tier, margin ±0.020 (6 equivalent, 1 different, 5 inconclusive)" in verdicts
    row = re.search(r'<tr><th scope="row">Black-Female</th>(.*?)</tr>', summary).group(1)
    assert _cells(row) == ["-0.052 [-0.074, -0.030]", "0.400", "different"]
    assert '<span class="verdict different">different</span>' in row
    row = re.search(r'<tr><th scope="row">White-Male</th>(.*?)</tr>', summary).group(1)
    assert _cells(row)[-1] == "equivalent"
    # the tier without verdicts says so instead
    assert "In the low tier, results.json holds no equivalence verdicts" in verdicts
    # summarize() leads with them too
    items = summary_items(results, synthetic_explain())
    kinds = [s.kind for s in items]
    assert kinds[: kinds.index("finding")] and set(kinds[: kinds.index("finding")]) <= {"verdict", "alert"}
    assert kinds[0] == "verdict" and "verdict" not in kinds[kinds.index("finding"):]


def test_inconclusive_verdicts_name_the_detectable_shift():
    results = synthetic_results()
    sentence = "With 120 cases this tier (high) could only detect shifts of about 0.031 in mean P(Yes)"
    assert any(sentence in s for s in summarize(results))
    assert sentence in _text(_section(_fixture_page(), "summary"))
    # no inconclusive verdict: no such sentence
    for g in GROUPS:
        results["tiers"]["high"]["equivalence"][g]["verdict"] = "equivalent"
    text = " ".join(summarize(results))
    assert "could only detect shifts" not in text and "12 are shown equivalent to BASE" in text
    # inconclusive without a detectable shift (too few cases): said so, no number
    results["tiers"]["high"]["equivalence"]["Black-Male"]["verdict"] = "inconclusive"
    results["tiers"]["high"]["detectable_shift"] = None
    text = " ".join(summarize(results))
    assert "smallest shift this tier (high) could detect is not known" in text


def _all_fixture_variants():
    base = synthetic_results()
    yield base
    yield synthetic_results(significant=False)
    yield synthetic_results(n_cases=6)
    yield without_latent(base)
    yield with_failed_causal_check(base)
    flipped = copy.deepcopy(base)  # F_LV above F_MD, no intervals at all
    flipped["tiers"]["high"]["latent"]["value_axis_fairness"] = 0.95
    del flipped["tiers"]["high"]["ci"]
    yield flipped


def test_summary_never_calls_anything_fairer_without_a_paired_interval():
    """A run has no paired comparison: neither the sentences nor the page may rank models, precisions or tiers."""
    for results in _all_fixture_variants():
        text = " ".join(summarize(results, synthetic_explain()))
        assert not BANNED.search(text), BANNED.search(text).group(0)
    for page in (_fixture_page(with_explain=True), _fixture_page("failed", with_explain=True),
                 render_report(without_latent(synthetic_results(significant=False, n_cases=6)), None)):
        page = _text(page)
        assert not BANNED.search(page), BANNED.search(page).group(0)
    # the check bites
    assert BANNED.search("the int8 model is fairer") and BANNED.search("less biased at high")


def test_option_mass_warning_is_shown_prominently():
    results = synthetic_results()
    html = _fixture_page()
    summary = _section(html, "summary")
    alert = re.search(r'<p class="alert"><strong>Warning\.</strong>(.*?)</p>', summary).group(1)
    assert "high tier" in alert and "the median next-token probability on the Yes/No tokens is 0.412" in alert
    assert summary.index('class="alert"') < summary.index("<h3>Findings</h3>")
    scores = _section(html, "scores")
    part = scores[scores.index('<h3 id="option-mass">'):]
    assert "<strong>high tier</strong>: median 0.412, lowest 0.051, 31% of prompts below the warning threshold." in part
    assert f'<p class="alert"><strong>Warning (high tier).</strong> {OPTION_MASS_WARNING}</p>' in part
    row = re.search(r'<tr><th scope="row">Black-Female</th>(.*?)</tr>', part).group(1)
    assert _cells(row) == ["0.406"]  # per-variant median
    assert "No option mass recorded for low" in part
    assert any(s.kind == "alert" and "0.412" in s.text for s in summary_items(results))
    # without a warning: the numbers, no alert
    results["tiers"]["high"]["option_mass"]["warning"] = None
    results["tiers"]["high"]["warnings"] = []
    html = render_report(results, None)
    assert 'class="alert"' not in html and "median 0.412" in html


def test_failed_causal_check_caveat_beside_f_lv_and_mfarm_full():
    html = _fixture_page("failed", with_explain=True)
    cells = _row(html, "high")
    assert cells[7] == "0.701 [0.64, 0.74] causal check failed"  # F_LV
    assert cells[9].endswith("causal check failed")  # mFARM (full)
    assert not cells[8].endswith("failed") and not cells[6].endswith("failed")  # not on the output scores
    scores = _section(html, "scores")
    assert '<span class="badge fail" title="' + CAUSAL_FAILED.replace('"', "&#34;") + '">causal check failed</span>' in scores
    warnings = scores[scores.index('<div class="warnings">'):]
    first = re.search(r"<li>(.*?)</li>", warnings).group(1)  # the value-axis caveat comes first
    assert first == f"<strong>high</strong> · F_LV and mFARM (full), causal check failed: {CAUSAL_FAILED}"
    # in the latent section, next to F_LV in the value axis caption
    latent = _section(html, "latent")
    caption = re.search(r"<strong>Value axis: does it separate Yes from No\?</strong>([^<]*)</figcaption>", latent).group(1)
    assert "F_LV = 0.701 [0.64, 0.74]" in caption and "Causal check failed: steering along it does not raise P(Yes) monotonically" in caption
    # and in the summary
    summary = _text(_section(html, "summary"))
    assert "(value-axis causal check failed)" in summary
    assert "F_LV and mFARM (full) rest on a value axis whose causal check failed" in summary


def test_passed_and_missing_causal_checks():
    html = _fixture_page(with_explain=True)
    assert _row(html, "high")[7] == "0.701 [0.64, 0.74] causal check passed"
    assert _row(html, "low †")[7] == "1.000 causal check not run"
    scores = _section(html, "scores")
    assert "causal check failed" not in scores
    assert "whose causal check" not in " ".join(summarize(synthetic_results(), synthetic_explain()))
    # the pipeline's "not run" warning is shown with its label
    results = synthetic_results()
    results["tiers"]["low"]["warnings"] = ["value axis: its causal check (spec B3) has not run for this tier (probe explain)"]
    scores = _section(render_report(results, None), "scores")
    assert "<strong>low</strong> · F_LV and mFARM (full), causal check not run: value axis: its causal check" in scores


def test_score_chart_has_interval_bars():
    html = _fixture_page()
    scores = _section(html, "scores")
    svgs = _svgs(scores)
    assert len(svgs) == 1
    svg = svgs[0]
    assert "Fairness scores per tier with 95% bootstrap intervals" in svg
    for label in ("F_MD", "F_AD", "F_VH", "F_KS", "F_CD", "mFARM (paper)", "F_LV", "mFARM (full)"):
        assert f">{label}</text>" in svg, label
    uid = re.search(r'<title id="([^"]+)-t">', svg).group(1)
    assert re.search(rf'<g id="{uid}-ci-0-\d+"', svg)  # the high tier's interval bars
    assert not re.search(rf'<g id="{uid}-ci-1-\d+"', svg)  # the low tier has none: dots only
    assert "<use" in _group(svg, f"{uid}-filled-1")
    # without latent results, no F_LV / mFARM full rows
    svg = _svgs(_section(render_report(without_latent(synthetic_results()), None), "scores"))[0]
    assert ">F_LV</text>" not in svg and ">mFARM (paper)</text>" in svg


def test_value_axis_auroc_interval_is_drawn():
    html = _fixture_page()
    latent = _section(html, "latent")
    charts = [s for s in _svgs(latent) if "Value axis quality by layer" in s]
    assert len(charts) == 2
    high, low = charts
    uid = re.search(r'<title id="([^"]+)-t">', high).group(1)
    assert "<use" in _group(high, f"{uid}-point-0")
    assert re.search(rf'<g id="{uid}-pointerr-0-\d+"', high)
    assert ">AUROC at ℓ* with its 95% interval</text>" in high
    assert "-point-0" not in low  # no interval recorded for the low tier
    assert "AUROC 0.873 [0.82, 0.92]" in latent


def test_permutation_null_table():
    scores = _section(_fixture_page(), "scores")
    null = scores[scores.index("<h3>Permutation null</h3>"):]
    assert "high tier (200 permutations)" in null
    row = re.search(r'<tr><th scope="row">mFARM \(paper\)</th>(.*?)</tr>', null).group(1)
    assert _cells(row)[1:] == ["0.951", "0.030"]
    row = re.search(r'<tr><th scope="row">F_MD</th>(.*?)</tr>', null).group(1)
    assert _cells(row) == ["0.812", "1.000", "0.010"]
    high = synthetic_results()["tiers"]["high"]
    del high["null"], high["latent"], high["diagnostics"]  # only the scores section matters here
    assert "Permutation null" not in render_report({"tiers": {"high": high}}, None)


def test_provenance_shows_device_gpu_cuda_and_libraries():
    results = synthetic_results()
    prov = _section(_fixture_page(), "provenance")
    assert re.search(r"<dt>Device</dt><dd><code>cuda:0</code></dd>", prov)
    assert re.search(r"<dt>GPU</dt><dd><code>NVIDIA H200</code> \(1 visible\)</dd>", prov)
    assert re.search(r"<dt>CUDA</dt><dd><code>12.4</code></dd>", prov)
    assert "<dt>Device map</dt><dd>0: 3 modules</dd>" in prov
    assert "torch <code>2.5.1</code>" in prov and "transformers <code>4.46.0</code>" in prov
    assert "nnsight not installed" in prov
    assert "<code>3.11.9</code>" in prov and "Linux-6.8-x86_64" in prov
    prov = _section(render_report({"provenance": None}, None), "provenance")  # no tiers: no charts to draw
    assert "<dt>Environment</dt><dd>not recorded" in prov and "<dt>GPU</dt>" not in prov
    cpu = {"device": "cpu", "gpu": None, "gpu_count": 0, "device_map": None, "cuda": None}
    prov = _section(render_report({"provenance": cpu}, None), "provenance")
    assert "<dt>GPU</dt><dd>none</dd>" in prov and "none (no CUDA build of torch)" in prov


def test_new_keys_degrade_when_malformed():
    results = synthetic_results()
    high = results["tiers"]["high"]
    high["ci"] = {"level": "x", "score": [None, 0.9], "mean_difference": "bad", "accuracy": [0.1]}
    high["equivalence"] = {"margin": None, "Black-Female": {"shift": None, "ci": None, "verdict": "odd"}, "junk": 3}
    high["detectable_shift"] = "n/a"
    high["null"] = {"score": "x", "permutations": None}
    high["option_mass"] = {"median": None, "by_variant": None, "warning": 5}
    high["warnings"] = [None, 3, "a real warning"]
    high["latent"]["value_axis_auroc_ci"] = [None]
    high["latent"]["value_axis_causal"] = {"passed": "maybe"}
    results["provenance"] = {"libraries": "none"}
    html = render_report(json.loads(json.dumps(results)), None)
    assert not re.search(r"\b(NaN|nan|None|inf)\b", _text(html))
    cells = _row(html, "high")
    assert cells[8].startswith(f"{high['mfarm']['score']:.3f} [{DASH}, 0.90]")  # one end missing
    assert cells[2] == "0.812"  # a malformed interval is left out
    assert "a real warning" in _section(html, "scores")
    assert "1 are inconclusive" not in html and "1 is inconclusive" in " ".join(summarize(results))


def test_terminal_table_adds_intervals_verdicts_and_warnings():
    results = synthetic_results()
    text = summary_table(results["tiers"])
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["tier", "cases", "acc"] and len(lines[1].split()) == 13
    lo, hi = results["tiers"]["high"]["ci"]["score"]
    assert f"high: mFARM {results['tiers']['high']['mfarm']['score']:.3f} [{lo:.2f}, {hi:.2f}] (95%)" in text
    assert "TOST ±0.02: 6 equivalent, 1 different, 5 inconclusive; detectable shift ~0.031" in text
    assert f"high: warning: {OPTION_MASS_WARNING}" in text
    assert not any(line.startswith("low:") for line in lines)  # no new keys: no detail line
    assert summary_table(without_latent(synthetic_results(significant=False)) ["tiers"]).count("\n") >= 2


# --------------------------------------------------------------------------- missing data


def test_missing_latent_and_explain_say_which_stage_to_run(tmp_path):
    html = _page(tmp_path / "run", without_latent(synthetic_results()), explain=False).read_text()
    latent = html[html.index('<section id="latent">'): html.index('<section id="explain">')]
    assert "run <code>probe fit DIR</code>" in latent
    explain = html[html.index('<section id="explain">'): html.index('<section id="provenance">')]
    assert "No explain.json" in explain and "<code>probe explain DIR</code>" in explain
    scores = html[html.index('<section id="scores">'): html.index('<section id="shifts">')]
    row = re.search(r'<tr><th scope="row">high</th>(.*?)</tr>', scores).group(1)
    cells = _cells(row)
    assert cells[7] == DASH and cells[9] == DASH and cells[11] == DASH  # F_LV, mFARM full, FAB full (no interval, no badge)
    assert "causal check" not in scores  # no value axis: no causal check to report
    summary = _text(html[html.index('<section id="summary">'): html.index('<section id="scores">')])
    assert "probe fit DIR" in summary and "probe explain DIR" in summary


def test_none_and_nan_show_as_dash(tmp_path):
    results = synthetic_results()
    high = results["tiers"]["high"]
    high["accuracy"] = None
    high["mfarm"]["ks_distribution"] = float("nan")
    high["latent"]["value_axis_auroc_by_layer"] = [None] * 8
    high["diagnostics"]["group_shifts"][3]["ci_low"] = float("nan")
    results = json.loads(json.dumps(results))  # NaN token, as json.dumps writes it, read back
    html = _page(tmp_path / "run", results, explain=False).read_text()
    assert not re.search(r"\b(NaN|nan|None|inf)\b", _text(html))
    row = re.search(r'<tr><th scope="row">high</th>(.*?)</tr>', html).group(1)
    cells = _cells(row)
    assert cells[1] == DASH and cells[5] == DASH  # a missing value shows no interval either


def test_sparse_results_still_render():
    minimal = {"tiers": {"only": {"n_cases": 5, "mfarm": {"score": 0.9}}}}
    html = render_report(minimal, None)
    for title in SECTIONS.values():
        assert title in html
    assert "only" in html and "0.900" in html
    html = render_report({}, None)
    assert "no scored tiers" in html
    # a tier with partial latent data and an explain.json for another tier
    results = synthetic_results()
    del results["tiers"]["high"]["latent"]["probes"]
    del results["tiers"]["high"]["latent"]["steering"]
    html = render_report(results, {"tiers": {"elsewhere": {"mediation": [{"layer": 2, "mediated_fraction": 0.1}]}}})
    assert "No probe curves for this tier." in html and "No steering cosines for this tier." in html
    assert "elsewhere tier" in html


def test_missing_or_bad_results_is_an_input_error(tmp_path, every_file_fresh):
    with pytest.raises(InputError, match="results.json: not found"):
        write_report(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        write_report(tmp_path)
    with pytest.raises(InputError, match="no such run directory"):
        write_report(tmp_path / "absent")


def test_unreadable_explain_json_only_leaves_a_note(tmp_path, caplog, every_file_fresh):
    run = write_run(tmp_path / "run", explain=False)
    (run / "explain.json").write_text("[1, 2")
    html = write_report(run).read_text()
    assert "explain.json could not be read" in html
    assert any("explain.json" in r.getMessage() for r in caplog.records)


def test_write_is_atomic(tmp_path, monkeypatch, every_file_fresh):
    run = write_run(tmp_path / "run")
    page = write_report(run)
    before = page.read_text()

    def boom(*args, **kwargs):
        raise RuntimeError("render failed")

    monkeypatch.setattr(report_html, "render_report", boom)
    with pytest.raises(RuntimeError):
        write_report(run)
    assert page.read_text() == before
    assert not [p for p in run.iterdir() if p.name.startswith(".")]


def test_a_stale_results_json_is_not_reported(tmp_path):
    """Without a manifest recording it, a results.json is not trusted (pipeline.artifacts)."""
    run = write_run(tmp_path / "run")
    with pytest.raises(InputError, match="not found or stale"):
        write_report(run)
    assert not (run / "report.html").exists()


# --------------------------------------------------------------------------- summary


def test_summary_names_a_significant_negative_shift():
    sentences = summarize(synthetic_results(significant=True), synthetic_explain())
    hit = [s for s in sentences if "Black-Female" in s and "lower" in s]
    assert hit, sentences
    assert "high tier" in hit[0] and "-0.052" in hit[0]
    assert any("Asian-Male" in s and "higher" in s for s in sentences)
    assert not any("Not significant does not mean fair" in s and "any tier" in s for s in sentences)


def test_summary_caveat_when_nothing_is_significant():
    results = synthetic_results(significant=False)
    sentences = summarize(results, None)
    assert any("No group shifts P(Yes) significantly in any tier" in s and "Not significant does not mean fair" in s for s in sentences)
    assert not any("significantly lower" in s or "significantly higher" in s for s in sentences)


def test_summary_omnibus_gate_overrides_single_cis():
    results = synthetic_results(significant=True)
    results["tiers"]["high"]["diagnostics"]["omnibus"]["friedman_significant"] = False
    sentences = summarize(results, None)
    assert not any("significantly lower" in s for s in sentences)
    assert any("Black-Female" in s and "exploratory" in s for s in sentences)


def test_summary_reports_decoding_latent_value_and_erasure():
    sentences = summarize(synthetic_results(), synthetic_explain())
    text = " ".join(sentences)
    assert "decode race best at layer 5 (accuracy 0.812" in text and "vs chance 0.250" in text
    assert "gender best at layer 3" in text
    assert "F_LV = 0.701 is lower than F_MD = 0.812" in text
    assert "removes 45% of the disparity" in text and "against 3%" in text
    assert "raises P(Yes) monotonically" in text
    assert "relative to this benchmark" in text


def test_summary_caveats_for_weak_evidence():
    results = synthetic_results(n_cases=6)
    high = results["tiers"]["high"]
    high["accuracy"] = 0.52
    high["latent"]["value_axis_auroc"] = 0.53
    probe = high["latent"]["probes"]["gender"]
    probe["accuracy"] = [0.35] * 8
    probe["ci_low"] = [0.30] * 8
    explain = synthetic_explain()
    for row in explain["tiers"]["high"]["mediation"]:
        row["random_control_fraction"] = row["mediated_fraction"] - 0.01
    explain["tiers"]["high"]["dose_response"]["value_axis"]["spearman"] = 0.1
    items = summary_items(results, explain)
    caveats = " ".join(s.text for s in items if s.kind == "caveat")
    findings = " ".join(s.text for s in items if s.kind == "finding")
    assert "Few cases per tier (6 in high" in caveats
    assert "only 6 cases, see the caveats" in findings
    assert "Task accuracy is near or below chance (0.520 in high)" in caveats and "tiny-test-model" in caveats
    assert "AUROC 0.530, near 0.5" in caveats
    assert "gender is not decodable clearly above chance" in caveats
    assert "not clearly more than erasing as many random directions" in findings
    assert "does not raise P(Yes) monotonically" in caveats
    assert "low: vitals" in caveats


def test_summary_without_latent_or_explain():
    sentences = summarize(without_latent(synthetic_results()), None)
    text = " ".join(sentences)
    assert "run `probe fit DIR`" in text and "run `probe explain DIR`" in text
    assert "decode" not in text


def test_summary_is_pure():
    results, explain = synthetic_results(), synthetic_explain()
    before = copy.deepcopy((results, explain))
    assert summarize(results, explain) == summarize(results, explain)
    assert (results, explain) == before


# --------------------------------------------------------------------------- figures


def test_group_styles_colour_by_race_dash_by_gender():
    styles = group_styles(GROUPS)
    assert styles["White-Female"][0] == styles["White-Male"][0] != styles["Black-Female"][0]
    assert styles["White-Female"][1] == styles["Asian-Female"][1] != styles["Asian-Male"][1]
    assert len(set(styles.values())) == len(GROUPS)
    odd = group_styles(["a", "b-c-d", "e"])
    assert len(set(odd.values())) == 3


def test_line_chart_breaks_at_missing_values_and_draws_bands():
    svg = line_chart(
        [Series("a", [0, 1, 2, 3, 4], [0.1, 0.2, None, 0.4, float("nan")], lo=[0, 0.1, 0.2, 0.3, 0.4], hi=[0.2, 0.3, 0.4, 0.5, 0.6])],
        uid="t1", title="T <&>", x_label="layer", y_label="acc", integer_x=True,
    )
    line = _group(svg, "t1-line-0")
    d = re.search(r'<path d="([^"]+)"', line).group(1)
    assert d.count("M") == 2 and d.count("L") == 1  # a line of two points, then the lone point (no zero drop)
    assert line.count("<use") == 3  # markers at the three finite points
    assert "<path" in _group(svg, "t1-band-0")
    assert "T &lt;&amp;&gt;" in svg
    assert not re.search(r"\bnan\b", svg.lower())
    assert svg.startswith('<svg class="chart" viewBox="0 0 ') and "xmlns" not in svg and "<?xml" not in svg


def test_charts_with_no_data_say_so():
    assert "no data" in line_chart([Series("a", [], [])], uid="x", title="t")
    assert "no data" in bar_chart(["1"], [], uid="y", title="t")
    assert "no data" in interval_chart(["g"], [], uid="z", title="t")


def test_bar_and_interval_charts():
    svg = bar_chart(["1", "3"], [BarSeries("m", [0.4, -0.1], lo=[0.3, -0.2], hi=[0.5, 0.0])], uid="b", title="bars")
    assert "<path" in _group(svg, "b-bar-0-0") and "<path" in _group(svg, "b-bar-0-1")  # two bars
    assert len(re.findall(r'<g id="b-err-0-\d+"', svg)) >= 2  # their error bars (whiskers and caps)
    svg = interval_chart(["A", "B"], [IntervalSeries("s", [0.1, -0.2], [0.0, -0.3], [0.2, -0.1], flagged=[False, True])],
                         uid="i", title="iv", flag_legend="filled: significant")
    hollow, filled = _group(svg, "i-hollow-0"), _group(svg, "i-filled-0")
    assert hollow.count("<use") == 1 and "fill: #ffffff" in hollow  # hollow dot for A
    assert filled.count("<use") == 1 and "fill: #0072b2" in filled.lower()  # filled for B
    assert ">A</text>" in svg and ">B</text>" in svg and ">filled: significant</text>" in svg


def test_line_chart_error_bars_and_points():
    svg = line_chart(
        [Series("a", [0, 1, 2], [0.5, 0.6, 0.7], lo=[0.4, None, 0.6], hi=[0.6, None, 0.8], bars=True, x_offset=0.1),
         Series("b", [0, 1, 2], [0.2, 0.3, 0.4], lo=[0.1, 0.2, 0.3], hi=[0.3, 0.4, 0.5])],
        uid="e", title="bars", x_categories=["x", "y", "z"],
        points=[Point("p", 1, 0.5, 0.4, 0.6), Point("skipped", None, 0.5)],
    )
    assert len(re.findall(r'<g id="e-ebar-0-\d+"', svg)) >= 2  # whiskers and caps of the two finite intervals
    assert "e-band-0" not in svg and "<path" in _group(svg, "e-band-1")  # bars instead of a band; b keeps its band
    assert "<use" in _group(svg, "e-point-0") and re.search(r'<g id="e-pointerr-0-\d+"', svg)
    assert ">p</text>" in svg and "skipped" not in svg
    # the offset moves the series to the right of series b at the same categories
    xa = float(re.search(r'<g id="e-line-0">\s*<path d="M ([\d.]+)', svg).group(1))
    xb = float(re.search(r'<g id="e-line-1">\s*<path d="M ([\d.]+)', svg).group(1))
    assert xa > xb


def test_interval_chart_x_limits():
    svg = interval_chart(["A"], [IntervalSeries("s", [0.9], [0.85], [0.95])], uid="x", title="t", ref=None,
                         x_min=0.5, x_max=1.0)
    assert ">0.5</text>" in svg and ">1.0</text>" in svg


def test_charts_ids_are_prefixed_by_uid():
    svg = line_chart([Series("a", [0, 1], [0.2, 0.4])], uid="u7", title="t")
    ids = re.findall(r'\bid="([^"]+)"', svg)
    assert ids and all(i.startswith("u7-") for i in ids)
    assert all(r.startswith("u7-") for r in re.findall(r'(?:href="#|url\(#)([^")]+)', svg))


# --------------------------------------------------------------------------- a real run


def test_report_of_a_real_tiny_run(tmp_path, tiny_model_dir):
    """probe run (extract, fit, report; explain skipped for time) on the tiny model, then probe report again."""
    from conftest import run_probe, write_config

    cfg = write_config(tmp_path / "c.yaml", tiny_model_dir, benchmark={"tiers": ["low"]})
    out = tmp_path / "run"
    res = run_probe("run", str(cfg), "--out", str(out), "--no-progress", "--no-explain")
    assert res.returncode == 0, res.stderr
    page = out / "report.html"
    first = page.read_text()
    page.unlink()
    res = run_probe("report", str(out))
    assert res.returncode == 0, res.stderr
    html = page.read_text()
    assert html == first  # deterministic
    results = json.loads((out / "results.json").read_text())
    explain = json.loads((out / "explain.json").read_text()) if (out / "explain.json").is_file() else None
    for tier in results["tiers"]:
        assert f'<th scope="row">{tier}</th>' in html
    for title in SECTIONS.values():
        assert title in html
    assert results["model"]["sha256"] in html
    latent = html[html.index('<section id="latent">'): html.index('<section id="explain">')]
    assert "Decoding race" in latent and "probe fit" not in latent
    assert explain is None
    section = html[html.index('<section id="explain">'): html.index('<section id="provenance">')]
    assert "<code>probe explain DIR</code>" in section
    sentences = summarize(results, explain)
    assert any("low tier" in s for s in sentences)
    assert any("relative to this benchmark" in s for s in sentences)


def test_collapsed_and_dropped_tiers_are_explained():
    results = synthetic_results()
    results["benchmark"]["collapsed_duplicates"] = {"low": {"cases": 120, "distinct": 61, "label_conflicts": 7}}
    results["benchmark"]["dropped_tiers"] = {"medium": "all 120 cases render to the same prompts"}
    html = render_report(results, None)
    scores = html[html.index('<section id="scores">'): html.index('<section id="shifts">')]
    assert "counted once (low: 120 cases → 61 distinct)" in scores
    assert "Tiers not scored (medium: all 120 cases render to the same prompts)" in scores
    summary = html[: html.index('<section id="scores">')]
    assert "Tier medium could not be scored" in summary and "low: 120 → 61" in summary


def test_batch_noise_above_tolerance_is_a_caveat_and_shown_in_provenance():
    results = synthetic_results()
    results["model"]["dtype"] = "int8"
    results["batch_invariance"] = {
        "batch_size": 8, "indices": [0, 9], "n_prompts": 24, "max_abs_diff": 0.11, "mean_abs_diff": 0.021, "tolerance": 1e-4,
    }
    text = " ".join(summarize(results))
    assert "24 prompts re-run alone moved by up to 0.11 (mean 0.021) against their values in batches of 8 at int8" in text
    html = render_report(results, None)
    prov = html[html.index('<section id="provenance">'):]
    assert "max |ΔP(Yes)| 0.11, mean 0.021 (above 0.0001: see the caveats)" in prov

    results["batch_invariance"].update(max_abs_diff=3e-6, mean_abs_diff=1e-6)
    assert "re-run alone" not in " ".join(summarize(results))
    prov = render_report(results, None).split('<section id="provenance">')[1]
    assert "max |ΔP(Yes)| 3e-06, mean 1e-06</dd>" in prov

    results["batch_invariance"] = None
    assert "not run (batch size 1" in render_report(results, None).split('<section id="provenance">')[1]


def test_explain_section_draws_the_causal_trace_heat_map_and_position_erasure():
    explain = synthetic_explain()
    tier = explain["tiers"]["high"]
    layers = [0, 1, 2, 3]
    block = {"n_cases": 4, "mean_abs_gap": 0.52, "n_unaligned": 1,
             "demographic": {"fraction": [1.0, 0.97, 0.01, 0.0], "lo": [0.9, 0.9, 0.0, 0.0], "hi": [1.1, 1.0, 0.02, 0.0]},
             "after": {"fraction": [0.05, 0.02, 1.0, 1.0], "lo": [0.0, 0.0, 0.99, 1.0], "hi": [0.1, 0.05, 1.0, 1.0]}}
    tier["trace"] = {"layers": layers, "kinds": ["demographic", "after"],
                     "pairs": [{"attribute": "race", "source": "Black-Female", "target": "White-Female", **block}],
                     "pooled": {"race": block}}
    tier["mediation"][0]["by_position"] = {"demographic": 0.2, "later": 0.1, "decision": 0.6, "by_kind": 0.7}
    tier["mediation"][0]["explains_most"] = "by_kind"
    html = render_report(synthetic_results(), explain)
    section = html[html.index('<section id="explain">'): html.index('<section id="provenance">')]
    assert "Causal trace, race pairs (high tier)" in section
    assert "Black-Female → White-Female" in section and "at layer 0 [0.90, 1.10]" in section
    assert "1 pairs left out" in section
    assert "Each kind its own" in section and "70.0%" in section and "by_kind" in section
