"""Provides changed_regions and refresh_changed: repaint only the cells where a widget's new
picture differs from the one on screen; and write_spans_only, which makes Textual write just
those cells.

A plain `Widget.refresh()` makes Textual write every cell of the widget to the terminal; over
SSH a chart of 40x10 cells is ~1.5 KB per redraw even when a single braille column moved. With
the changed spans as regions, Textual renders the whole widget (from our cache) but writes only
those spans (issue 27)."""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.control import Control
from textual._compositor import ChopsUpdate
from textual.geometry import Region
from textual.widget import Widget

# Two changed runs on one line closer than this are sent as one span: a cursor move and a
# style costs about as much as a few unchanged cells.
MERGE_GAP = 6


def cells(line: Any) -> list[tuple[str, Any]] | None:
    """(character, style) per cell of one line of Rich Text or Textual Content; None when a
    character is not one cell wide (then the line is compared as a whole)."""
    plain = line.plain
    if cell_len(plain) != len(plain):
        return None
    styles: list[Any] = [None] * len(plain)
    for span in line.spans:  # later spans win, as they do when rendered
        for i in range(max(0, span.start), min(len(plain), span.end)):
            styles[i] = span.style if styles[i] is None else (styles[i], span.style)
    return list(zip(plain, styles, strict=True))


def changed_regions(old: list[Any], new: list[Any], width: int) -> list[Region]:
    """The regions (one line high) where two pictures differ, `width` cells wide each."""
    out: list[Region] = []
    for y in range(max(len(old), len(new))):
        if y < len(old) and y < len(new) and old[y].plain == new[y].plain:
            if old[y].spans == new[y].spans:
                continue  # the usual case, without building cells
        a = cells(old[y]) if y < len(old) else []
        b = cells(new[y]) if y < len(new) else []
        if a is None or b is None:
            if y >= len(old) or y >= len(new) or old[y] != new[y]:
                out.append(Region(0, y, width, 1))
            continue
        if a == b:
            continue
        n = max(len(a), len(b))
        pad = ("", None)
        diff = [
            x for x in range(n) if (a[x] if x < len(a) else pad) != (b[x] if x < len(b) else pad)
        ]
        start = prev = diff[0]
        for x in diff[1:]:
            if x - prev > MERGE_GAP:
                out.append(Region(start, y, prev - start + 1, 1))
                start = x
            prev = x
        out.append(Region(start, y, min(width, prev + 1) - start, 1))
    return [r for r in out if r.width > 0]


def lines_of(renderable: Any) -> list[Any] | None:
    """The lines of Rich Text or Textual Content (None for anything else)."""
    if hasattr(renderable, "plain") and hasattr(renderable, "split"):
        return list(renderable.split("\n", allow_blank=True))
    return None


def refresh_changed(widget: Widget, old: Any, new: Any) -> int:
    """Refresh only the cells where `new` differs from `old` (the whole widget when they cannot
    be compared); return the number of regions marked (0: nothing to send)."""
    a, b = lines_of(old), lines_of(new)
    if a is None or b is None:
        widget.refresh()
        return 1
    regions = changed_regions(a, b, widget.size.width)
    if regions:
        widget.refresh(*regions)
    return len(regions)


def _render_spans(self: ChopsUpdate, console: Console) -> str:
    """ChopsUpdate.render_segments writing each dirty span from its first cell.

    Textual 8.2 writes a span from the left edge of the widget's strip on that line (its
    "chop") up to the span's end, once per span: a header whose step, loss and ETA changed was
    written three times from column 0. Cropping the strip to the span sends what changed."""
    out: list[str] = []
    move_to = Control.move_to
    last_y = self.spans[-1][0]
    for y, x1, x2 in self.spans:
        for end, (x, strip) in zip(self.chop_ends[y], self.chops[y].items(), strict=False):
            if strip is None or x >= x2 or end <= x1:
                continue
            a, b = max(x, x1), min(end, x2)
            if a != x or b != end:
                strip = strip.crop(a - x, b - x)
            out.append(move_to(a, y).segment.text)
            out.append(strip.render(console))
        if y != last_y:
            out.append("\n")
    return "".join(out)


def write_spans_only() -> None:
    """Make Textual write only the dirty spans of a partial update (idempotent; Textual is
    pinned exactly, and this replaces one method of its compositor's update object)."""
    ChopsUpdate.render_segments = _render_spans  # type: ignore[method-assign]


write_spans_only()  # on import: every screen that draws a chart or a header benefits
