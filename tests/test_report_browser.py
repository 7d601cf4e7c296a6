"""The HTML report in a real headless browser (Debian's ``chromium``).

How errors are detected: the test loads a *copy* of the page into which it has
injected a small checking script, placed before anything else the page runs.
That script records uncaught exceptions (``window.onerror``), unhandled promise
rejections, ``console.error`` calls, resources that fail to load (capture-phase
``error`` events on <img>, <script>, <link>, … and, after ``load``, every <img>
whose ``naturalWidth`` is 0), Content-Security-Policy violations, and every
resource the page fetched (``performance.getEntriesByType("resource")``); then
it writes the findings as JSON into a ``<pre id="__browser_check__">``. Chromium
runs with ``--dump-dom`` and a virtual time budget, and the test parses that
element from the dumped DOM. A missing element (the page never finished loading,
or the check could not run) is itself a failure. As a second net the browser's
own console log (``--enable-logging=stderr``) is scanned for "Uncaught" errors.

The negative tests prove the check bites: a page with a JS error, one with a
console.error, one with a broken <img>, and the real report with an external
image added all fail it.

Without chromium the tests fail with a message saying how to install it, unless
``CI_NO_BROWSER=1`` is set (then they skip).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT
from latent_bias_probe.report.html import SECTIONS, render_report
from report_fixtures import synthetic_explain, synthetic_results, with_failed_causal_check, without_latent

ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOT = ARTIFACTS / "report.png"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
]
MARKER_ID = "__browser_check__"
CHECK_JS = """
(function () {
  var errors = [], broken = [];
  window.addEventListener('error', function (e) {
    var t = e.target;
    if (t && t !== window && t.tagName) {
      broken.push(t.tagName.toLowerCase() + ' ' + (t.currentSrc || t.src || t.href || ''));
    } else {
      errors.push('uncaught: ' + (e.message || String(e.error)));
    }
  }, true);
  window.addEventListener('unhandledrejection', function (e) {
    errors.push('unhandled rejection: ' + String(e.reason));
  });
  document.addEventListener('securitypolicyviolation', function (e) {
    errors.push('blocked by CSP: ' + e.blockedURI + ' (' + e.violatedDirective + ')');
  });
  var original = console.error;
  console.error = function () {
    errors.push('console.error: ' + Array.prototype.map.call(arguments, String).join(' '));
    return original.apply(console, arguments);
  };
  window.addEventListener('load', function () {
    setTimeout(function () {
      Array.prototype.forEach.call(document.images, function (img) {
        if (!img.complete || img.naturalWidth === 0) broken.push('img ' + (img.currentSrc || img.src));
      });
      var svgs = document.querySelectorAll('svg'), empty = 0;
      svgs.forEach(function (s) {
        var r = s.getBoundingClientRect();
        if (r.width < 1 || r.height < 1) empty++;
      });
      var fetched = (performance.getEntriesByType('resource') || [])
        .map(function (r) { return r.name; })
        .filter(function (n) { return n.indexOf('data:') !== 0; });
      var out = document.createElement('pre');
      out.id = '__browser_check__';
      out.textContent = JSON.stringify({
        errors: errors, broken: broken, fetched: fetched, svgs: svgs.length, empty_svgs: empty,
        height: document.documentElement.scrollHeight
      });
      document.body.appendChild(out);
    }, 50);
  });
})();
"""


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser() -> str:
    path = find_browser()
    if path is None:
        if os.environ.get("CI_NO_BROWSER") == "1":
            pytest.skip("CI_NO_BROWSER=1: the headless-browser check of the report is switched off")
        pytest.fail(
            "no headless browser found (looked for: " + ", ".join(BROWSERS) + "). Install Debian's chromium "
            "('make test' does: apt-get install -y chromium), or set CI_NO_BROWSER=1 to skip the browser tests.",
            pytrace=False,
        )
    return path


def _run(browser: str, args: list[str], timeout: float = 90) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=timeout,
        )


def with_check(html: str) -> str:
    """The page with the checking script injected before any of its own content runs.

    It goes right after ``<meta charset>`` (kept within the first bytes), ahead of
    the page's Content-Security-Policy, so the policy does not block the check.
    """
    tag = f"<script>{CHECK_JS}</script>"
    m = re.search(r"<meta\s+charset[^>]*>", html, re.I) or re.search(r"<head[^>]*>", html, re.I)
    if m is None:
        return tag + html
    return html[: m.end()] + tag + html[m.end():]


def check_page(browser: str, page: Path) -> dict:
    """Load ``page`` (with the check injected) in headless chromium; return the findings.

    ``problems`` lists everything that makes the page fail; empty means clean.
    """
    probe = page.with_name(f".check-{page.name}")
    probe.write_text(with_check(page.read_text(encoding="utf-8")), encoding="utf-8")
    try:
        res = _run(browser, ["--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()])
    finally:
        probe.unlink(missing_ok=True)
    m = re.search(rf'<pre id="{MARKER_ID}">(.*?)</pre>', res.stdout, re.S)
    if m is None:
        found = {"problems": [f"the check never reported (exit {res.returncode}): page did not load or scripts did not run; "
                              f"stderr tail: {res.stderr[-600:]}"]}
        return found
    import html as _html

    found = json.loads(_html.unescape(m.group(1)))
    problems = list(found["errors"]) + [f"broken resource: {b}" for b in found["broken"]]
    problems += [f"fetched a resource (the page must be self-contained): {f}" for f in found["fetched"]]
    if found["empty_svgs"]:
        problems.append(f"{found['empty_svgs']} of {found['svgs']} SVG figures rendered with zero size")
    for line in res.stderr.splitlines():
        if ":CONSOLE" in line and ("Uncaught" in line or "ERROR:CONSOLE" in line):
            problems.append(f"console: {line.strip()}")
    found["problems"] = problems
    return found


def screenshot(browser: str, page: Path, out: Path, height: int) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    height = max(800, min(int(height) + 40, 16000))
    res = _run(browser, [f"--window-size=1280,{height}", "--virtual-time-budget=5000", f"--screenshot={out}", page.as_uri()])
    assert out.is_file(), f"no screenshot written (exit {res.returncode}): {res.stderr[-600:]}"
    return out


# --------------------------------------------------------------------------- the report


def write_page(folder: Path, results: dict | None = None, explain: dict | None | bool = True) -> Path:
    """folder/report.html rendered from fixture results (and explain unless explain is False/None)."""
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / "report.html"
    explain = synthetic_explain() if explain is True else (explain or None)
    page.write_text(render_report(results if results is not None else synthetic_results(), explain), encoding="utf-8")
    return page


def test_full_report_renders_cleanly_and_is_screenshot(browser, tmp_path):
    page = write_page(tmp_path / "run")
    found = check_page(browser, page)
    assert found["problems"] == [], "\n".join(found["problems"])
    assert found["svgs"] >= 10, found
    shot = screenshot(browser, page, SCREENSHOT, found["height"])
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    html = page.read_text()
    for title in SECTIONS.values():
        assert title in html
    # the new parts are on the page that was checked and photographed
    for text in ('<h3 id="verdicts">Verdicts</h3>', 'class="ci"', "causal check passed", '<p class="alert">',
                 "Fairness scores per tier with 95% bootstrap intervals", "<dt>GPU</dt>"):
        assert text in html, text


def test_report_with_a_failed_causal_check_renders_cleanly(browser, tmp_path):
    page = write_page(tmp_path / "run", with_failed_causal_check(synthetic_results()))
    assert "causal check failed" in page.read_text()
    found = check_page(browser, page)
    assert found["problems"] == [], "\n".join(found["problems"])


def test_degraded_report_renders_cleanly(browser, tmp_path):
    page = write_page(tmp_path / "run", without_latent(synthetic_results(significant=False, n_cases=3)), explain=False)
    found = check_page(browser, page)
    assert found["problems"] == [], "\n".join(found["problems"])


# --------------------------------------------------------------------------- the check fails when it should


def _page(tmp_path: Path, body: str, head: str = "") -> Path:
    page = tmp_path / "bad.html"
    page.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8">{head}<title>t</title></head><body><p>x</p>{body}</body></html>')
    return page


def test_check_fails_on_a_javascript_error(browser, tmp_path):
    found = check_page(browser, _page(tmp_path, "<script>notDefinedAnywhere();</script>"))
    assert any("notDefinedAnywhere" in p for p in found["problems"]), found


def test_check_fails_on_console_error(browser, tmp_path):
    found = check_page(browser, _page(tmp_path, "<script>console.error('something broke');</script>"))
    assert any("something broke" in p for p in found["problems"]), found


def test_check_fails_on_a_broken_image(browser, tmp_path):
    found = check_page(browser, _page(tmp_path, '<img src="does-not-exist.png" alt="missing">'))
    assert any("does-not-exist.png" in p for p in found["problems"]), found


def test_check_fails_on_the_report_with_an_external_image(browser, tmp_path):
    page = write_page(tmp_path / "run")
    html = page.read_text()
    page.write_text(html.replace("</main>", '<img src="https://example.invalid/pixel.png" alt="x"></main>'))
    found = check_page(browser, page)
    assert any("example.invalid" in p for p in found["problems"]), found


def test_sweep_report_renders_cleanly(browser, tmp_path):
    from latent_bias_probe.pipeline.report import write_sweep_report
    from latent_bias_probe.pipeline.sweep import write_sweep_csv
    from test_sweep_report import MODELS, sweep_rows, with_diffs, with_intervals

    # intervals and paired differences through sweep.csv and back, as a sweep writes them
    write_sweep_csv(with_diffs(with_intervals(sweep_rows(MODELS, with_full=True))), tmp_path / "sweep.csv")
    page = write_sweep_report(tmp_path)
    html = page.read_text()
    assert "-ebar-" in html and '<section id="paired">' in html
    found = check_page(browser, page)
    assert found["problems"] == [], "\n".join(found["problems"])
    assert found["svgs"] == 4 * len(MODELS)
    screenshot(browser, page, SCREENSHOT.with_name("sweep_report.png"), found["height"])
