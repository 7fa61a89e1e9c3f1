"""Provides config loading: YAML/JSON, `extends:` bases, `envs:` overlays, `--set` overrides,
validation into TrainConfig with file/field/line errors, and writing a config back out."""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from tuitrain.config.derived import Derived, compute
from tuitrain.config.errors import ConfigError, ConfigIssue
from tuitrain.config.files import LineMap, read_file
from tuitrain.config.overrides import apply_sets
from tuitrain.config.rules import (
    clear_partners,
    cross_field_issues,
    derived_issues,
    exclusive_issues,
    warnings,
)
from tuitrain.config.schema import TrainConfig

META_KEYS = ("extends", "envs")
MAX_EXTENDS = 32  # files in one extends chain (README "Reliability")


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def deep_merge(base: dict, over: dict) -> dict:
    """Config layer `over` on top of `base`: mappings merge key by key, everything else
    replaces, and a field of an exclusive pair set in `over` clears its partner from `base`."""
    out = _merge(base, over)
    clear_partners(out, over)
    return out


def _is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except (OSError, ValueError):  # NUL bytes, names too long
        return False


def _check_meta(data: dict, lines: LineMap, name: str) -> None:
    """`extends:` is a path or a list of paths; `envs:` maps names to groups of fields."""
    issues = []
    bases = data.get("extends")
    if bases is not None and not (
        (isinstance(bases, str) and bases)
        or (isinstance(bases, list) and all(isinstance(b, str) and b for b in bases))
    ):
        issues.append(
            ConfigIssue(
                "extends",
                f"must be a file path or a list of file paths (got {bases!r})",
                "e.g. extends: demo.yaml",
                name,
                lines.get("extends", (name, None))[1],
            )
        )
    envs = data.get("envs")
    if envs is not None and not (
        isinstance(envs, dict) and all(v is None or isinstance(v, dict) for v in envs.values())
    ):
        issues.append(
            ConfigIssue(
                "envs",
                "must map overlay names to groups of fields",
                "e.g. envs: {dev: {training: {max_steps: 20}}}",
                name,
                lines.get("envs", (name, None))[1],
            )
        )
    if issues:
        raise ConfigError(issues)


def _check_exclusive(data: dict, lines: LineMap, name: str) -> None:
    """One file (and each env overlay in it) is one layer: setting both fields of a pair there
    is an error; across layers the later one wins (deep_merge)."""
    layers = [("", {k: v for k, v in data.items() if k not in META_KEYS})]
    envs = data.get("envs")
    if isinstance(envs, dict):
        layers += [(f"envs.{e}.", v) for e, v in envs.items() if isinstance(v, dict)]
    issues = []
    for prefix, layer in layers:
        for issue in exclusive_issues(layer):
            issue.path = prefix + issue.path
            issue.file, issue.line = lines.get(issue.path, (name, None))
            issues.append(issue)
    if issues:
        raise ConfigError(issues)


def config_path(path: str | Path) -> str | Path:
    """A config file's local path: `pkg:<module>/<file>` names one inside an installed package
    (`pkg:tuitrain/configs/demo.yaml` is the bundled demo, from a checkout or a wheel alike)."""
    from tuitrain.config.paths import PKG_PREFIX, resolve_path

    if not str(path).startswith(PKG_PREFIX):
        return path
    try:
        return resolve_path(str(path))
    except ValueError as exc:
        raise ConfigError(
            [ConfigIssue("", str(exc), "e.g. pkg:tuitrain/configs/demo.yaml", file=str(path))]
        ) from None


def read_with_extends(path: str | Path, _seen: tuple[str, ...] = ()) -> tuple[dict, LineMap]:
    """Read a file and, recursively, the base files it `extends:` (paths relative to it)."""
    path = config_path(path)
    try:
        p = Path(path).resolve()
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(
            [ConfigIssue("", f"not a usable path: {exc}", "check the path", file=str(path))]
        ) from None
    if len(_seen) >= MAX_EXTENDS:
        shown = [*_seen[:2], "...", *_seen[-2:]] if len(_seen) > 4 else list(_seen)
        raise ConfigError(
            [
                ConfigIssue(
                    "extends",
                    f"the extends chain is more than {MAX_EXTENDS} files deep: "
                    + " -> ".join([*shown, str(p)]),
                    f"extend at most {MAX_EXTENDS} files in a chain (one or two is usual)",
                    file=str(_seen[0]),
                )
            ]
        )
    if str(p) in _seen:
        chain = " -> ".join([*_seen, str(p)])
        raise ConfigError(
            [
                ConfigIssue(
                    "extends",
                    f"circular extends: {chain}",
                    "remove one of the extends",
                    file=str(path),
                )
            ]
        )
    data, lines = read_file(path)
    _check_meta(data, lines, str(path))
    _check_exclusive(data, lines, str(path))
    bases = data.pop("extends", None)
    if bases is None:
        return data, lines
    if isinstance(bases, str):
        bases = [bases]
    merged: dict = {}
    merged_lines: LineMap = {}
    for b in bases:
        bp = Path(b) if Path(b).is_absolute() else p.parent / b
        if not _is_file(bp):
            line = lines.get("extends", (str(path), None))[1]
            raise ConfigError(
                [
                    ConfigIssue(
                        "extends",
                        f"base file not found: {b}",
                        f"paths are relative to {p.parent}",
                        file=str(path),
                        line=line,
                    )
                ]
            )
        bdata, blines = read_with_extends(bp, (*_seen, str(p)))
        merged = deep_merge(merged, bdata)
        merged_lines.update(blines)
    # Overlays defined in bases stay available; the child's envs merge on top.
    merged = deep_merge(merged, data)
    merged_lines.update(lines)
    return merged, merged_lines


def apply_env(data: dict, env: str | None, file: str | None = None) -> dict:
    """Apply the named overlay from `envs:` and drop the `envs` key."""
    envs = data.pop("envs", None) or {}
    if env is None:
        return data
    if not isinstance(envs, dict):
        raise ConfigError(
            [ConfigIssue("envs", "must map overlay names to groups of fields", "", file=file)]
        )
    if env not in envs:
        choices = ", ".join(sorted(envs)) or "none defined"
        raise ConfigError(
            [
                ConfigIssue(
                    "envs",
                    f"no environment {env!r} (available: {choices})",
                    "pick one of the available envs, or add it under envs:",
                    file=file,
                )
            ]
        )
    overlay = envs[env] or {}
    if not isinstance(overlay, dict):
        raise ConfigError([ConfigIssue(f"envs.{env}", "must be a group of fields", "", file=file)])
    return deep_merge(data, overlay)


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = TrainConfig
    for part in loc:
        f = model.model_fields.get(str(part))
        if f is None:
            return model
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            return model
    return model


def _issue_from_pydantic(err: dict, lines: LineMap, default_file: str | None) -> ConfigIssue:
    loc = tuple(str(p) for p in err["loc"])
    path = ".".join(loc)
    file, line = lines.get(path, (default_file, None))
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        known = list(parent.model_fields) if parent else []
        guess = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
        scope = ".".join(loc[:-1]) or "the top level"
        fix = (
            f"did you mean {'.'.join((*loc[:-1], guess[0]))!r}?"
            if guess
            else f"known keys in {scope}: {', '.join(known)}"
        )
        return ConfigIssue(path, "unknown key", fix, file, line)
    msg = err["msg"]
    fix = ""
    if kind == "literal_error":
        fix = f"use one of {err.get('ctx', {}).get('expected', '')}"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        fix = "choose a value within the bounds"
    elif kind in ("float_parsing", "int_parsing", "float_type", "int_type"):
        fix = (
            "write a number, e.g. 5e-5 or 0.00005"
            if "float" in kind
            else "write a whole number, e.g. 8"
        )
    elif kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    elif kind == "string_too_long":
        fix = "shorten it (a config holds settings; long text belongs in a file)"
    return ConfigIssue(
        path,
        f"{msg} (got {_shown(err.get('input'))})" if kind != "value_error" else msg,
        fix,
        file,
        line,
    )


def _shown(value: Any, limit: int = 60) -> str:
    """A value as the error shows it: its repr, cut (a 50 MB string is not printed back)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def parse(data: dict, lines: LineMap | None = None, file: str | None = None) -> TrainConfig:
    """Validate a plain dict into a TrainConfig; every problem is reported at once."""
    lines = lines or {}
    stray = [k for k in META_KEYS if k in data]
    if stray:
        data = {k: v for k, v in data.items() if k not in META_KEYS}
    try:
        cfg = TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_issue_from_pydantic(e, lines, file) for e in exc.errors()]) from None
    issues = cross_field_issues(cfg)
    for i in issues:
        i.file = i.file or file
        i.line = i.line or lines.get(i.path, (None, None))[1]
    if issues:
        raise ConfigError(issues)
    return cfg


@dataclass
class Resolved:
    """A validated config with its derived values, advice, and where it came from."""

    config: TrainConfig
    derived: Derived
    warnings: list[str] = field(default_factory=list)
    source: str | None = None
    lines: LineMap | None = None


def resolve(
    cfg: TrainConfig,
    source: str | None = None,
    lines: LineMap | None = None,
    check_data: bool = True,
    samples: tuple[int | None, bool] = (None, False),
) -> Resolved:
    """Compute derived values and run the checks that need them. Reads no data file: step
    counts need `samples` (training examples, whether estimated), which the caller gets from
    the data estimate (`tuitrain.data.estimate.with_data`) or from a run that counted them.
    `check_data`: also check that a pkg: model path is installed."""
    n, estimated = samples
    name = cfg.model.name_or_path
    if check_data and name and name.startswith("pkg:"):
        from tuitrain.config.paths import resolve_path

        try:
            resolve_path(name)
        except ValueError as exc:
            line = (lines or {}).get("model.name_or_path", (None, None))[1]
            raise ConfigError(
                [
                    ConfigIssue(
                        "model.name_or_path",
                        str(exc),
                        "install the package or give a local path",
                        source,
                        line,
                    )
                ]
            ) from None
    d = compute(cfg, n, estimated)
    issues = derived_issues(cfg, d)
    for i in issues:
        i.file = source
        i.line = (lines or {}).get(i.path, (None, None))[1]
    if issues:
        raise ConfigError(issues)
    return Resolved(cfg, d, warnings(cfg, d), source, lines)


def load_config(
    path: str | Path,
    env: str | None = None,
    sets: list[str] | tuple[str, ...] = (),
    check_data: bool = True,
) -> Resolved:
    """Read, merge, override, validate and resolve a config file (a path, or
    `pkg:tuitrain/configs/demo.yaml` for a config shipped inside an installed package)."""
    path = config_path(path)
    data, lines = read_with_extends(path)
    data = apply_env(data, env, str(path))
    if sets:
        data = apply_sets(data, sets)
        for s in sets:
            lines[s.partition("=")[0].strip()] = ("--set", None)  # type: ignore[assignment]
    anchor_paths(data, Path(path).resolve().parent)
    cfg = parse(data, lines, str(path))
    return resolve(cfg, str(path), lines, check_data)


# Fields holding file paths: relative values are taken from the config file's folder (where
# the file exists there), so a config works from any working directory and its run copy
# (runs/<id>/config.yaml) still points at the same files.
PATH_FIELDS = (
    ("data", "train_file"),
    ("data", "validation_file"),
    ("launch", "accelerate_config"),
    ("model", "name_or_path"),
)


def anchor_paths(data: dict, base: Path) -> None:
    """Make relative path fields absolute against `base` when the target exists there."""
    for group, key in PATH_FIELDS:
        node = data.get(group)
        value = node.get(key) if isinstance(node, dict) else None
        if not isinstance(value, str) or not value or value.startswith("pkg:"):
            continue
        try:
            p = Path(value).expanduser()
            if not p.is_absolute() and (base / p).exists():
                node[key] = str((base / p).resolve())
        except (RuntimeError, OSError, ValueError):
            continue  # not a usable path; the field's own check reports it
