"""bench/gpu_check.py's component check, run on the CPU twice (the GPU machine runs it on cuda and cpu)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_component_check_compares_two_devices(tiny_model_dir):
    lines = _gpu_check().component_check(str(tiny_model_dir), 2, ("cpu", "cpu"))
    assert lines[0].startswith("| components, 2 cases: cpu | ") and lines[0].endswith(" s |")
    share, patched = lines[2], lines[3]
    assert share.startswith("| components share, cpu vs cpu | max |diff| 0.00e+00 over ") and "(only on one: 0)" in share
    n_share = int(share.split(" over ")[1].split()[0])
    n_patched = int(patched.split(" over ")[1].split()[0])
    assert n_share > n_patched > 0  # every component estimated; the top, random and saturated ones patched
    assert "max |diff| 0.00e+00" in patched
