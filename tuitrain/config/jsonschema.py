"""Provides the JSON Schema of config files (extends/envs included) for editor validation."""

from __future__ import annotations

from typing import Any

from tuitrain.config.rules import EXCLUSIVE, field_default
from tuitrain.config.schema import TrainConfig


def _exclusive(a: str, b: str, depth: int) -> dict:
    """'Not both set' for fields a and b below the schema node at `depth` path parts."""

    def chain(path: str) -> dict:
        parts = path.split(".")[depth:]
        node: dict[str, Any] = {"not": {"const": field_default(path)}}
        for part in reversed(parts):
            node = {"type": "object", "required": [part], "properties": {part: node}}
        return node

    return {
        "description": f"{a} and {b} exclude each other in one file (a later layer setting one clears the other)",
        "not": {"allOf": [chain(a), chain(b)]},
    }


def _add_exclusive(schema: dict) -> None:
    """Put each EXCLUSIVE pair on the group definition holding both fields (so it also holds
    inside env overlays, which reuse the group definitions), or on the root."""
    for a, b in EXCLUSIVE:
        pa, pb = a.split("."), b.split(".")
        common = 0
        while common < min(len(pa), len(pb)) - 1 and pa[common] == pb[common]:
            common += 1
        model: Any = TrainConfig
        for part in pa[:common]:
            model = model.model_fields[part].annotation
        node = schema["$defs"][model.__name__] if common else schema
        node.setdefault("allOf", []).append(_exclusive(a, b, common))


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
    _add_exclusive(schema)
    group_props = {k: v for k, v in props.items() if k not in ("extends", "envs")}
    props["envs"] = {
        "description": "Named overlays (dev, prod, ...) chosen with --env.",
        "type": "object",
        "additionalProperties": {"type": "object", "properties": group_props},
    }
    return schema
