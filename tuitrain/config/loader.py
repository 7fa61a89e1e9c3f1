"""Provides config loading: YAML/JSON, `extends:` bases, `envs:` overlays, `--set` overrides,
validation into TrainConfig with file/field/line errors, and writing a config back out."""

from __future__ import annotations

import copy
import difflib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from tuitrain.config.derived import Derived, compute
from tuitrain.config.errors import ConfigError, ConfigIssue
from tuitrain.config.rules import (
    clear_partner,
    clear_partners,
    cross_field_issues,
    derived_issues,
    exclusive_issues,
    warnings,
)
from tuitrain.config.schema import TrainConfig

META_KEYS = ("extends", "envs")
LineMap = dict[str, tuple[str, int]]


# YAML treats these as line breaks (or cannot print them plainly): strings holding them must be
# written double-quoted with escapes, or they come back changed.
_UNSAFE = {"\x85", "\u2028", "\u2029", "\ufeff"}


def _represent_str(representer, value: str):
    if any(c in _UNSAFE or (not c.isprintable() and c not in "\n\t") for c in value):
        return representer.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return representer.represent_str(value)


def _yaml() -> YAML:
    # YAML 1.2 core schema: `5e-5` is a float (PyYAML's 1.1 rules load it as a string).
    y = YAML(typ="rt")
    y.version = (1, 2)
    y.default_flow_style = False
    y.representer.add_representer(str, _represent_str)
    return y


def _plain(node: Any) -> Any:
    """ruamel round-trip nodes -> plain dicts/lists/scalars."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if type(node).__name__ in ("ScalarFloat",):
        return float(node)
    if type(node).__name__ in ("ScalarInt",):
        return int(node)
    if type(node).__name__ in ("ScalarBoolean",):
        return bool(node)
    if isinstance(node, str):
        return str(node)
    return node


def _collect_lines(node: Any, file: str, prefix: str, out: LineMap) -> None:
    if isinstance(node, CommentedMap):
        for k, v in node.items():
            path = f"{prefix}{k}"
            try:
                line = node.lc.key(k)[0] + 1
            except (KeyError, TypeError):
                line = None
            if line is not None:
                out[path] = (file, line)
            _collect_lines(v, file, path + ".", out)
    elif isinstance(node, CommentedSeq):
        for i, v in enumerate(node):
            _collect_lines(v, file, f"{prefix}{i}.", out)


def read_file(path: str | Path) -> tuple[dict, LineMap]:
    """Read one YAML or JSON file into a plain dict plus a map of dotted key -> (file, line)."""
    p = Path(path)
    name = str(path)
    try:
        if p.is_dir():
            raise ConfigError(
                [ConfigIssue("", "this is a folder", "pass a config file", file=name)]
            )
        if not p.is_file():
            raise ConfigError(
                [ConfigIssue("", f"no such config file: {name}", "check the path", file=name)]
            )
        raw = p.read_bytes()
    except (OSError, ValueError) as exc:  # unreadable, or a name the OS refuses (NUL byte)
        raise ConfigError(
            [ConfigIssue("", f"cannot read the file: {exc}", "check the path", file=name)]
        ) from None
    text = _decode(raw, name)
    lines: LineMap = {}
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            node = _yaml().load(text)
            _collect_lines(node, name, "", lines)
            data = _plain(node)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [
                ConfigIssue(
                    "", f"not valid JSON: {exc.msg}", "fix the syntax", file=name, line=exc.lineno
                )
            ]
        ) from exc
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        msg = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            [ConfigIssue("", f"not valid YAML: {msg}", "fix the syntax", file=name, line=line)]
        ) from exc
    except RecursionError:
        raise ConfigError(
            [
                ConfigIssue(
                    "",
                    "nested too deeply (or a YAML alias that contains itself)",
                    "write the config as plain groups of fields",
                    file=name,
                )
            ]
        ) from None
    except Exception as exc:  # the parsers' own failures on hostile input: still a bad file
        raise ConfigError(
            [
                ConfigIssue(
                    "",
                    f"cannot be read as {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: "
                    f"{type(exc).__name__}: {exc}",
                    "fix the syntax",
                    file=name,
                )
            ]
        ) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [
                ConfigIssue(
                    "",
                    "the top level must be a mapping of groups (model:, data:, ...)",
                    "start the file with e.g. `model:`",
                    file=name,
                    line=1,
                )
            ]
        )
    return data, lines


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _decode(raw: bytes, name: str) -> str:
    """The file's text; anything that is not UTF-8 (a binary passed by mistake) is a ConfigError."""
    try:
        return raw.decode("utf-8-sig")  # a BOM from a Windows editor is fine
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            [
                ConfigIssue(
                    "",
                    f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                    "is this a config file?",
                    "pass a YAML or JSON config file saved as UTF-8",
                    file=name,
                    line=line,
                )
            ]
        ) from None


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


def parse_scalar(text: str) -> Any:
    """A --set value with YAML 1.2 typing: 5e-5 -> float, true -> bool, [a, b] -> list, null -> None."""
    try:
        value = _plain(_yaml().load(text))
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
        values.append((".".join(parts), parse_scalar(raw)))
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
    return ConfigIssue(
        path, f"{msg} (got {err.get('input')!r})" if kind != "value_error" else msg, fix, file, line
    )


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


def to_dict(cfg: TrainConfig) -> dict:
    """The config as plain JSON-compatible data (every field, defaults included)."""
    return cfg.model_dump(mode="json")


def dump_yaml(cfg: TrainConfig | dict, header: str | None = None) -> str:
    """YAML text for a config; loading it back gives an equal config."""
    data = to_dict(cfg) if isinstance(cfg, TrainConfig) else cfg
    buf = io.StringIO()
    y = _yaml()
    y.version = None  # no %YAML directive in files people edit
    if header:
        buf.write("".join(f"# {line}\n" for line in header.splitlines()))
    y.dump(data, buf)
    return buf.getvalue()


def loads_yaml(text: str) -> dict:
    """Parse YAML text (1.2 rules) into plain data."""
    data = _plain(_yaml().load(text))
    return data or {}


def save_yaml(cfg: TrainConfig, path: str | Path, header: str | None = None) -> Path:
    """Write a config as YAML (atomically: a crash never leaves half a file)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(dump_yaml(cfg, header), encoding="utf-8")
    tmp.replace(p)
    return p
