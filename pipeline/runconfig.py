"""``config.json``: the resolved config a run was made with, written by extract and read by every later stage."""

from __future__ import annotations

import json
from pathlib import Path

from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.files import atomic_write_text
from latent_bias_probe.configs.schema import Config, config_from_dict

from .artifacts import RunDir


def save_run_config(run_dir: str | Path | RunDir, cfg: Config) -> Path:
    """Record the resolved config in ``DIR/config.json`` atomically (later stages read it back)."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    path = run / "config.json"
    text = json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n"
    if path.is_file() and path.read_text(encoding="utf-8") == text and "config.json" in run.manifest:
        return path
    run.invalidate("config.json")
    atomic_write_text(path, text)
    run.record("config.json")
    run.forget()
    return path


def load_run_config(run_dir: str | Path) -> Config:
    """Read ``DIR/config.json`` written by :func:`save_run_config`; one edited by hand since is refused."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise InputError(f"{path}: not found (is {run_dir} a run directory made by 'probe run' or 'probe extract'?)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    cfg = config_from_dict(data, Path.cwd(), str(path))  # what is wrong with its contents is named first
    RunDir(run_dir).check_config()
    return cfg


# ---------------------------------------------------------------------- schema
