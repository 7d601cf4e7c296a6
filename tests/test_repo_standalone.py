"""The repository stands alone: its data lives in ``data/``, nothing reads a folder beside the checkout."""

from __future__ import annotations

import os
import subprocess

import pytest

from latent_bias_probe.benchmarks.registry import BENCHMARKS
from conftest import DATA, ROOT

# Path constructions that reach a ``shared`` folder beside the checkout. Built from parts
# so that this file does not match itself; the bare word in prose is fine.
SHARED = "sha" + "red"
PATTERNS = ["../" + SHARED, SHARED + "/data", '"' + SHARED + '"', "'" + SHARED + "'"]
# README.md cites the project's design notes in the docs folder beside the checkout
# (prose, not data). Only that prefix, only in README.md, is let through.
ALLOWED = {"README.md": ["../" + SHARED + "/docs/"]}

SUFFIXES = (".py", ".yaml", ".yml", ".toml", ".md", ".cfg", ".ini", ".txt", ".sh")
NAMES = ("Makefile", "run")
SKIP_DIRS = {".git", ".venv", "data", "runs", "build", "dist", "__pycache__", ".pytest_cache", "test-artifacts"}

DATA_FILES = [
    "mimic-iv-ed-demo/triage.csv",
    "mimic-iv-ed-demo/LICENSE.txt",
    "q-pain/data_acute_cancer.csv",
    "q-pain/data_acute_non_cancer.csv",
    "q-pain/data_chronic_cancer.csv",
    "q-pain/data_chronic_non_cancer.csv",
    "q-pain/data_post_op.csv",
    "q-pain/LICENSE.txt",
]


def _project_files() -> list[str]:
    """Tracked and new not-ignored files (git), else a walk of the tree; relative, '/'-separated."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout.decode()
        files = [f for f in out.split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for folder, dirs, names in os.walk(ROOT):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
            rel = os.path.relpath(folder, ROOT)
            files += [n if rel == "." else f"{rel}/{n}".replace(os.sep, "/") for n in names]
    return [f for f in files if not f.startswith("data/") and (ROOT / f).is_file()]


def _text_files() -> list[str]:
    return [f for f in _project_files() if f.endswith(SUFFIXES) or f.rsplit("/", 1)[-1] in NAMES]


def test_text_files_are_found():
    files = set(_text_files())
    for f in ("README.md", "Makefile", ".ci/run", "pyproject.toml", "configs/qpain.yaml",
              "benchmarks/registry.py", "tests/conftest.py", "tests/test_repo_standalone.py"):
        assert f in files, f


def test_no_reference_to_a_shared_folder_beside_the_checkout():
    hits = []
    for f in _text_files():
        text = (ROOT / f).read_text(encoding="utf-8", errors="replace")
        for allowed in ALLOWED.get(f, []):
            text = text.replace(allowed, "")
        for lineno, line in enumerate(text.splitlines(), 1):
            hits += [f"{f}:{lineno}: {p!r} in {line.strip()!r}" for p in PATTERNS if p in line]
    assert not hits, "paths outside the repository:\n" + "\n".join(hits)


@pytest.mark.parametrize("rel", DATA_FILES)
def test_data_file_present(rel):
    path = DATA / rel
    assert path.is_file(), f"missing {path}"
    assert path.stat().st_size > 0


def test_data_readme_and_licences_name_the_licences():
    assert (DATA / "README.md").is_file()
    odbl = (DATA / "mimic-iv-ed-demo" / "LICENSE.txt").read_text()
    assert "Open Database License" in odbl and "MIMIC-IV-ED" in odbl
    ccbysa = (DATA / "q-pain" / "LICENSE.txt").read_text()
    assert "CC BY-SA 4.0" in ccbysa and "Q-Pain" in ccbysa


def test_registry_default_paths_inside_repository():
    root = ROOT.resolve()
    defaults = {name: info.default_path for name, info in BENCHMARKS.items() if info.default_path is not None}
    assert set(defaults) == {"mimic_ed_demo", "qpain"}
    for name, path in defaults.items():
        assert path.resolve().is_relative_to(root), f"{name}: {path} is outside {root}"
        assert path.resolve().is_relative_to(DATA.resolve()), f"{name}: {path} is outside {DATA}"
        assert path.exists(), f"{name}: {path} not found"
