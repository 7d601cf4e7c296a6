"""Shared fixtures: a tiny random Llama saved as a local model directory, and
configs that run the whole pipeline on it in seconds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one intra-op thread per test worker (and per CLI subprocess it starts): the
    # workers already use every core, and oversubscribed BLAS threads only slow them.
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
#: The public data sets the repository carries (see data/README.md).
DATA = ROOT / "data"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama (4 layers, d_model 64) saved with safetensors + tokenizer."""
    from latent_bias_probe.extract.tiny import tiny_llama

    folder = tmp_path_factory.mktemp("tiny-llama")
    loaded = tiny_llama(seed=0)
    loaded.model.save_pretrained(folder, safe_serialization=True)
    loaded.tokenizer.save_pretrained(folder)
    return folder


def write_config(path: Path, model_dir: Path, **sections) -> Path:
    """Write a small ED-triage job on the tiny model; ``sections`` override keys."""
    data = {
        "name": "tiny",
        "seed": 0,
        "model": {"name": str(model_dir)},
        "benchmark": {"source": "ed_triage", "n_cases": 4, "seed": 7, "tiers": ["high", "low"]},
        "extract": {"batch_size": 4},
        "scoring": {"bootstrap": 50, "permutations": 0},  # the null is tested in test_mfarm_resampling
        "probes": {"bootstrap": 50, "n_folds": 2},
        "explain": {"max_cases": 3, "alphas": [-2.0, 0.0, 2.0], "layers": [1]},
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def tiny_config(tmp_path, tiny_model_dir) -> Path:
    """Path to a config of a 4-case, 2-tier ED-triage job on the tiny model."""
    return write_config(tmp_path / "tiny.yaml", tiny_model_dir)


def run_probe(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the ``probe`` CLI in a subprocess (as a user would); ``env`` adds variables."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **(env or {}))
    return subprocess.run(
        [sys.executable, "-c", "from latent_bias_probe.cli import main; main()", *args],
        cwd=cwd or ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )
