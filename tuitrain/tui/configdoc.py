"""Provides the editor's document: the config being edited as plain data, loaded from a file and env."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from tuitrain.config import ConfigError, ConfigIssue, TrainConfig, apply_sets, parse, to_dict
from tuitrain.config.loader import anchor_paths, apply_env, deep_merge, read_with_extends

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


@dataclass
class Document:
    """What the editor edits: every field's value (invalid ones kept as typed), plus its origin."""

    data: dict
    source: str | None = None
    env: str | None = None
    envs: list[str] = field(default_factory=list)
    load_issues: list[ConfigIssue] = field(default_factory=list)
    # The values as the file gives them (before --set and edits): what a save compares against.
    baseline: dict = field(default_factory=dict)


def defaults() -> dict:
    """Every field at its default, as plain data."""
    # TrainConfig() fails cross-field checks (no data), but its fields all have defaults.
    return to_dict(TrainConfig.model_construct())


def load_document(
    path: str | Path | None, env: str | None = None, sets: list[str] | tuple[str, ...] = ()
) -> Document:
    """Read a config file for editing; problems are kept as issues, never raised, so the
    editor opens on a broken file and shows what to fix."""
    path = DEMO_CONFIG if path is None else Path(path)
    try:
        raw, _ = read_with_extends(path)
    except ConfigError as exc:
        return Document(defaults(), str(path), None, [], exc.issues, defaults())
    envs = sorted((raw.get("envs") or {}).keys())
    issues: list[ConfigIssue] = []
    try:
        data = apply_env(raw, env, str(path))
    except ConfigError as exc:
        issues += exc.issues
        env = None
        data = {k: v for k, v in raw.items() if k != "envs"}
    base = copy.deepcopy(data)
    anchor_paths(base, path.resolve().parent)
    if sets:
        data = apply_sets(data, sets)
    anchor_paths(data, path.resolve().parent)
    return Document(
        deep_merge(defaults(), data), str(path), env, envs, issues, deep_merge(defaults(), base)
    )


def validate(data: dict) -> tuple[TrainConfig | None, list[ConfigIssue]]:
    """Parse the document: the config, or every issue found (cheap: no file reads)."""
    try:
        return parse(data), []
    except ConfigError as exc:
        return None, exc.issues
