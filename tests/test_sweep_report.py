"""The sweep report: mFARM and FAB against tier and precision, per model, from sweep.csv."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from cli import main
from pipeline.artifacts import RunDir
from pipeline.report import write_sweep_report
from pipeline.sweep import write_sweep_csv
from report.sweep import SWEEP_COLUMNS
from report.sweep_html import render_sweep_report

MODELS = ("smollm2-135m-instruct", "other-model")
PRECISIONS = ("float32", "int8", "bfloat16")
TIERS = ("high", "medium", "low")
# planted: mFARM falls with context (0.9 / 0.6 / 0.3 at float32), int8 lowers it by 0.1
MFARM = {"high": 0.9, "medium": 0.6, "low": 0.3}
SHIFT = {"float32": 0.0, "int8": -0.1, "bfloat16": 0.02}


def sweep_rows(models=MODELS[:1], with_full: bool = False) -> list[dict]:
    rows = []
    for m in models:
        for p in PRECISIONS:
            for t in TIERS:
                mf = MFARM[t] + SHIFT[p]
                row = {c: None for c in SWEEP_COLUMNS}
                row.update(model=m, precision=p, adapter="", tier=t, mfarm=mf, accuracy=0.5, n_cases=60,
                           fab=2 * mf * 0.5 / (mf + 0.5))
                row.update({k: mf for k in SWEEP_COLUMNS[5:10]})
                if with_full:
                    row["mfarm_full"] = mf - 0.05
                    row["fab_full"] = row["fab"] - 0.05
                rows.append(row)
    return rows


def _svgs(html: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", html, re.S)


def _lines(svg_text: str) -> list[tuple[str, str]]:
    """(path data, style) of every series line of a chart (ids ``<uid>-line-<i>``), in drawing order."""
    return re.findall(r'<g id="[^"]+-line-\d+">\s*<path d="([^"]+)"[^>]*style="([^"]*)"', svg_text)


def _paths(svg_text: str) -> list[list[tuple[float, float]]]:
    """The points of every series line of a chart, in drawing order."""
    out = []
    for d, _ in _lines(svg_text):
        out.append([tuple(map(float, p.split())) for p in re.split(r"[ML]", d) if p.strip()])
    return out


def test_four_charts_per_model_with_categorical_axes():
    html = render_sweep_report(sweep_rows(MODELS))
    svgs = _svgs(html)
    assert len(svgs) == 4 * len(MODELS)
    tier_chart, _, prec_chart, _ = svgs[:4]
    assert "mFARM against context tier, smollm2-135m-instruct" in tier_chart
    for label in TIERS:
        assert f">{label}</text>" in tier_chart
    for label in PRECISIONS:
        assert f">{label}</text>" in prec_chart
    # one line per precision in the tier chart, one per tier in the precision chart; no "full" without latent scores
    assert len(_paths(tier_chart)) == 3 and len(_paths(prec_chart)) == 3
    assert "(full)" not in html
    assert html.count('<h2 id="model-') == 2


def test_lines_follow_the_planted_values():
    svgs = _svgs(render_sweep_report(sweep_rows()))
    float32_line = _paths(svgs[0])[0]  # mFARM vs tier, float32: 0.9 -> 0.6 -> 0.3
    ys = [y for _, y in float32_line]
    assert ys[0] < ys[1] < ys[2]  # SVG y grows downwards: falling mFARM
    assert ys[1] - ys[0] == pytest.approx(ys[2] - ys[1], abs=0.02)  # equal steps of 0.3
    xs = [x for x, _ in float32_line]
    assert xs[0] < xs[1] < xs[2]
    high_line = _paths(svgs[2])[0]  # mFARM vs precision at high: 0.9, 0.8, 0.92
    ys = [y for _, y in high_line]
    assert ys[1] > ys[0] > ys[2]


def test_full_scores_drawn_dashed():
    html = render_sweep_report(sweep_rows(with_full=True))
    tier_chart = _svgs(html)[0]
    assert len(_paths(tier_chart)) == 6 and "float32 (full)" in tier_chart
    dashed = [style for _, style in _lines(tier_chart) if re.search(r"stroke-dasharray: 7,4\b", style)]
    assert len(dashed) == 3  # the three "(full)" lines


def test_answers_and_table():
    html = render_sweep_report(sweep_rows())
    assert "mFARM drops as context is reduced" in html
    assert "int8 vs float32 changes mFARM by -0.100 at high, -0.100 at medium, -0.100 at low" in html
    assert html.count("<tr>") == 1 + len(PRECISIONS) * len(TIERS)
    assert "<script" not in html


def test_sweep_page_is_deterministic_accessible_and_self_contained():
    rows = sweep_rows(MODELS, with_full=True)
    html = render_sweep_report(rows, run_links={(MODELS[0], "int8", ""): "m__int8__none/report.html"})
    assert render_sweep_report(rows, run_links={(MODELS[0], "int8", ""): "m__int8__none/report.html"}) == html
    for svg in _svgs(html):
        t, d = re.match(r'<svg [^>]*role="img" aria-labelledby="([^" ]+) ([^"]+)"', svg).groups()
        assert f'<title id="{t}">' in svg and f'<desc id="{d}">' in svg
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids))
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
    assert "default-src 'none'" in html


def test_sweep_page_escapes_names_and_refuses_odd_links():
    rows = sweep_rows()
    for r in rows:
        r["model"] = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'
    links = {(rows[0]["model"], "int8", ""): "javascript:alert(1)", (rows[0]["model"], "float32", ""): "https://example.invalid/x"}
    html = render_sweep_report(rows, run_links=links)
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "javascript:" not in html and "example.invalid" not in html and "<a href=" not in html


def test_empty_sweep_says_so():
    assert "no combination has finished yet" in render_sweep_report([])


def test_write_links_each_finished_run_and_cli(tmp_path, monkeypatch):
    # a run's report is linked when its manifest records it fresh; stub that to "the file exists"
    monkeypatch.setattr(RunDir, "is_fresh", lambda self, name, _seen=frozenset(): self.exists(name))
    rows = sweep_rows()
    write_sweep_csv(rows, tmp_path / "sweep.csv")
    items = [{"model": MODELS[0], "precision": p, "adapter": None, "name": f"m__{p}__none"} for p in PRECISIONS]
    (tmp_path / "sweep.json").write_text(json.dumps({"items": items}))
    (tmp_path / "m__int8__none").mkdir()
    (tmp_path / "m__int8__none" / "report.html").write_text("<html></html>")
    path = write_sweep_report(tmp_path)
    html = path.read_text()
    assert path.name == "sweep.html" and 'href="m__int8__none/report.html"' in html
    assert html.count("<a href=") == len(TIERS)  # only the int8 run has a report: its three tier rows
    path.unlink()
    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "sweep report:" in res.output and path.is_file()
    assert not list(tmp_path.glob("*.tmp*"))


def test_report_on_an_empty_directory_exits_2(tmp_path):
    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "results.json: not found" in res.output
