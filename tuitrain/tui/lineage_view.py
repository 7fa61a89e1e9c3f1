"""Provides lineage for the TUI: runs-list order with children under their parent, the name
prefix of a child row, and the parent's curve up to the fork step (drawn dimmer)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # chart.py loads plotext, which the runs list does not need
    from tuitrain.tui.widgets.chart import Line

# The parent's prefix of a child's curve: dimmer than any run colour.
PREFIX_COLOR = "gray"
# Monitor/compare series keys of a parent's prefix: PARENT_KEY + metric name.
PARENT_KEY = "parent:"


def tree_order(ids: list[str], runs: dict[str, Any]) -> list[tuple[str, int]]:
    """(id, depth) with each child right after its parent (children keep the list's order);
    a child whose parent is not in `ids` (filtered out, deleted) is a top-level row."""
    shown = set(ids)
    kids: dict[str, list[str]] = {}
    roots = []
    for i in ids:
        parent = getattr(runs.get(i), "parent", None)
        if parent and parent in shown and parent != i:
            kids.setdefault(parent, []).append(i)
        else:
            roots.append(i)
    out: list[tuple[str, int]] = []
    seen: set[str] = set()

    def walk(i: str, depth: int) -> None:
        if i in seen:  # a cycle cannot come from the store; never loop on one
            return
        seen.add(i)
        out.append((i, depth))
        for k in kids.get(i, []):
            walk(k, depth + 1)

    for r in roots:
        walk(r, 0)
    out += [(i, 0) for i in ids if i not in seen]  # parents forming a cycle: still shown
    return out


def name_prefix(depth: int) -> str:
    """'' for a top-level run, '└ ' for a child, '  └ ' for a grandchild..."""
    return "" if depth <= 0 else "  " * (depth - 1) + "└ "


def lineage_text(run) -> str:
    """'branched at step N' for the detail line ('' for a run without a parent); the parent is
    the row it is indented under."""
    if not getattr(run, "parent", None):
        return ""
    at = f" at step {run.fork_step}" if getattr(run, "fork_step", None) is not None else ""
    return f"branched{at}"


def parent_series(store, run, names, buckets: int) -> dict[str, list]:
    """The parent's downsampled series up to the fork step, keyed PARENT_KEY + name (empty for a
    run without a parent, or when the parent was deleted)."""
    parent, fork = getattr(run, "parent", None), getattr(run, "fork_step", None)
    if not parent or fork is None:
        return {}
    out = {}
    for n in names:
        try:
            pts = store.series(parent, n, buckets, end=fork)
        except LookupError:  # the parent is gone: the child's own points still show
            return {}
        if pts:
            out[PARENT_KEY + n] = pts
    return out


def prefix_line(pts: list | None, label: str = "") -> Line | None:
    """The parent's prefix as a dim chart line (last value per bucket)."""
    from tuitrain.tui.widgets.chart import Line

    if not pts:
        return None
    return Line(label, tuple(p[0] for p in pts), tuple(p[3] for p in pts), PREFIX_COLOR)


# The parent's metric shown beside a branch in the runs list's tree view: where the child began.
FORK_METRIC = "val_loss"


def fork_value(store, run, metric: str = FORK_METRIC) -> float | None:
    """The parent's last `metric` at or before the fork step (None: no parent, no such point, or
    the parent was deleted)."""
    parent, fork = getattr(run, "parent", None), getattr(run, "fork_step", None)
    if not parent or fork is None:
        return None
    try:
        pts = store.series(parent, metric, 1, end=fork)
    except LookupError:
        return None
    return pts[-1][3] if pts else None
