"""The HTML report and its plain-language summary (no browser; see test_report_browser.py)."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from configs.errors import InputError
from pipeline.artifacts import RunDir
from pipeline.report import write_report
from report import html as report_html
from report.figures import (
    BarSeries,
    IntervalSeries,
    Series,
    bar_chart,
    group_styles,
    interval_chart,
    line_chart,
)
from report.html import SECTIONS, render_report
from report.summary import summarize, summary_items
from report_fixtures import GROUPS, synthetic_explain, synthetic_results, without_latent, write_run

DASH = "\u2013"


def _text(html: str) -> str:
    """Visible text, roughly: tags removed, entities kept."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _svgs(html: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", html, re.S)


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
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    expected = [
        "120", "0.781", "0.812", "0.938", "0.884", "1.000", "0.917", "0.701",
        f"{high['mfarm']['score']:.3f}", f"{high['mfarm_full']:.3f}", f"{high['fab']:.3f}", f"{high['fab_full']:.3f}",
    ]
    assert cells == expected
    row = re.search(r'<tr><th scope="row">low †</th>(.*?)</tr>', scores).group(1)  # † : degraded fields
    assert re.findall(r"<td[^>]*>(.*?)</td>", row)[:3] == ["120", "0.654", "1.000"]
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


# --------------------------------------------------------------------------- missing data


def test_missing_latent_and_explain_say_which_stage_to_run(tmp_path):
    html = _page(tmp_path / "run", without_latent(synthetic_results()), explain=False).read_text()
    latent = html[html.index('<section id="latent">'): html.index('<section id="explain">')]
    assert "run <code>probe fit DIR</code>" in latent
    explain = html[html.index('<section id="explain">'): html.index('<section id="provenance">')]
    assert "No explain.json" in explain and "<code>probe explain DIR</code>" in explain
    scores = html[html.index('<section id="scores">'): html.index('<section id="shifts">')]
    row = re.search(r'<tr><th scope="row">high</th>(.*?)</tr>', scores).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[7] == DASH and cells[9] == DASH and cells[11] == DASH  # F_LV, mFARM full, FAB full
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
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[1] == DASH and cells[5] == DASH


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
