"""Provides the editor's save: a ruamel.yaml round trip of the user's own file that changes only
the edited values (comments, key order, quoting, `extends:` and `envs:` are kept as written)."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from tuitrain.config.loader import config_path
from tuitrain.config.rules import field_default
from tuitrain.tui.widgets.fields import get_path

_MISSING = object()


class SaveError(Exception):
    """The edits could not be written so that the file loads back as edited (message says why)."""


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.version = (1, 2)  # `5e-5` is a float, as the loader reads it
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap the user's long lines
    return y


def changed_paths(data: dict, baseline: dict, paths: list[str]) -> list[str]:
    """The field paths whose value in `data` differs from `baseline` (the file as loaded)."""
    return [p for p in paths if get_path(data, p) != get_path(baseline, p)]


def _node(tree: CommentedMap, parts: list[str], create: bool) -> Any:
    node: Any = tree
    for part in parts:
        nxt = node.get(part) if isinstance(node, dict) else None
        if not isinstance(nxt, dict):
            if not create:
                return None
            nxt = CommentedMap()
            if isinstance(node, CommentedMap) and "envs" in node and node is tree:
                node.insert(list(node).index("envs"), part, nxt)  # groups stay above envs:
            else:
                node[part] = nxt
        node = nxt
    return node


def _has(tree: Any, path: str) -> bool:
    *groups, key = path.split(".")
    node = _node(tree, groups, create=False)
    return isinstance(node, dict) and key in node


def _e_notation(value: float) -> Any:
    """`value` as a YAML float written like 3e-4 (the way people write LRs), if exact."""
    mant, exp = f"{value:.15e}".split("e")
    text = f"{mant.rstrip('0').rstrip('.')}e{int(exp)}"
    if float(text) != value:
        return value
    return _yaml().load(f"v: {text}")["v"]


def _put(tree: CommentedMap, path: str, value: Any) -> None:
    *groups, key = path.split(".")
    node = _node(tree, groups, create=True)
    old = node.get(key)
    if isinstance(value, float) and getattr(old, "_exp", None) and value != 0:
        value = _e_notation(value)  # the file wrote this number as 1e-3: keep that style
    node[key] = value


def _drop(tree: CommentedMap, path: str) -> None:
    *groups, key = path.split(".")
    node = _node(tree, groups, create=False)
    if isinstance(node, dict) and key in node:
        del node[key]


def _layer(tree: CommentedMap, env: str | None, path: str) -> CommentedMap:
    """Where an edit of `path` goes: this file's overlay of the active env when that overlay
    already sets it, else the top level."""
    if env:
        overlay = (tree.get("envs") or {}).get(env)
        if isinstance(overlay, CommentedMap) and _has(overlay, path):
            return overlay
    return tree


def _env_layer(tree: CommentedMap, env: str) -> CommentedMap:
    envs = tree.get("envs")
    if not isinstance(envs, CommentedMap):
        envs = tree["envs"] = CommentedMap()
    overlay = envs.get(env)
    if not isinstance(overlay, CommentedMap):
        overlay = envs[env] = CommentedMap()
    return overlay


def _rebase(tree: CommentedMap, old_dir: Path, new_dir: Path) -> None:
    """Saved to another folder: relative `extends:` paths must still name the same files."""
    ext = tree.get("extends")
    items = [ext] if isinstance(ext, str) else list(ext or [])
    out = []
    for item in items:
        p = Path(str(item))
        out.append(str(item) if p.is_absolute() else os.path.relpath(old_dir / p, new_dir))
    if isinstance(ext, str):
        tree["extends"] = out[0]
    elif items:
        for i, v in enumerate(out):
            ext[i] = v


def _seq_offset(text: str) -> int:
    """How far the file indents `- item` under its key (ruamel writes one style for a file)."""
    lines = text.splitlines()
    for prev, line in zip(lines, lines[1:], strict=False):
        stripped = prev.split("#", 1)[0].rstrip()
        if stripped.endswith(":") and line.lstrip().startswith("- "):
            return max(0, (len(line) - len(line.lstrip())) - (len(prev) - len(prev.lstrip())))
    return 0


def _dump(tree: Any, offset: int = 0) -> str:
    y = _yaml()
    y.indent(mapping=2, sequence=offset + 2, offset=offset)
    y.version = None  # no %YAML directive in a file a person wrote
    buf = io.StringIO()
    y.dump(tree, buf)
    return buf.getvalue()


def render(
    source: str | Path,
    dest: str | Path,
    env: str | None,
    data: dict,
    baseline: dict,
    paths: list[str],
) -> str:
    """The text of `source` with the fields that differ between `data` and `baseline` changed,
    checked by loading it back (from a scratch file beside `dest`) with `env` applied."""
    from tuitrain.tui.configdoc import load_document

    src = Path(config_path(source))
    text = src.read_text(encoding="utf-8")
    tree = _yaml().load(text)
    if not isinstance(tree, CommentedMap):
        tree = CommentedMap()
    dest = Path(dest)
    if dest.resolve().parent != src.resolve().parent:
        _rebase(tree, src.resolve().parent, dest.resolve().parent)
    for path in changed_paths(data, baseline, paths):
        value = get_path(data, path)
        layer = _layer(tree, env, path)
        if value == field_default(path) and _has(layer, path):
            _drop(layer, path)  # back to the default: the key goes, as if never written
        else:
            _put(layer, path, value)
    # Load it back as the editor would; a value still off (a base file or the env overlay sets
    # it, a relative path that no longer resolves) is written explicitly where it wins.
    for _ in range(2):
        out = _dump(tree, _seq_offset(text))
        wrong = _check(out, dest, env, data, paths, load_document)
        if not wrong:
            return out
        for path in wrong:
            _put(_env_layer(tree, env) if env else tree, path, get_path(data, path))
    raise SaveError(
        f"the saved file would not load back as edited ({', '.join(wrong)}); "
        "save to the folder of the original config"
    )


def _check(text: str, dest: Path, env: str | None, data: dict, paths: list[str], load) -> list[str]:
    scratch = dest.resolve().parent / f".{dest.name}.check.yaml"
    scratch.parent.mkdir(parents=True, exist_ok=True)
    scratch.write_text(text, encoding="utf-8")
    try:
        doc = load(scratch, env)
    finally:
        scratch.unlink(missing_ok=True)
    if doc.load_issues:
        raise SaveError("; ".join(i.message for i in doc.load_issues))
    return changed_paths(doc.data, data, paths)


def write(dest: str | Path, text: str) -> Path:
    """Write atomically: a crash never leaves half a file."""
    p = Path(dest)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(p)
    return p


def new_config_copy(runs_dir: str | Path, template: str | Path) -> Path:
    """A fresh copy of `template` beside the runs directory (new-config.yaml, new-config-2.yaml,
    ...): `n` edits the copy, never the package's own file. Raises OSError if it cannot be written."""
    folder = Path(runs_dir).resolve().parent
    n = 1
    while True:
        dest = folder / ("new-config.yaml" if n == 1 else f"new-config-{n}.yaml")
        if not dest.exists():
            break
        n += 1
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, dest)
    return dest
