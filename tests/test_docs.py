"""The documentation site builds without a warning, its generated pages follow the code,
and the README stays a short entry that points into it."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import ROOT
from latent_bias_probe.extract.cache import FORMAT, FORMAT_V1, REQUIRED_ATTRS
from latent_bias_probe.pipeline.artifacts import ARTIFACTS
from latent_bias_probe.pipeline.extract import PREDICTION_COLUMNS

DOCS = ROOT / "docs"
#: words of a diary, not of documentation that says what holds
DIARY = re.compile(r"\b(this|last|previous|next) (round|session)\b|\bso far\b|\bthis time\b", re.I)


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )


def test_site_builds_strict_without_warnings(tmp_path):
    result = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "WARNING" not in log, log[-3000:]
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    assert "F_MD (allocational)" in api  # mkdocstrings rendered the docstrings
    config_page = (tmp_path / "site" / "reference" / "configuration" / "index.html").read_text(encoding="utf-8")
    assert "explain.prefix_memory_gb" in config_page


def test_strict_build_fails_on_a_broken_link(tmp_path):
    """The check above can fail: the same configuration refuses a link to a missing page."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\nSee [the missing page](missing.md).\n")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    config.update(docs_dir=str(docs), nav=[{"Home": "index.md"}], plugins=["search"])
    config.pop("hooks", None)
    config.pop("exclude_docs", None)
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    result = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "missing.md" in result.stdout + result.stderr


def test_every_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def pages(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from pages(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from pages(value)

    nav = set(pages(config["nav"]))
    files = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert files == nav, f"not in the nav: {sorted(files - nav)}; missing files: {sorted(nav - files)}"


def test_generated_reference_pages_are_up_to_date():
    gen = _generator()
    for rel, make in gen.PAGES.items():
        committed = (DOCS / rel).read_text(encoding="utf-8")
        assert committed == make(), f"docs/{rel} is stale: run python docs/gen_reference.py"


def test_configuration_reference_covers_every_schema_key():
    gen = _generator()
    keys = [key for key, *_ in gen.config_rows()]
    assert len(keys) > 90 and len(set(keys)) == len(keys)
    page = (DOCS / "reference" / "configuration.md").read_text(encoding="utf-8")
    for key in keys:
        assert f"`{key}`" in page, key
    assert "| `extract.batch_size` | integer | `8` |" in page
    assert "| `model.dtype` | `float32` \\| `bfloat16` \\| `float16` | `\"float32\"` |" in page


def test_configuration_meanings_must_match_the_schema():
    gen = _generator()
    gen.CONFIG_MEANINGS["no_such_section.key"] = "x"
    try:
        gen.check_config_meanings()
        raise AssertionError("an unknown key was accepted")
    except ValueError as e:
        assert "no_such_section.key" in str(e)
    finally:
        del gen.CONFIG_MEANINGS["no_such_section.key"]


def test_results_reference_covers_the_schema():
    page = (DOCS / "reference" / "results-json.md").read_text(encoding="utf-8")
    for field in ("`tiers.*`", "`$defs.tier.mfarm.score`", "`$defs.tier.equivalence`", "`$defs.latent.value_axis_layer`",
                  "`model.answer_tokens.yes_ids`", "`masked.corpus.findings[]`"):
        assert field in page, field
    assert "|  |\n" not in page and not re.search(r"\| \|$", page, re.M)  # every field has a meaning


def test_run_directory_reference_names_every_format_field():
    page = (DOCS / "reference" / "run-directory.md").read_text(encoding="utf-8")
    for name in (*REQUIRED_ATTRS, FORMAT, FORMAT_V1, "prompt_index", "option_mass", "done", "n_tokens"):
        assert f"`{name}" in page or name in page, name
    for column in PREDICTION_COLUMNS:
        assert f"`{column}`" in page, column
    for artifact in ARTIFACTS:
        assert f"`{artifact}`" in page, artifact


def test_readme_is_a_short_entry():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    assert "make test" in text and "make demo" in text
    for link in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (ROOT / link).is_file(), link


def test_no_diary_words_in_the_documentation():
    hits = []
    for path in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]:
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if DIARY.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not hits, "\n".join(hits)
