"""Provides the detectors of spikes, exploding gradients and oscillation over a run's loss and grad norm."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tuitrain.doctor.diagnosis import REMEDIES, Diagnosis, scale_lr
from tuitrain.doctor.stats import MAD_TO_SD, finite, median, robust_z, step_noise
from tuitrain.doctor.thresholds import Thresholds, num4


@dataclass(frozen=True)
class Spike:
    """Where a series jumped: first and peak index, the baseline before it, and its size."""

    first: int
    peak: int
    last: int
    base: float  # median of the window before the first spike point (raw units)
    z: float  # the peak's robust z-score
    nonfinite: int | None  # index of the first NaN/inf, if any


def find_spikes(
    xs: Sequence[float], z_min: float, ratio_min: float, window: int, min_points: int, log: bool
) -> Spike | None:
    """Scan the newest `window` points for values far above their recent level (robust z; on log
    values for grad norms); None when nothing is that far. A NaN/inf value counts as a spike.

    Level: the median of the `min_points` points before (it follows a trend such as the fast
    fall at the start). Spread: the step-to-step noise (MAD of first differences) of the
    `window` points before, which a trend does not inflate. The jump must also pass a ratio
    (`ratio_min` x the level for log values, a `ratio_min` relative rise for raw ones)."""
    vals = [(math.log(x) if log and x > 0 else (math.nan if log else x)) for x in xs]
    first = peak = last = None
    base = zpk = 0.0
    nonfinite = None
    for i in range(max(min_points, len(xs) - window), len(xs)):
        x = xs[i]
        if x is None or not math.isfinite(x):
            nonfinite = i if nonfinite is None else nonfinite
            if first is None:
                first = peak = i
                ref = finite(xs[max(0, i - min_points) : i])
                base, zpk = (median(ref) if ref else math.nan), math.inf
            last = i
            continue
        ref = finite(vals[max(0, i - window) : i])
        if len(ref) < min_points:
            continue
        med = median(ref[-min_points:])
        spread = step_noise(ref) / MAD_TO_SD  # robust_z multiplies it back
        # Log values: a floor of 0.05 (5%) stops a nearly constant norm making noise a spike;
        # raw values: 1% of the level.
        floor = 0.05 if log else 0.01 * abs(med) + 1e-12
        z = robust_z(vals[i], med, spread, floor)
        raw_med = math.exp(med) if log else med
        ratio_ok = x > raw_med * ratio_min if log else x > raw_med * (1.0 + ratio_min)
        if z >= z_min and ratio_ok:
            if first is None:
                first, base = i, raw_med
            if peak is None or x > xs[peak]:  # the highest value is the one the user looks for
                peak, zpk = i, z
            last = i
    if first is None:
        return None
    return Spike(first, peak, last, base, zpk, nonfinite)


def exploding_gradients(
    steps: Sequence[int],
    grad_norm: Sequence[float],
    th: Thresholds,
    max_grad_norm: float | None = None,
) -> Diagnosis | None:
    """Grad norm far above its recent level (robust z on log grad norm); critical when it is
    NaN/inf, 4x the ratio threshold, or still high at the newest step."""
    sp = find_spikes(grad_norm, th.grad_z, th.grad_ratio, th.window, th.min_points, log=True)
    if sp is None:
        return None
    n = len(grad_norm)
    span = min(th.min_points, sp.first)
    if sp.nonfinite is not None:
        i = sp.nonfinite
        evidence = f"grad norm {grad_norm[i]} at step {steps[i]}, median {num4(sp.base)} over the {span} logged steps before"
        values = {"grad_norm": str(grad_norm[i]), "median": sp.base, "window": span}
        severity = "critical"
    else:
        peak = grad_norm[sp.peak]
        ratio = peak / sp.base if sp.base > 0 else math.inf
        now = grad_norm[-1]
        still = math.isfinite(now) and sp.base > 0 and now > sp.base * th.grad_ratio
        severity = (
            "critical" if ratio >= 4 * th.grad_ratio or (still and sp.last == n - 1) else "warning"
        )
        if sp.first == sp.last:  # one sample (e.g. the step a paused run resumed at) is no crisis
            severity = "warning"
        evidence = (
            f"grad norm {num4(peak)} at step {steps[sp.peak]}, median {num4(sp.base)} over the {span}"
            f" logged steps before ({ratio:.1f}x, robust z {sp.z:.1f}); now {num4(now)} at step {steps[-1]}"
        )
        values = {
            "grad_norm": peak,
            "peak_step": steps[sp.peak],
            "median": sp.base,
            "ratio": ratio,
            "z": sp.z,
            "window": span,
            "now": now,
        }
    remedy = REMEDIES["exploding_gradients"]
    if max_grad_norm == 0:
        remedy = "gradients are not clipped (training.max_grad_norm 0): " + remedy
    return Diagnosis(
        "exploding_gradients", severity, steps[sp.first], evidence, remedy, scale_lr(0.5), values
    )


def loss_spike(steps: Sequence[int], loss: Sequence[float], th: Thresholds) -> Diagnosis | None:
    """A sudden loss jump; says whether it recovered (back near the level before it)."""
    sp = find_spikes(loss, th.spike_z, th.spike_rise, th.window, th.min_points, log=False)
    if sp is None:
        return None
    after = finite(loss[sp.last + 1 :])
    tail = after[-5:]
    level = median(tail) if len(tail) >= 3 else math.nan
    recovered = math.isfinite(level) and level <= sp.base * (1.0 + th.spike_rise / 2)
    if sp.nonfinite is not None:
        i = sp.nonfinite
        return Diagnosis(
            "loss_spike",
            "critical",
            steps[sp.first],
            f"loss became {loss[i]} at step {steps[i]} (median {num4(sp.base)} before); not recovered",
            REMEDIES["loss_spike"],
            scale_lr(0.5),
            {"loss": str(loss[i]), "median": sp.base, "recovered": False},
        )
    peak = loss[sp.peak]
    if recovered:
        severity = "info"
        state = f"recovered: {num4(level)} now"
    elif math.isfinite(level) and level >= sp.base * (1.0 + 2 * th.spike_rise):
        severity = "critical"
        state = f"not recovered: still {num4(level)}"
    else:
        severity = "warning"
        state = "not recovered yet" + (f": {num4(level)} now" if math.isfinite(level) else "")
    rise = peak / sp.base - 1.0 if sp.base else math.inf
    return Diagnosis(
        "loss_spike",
        severity,
        steps[sp.first],
        f"loss {num4(peak)} at step {steps[sp.peak]}, median {num4(sp.base)} before (+{rise:.0%}); {state}",
        REMEDIES["loss_spike"],
        None if recovered else scale_lr(0.5),
        {
            "loss": peak,
            "peak_step": steps[sp.peak],
            "median": sp.base,
            "rise": rise,
            "z": sp.z,
            "recovered": recovered,
            "now": level,
        },
    )


def loss_elevated(
    steps: Sequence[int],
    loss: Sequence[float],
    lowest: float | None,
    lowest_step: int | None,
    th: Thresholds,
) -> Diagnosis | None:
    """The loss stays far above the lowest it reached (twice `spike_rise` over it): a jump that
    did not recover, even once it is older than the window (a loss_spike, critical)."""
    now = finite(loss)[-10:]
    if lowest is None or not math.isfinite(lowest) or lowest <= 0 or not steps:
        return None
    if len(finite(loss)) < th.min_points:
        return None  # the first steps fall and bounce: no level to fall back from yet
    level = median(now)
    limit = lowest * (1.0 + 2 * th.spike_rise)
    if level < limit:
        return None
    # It started where the loss first went that high after its lowest (if the rows reach back).
    start = next(
        (
            s
            for s, x in zip(steps, loss, strict=False)
            if (lowest_step is None or s > lowest_step) and x is not None and not x < limit
        ),
        lowest_step,
    )
    return Diagnosis(
        "loss_spike",
        "critical",
        start,
        f"loss {num4(level)} at step {steps[-1]} vs its lowest {num4(lowest)} at step {lowest_step}"
        f" ({level / lowest:.1f}x); not recovered",
        REMEDIES["loss_spike"],
        scale_lr(0.5),
        {"now": level, "lowest": lowest, "lowest_step": lowest_step, "recovered": False},
    )


def oscillation(steps: Sequence[int], loss: Sequence[float], th: Thresholds) -> Diagnosis | None:
    """Loss noise step to step (detrended by differencing) large against its level, in both
    halves of the window: persistent, not one spike."""
    pts = [(s, x) for s, x in zip(steps, loss, strict=False) if x is not None and math.isfinite(x)]
    pts = pts[-th.window :]
    if len(pts) < max(th.min_points, 8):
        return None
    vals = [x for _, x in pts]
    half = len(vals) // 2
    rel = []
    for part in (vals[:half], vals[half:], vals):
        level = median(part)
        rel.append(step_noise(part) / abs(level) if level else math.nan)
    if not all(math.isfinite(r) and r > th.oscillation_noise for r in rel[:2]):
        return None
    return Diagnosis(
        "oscillation",
        "warning",
        pts[0][0],
        f"loss noise {rel[2]:.0%} of its level {num4(median(vals))} over the last {len(vals)} logged"
        f" steps (halves {rel[0]:.0%}, {rel[1]:.0%}; limit {th.oscillation_noise:.0%})",
        REMEDIES["oscillation"],
        scale_lr(0.5),
        {"noise": rel[2], "level": median(vals), "halves": rel[:2], "window": len(vals)},
    )
