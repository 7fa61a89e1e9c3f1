"""Provides MetricChart: a plotext line chart drawn on the main thread from cached, downsampled lines."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace

from rich.console import RenderableType
from textual_plotext import PlotextPlot

from tuitrain.tui.widgets.partial import refresh_changed
from tuitrain.tui.widgets.stable import YRange, columns, x_domain

# One colour per line/run; plotext names that read well on dark and light themes.
COLORS = ("cyan", "orange", "magenta", "green", "red", "blue", "yellow")
# Under NO_COLOR every line is the same grey: the second, third... line of a chart is drawn
# with its own character instead (the legend shows it beside the line's name).
NO_COLOR_MARKERS = ("braille", "•", "+", "x", "o", "*", "#")


@dataclass(frozen=True)
class Line:
    """One curve: already downsampled to about the chart's width."""

    label: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    color: str = "cyan"
    marker: str = "braille"
    # Each bucket's min and max (Store.series): the y range covers every point, so a spike
    # inside a bucket (loss 137 among 3s) still shows on the axis; zoomed charts draw them.
    lo: tuple[float, ...] | None = None
    hi: tuple[float, ...] | None = None
    points_only: bool = False  # marks at the points, no line between them (NO_COLOR's 2nd line)


def ema(ys: list[float] | tuple[float, ...], alpha: float = 0.2) -> list[float]:
    """Exponential moving average (debiased start), NaN/inf passed through unchanged."""
    out: list[float] = []
    acc = None
    for y in ys:
        if not math.isfinite(y):
            out.append(y)
            continue
        acc = y if acc is None else alpha * y + (1 - alpha) * acc
        out.append(acc)
    return out


def tick(y: float) -> str:
    """A short y label: 1.18, 0.5, 8.6e-04 (an LR axis in 0.000857 style takes 8 columns)."""
    if y == 0:
        return "0"
    if abs(y) < 0.01 or abs(y) >= 1e5:
        return f"{y:.1e}"
    return f"{y:.3g}"


class MetricChart(PlotextPlot):
    """Line chart of a few series; set_lines() builds the plot text, and repaints only when it changed."""

    DEFAULT_CSS = """
    MetricChart { height: 1fr; min-height: 5; }
    """

    def __init__(
        self, title: str, *, live: bool = False, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        # A live chart (the monitor's) holds still as points arrive: its x range grows in
        # 1-2-5 steps, its y range only expands (or shrinks when the data left most of it),
        # and its points are fixed columns of that x range (tuitrain.tui.widgets.stable), so
        # a new point changes a few cells and only those are sent to the terminal.
        self.live = live
        self._yrange = YRange()
        self._columns: dict = {}
        self.lines: list[Line] = []
        self.log_y = False
        self.envelope = False  # draw each bucket's min/max too (the zoomed chart)
        self.marks: list[tuple[float, str]] = []  # (step, colour): vertical lines (interventions)
        self.empty_text = "waiting for data"
        self.builds = 0  # how many times the plot text was built (benchmarks read it)
        self.repaints = 0  # how many builds changed the picture (and so were sent to the terminal)
        self.build_s = 0.0  # seconds the last build took (the monitor paces redraws with it)
        self._cache: tuple[tuple, RenderableType] | None = None

    def _key(self) -> tuple:
        return (self.size, self.title, self.app.theme, self.envelope, tuple(self.marks))

    def set_lines(self, lines: list[Line], log_y: bool | None = None) -> None:
        """Replace the lines; rebuild now and repaint only if the picture differs.

        Over SSH every repaint costs bytes: a new point that leaves the downsampled picture
        as it was (same cells, same labels) must not be sent again."""
        same = lines == self.lines and (log_y is None or log_y == self.log_y)
        if same and self._cache is not None and self._cache[0] == self._key():
            return
        self.lines = lines
        if log_y is not None:
            self.log_y = log_y
        if not self.size.area or not self.display:
            self._cache = None  # not laid out (or hidden): build when shown
            self.refresh()
            return
        old = self._cache
        text = self._timed_build()
        self._cache = (self._key(), text)
        if old is None or old[0] != self._cache[0]:
            self.repaints += 1
            self.refresh()
        elif old[1] != text:
            self.repaints += 1
            refresh_changed(self, old[1], text)  # only the cells that differ are written

    def render(self) -> RenderableType:
        """The plot text, rebuilt only when the lines, title, size or theme changed."""
        key = self._key()
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        text = self._timed_build()
        self._cache = (key, text)
        self.repaints += 1
        return text

    def _timed_build(self) -> RenderableType:
        t = time.perf_counter()
        text = self._build()
        self.build_s = time.perf_counter() - t
        return text

    def _build(self) -> RenderableType:
        """Build the plot from the cached lines (plotext: cost grows with points and area)."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        drawn = False
        xr: list[float] = []
        yr: list[float] = []
        lines = self._styled(self._binned(self.lines))
        for line in lines:
            ok = (lambda y: y > 0 and math.isfinite(y)) if self.log_y else math.isfinite
            pairs = [(x, y) for x, y in zip(line.xs, line.ys, strict=False) if ok(y)]
            if not pairs:
                continue
            px, py = zip(*pairs, strict=False)
            marker = "dot" if len(px) == 1 else line.marker
            bounds = [
                [(x, y) for x, y in zip(line.xs, b, strict=False) if ok(y)]
                for b in (line.lo, line.hi)
                if b is not None
            ]
            if self.envelope:
                for b in bounds:
                    if b and [y for _, y in b] != list(py):
                        bx, by = zip(*b, strict=False)
                        plt.plot(bx, by, color="gray", marker="dot")
            if marker != "braille" and len(px) == 1:
                marker = line.marker  # a NO_COLOR character stays itself for one point
            draw = plt.scatter if line.points_only else plt.plot
            draw(px, py, label=line.label or None, color=line.color, marker=marker)
            xr += (min(px), max(px))
            yr += (min(py), max(py))
            for b in bounds:
                if b:
                    yr += (min(y for _, y in b), max(y for _, y in b))
            drawn = True
        if drawn:
            for x, color in self.marks:
                if min(xr) <= x <= max(xr):
                    plt.vline(x, color)
            self._ticks(plt, min(xr), max(xr), min(yr), max(yr))
        if not drawn:
            plt.xlabel(self.empty_text)
        self.builds += 1
        return super().render()

    def _binned(self, lines: list[Line]) -> list[Line]:
        """A live chart's lines as fixed columns of its x domain (others: as given)."""
        if not self.live:
            return lines
        xs = [x for line in lines for x in line.xs if math.isfinite(x)]
        if not xs:
            return lines
        lo, hi, _ = x_domain(min(xs), max(xs), self.size.width)
        n = max(16, 2 * self.size.width)  # braille resolution of the widget's width
        key = (lo, hi, n, self.title, self.log_y)
        out = []
        for i, line in enumerate(lines):
            if len(line.xs) < 2:
                out.append(line)  # a single mark (a spike): nothing to bin
                continue
            slot = (i, line.label, line.color)
            xs2, ys, los, his = columns(line, lo, hi, n, key, self._columns.setdefault(slot, {}))
            out.append(replace(line, xs=xs2, ys=ys, lo=los, hi=his))
        return out

    def _styled(self, lines: list[Line]) -> list[Line]:
        """Under NO_COLOR, the n-th drawn line of more than one gets the n-th marker character,
        drawn at its points only (a line of whole-cell characters would hide the braille one)."""
        if not os.environ.get("NO_COLOR"):
            return lines
        out, n = [], 0
        for line in lines:
            if len(line.xs) > 1 or line.label:
                marker = NO_COLOR_MARKERS[n % len(NO_COLOR_MARKERS)]
                line = replace(line, marker=marker, points_only=n > 0)
                n += 1
            else:
                line = replace(line, marker="x")  # a single mark (a spike) reads as x
            out.append(line)
        return out

    def _ticks(self, plt, x0: float, x1: float, y0: float, y1: float) -> None:
        """Whole-number step ticks and short y labels; limits that hold every point.

        plotext's defaults print 40.8 and 0.000342, and its automatic limits follow the
        plotted (last-per-bucket) values, which can hide a bucket's max."""
        if self.live:
            lo, hi, xt = x_domain(x0, x1, self.size.width)
            plt.xticks(xt, [f"{x:.0f}" if x == int(x) else f"{x:g}" for x in xt])
            plt.xlim(lo, hi)
            if not self.log_y:
                y0, y1 = self._yrange.update(y0, y1)
        elif x1 > x0:
            xs = sorted({round(x0 + (x1 - x0) * i / 4) for i in range(5)})
            plt.xticks(xs, [str(x) for x in xs])
            plt.xlim(x0, x1)
        if self.log_y:
            plt.yscale("log")
        elif y1 > y0:
            # Labels at least two rows apart: when they collide plotext picks one in hash
            # order, which differs between processes (and would make snapshots flaky).
            n = max(2, min(8, (self.size.height - 4) // 2 + 1))
            ys = [y0 + (y1 - y0) * i / (n - 1) for i in range(n)]
            plt.yticks(ys, [tick(y) for y in ys])
            plt.ylim(y0, y1)
