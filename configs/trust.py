"""Remote model code runs only when this invocation asks for it.

A config file or a run directory's ``config.json`` may come from anyone, so a stored
``model.trust_remote_code: true`` is refused: the user grants it on the command line
(``--trust-remote-code``), once per invocation, and a warning names the folder whose
code will run.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    from .schema import Config

log = logging.getLogger(__name__)


def apply_trust(cfg: "Config", granted: bool, source: str) -> "Config":
    """Refuse a stored ``trust_remote_code: true`` unless ``granted``; with ``granted``, turn it on and warn.

    ``source`` names where ``cfg`` came from (the config file or run directory).
    Returns the config to run with (with ``granted``, a copy with remote code on;
    ``cfg`` itself is never changed).
    """
    if cfg.model.trust_remote_code and not granted:
        raise InputError(
            f"{source}: model.trust_remote_code: true is refused: a config or run directory cannot enable "
            f"remote code; pass --trust-remote-code on the command line to run the code in {cfg.model.name}"
        )
    if granted:
        log.warning("--trust-remote-code: Python code from the model folder %s will run in this process", cfg.model.name)
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, trust_remote_code=True))
    return cfg
