"""Provides the detectors of wasted steps: saturated clipping, throughput drops, low GPU use, stalls."""

from __future__ import annotations

import math
from collections.abc import Sequence

from tuitrain.doctor.diagnosis import REMEDIES, Action, Diagnosis
from tuitrain.doctor.stats import finite, median
from tuitrain.doctor.thresholds import Thresholds, num4


def clipping_saturated(
    steps: Sequence[int],
    grad_norm: Sequence[float],
    max_grad_norm: float | None,
    warmup_steps: int,
    th: Thresholds,
) -> Diagnosis | None:
    """The pre-clip grad norm is above max_grad_norm on most recent steps after warmup: the clip
    sets the step size, not the LR. Warning when the median is `clip_ratio` x the limit."""
    if not max_grad_norm or max_grad_norm <= 0:
        return None
    pts = [
        (s, g)
        for s, g in zip(steps, grad_norm, strict=False)
        if g is not None and math.isfinite(g) and s > warmup_steps
    ]
    pts = pts[-th.window :]
    if len(pts) < th.min_points:
        return None
    above = sum(1 for _, g in pts if g > max_grad_norm)
    share = above / len(pts)
    if share < th.clip_fraction:
        return None
    med = median([g for _, g in pts])
    ratio = med / max_grad_norm
    severity = "warning" if ratio >= th.clip_ratio else "info"
    suggest = float(f"{max(med, max_grad_norm * 2):.2g}")
    return Diagnosis(
        "clipping_saturated",
        severity,
        pts[0][0],
        f"pre-clip grad norm above max_grad_norm {num4(max_grad_norm)} on {share:.0%} of the last"
        f" {len(pts)} logged steps (median {num4(med)} = {ratio:.1f}x the limit)",
        REMEDIES["clipping_saturated"],
        Action(
            "config",
            {"field": "training.max_grad_norm", "value": suggest},
            f"raise training.max_grad_norm to {suggest:g} (next run)",
            steerable=False,
        ),
        {"share": share, "median": med, "max_grad_norm": max_grad_norm, "ratio": ratio},
    )


def throughput_drop(
    steady: Sequence[float],
    recent_steps: Sequence[int],
    recent: Sequence[float],
    name: str,
    th: Thresholds,
) -> Diagnosis | None:
    """The recent median of a rate (tokens/s, samples/s) well below the run's steady level
    (median over the run, warm-up excluded by the caller); judged once the run has logged a
    window's worth of steps, so a level is known."""
    st, now = finite(steady), finite(recent)[-th.min_points :]
    if len(st) < 5 or len(now) < th.min_points or len(finite(recent)) < th.window:
        return None
    level, cur = median(st), median(now)
    if level <= 0 or cur >= th.throughput_ratio * level:
        return None
    first = recent_steps[-len(now)]
    return Diagnosis(
        "throughput_drop",
        "warning",
        first,
        f"{name} {num4(cur)} over the last {len(now)} logged steps vs {num4(level)} steady"
        f" ({cur / level:.0%}; limit {th.throughput_ratio:.0%})",
        REMEDIES["throughput_drop"],
        None,
        {"metric": name, "now": cur, "steady": level, "ratio": cur / level},
    )


# A GPU busy less than this share of the time (NVML utilisation, median over the recent samples of
# the mean over GPUs) is idle most of each step; at least this many samples (5 s apart) are judged.
LOW_GPU_UTIL = 50.0
LOW_GPU_MIN_SAMPLES = 6


def low_gpu_util(utils: dict[str, tuple[Sequence[int], Sequence[float]]]) -> Diagnosis | None:
    """GPU utilisation (the trainer's sys/gpu{i}_util samples, {name: (steps, values)}) low over
    the recent window: the run is bound by data loading, the host or a small batch."""
    by_step: dict[int, list[float]] = {}
    for steps, values in utils.values():
        for s, v in zip(steps, values, strict=False):
            if math.isfinite(v):
                by_step.setdefault(s, []).append(v)
    if len(by_step) < LOW_GPU_MIN_SAMPLES:
        return None
    steps = sorted(by_step)
    means = [sum(by_step[s]) / len(by_step[s]) for s in steps]
    cur = median(means)
    if cur >= LOW_GPU_UTIL:
        return None
    return Diagnosis(
        "low_gpu_util",
        "warning",
        steps[0],
        f"GPU utilisation {cur:.0f}% (median of {len(means)} samples since step {steps[0]},"
        f" mean over {len(utils)} GPU{'s' if len(utils) > 1 else ''}; limit {LOW_GPU_UTIL:.0f}%)",
        REMEDIES["low_gpu_util"],
        None,
        {"util": cur, "samples": len(means), "gpus": len(utils)},
    )


def stalled(
    last_step: int | None, stalled_now: bool, age_s: float | None, limit_s: float | None
) -> Diagnosis | None:
    """A live run whose step has not advanced for longer than its stall threshold; the verdict
    comes from the one liveness model (tuitrain.runs.liveness.stall_state), shown with evidence."""
    if not stalled_now or age_s is None or last_step is None:
        return None
    limit = limit_s or 0.0
    return Diagnosis(
        "stalled",
        "critical" if limit and age_s > 5 * limit else "warning",
        last_step,
        f"no new step for {age_s:.0f} s since step {last_step} (limit {limit:.0f} s); the process is alive",
        REMEDIES["stalled"],
        None,
        {"age_s": age_s, "limit_s": limit},
    )
