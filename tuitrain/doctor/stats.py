"""Provides the robust statistics the detectors share: median, MAD, robust z-scores, step-to-step noise."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

# MAD x 1.4826 estimates the standard deviation of normal data; one factor, named once.
MAD_TO_SD = 1.4826


def finite(xs: Sequence[float]) -> list[float]:
    """The finite values of xs, in order."""
    return [x for x in xs if x is not None and math.isfinite(x)]


def median(xs: Sequence[float]) -> float:
    """Median of the finite values (NaN when there are none)."""
    vals = finite(xs)
    return statistics.median(vals) if vals else math.nan


def mad(xs: Sequence[float], center: float | None = None) -> float:
    """Median absolute deviation from `center` (default: the median)."""
    vals = finite(xs)
    if not vals:
        return math.nan
    c = statistics.median(vals) if center is None else center
    return statistics.median(abs(x - c) for x in vals)


def robust_z(x: float, center: float, spread: float, floor: float) -> float:
    """(x - center) in robust standard deviations; `floor` keeps a near-constant window from
    turning every wiggle into an outlier (a MAD of zero)."""
    return (x - center) / max(MAD_TO_SD * spread, floor)


def step_noise(xs: Sequence[float]) -> float:
    """Robust standard deviation of the step-to-step noise: MAD of first differences / sqrt(2).

    Differencing removes a slow trend (a falling loss), the MAD ignores a few spikes, and the
    sqrt(2) undoes the doubling of variance that differencing white noise causes."""
    vals = finite(xs)
    if len(vals) < 3:
        return math.nan
    diffs = [b - a for a, b in zip(vals, vals[1:], strict=False)]
    return MAD_TO_SD * mad(diffs) / math.sqrt(2.0)


def rel_drop(start: float, end: float) -> float:
    """How much of `start` was lost by `end` (0.1 = fell 10%; negative: rose)."""
    if not (math.isfinite(start) and math.isfinite(end)) or start == 0:
        return math.nan
    return (start - end) / abs(start)
