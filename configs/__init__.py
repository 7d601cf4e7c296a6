"""Job configurations: the YAML files in this folder and the schema that validates them."""

from configs.schema import (
    BenchmarkConfig,
    Config,
    ConfigError,
    ExtractConfig,
    ModelConfig,
    ScoringConfig,
    load_config,
)

__all__ = [
    "BenchmarkConfig",
    "Config",
    "ConfigError",
    "ExtractConfig",
    "ModelConfig",
    "ScoringConfig",
    "load_config",
]
