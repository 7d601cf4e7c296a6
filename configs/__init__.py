"""Job configurations: the YAML files in this folder and the schema that validates them."""

from .errors import InputError
from .schema import (
    BenchmarkConfig,
    Config,
    ConfigError,
    ExtractConfig,
    ModelConfig,
    ProbesConfig,
    ScoringConfig,
    load_config,
)

__all__ = [
    "BenchmarkConfig",
    "Config",
    "ConfigError",
    "ExtractConfig",
    "InputError",
    "ModelConfig",
    "ProbesConfig",
    "ScoringConfig",
    "load_config",
]
