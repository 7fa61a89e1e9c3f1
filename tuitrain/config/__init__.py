"""Provides the typed training config: schema, loading, validation, derived values, JSON Schema."""

from tuitrain.config.derived import Derived, compute
from tuitrain.config.dump import dump_yaml, loads_yaml, save_yaml, to_dict
from tuitrain.config.errors import ConfigError, ConfigIssue
from tuitrain.config.loader import Resolved, load_config, parse, resolve
from tuitrain.config.overrides import apply_sets
from tuitrain.config.schema import GROUPS, TrainConfig

__all__ = [
    "GROUPS",
    "ConfigError",
    "ConfigIssue",
    "Derived",
    "Resolved",
    "TrainConfig",
    "apply_sets",
    "compute",
    "dump_yaml",
    "load_config",
    "loads_yaml",
    "parse",
    "resolve",
    "save_yaml",
    "to_dict",
]
