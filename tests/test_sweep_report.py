"""The sweep report: mFARM and FAB against tier and precision, per model, from sweep.csv."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from click.testing import CliRunner

from latent_bias_probe.cli import main
from latent_bias_probe.pipeline.artifacts import RunDir
from latent_bias_probe.pipeline.report import write_sweep_report
from latent_bias_probe.pipeline.sweep import write_sweep_csv
from latent_bias_probe.report.sweep import SWEEP_COLUMNS
from latent_bias_probe.report.sweep_html import render_sweep_report

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


# --------------------------------------------------------------------------- intervals and paired differences

BANNED = re.compile(r"\b(fairer|less biased|more biased|less fair|more fair|unbiased)\b", re.I)


def _plain(html_text: str) -> str:
    """Visible text: tags removed, entities decoded, spaces collapsed."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html_text))).strip()


def with_intervals(rows: list[dict], half: float = 0.04) -> list[dict]:
    """Rows with ``<score>_lo``/``_hi`` for mfarm, mfarm_full, fab, fab_full, accuracy (where the score is set)."""
    for r in rows:
        for k in ("mfarm", "mfarm_full", "fab", "fab_full", "accuracy"):
            if r.get(k) is not None:
                r[f"{k}_lo"], r[f"{k}_hi"] = r[k] - half, min(1.0, r[k] + half)
    return rows


def with_diffs(rows: list[dict], int8=(-0.1, -0.15, -0.05), bf16=(0.02, -0.01, 0.05), shift=(0.01, -0.01, 0.03)) -> list[dict]:
    """Paired differences against float32 (the reference); float32 rows name themselves as the reference."""
    for r in rows:
        r["reference"] = "float32"
        d = {"float32": (0.0, 0.0, 0.0), "int8": int8, "bfloat16": bf16}[r["precision"]]
        r["diff_mfarm"], r["diff_mfarm_lo"], r["diff_mfarm_hi"] = d
        s = (0.0, 0.0, 0.0) if r["precision"] == "float32" else shift
        r["diff_max_abs_shift"], r["diff_max_abs_shift_lo"], r["diff_max_abs_shift_hi"] = s
    return rows


def test_error_bars_from_interval_columns():
    html = render_sweep_report(with_intervals(sweep_rows(with_full=True)))
    svgs = _svgs(html)
    assert len(svgs) == 4
    for svg in svgs:
        uid = re.search(r'<title id="([^"]+)-t">', svg).group(1)
        for i in range(6):  # three solid lines and three dashed "(full)" lines, each with its bars
            assert re.search(rf'<g id="{uid}-ebar-{i}-\d+"', svg), (uid, i)
        assert len(_paths(svg)) == 6
    assert "Error bars: bootstrap intervals" in html
    # the planted values still drive the lines (the dodge only shifts them sideways)
    ys = [y for _, y in _paths(svgs[0])[0]]
    assert ys[0] < ys[1] < ys[2]
    # no interval columns: no bars
    assert "-ebar-" not in render_sweep_report(sweep_rows())


def test_missing_or_nan_intervals_draw_no_bars():
    rows = with_intervals(sweep_rows())
    for r in rows:
        r["mfarm_lo"] = float("nan")  # half an interval: no bar
        r["fab_lo"] = r["fab_hi"] = None
    html = render_sweep_report(rows)
    assert "-ebar-" not in html and "Error bars" not in html
    assert not re.search(r"\bnan\b", html, re.I)


def test_table_shows_intervals_under_the_scores():
    html = render_sweep_report(with_intervals(sweep_rows()))
    table = html[html.index('<section id="table">'):]
    assert '0.900 <span class="ci">[0.86, 0.94]</span>' in table  # mFARM at float32, high
    assert html.count("<tr>") == 1 + len(PRECISIONS) * len(TIERS)


def test_paired_differences_lead_and_decide_the_wording():
    html = render_sweep_report(with_diffs(sweep_rows()))
    assert html.index('<section id="paired">') < html.index('<section id="answers">')
    paired = html[html.index('<section id="paired">'): html.index('<section id="answers">')]
    rows = re.findall(r'<tr><th scope="row">(.*?)</th>(.*?)</tr>', paired)
    assert len(rows) == 2 * len(TIERS)  # int8 and bfloat16 at each tier; the reference row itself is left out
    by = {}
    for who, cells in rows:
        text = [_plain(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", cells)]
        by[(who, text[1])] = text
    int8 = by[(f"{MODELS[0]} at int8", "high")]
    assert int8[0] == "float32"
    assert int8[2] == "-0.100 [-0.150, -0.050] lower: less fair by this benchmark's mFARM"
    assert int8[3] == "+0.010 [-0.010, +0.030] includes 0: cannot tell apart"
    bf16 = by[(f"{MODELS[0]} at bfloat16", "low")]
    assert bf16[2] == "+0.020 [-0.010, +0.050] includes 0: cannot tell apart"
    assert not BANNED.search(" ".join(bf16))


def test_fairer_only_where_a_paired_interval_excludes_zero():
    # every paired interval includes 0: nothing on the page ranks the precisions
    rows = with_diffs(with_intervals(sweep_rows()), int8=(-0.1, -0.2, 0.01), bf16=(0.02, -0.01, 0.05))
    text = _plain(render_sweep_report(rows))
    assert not BANNED.search(text), BANNED.search(text).group(0)
    assert text.count("cannot tell apart") >= 2 * len(TIERS)
    # an interval above 0: "fairer", flagged as possible noise when the largest shift did not shrink
    rows = with_diffs(sweep_rows(), bf16=(0.02, 0.01, 0.03), shift=(0.0, -0.01, 0.01))
    text = _plain(render_sweep_report(rows))
    assert "higher: fairer by this benchmark's mFARM – but the largest group shift is not measurably smaller" in text
    rows = with_diffs(sweep_rows(), bf16=(0.02, 0.01, 0.03), shift=(-0.02, -0.03, -0.01))
    text = _plain(render_sweep_report(rows))
    assert "higher: fairer by this benchmark's mFARM " in text and "not measurably smaller" not in text
    assert "-0.020 [-0.030, -0.010] smaller" in text


def test_paired_section_absent_without_diff_columns_and_sweep_page_wording():
    html = render_sweep_report(sweep_rows())
    assert '<section id="paired">' not in html
    text = _plain(html)
    assert "higher is fairer" not in text and not BANNED.search(text)
