"""Where and with what a run computed: device, GPU, attention, torch/CUDA and library versions,
and the lock file the environment was meant to be installed from."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import re
from pathlib import Path
from typing import Any

from packaging.markers import InvalidMarker, Marker

LIBRARIES = ("torch", "transformers", "accelerate", "transformer-lens", "nnsight", "numpy", "scipy", "statsmodels", "h5py")
#: the locks ``make setup`` installs from, shipped at the repository root
ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
TORCH_LOCK = ROOT / "requirements-torch-cpu.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(*paths: Path) -> dict[str, str]:
    """``{normalised name: version}`` of the pins in pip lock files that apply to this interpreter.

    A pin whose environment marker is false here (``numpy==2.5.5 ; python_full_version >= '3.12'``
    on 3.11) is skipped; missing files give no pins.
    """
    pins: dict[str, str] = {}
    for path in paths:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            m = _PIN.match(line.strip())
            if not m:
                continue
            name, version, marker = m.groups()
            try:
                if marker and not Marker(marker).evaluate():
                    continue
            except InvalidMarker:
                continue
            pins[_normal(name)] = version
    return pins


def lock_record(versions: dict[str, str | None], lock: Path = LOCK, torch_lock: Path = TORCH_LOCK) -> dict[str, Any]:
    """``lock_sha256`` (sha256 of ``lock`` as shipped; None when absent) and ``lock_differs``.

    ``lock_differs`` maps each library of ``versions`` whose installed version is not its pin in
    ``lock`` or ``torch_lock`` to ``{"installed", "locked"}``: empty when the run used the locked
    versions, None when there is no lock to compare with.
    """
    if not lock.is_file():
        return {"lock_sha256": None, "lock_differs": None}
    pins = lock_pins(lock, torch_lock)
    differs = {
        name: {"installed": installed, "locked": pins.get(_normal(name))}
        for name, installed in versions.items()
        if pins.get(_normal(name)) != installed
    }
    return {"lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest(), "lock_differs": differs}


def environment(device: str, model: Any = None) -> dict[str, Any]:
    """A JSON-able record of the machine a model ran on (``cache.h5`` and results.json ``provenance``)."""
    import torch

    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    gpu = None
    if str(device).startswith("cuda") and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(torch.device(device))
    device_map = getattr(model, "hf_device_map", None) if model is not None else None
    attn = getattr(getattr(model, "config", None), "_attn_implementation", None)
    return {
        "device": str(device),
        "gpu": gpu,
        "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "device_map": {k: str(v) for k, v in device_map.items()} if device_map else None,
        "attn_implementation": attn if isinstance(attn, str) else None,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "libraries": versions,
        **lock_record(versions),
    }
