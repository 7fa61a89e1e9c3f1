"""Provides reading config and sweep files safely: a size cap, plain YAML only (no language tags),
a bound on what aliases expand to and on nesting, and errors that name the file and the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tuitrain.config.errors import ConfigError, ConfigIssue

LineMap = dict[str, tuple[str, int]]

# Limits on a config (or sweep) file; README "Reliability" lists them. A real config is a few KB
# with a few hundred values nested 3-5 deep: these are far above that and far below what makes
# reading slow (an alias "bomb" of 9 lines expands to 387 million values).
MAX_FILE_BYTES = 1_048_576  # 1 MiB
MAX_VALUES = 100_000  # values after aliases are expanded
MAX_DEPTH = 32  # levels of nesting

# Plain YAML only: anything else (!!python/object..., !custom) names code or types a config
# never holds. `merge` is the `<<: *base` key.
PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}" for t in ("map", "seq", "str", "int", "float", "bool", "null", "merge")
)


# YAML treats these as line breaks (or cannot print them plainly): strings holding them must be
# written double-quoted with escapes, or they come back changed.
_UNSAFE = {"\x85", "\u2028", "\u2029", "\ufeff"}


def _represent_str(representer, value: str):
    if any(c in _UNSAFE or (not c.isprintable() and c not in "\n\t") for c in value):
        return representer.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return representer.represent_str(value)


def yaml() -> YAML:
    """The round-trip YAML reader/writer with YAML 1.2 rules (`5e-5` is a float)."""
    y = YAML(typ="rt")
    y.version = (1, 2)
    y.default_flow_style = False
    y.representer.add_representer(str, _represent_str)
    return y


class UnsafeYaml(ValueError):
    """YAML that is not plain data, or too big once expanded: the message says which."""


def _tag(node: Node) -> str:
    tag = node.tag
    return str(getattr(tag, "value", tag) or "")


def _shown_tag(tag: str) -> str:
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org") else tag


def check_nodes(root: Node) -> None:
    """Reject language tags, nesting deeper than MAX_DEPTH, aliases that contain themselves,
    and more than MAX_VALUES values once aliases are expanded. Linear in the distinct nodes:
    an alias is counted by its expanded size without expanding it."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(node: Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise UnsafeYaml("a YAML alias contains itself (a recursive structure)")
        if depth > MAX_DEPTH:
            raise UnsafeYaml(f"nested more than {MAX_DEPTH} levels deep")
        tag = _tag(node)
        if tag not in PLAIN_TAGS:
            line = node.start_mark.line + 1 if node.start_mark else None
            raise UnsafeYaml(
                f"the YAML tag {_shown_tag(tag)} (line {line}) is not allowed: configs are "
                "plain data (mappings, lists, strings, numbers, true/false, null)"
            )
        open_.add(key)
        n = 1
        if isinstance(node, MappingNode):
            for k, v in node.value:
                n += size(k, depth + 1) + size(v, depth + 1)
                if n > MAX_VALUES:
                    break
        elif isinstance(node, SequenceNode):
            for v in node.value:
                n += size(v, depth + 1)
                if n > MAX_VALUES:
                    break
        open_.discard(key)
        if n > MAX_VALUES:
            raise UnsafeYaml(
                f"more than {MAX_VALUES:,} values once YAML aliases (*name) are expanded"
            )
        sizes[key] = n
        return n

    if not isinstance(root, ScalarNode | MappingNode | SequenceNode):
        return
    size(root, 0)


def load_yaml_text(text: str) -> Any:
    """Parse YAML text into ruamel round-trip nodes after check_nodes() (UnsafeYaml if not)."""
    y = yaml()
    y.tags = {}
    constructor, parser = y.get_constructor_parser(text)
    try:
        node = constructor.composer.get_single_node()
        if node is None:
            return None
        check_nodes(node)
        return constructor.construct_document(node)
    finally:
        parser.dispose()


def plain(node: Any) -> Any:
    """ruamel round-trip nodes -> plain dicts/lists/scalars."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
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


def _depth(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when JSON data nests deeper than `limit` (checked without recursion)."""
    stack = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if d > limit:
            return True
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return False


def _issue(message: str, fix: str, name: str, line: int | None = None) -> ConfigError:
    return ConfigError([ConfigIssue("", message, fix, file=name, line=line)])


def _read_bytes(p: Path, name: str) -> bytes:
    try:
        if p.is_dir():
            raise _issue("this is a folder", "pass a config file", name)
        if p.exists() and not p.is_file():
            raise _issue(
                "not a regular file (a device, pipe or socket)", "pass a config file", name
            )
        if not p.is_file():
            raise _issue(f"no such config file: {name}", "check the path", name)
        with p.open("rb") as fh:  # never more than the cap: a huge file is refused at once
            raw = fh.read(MAX_FILE_BYTES + 1)
    except (OSError, ValueError) as exc:  # unreadable, or a name the OS refuses (NUL byte)
        raise _issue(f"cannot read the file: {exc}", "check the path", name) from None
    if len(raw) > MAX_FILE_BYTES:
        raise _issue(
            f"the file is larger than {MAX_FILE_BYTES // 1024} KiB, the limit for a config",
            "a config holds settings, not data: point data.train_file at the data instead",
            name,
        )
    return raw


def _decode(raw: bytes, name: str) -> str:
    """The file's text; anything that is not UTF-8 (a binary passed by mistake) is a ConfigError."""
    try:
        return raw.decode("utf-8-sig")  # a BOM from a Windows editor is fine
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise _issue(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "is this a config file?",
            "pass a YAML or JSON config file saved as UTF-8",
            name,
            line,
        ) from None


def read_file(path: str | Path) -> tuple[dict, LineMap]:
    """Read one YAML or JSON file into a plain dict plus a map of dotted key -> (file, line)."""
    p = Path(path)
    name = str(path)
    text = _decode(_read_bytes(p, name), name)
    is_json = p.suffix.lower() == ".json"
    lines: LineMap = {}
    try:
        if is_json:
            data = json.loads(text)
            if _depth(data):
                raise UnsafeYaml(f"nested more than {MAX_DEPTH} levels deep")
        else:
            node = load_yaml_text(text)
            data = plain(node)
            _collect_lines(node, name, "", lines)
    except json.JSONDecodeError as exc:
        raise _issue(f"not valid JSON: {exc.msg}", "fix the syntax", name, exc.lineno) from None
    except UnsafeYaml as exc:
        raise _issue(
            str(exc), "write the config as plain groups of fields (no tags, few aliases)", name
        ) from None
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        msg = getattr(exc, "problem", None) or str(exc)
        raise _issue(f"not valid YAML: {msg}", "fix the syntax", name, line) from None
    except RecursionError:
        raise _issue(
            f"nested too deeply (a config has at most {MAX_DEPTH} levels)",
            "write the config as plain groups of fields",
            name,
        ) from None
    except Exception as exc:  # the parsers' own failures on hostile input: still a bad file
        kind = "JSON" if is_json else "YAML"
        raise _issue(
            f"cannot be read as {kind}: {type(exc).__name__}: {exc}", "fix the syntax", name
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _issue(
            "the top level must be a mapping of groups (model:, data:, ...)",
            "start the file with e.g. `model:`",
            name,
            1,
        )
    return data, lines
