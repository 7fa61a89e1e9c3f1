"""Provides chart geometry that holds still while a run logs: an x domain that grows in 1-2-5
steps, fixed columns of it whose finished values never change, and a y range with hysteresis.

Why: a chart whose x range ends at the newest step, whose points are buckets re-cut at every
read and whose y range follows the newest points moves every braille column at every redraw,
and over SSH each redraw then costs the whole chart (issue 27). Held still, a new point
changes the cells at the right edge of the curve and nothing else. W&B LEET does the same
(its x domain grows in rounded steps; its charts draw only when dirty)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


def nice_ceil(v: float) -> float:
    """The smallest 1, 2 or 5 x 10^k that is >= v (v > 0)."""
    k = math.floor(math.log10(v))
    for m in (1, 2, 5, 10):
        c = m * 10.0**k
        if c >= v * (1 - 1e-12):
            return c
    return 10.0 ** (k + 1)


MAX_TICKS = 6  # x labels on a wide chart (more read as a ruler, not as a scale)


def x_domain(x0: float, x1: float, width: int) -> tuple[float, float, list[float]]:
    """(lo, hi, ticks) for data over x0..x1 on a chart `width` cells wide.

    hi - lo is a 1-2-5 number, so the domain changes only when the data passes it (a run of
    500 steps: 0..500 until step 500, then 0..1000); a range that starts near 0 starts at 0.
    Ticks fall on round numbers and are as many as fit the width."""
    if x0 >= 0 and x0 <= 0.5 * x1:
        lo = 0.0
    else:
        step = nice_ceil(max(x1 - x0, abs(x0) * 1e-9, 1e-12)) / 10
        lo = math.floor(x0 / step) * step
    hi = lo + nice_ceil(max(x1 - lo, 1e-12))
    span = hi - lo
    label = max(len(f"{lo:g}"), len(f"{hi:g}")) + 3  # a label and the gap to the next one
    fit = max(2, min(MAX_TICKS, (width - 8) // label))
    ticks: list[float] = []
    for m in (0.1, 0.2, 0.25, 0.5, 1.0):
        t = span * m
        if span / t + 1 <= fit + 1e-9:
            ticks = [lo + i * t for i in range(round(span / t) + 1)]
            break
    if not ticks:
        ticks = [lo, hi]
    return lo, hi, [round(t, 12) for t in ticks]


def columns(
    line: Any, lo: float, hi: float, n: int, key: tuple, cache: dict
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """A line's points as `n` fixed columns of lo..hi: per column the last point (x, y) and the
    min and max; (xs, ys, los, his).

    A column before the line's last column is finished (points arrive in step order) and is
    kept in `cache` as it was first computed, so later reads, whose buckets the store cuts
    differently as the run grows, do not move it. The cache starts over when `key` (domain,
    column count, title, scale) changes or the line went back (a resumed run rewrote steps)."""
    width = (hi - lo) / n
    found: dict[int, list[float]] = {}
    los = line.lo or line.ys
    his = line.hi or line.ys
    for x, y, a, b in zip(line.xs, line.ys, los, his, strict=False):
        if not math.isfinite(x):
            continue
        k = min(n - 1, max(0, int((x - lo) / width)))
        c = found.get(k)
        if c is None:
            found[k] = [x, y, a, b]
            continue
        if x >= c[0]:
            c[0], c[1] = x, y
        c[2] = _min(c[2], a)
        c[3] = _max(c[3], b)
    if not found:
        return (), (), (), ()
    last = max(found)
    top = max(c[0] for c in found.values())
    if cache.get("key") != key or top < cache.get("top", -math.inf):
        cache.clear()
        cache["key"], cache["frozen"] = key, {}
    cache["top"] = top
    frozen: dict[int, list[float]] = cache["frozen"]
    for k, c in found.items():
        if k < last and k not in frozen:
            frozen[k] = c
    ks = sorted(set(frozen) | {last})
    pts = [frozen[k] if k != last else found[last] for k in ks]
    return (
        tuple(p[0] for p in pts),
        tuple(p[1] for p in pts),
        tuple(p[2] for p in pts),
        tuple(p[3] for p in pts),
    )


def _min(a: float, b: float) -> float:
    if not math.isfinite(a):
        return b
    return a if not math.isfinite(b) or a <= b else b


def _max(a: float, b: float) -> float:
    if not math.isfinite(a):
        return b
    return a if not math.isfinite(b) or a >= b else b


# A fresh range leaves this share of the data's span free on each side; a side the data
# crossed gets EXPAND_PAD, so a falling loss does not move the axis at every new low.
PAD = 0.08
EXPAND_PAD = 0.25
# The range is cut back when the data spans less than this share of it.
SHRINK_BELOW = 0.4


@dataclass
class YRange:
    """A y range with hysteresis: it expands (with room to spare) when the data leaves it and
    shrinks only when the data spans less than SHRINK_BELOW of it."""

    lo: float | None = None
    hi: float | None = None

    def update(self, d0: float, d1: float) -> tuple[float, float]:
        """The range to draw for data over d0..d1."""
        span = d1 - d0 if d1 > d0 else max(abs(d0) * 0.1, 1e-12)
        lo, hi = self.lo, self.hi
        if lo is None or hi is None or (hi - lo) * SHRINK_BELOW > span:
            lo, hi = d0 - PAD * span, d1 + PAD * span
        else:
            if d0 < lo:
                lo = d0 - EXPAND_PAD * span
            if d1 > hi:
                hi = d1 + EXPAND_PAD * span
        if d0 >= 0 > lo:
            lo = 0.0  # a series that cannot go below 0 (loss, LR, a norm) gets no negative room
        self.lo, self.hi = lo, hi
        return lo, hi
