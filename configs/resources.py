"""Files shipped inside the package: data sets, templates, schemas, the example configs.

Everything is read through :mod:`importlib.resources`, so the same code finds the
files in a clone (editable install), in an installed wheel and in an sdist build.
The package must be installed as plain files (not a zip archive).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PACKAGE = "latent_bias_probe"


def package_path(*parts: str) -> Path:
    """The real path of a file or folder shipped in the package, e.g. ``("data", "q-pain")``."""
    root = resources.files(PACKAGE)
    target = root.joinpath(*parts)
    return Path(str(target)).resolve()


def shipped_config(name: str) -> Path | None:
    """The shipped config called ``name`` (``ed_triage_demo`` or ``ed_triage_demo.yaml``), if any."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    stem = name[:-5] if name.endswith(".yaml") else name
    path = package_path("configs", f"{stem}.yaml")
    return path if path.is_file() else None


def shipped_config_names() -> list[str]:
    """The names of the shipped configs, sorted."""
    return sorted(p.stem for p in package_path("configs").glob("*.yaml"))
