"""The TUI's structure (issue 20): no import circle between its modules (a lazy import inside a
function counts too), no `type: ignore[attr-defined]` for the app's runs_dir / settings (screens
use app_of), and the poll state lives in tui/pollers, not on the screens."""

from __future__ import annotations

import ast
from pathlib import Path

import tuitrain.tui

TUI = Path(tuitrain.tui.__file__).parent


def _module(path: Path) -> str:
    rel = path.relative_to(TUI.parent.parent).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in TUI.rglob("*.py"):
        mod = _module(path)
        deps = graph.setdefault(mod, set())
        tree = ast.parse(path.read_text())
        typing_only = {
            id(n)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for n in ast.walk(block)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue  # annotations only: never imported at run time
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            deps |= {n for n in names if n.startswith("tuitrain.tui.")}
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def test_no_import_circle_in_the_tui():
    graph = _imports()
    state: dict[str, int] = {}

    def visit(mod: str, path: list[str]) -> None:
        state[mod] = 1
        for dep in sorted(graph[mod]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep) :] + [dep] if dep in path else [mod, dep]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, [*path, dep])
        state[mod] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [mod])


def test_app_attributes_are_typed_not_ignored():
    for path in TUI.rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if "type: ignore" in line and "app" in line:
                assert not any(a in line for a in ("runs_dir", "settings", "open_")), (path, n)


def test_screens_keep_no_poll_state():
    """The readers' state (cursors, fingerprints, versions) is in tui/pollers."""
    for name in ("monitor.py", "runs.py"):
        text = (TUI / "screens" / name).read_text()
        for attr in ("self._after_event", "self._fps", "self._sig ", "self._version"):
            assert attr not in text, (name, attr)
