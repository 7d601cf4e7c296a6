"""Where and with what a run computed: device, GPU, attention, torch/CUDA and library versions."""

from __future__ import annotations

import importlib.metadata
import platform
from typing import Any

LIBRARIES = ("torch", "transformers", "accelerate", "transformer-lens", "nnsight", "numpy", "scipy", "statsmodels", "h5py")


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
    }
