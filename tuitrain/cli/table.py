"""Provides plain-text tables that fit the terminal: columns shrink, then drop, by priority."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field

from rich.cells import cell_len

GAP = 2  # spaces between columns


@dataclass
class Column:
    """One column: its cells, how far it may shrink (cut with …) and when it goes (low first)."""

    header: str
    cells: list[str]
    priority: int = 0  # columns with the lowest priority are dropped first; < 0: never dropped
    min_width: int | None = None  # shrinkable down to this many cells; None: never cut
    compact: list[str] | None = field(default=None)  # a shorter form tried before dropping
    middle: bool = False  # cut in the middle (names: `walk-sw…t002` keeps the trial number)

    def width(self) -> int:
        return max(cell_len(c) for c in [self.header, *self.cells])


def terminal_width() -> int | None:
    """Cells to fit: $COLUMNS, else the terminal's width; None when stdout is not a terminal
    (a pipe or a file gets whole rows; scripts should use --format json anyway)."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def cut(text: str, width: int) -> str:
    """`text` in at most `width` cells, with … where it was cut."""
    if cell_len(text) <= width:
        return text
    out = ""
    for ch in text:
        if cell_len(out + ch) > width - 1:
            break
        out += ch
    return out + "…"


def fit(columns: list[Column], width: int | None) -> list[Column]:
    """The columns that fit `width` cells: compact forms first, then the lowest-priority columns
    dropped until the rest fit with shrinkable ones at their minimum, which then share what is
    left (cut with …)."""
    cols = list(columns)
    if width is None:
        return cols

    def total(shrunk: bool = False) -> int:
        ws = [min(c.width(), c.min_width) if shrunk and c.min_width else c.width() for c in cols]
        return sum(ws) + GAP * (len(cols) - 1)

    for c in sorted(cols, key=lambda c: c.priority):
        if total() > width and c.compact is not None:
            c.cells, c.compact = c.compact, None
    while total(shrunk=True) > width:
        droppable = [c for c in cols if c.priority >= 0]
        if not droppable:
            break
        cols.remove(min(droppable, key=lambda c: c.priority))
    while total() > width:
        shrink = [c for c in cols if c.min_width is not None and c.width() > c.min_width]
        if not shrink:
            break  # render() cuts the lines themselves
        c = max(shrink, key=lambda c: c.width())
        new = max(c.min_width or 1, c.width() - (total() - width))
        if c.middle:
            from tuitrain.runs.columns import cut_middle

            c.cells = [cut_middle(v, new) for v in c.cells]
        else:
            c.cells = [cut(v, new) for v in c.cells]
        c.header = cut(c.header, new)
    return cols


def render(columns: list[Column], width: int | None) -> list[str]:
    """The table's lines (header first), fitted to `width` (None: as wide as it needs)."""
    cols = fit(columns, width)
    widths = [c.width() for c in cols]
    rows = zip(*([c.header, *c.cells] for c in cols), strict=True)
    lines = []
    for row in rows:
        line = (" " * GAP).join(
            v + " " * (w - cell_len(v)) for v, w in zip(row, widths, strict=True)
        )
        lines.append(cut(line.rstrip(), width) if width else line.rstrip())
    return lines
