"""The documentation's code runs as written: every ```python block after a ``<!-- docs-test -->``
line of a page under docs/ is executed, the blocks of one page in order in one namespace.

Pages that run a model get the demo config swapped for a tiny random model (``write_config``)
and run in a temporary working folder.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from conftest import ROOT, write_config

DOCS = ROOT / "docs"
MARK = "<!-- docs-test -->"
BLOCK = re.compile(re.escape(MARK) + r"\s*\n```python\n(.*?)\n```", re.S)
DEMO_CONFIG = "configs/ed_triage_demo.yaml"


def marked_blocks(page: Path) -> list[str]:
    """The code of every block marked for testing on ``page``, in page order."""
    text = page.read_text(encoding="utf-8")
    blocks = BLOCK.findall(text)
    assert text.count(MARK) == len(blocks), f"{page}: a {MARK} line not followed by a ```python block"
    return blocks


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if MARK in p.read_text(encoding="utf-8"))


def run_page(page: Path, namespace: dict | None = None, replace: dict[str, str] | None = None) -> dict:
    """Execute the page's marked blocks in one namespace; return it."""
    namespace = {} if namespace is None else namespace
    for i, code in enumerate(marked_blocks(page), 1):
        for old, new in (replace or {}).items():
            code = code.replace(old, new)
        name = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page.name
        exec(compile(code, f"{name} (block {i})", "exec"), namespace)
    return namespace


def test_marked_pages_are_found():
    names = {p.relative_to(DOCS).as_posix() for p in _pages()}
    assert {
        "guides/researcher.md",
        "extending/benchmark-source.md",
        "extending/backend.md",
        "extending/model-family.md",
        "extending/metric.md",
        "extending/stage.md",
    } <= names


def test_block_extraction_sees_each_marked_block(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(f"text\n{MARK}\n```python\nx = 1\n```\n\n```python\nnot run\n```\n{MARK}\n```python\ny = x + 1\n```\n")
    assert marked_blocks(page) == ["x = 1", "y = x + 1"]
    assert run_page(page)["y"] == 2


def test_researchers_guide_runs(tmp_path, tiny_model_dir, monkeypatch):
    page = DOCS / "guides" / "researcher.md"
    assert DEMO_CONFIG in page.read_text(encoding="utf-8")
    cfg = write_config(tmp_path / "tiny.yaml", tiny_model_dir, extract={"batch_check": 0})
    monkeypatch.chdir(tmp_path)
    ns = run_page(page, replace={DEMO_CONFIG: str(cfg)})
    assert ns["axis"].layer in range(4)
    assert "latent" not in ns["results"]["tiers"]["high"]  # run() did extract and score only
    assert (tmp_path / "runs" / "api" / "probes.h5").is_file()  # run_stage("fit") ran
    assert ns["sweep"].accuracy.shape == (4,)
    assert set(ns["scores"]) >= {"mean_difference", "score"}

    # the README's short example, on the same (finished) run folder
    readme = re.findall(r"```python\n(.*?)\n```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    assert len(readme) == 1 and DEMO_CONFIG in readme[0]
    short: dict = {}
    exec(compile(readme[0].replace(DEMO_CONFIG, str(cfg)), "README.md", "exec"), short)
    assert short["h"].shape[:2] == (4, len(ns["prompts"]))


#: the registries the extension guides add to, restored in place after each page
REGISTRIES = [
    ("latent_bias_probe.benchmarks.registry", "BENCHMARKS"),
    ("latent_bias_probe.benchmarks.registry", "_LOADERS"),
    ("latent_bias_probe.configs.names", "BACKEND_RUNNERS"),
    ("latent_bias_probe.extract.families", "FAMILIES"),
    ("latent_bias_probe.mfarm.metrics", "METRICS"),
    ("latent_bias_probe.pipeline.artifacts", "ARTIFACTS"),
    ("latent_bias_probe.pipeline.stages", "STAGE_TABLE"),
]


@pytest.fixture
def registries():
    """Every registry as it was, restored in place (other modules hold references to them)."""
    saved = [(r, type(r)(r)) for r in (getattr(importlib.import_module(m), a) for m, a in REGISTRIES)]
    yield
    for registry, copy in saved:
        registry.clear()
        registry.update(copy) if isinstance(registry, dict) else registry.extend(copy)


@pytest.mark.parametrize("name", ["benchmark-source", "backend", "model-family", "metric", "stage"])
def test_extension_guide_runs(name, tmp_path, monkeypatch, registries):
    monkeypatch.chdir(tmp_path)
    page = DOCS / "extending" / f"{name}.md"
    ns = run_page(page)
    assert ns.get("checked") is True, f"{page}: the worked example ends with checked = True"
