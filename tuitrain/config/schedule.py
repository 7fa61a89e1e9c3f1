"""Provides the LR schedule as a pure function of the optimizer step (shared by trainer and editor)."""

from __future__ import annotations

import math

from tuitrain.config.schema import SchedulerGroup


def lr_factor(
    step: int, sched: SchedulerGroup, total_steps: int, warmup_steps: int, base_lr: float
) -> float:
    """Multiplier on the peak LR at optimizer step `step` (0-based: the LR used for update step+1).

    `plateau` has no fixed shape: it is constant here and the trainer multiplies in its cuts.
    eta_min is an absolute LR floor, so it is divided by base_lr to become a factor.
    """
    if warmup_steps > 0 and step < warmup_steps:
        start = sched.warmup_start_factor
        return start + (1.0 - start) * (step / warmup_steps)
    floor = min(1.0, sched.eta_min / base_lr) if base_lr > 0 else 0.0
    t = step - warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, t / span)
    name = sched.name
    if name in ("constant", "plateau"):
        return 1.0
    if name == "linear":
        return floor + (1.0 - floor) * (1.0 - progress)
    if name == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if name == "step":
        return sched.gamma ** (t // sched.step_size)
    if name == "exponential":
        return sched.gamma**t
    raise ValueError(f"unknown scheduler.name {name!r}")


def schedule_curve(
    sched: SchedulerGroup, total_steps: int, warmup_steps: int, base_lr: float, points: int = 200
) -> list[tuple[int, float]]:
    """(step, lr) pairs sampled evenly over the run, for previews and charts."""
    if total_steps <= 0:
        return []
    n = min(points, total_steps)
    steps = sorted({round(i * (total_steps - 1) / max(1, n - 1)) for i in range(n)})
    return [(s, base_lr * lr_factor(s, sched, total_steps, warmup_steps, base_lr)) for s in steps]
