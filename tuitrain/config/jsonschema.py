"""Provides the JSON Schema of config files (extends/envs included) for editor validation."""

from __future__ import annotations

from tuitrain.config.schema import TrainConfig


def json_schema() -> dict:
    """Draft 2020-12 schema; editors (VS Code YAML/JSON) validate config files with it."""
    schema = TrainConfig.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "tuitrain training config"
    props = schema.setdefault("properties", {})
    props["extends"] = {
        "description": "Base config file(s) this one builds on, relative to this file.",
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
    }
    group_props = {k: v for k, v in props.items() if k not in ("extends", "envs")}
    props["envs"] = {
        "description": "Named overlays (dev, prod, ...) chosen with --env.",
        "type": "object",
        "additionalProperties": {"type": "object", "properties": group_props},
    }
    return schema
