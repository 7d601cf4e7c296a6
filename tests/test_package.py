"""The toolkit installs as one package, ``latent_bias_probe``, with its data.

Builds the wheel and the sdist, checks what they hold, installs the wheel into a
fresh virtual environment and runs every shipped data source from a folder that
holds a ``configs/`` package and a ``report.py`` of its own (names the toolkit's
sub-packages would clash with if they were installed at the top level).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, write_config

PACKAGE = "latent_bias_probe"
SUBPACKAGES = ("benchmarks", "configs", "extract", "mfarm", "pipeline", "probes", "report")
#: files a wheel must carry, relative to the package folder
DATA = (
    "data/mimic-iv-ed-demo/triage.csv",
    "data/mimic-iv-ed-demo/LICENSE.txt",
    "data/q-pain/data_post_op.csv",
    "data/q-pain/LICENSE.txt",
    "data/clinical-templates/templates.yaml",
    "data/clinical-templates/LICENSE.txt",
    "configs/ed_triage_demo.yaml",
    "configs/masked_demo.yaml",
    "report/templates/report.html",
    "pipeline/schemas/results.schema.json",
    "cli.py",
    "__main__.py",
)


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    """The wheel and the sdist, built from this checkout without network access."""
    out = tmp_path_factory.mktemp("dist")
    # a copy of the checkout, so the build's own folders (build/, *.egg-info) stay out of it
    source = tmp_path_factory.mktemp("source") / "latent-bias-probe"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "runs", "build", "dist", "site", "*.egg-info", "__pycache__", ".pytest_cache"))
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--sdist", "--outdir", str(out), str(source)],
        capture_output=True, text=True, timeout=600, cwd=source,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    wheel = next(out.glob("*.whl"))
    sdist = next(out.glob("*.tar.gz"))
    return {"wheel": wheel, "sdist": sdist}


def test_wheel_holds_one_top_level_name_and_the_data(dists):
    with zipfile.ZipFile(dists["wheel"]) as z:
        names = z.namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {PACKAGE, "latent_bias_probe-0.1.0.dist-info"}, tops
    for rel in DATA:
        assert f"{PACKAGE}/{rel}" in names, rel
    for sub in SUBPACKAGES:
        assert f"{PACKAGE}/{sub}/__init__.py" in names, sub
    assert not any(n.startswith(f"{PACKAGE}/tests/") or n.startswith(f"{PACKAGE}/bench/") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    with zipfile.ZipFile(dists["wheel"]) as z:
        assert "probe = latent_bias_probe.cli:main" in z.read(entry).decode()


def test_sdist_holds_the_sources_and_the_data(dists):
    with tarfile.open(dists["sdist"]) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for rel in DATA:
        assert rel in names, rel
    assert "pyproject.toml" in names


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    """A new virtual environment holding the wheel; its dependencies come from this
    environment's site-packages through a path entry (nothing is downloaded)."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    # the dependencies: a plain path entry, so this environment's own (editable) copy of the
    # toolkit, installed by a .pth hook there, is not seen
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return venv


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory, dists) -> tuple[Path, Path]:
    """(the fresh venv, a working folder with a ``configs/`` package and a ``report.py``)."""
    tmp = tmp_path_factory.mktemp("installed")
    venv = _fresh_venv(tmp, dists["wheel"])
    folder = tmp / "notebook"
    (folder / "configs").mkdir(parents=True)
    (folder / "configs" / "__init__.py").write_text("raise ImportError('the user\\'s own configs package was imported')\n")
    (folder / "report.py").write_text("raise ImportError('the user\\'s own report.py was imported')\n")
    return venv, folder


def _probe(venv: Path, folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    return subprocess.run([str(venv / "bin" / "probe"), *args], cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def test_installed_package_is_the_wheel(user_folder):
    venv, folder = user_folder
    code = "import latent_bias_probe as p, sys; print(p.__file__); print(p.__version__)"
    proc = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=folder, capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr
    location, version = proc.stdout.split()
    assert str(venv) in location and version == "0.1.0"
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", PACKAGE, "--version"], cwd=folder, capture_output=True,
                          text=True, timeout=120, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0 and "0.1.0" in proc.stdout, proc.stderr


@pytest.mark.parametrize("config", ["ed_triage_demo", "mimic_ed_demo", "qpain"])
def test_shipped_config_runs_from_the_wheel_by_name(user_folder, tiny_model_dir, config):
    """Each shipped data source, from an installed wheel, by the config's name, 2 cases."""
    venv, folder = user_folder
    out = folder / "runs" / config
    proc = _probe(venv, folder, "run", config, "--limit-cases", "2", "--set", f"model.name={tiny_model_dir}",
                  "--set", "extract.batch_size=26", "--set", "explain.layers=[1]", "--set", "explain.trace_layers=[0,1]", "--no-fit", "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("cache.h5", "predictions.csv", "results.json", "report.html"):
        assert (out / name).is_file(), name
    rows = (out / "predictions.csv").read_text().splitlines()[1:]
    assert rows and len(rows) % 13 == 0  # whole cases of 13 variants
    assert len({r.split(",")[0] for r in rows}) == 2  # the 2 cases (a tier where they render alike keeps one)


def test_masked_templates_from_the_wheel(user_folder, tmp_path):
    """The shipped masked-LM templates and sample notes, from an installed wheel."""
    from latent_bias_probe.extract.tiny_masked import save, tiny_bert

    venv, folder = user_folder
    bert = save(tiny_bert(seed=0), tmp_path / "tiny-bert")
    out = folder / "runs" / "masked"
    proc = _probe(venv, folder, "run", "masked_demo", "--set", f"model.name={bert}", "--set", "masked.n_templates=2",
                  "--set", "scoring.bootstrap=50", "--set", "probes.bootstrap=20", "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "masked.json").is_file() and (out / "report.html").is_file()


def test_bench_lists_the_shipped_data_from_the_wheel(user_folder):
    venv, folder = user_folder
    proc = _probe(venv, folder, "bench", "list")
    assert proc.returncode == 0, proc.stderr
    assert "not found" not in proc.stdout
    for name in ("mimic_ed_demo", "qpain"):
        assert name in proc.stdout
