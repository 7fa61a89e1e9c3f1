"""Provides `--set` overrides: dotted `group.key=value` edits with YAML 1.2 typing, applied as one
layer (an exclusive pair may not be set twice; a field set clears its partner from the files)."""

from __future__ import annotations

import copy
from typing import Any

from ruamel.yaml.error import YAMLError

from tuitrain.config.errors import ConfigError, ConfigIssue
from tuitrain.config.files import UnsafeYaml, load_yaml_text, plain
from tuitrain.config.rules import clear_partner, exclusive_issues


def parse_scalar(text: str) -> Any:
    """A --set value with YAML 1.2 typing: 5e-5 -> float, true -> bool, [a, b] -> list, null -> None.
    Plain YAML only: a tag (!!python/...) or an alias bomb raises UnsafeYaml."""
    try:
        value = plain(load_yaml_text(text))
    except YAMLError:
        return text
    return text if value is None and text.strip() not in ("null", "~", "") else value


def apply_sets(data: dict, sets: list[str] | tuple[str, ...]) -> dict:
    """Apply dotted overrides `group.key=value` (creating intermediate groups). The --set list
    is one layer: it may not set both fields of an exclusive pair, and one it sets clears the
    other coming from the files."""
    out = copy.deepcopy(data)
    layer: dict = {}
    values: list[tuple[str, Any]] = []
    for item in sets:
        if "=" not in item:
            raise ConfigError(
                [
                    ConfigIssue(
                        item,
                        "an override must look like group.key=value",
                        "e.g. --set optimizer.lr=5e-5",
                        file="--set",
                    )
                ]
            )
        key, _, raw = item.partition("=")
        parts = [s for s in key.strip().split(".") if s]
        if not parts:
            raise ConfigError(
                [
                    ConfigIssue(
                        item, "empty key in override", "e.g. --set optimizer.lr=5e-5", file="--set"
                    )
                ]
            )
        try:
            values.append((".".join(parts), parse_scalar(raw)))
        except UnsafeYaml as exc:
            raise ConfigError(
                [ConfigIssue(".".join(parts), str(exc), "give a plain value", file="--set")]
            ) from None
        _set(layer, *values[-1])
    issues = exclusive_issues(layer)
    for i in issues:
        i.file = "--set"
    if issues:
        raise ConfigError(issues)
    for key, value in values:
        set_dotted(out, key, value)
    return out


def set_dotted(data: dict, path: str, value: Any) -> list[str]:
    """Set data[a][b][c] = value for path a.b.c, creating groups on the way. A later value wins:
    setting one field of an exclusive pair clears the other; returns the cleared paths."""
    _set(data, path, value)
    return clear_partner(data, path)


def _set(data: dict, path: str, value: Any) -> None:
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[parts[-1]] = value
