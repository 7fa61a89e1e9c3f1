"""Provides the config as data and as YAML: to_dict, dump_yaml, loads_yaml and save_yaml (atomic)."""

from __future__ import annotations

import io
from pathlib import Path

from tuitrain.config.files import load_yaml_text, plain, yaml
from tuitrain.config.schema import TrainConfig


def to_dict(cfg: TrainConfig) -> dict:
    """The config as plain JSON-compatible data (every field, defaults included)."""
    return cfg.model_dump(mode="json")


def dump_yaml(cfg: TrainConfig | dict, header: str | None = None) -> str:
    """YAML text for a config; loading it back gives an equal config."""
    data = to_dict(cfg) if isinstance(cfg, TrainConfig) else cfg
    buf = io.StringIO()
    y = yaml()
    y.version = None  # no %YAML directive in files people edit
    if header:
        buf.write("".join(f"# {line}\n" for line in header.splitlines()))
    y.dump(data, buf)
    return buf.getvalue()


def loads_yaml(text: str) -> dict:
    """Parse YAML text (1.2 rules) into plain data."""
    data = plain(load_yaml_text(text))
    return data or {}


def save_yaml(cfg: TrainConfig, path: str | Path, header: str | None = None) -> Path:
    """Write a config as YAML (atomically: a crash never leaves half a file)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(p))
    tmp = p.with_name(p.name + ".tmp")
    try:
        tmp.write_text(dump_yaml(cfg, header), encoding="utf-8")
        tmp.replace(p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p
