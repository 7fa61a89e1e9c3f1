"""Provides MetricChart: a plotext line chart drawn on the main thread from cached, downsampled lines."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from rich.console import RenderableType
from textual_plotext import PlotextPlot

# One colour per line/run; plotext names that read well on dark and light themes.
COLORS = ("cyan", "orange", "magenta", "green", "red", "blue", "yellow")


@dataclass(frozen=True)
class Line:
    """One curve: already downsampled to about the chart's width."""

    label: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    color: str = "cyan"
    marker: str = "braille"


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


class MetricChart(PlotextPlot):
    """Line chart of a few series; set_lines() caches data, render() builds the plot text."""

    DEFAULT_CSS = """
    MetricChart { height: 1fr; min-height: 5; }
    """

    def __init__(self, title: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.lines: list[Line] = []
        self.log_y = False
        self.empty_text = "waiting for data"
        self.builds = 0  # how many times the plot text was built (benchmarks read it)
        self.build_s = 0.0  # seconds the last build took (the monitor paces redraws with it)
        self._cache: tuple[tuple, RenderableType] | None = None

    def set_lines(self, lines: list[Line], log_y: bool | None = None) -> None:
        """Replace the cached lines and schedule one redraw (none when nothing changed)."""
        same = lines == self.lines and (log_y is None or log_y == self.log_y)
        if same and self._cache is not None and self._cache[0][1] == self.title:
            return
        self.lines = lines
        if log_y is not None:
            self.log_y = log_y
        self._cache = None
        self.refresh()

    def render(self) -> RenderableType:
        """The plot text, rebuilt only when the lines, title, size or theme changed."""
        key = (self.size, self.title, self.app.theme)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        t = time.perf_counter()
        text = self._build()
        self.build_s = time.perf_counter() - t
        self._cache = (key, text)
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
        for line in self.lines:
            xs, ys = line.xs, line.ys
            if self.log_y:
                pairs = [(x, y) for x, y in zip(xs, ys, strict=False) if y > 0 and math.isfinite(y)]
            else:
                pairs = [(x, y) for x, y in zip(xs, ys, strict=False) if math.isfinite(y)]
            if not pairs:
                continue
            px, py = zip(*pairs, strict=False)
            marker = "dot" if len(px) == 1 else line.marker
            plt.plot(px, py, label=line.label or None, color=line.color, marker=marker)
            xr += (min(px), max(px))
            yr += (min(py), max(py))
            drawn = True
        if drawn:
            self._ticks(plt, min(xr), max(xr), min(yr), max(yr))
        if not drawn:
            plt.xlabel(self.empty_text)
        self.builds += 1
        return super().render()

    def _ticks(self, plt, x0: float, x1: float, y0: float, y1: float) -> None:
        """Whole-number step ticks and short y labels (plotext's defaults print 40.8 and 0.000342)."""
        if x1 > x0:
            xs = sorted({round(x0 + (x1 - x0) * i / 4) for i in range(5)})
            plt.xticks(xs, [str(x) for x in xs])
        if self.log_y:
            plt.yscale("log")
        elif y1 > y0:
            # Labels at least two rows apart: when they collide plotext picks one in hash
            # order, which differs between processes (and would make snapshots flaky).
            n = max(2, min(4, (self.size.height - 4) // 2 + 1))
            ys = [y0 + (y1 - y0) * i / (n - 1) for i in range(n)]
            plt.yticks(ys, [f"{y:.3g}" for y in ys])
