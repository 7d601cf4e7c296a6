"""The pinned environment: the shipped locks cover what setup needs, and provenance records the lock."""

from __future__ import annotations

import hashlib
import re

import jsonschema
import pytest

from conftest import ROOT
from latent_bias_probe.extract.provenance import LIBRARIES, environment, lock_pins, lock_record

LOCK = ROOT / "requirements.lock"
TORCH_LOCK = ROOT / "requirements-torch-cpu.lock"


def _entries(path):
    """(name, version, hashes) of every pin of a pip lock file."""
    text = path.read_text()
    out = []
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", block)
        if m:
            out.append((m.group(1).lower(), m.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", block)))
    return out


def test_every_pin_of_both_locks_is_exact_and_hashed():
    entries = _entries(LOCK) + _entries(TORCH_LOCK)
    assert len(entries) > 50
    for name, version, hashes in entries:
        assert hashes, f"{name}=={version} has no hash"


def test_the_lock_pins_every_dependency_the_dev_extra_and_the_embedded_models():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [re.match(r"[A-Za-z0-9._-]+", r).group(0) for r in meta["dependencies"] + meta["optional-dependencies"]["dev"]]
    makefile = (ROOT / "Makefile").read_text()
    models = re.search(r"^MODELS := (.+)$", makefile, re.M).group(1).split()
    pins = lock_pins(LOCK, TORCH_LOCK)
    for name in wanted + models + ["setuptools"]:
        assert re.sub(r"[-_.]+", "-", name).lower() in pins, f"{name} is not pinned"
    assert pins["torch"].endswith("+cpu")


def test_lock_pins_apply_markers_and_lock_record_names_what_differs(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        "numpy==2.4.6 ; python_full_version < '3.0' \\\n    --hash=sha256:" + "a" * 64 + "\n"
        "numpy==9.9.9 ; python_full_version >= '3.0' \\\n    --hash=sha256:" + "b" * 64 + "\n"
        "Scipy_Stats==1.0 \\\n    --hash=sha256:" + "c" * 64 + "\n"
    )
    assert lock_pins(lock) == {"numpy": "9.9.9", "scipy-stats": "1.0"}
    rec = lock_record({"numpy": "9.9.9", "scipy_stats": "1.1", "h5py": None}, lock, tmp_path / "absent.lock")
    assert rec["lock_sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    assert rec["lock_differs"] == {"scipy_stats": {"installed": "1.1", "locked": "1.0"}}  # h5py: neither installed nor locked
    assert lock_record({"numpy": "1"}, tmp_path / "none.lock") == {"lock_sha256": None, "lock_differs": None}


def test_provenance_records_the_shipped_lock_and_fits_the_schema():
    import json

    env = environment("cpu")
    assert env["lock_sha256"] == hashlib.sha256(LOCK.read_bytes()).hexdigest()
    assert isinstance(env["lock_differs"], dict) and set(env["lock_differs"]) <= set(LIBRARIES)
    schema = json.loads((ROOT / "pipeline" / "schemas" / "results.schema.json").read_text())
    jsonschema.validate(env, schema["properties"]["provenance"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**env, "lock_sha256": 3}, schema["properties"]["provenance"])
