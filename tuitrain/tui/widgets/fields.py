"""Provides the config form's field model: one FieldSpec per TrainConfig leaf, and text <-> value."""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from tuitrain.config.dump import loads_yaml
from tuitrain.config.schema import TrainConfig


@dataclass(frozen=True)
class FieldSpec:
    """One editable leaf of the config: where it lives, what widget edits it, its help."""

    path: str  # dotted, e.g. "model.arch.hidden_size"
    section: str  # "model" or "model.arch"
    name: str
    kind: str  # bool | choice | int | float | str | list
    optional: bool
    choices: tuple = ()
    help: str = ""

    @property
    def widget_id(self) -> str:
        """DOM id of the widget editing this field."""
        return "f-" + self.path.replace(".", "--")


def _kind(annotation: Any) -> tuple[str, bool, tuple]:
    """(kind, optional, choices) for a field annotation."""
    optional = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        annotation = args[0] if len(args) == 1 else str
        origin = typing.get_origin(annotation)
    if origin is Literal:
        return "choice", optional, tuple(typing.get_args(annotation))
    if origin is list:
        return "list", optional, ()
    if annotation is bool:
        return "bool", optional, ()
    if annotation is int:
        return "int", optional, ()
    if annotation is float:
        return "float", optional, ()
    return "str", optional, ()


def _walk(model: type[BaseModel], prefix: str, out: dict[str, list[FieldSpec]]) -> None:
    section = prefix.rstrip(".")
    specs = out.setdefault(section, [])
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            nested.append((name, ann))
            continue
        kind, optional, choices = _kind(ann)
        specs.append(
            FieldSpec(prefix + name, section, name, kind, optional, choices, info.description or "")
        )
    # Nested groups (model.arch) become their own section right after their parent.
    for name, ann in nested:
        _walk(ann, f"{prefix}{name}.", out)


def sections() -> dict[str, list[FieldSpec]]:
    """Every config section in schema order, each with its fields (generated from TrainConfig)."""
    out: dict[str, list[FieldSpec]] = {}
    for group, info in TrainConfig.model_fields.items():
        _walk(info.annotation, group + ".", out)  # type: ignore[arg-type]
    return out


def section_help(section: str) -> str:
    """The description of a section's group (its model docstring)."""
    model: type[BaseModel] = TrainConfig
    for part in section.split("."):
        model = model.model_fields[part].annotation  # type: ignore[assignment]
    return (model.__doc__ or "").strip()


def to_text(spec: FieldSpec, value: Any) -> str:
    """How a value is shown in an Input (floats in full precision, lists comma-separated)."""
    if value is None:
        return ""
    if spec.kind == "list" and isinstance(value, list):
        if any(not isinstance(v, str | int | float) for v in value):
            # Structured items (chat-message prompts): a JSON flow list reads back exactly.
            return json.dumps(value, ensure_ascii=False)
        items = [str(v) for v in value]
        # Comma-separated when that reads back exactly; else a YAML flow list, e.g. ["def main(", "import "].
        if all(
            i and i == i.strip() and "," not in i and not i.startswith(("[", '"', "'"))
            for i in items
        ):
            return ", ".join(items)
        return json.dumps(items, ensure_ascii=False)
    if isinstance(value, float) and not isinstance(value, bool):
        return repr(value)
    return str(value)


def from_text(spec: FieldSpec, text: str) -> Any:
    """Parse Input text into a value; what cannot be parsed stays a string so validation
    reports it against this field (with the fix) instead of losing the user's text."""
    t = text.strip()
    if t == "" and spec.optional:
        return None
    if spec.kind == "float":
        try:
            return float(t)  # accepts 5e-5, 5E-5, 5.0e-05, 0.00005
        except ValueError:
            return text
    if spec.kind == "int":
        try:
            return int(t)
        except ValueError:
            try:
                f = float(t)  # 1e3 is a fine way to write 1000
            except ValueError:
                return text
            return int(f) if f.is_integer() else text
    if spec.kind == "list":
        if t.startswith("["):
            try:
                value = loads_yaml(t)
            except Exception:  # ruamel raises several types; the raw text shows the error
                return text
            if not isinstance(value, list):
                return text
            return [v if isinstance(v, list | dict) else str(v) for v in value]
        return [p.strip() for p in t.split(",") if p.strip()]
    return text


def get_path(data: dict, path: str) -> Any:
    """Value at a dotted path of nested dicts (None where missing)."""
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def set_path(data: dict, path: str, value: Any) -> None:
    """Set a dotted path in nested dicts, creating groups as needed."""
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
