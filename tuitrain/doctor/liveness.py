"""Provides the doctor's door to the one liveness model: stall_of(run, now) -> (stalled, age_s,
limit_s), from tuitrain.store.liveness.stall_state where it exists, else the same rule here."""

from __future__ import annotations

import time
from typing import Any

# The rule of tuitrain.store.liveness, kept only for a store without that module: a running run
# whose step has not advanced for max(120 s, 20 x its step time) is stalled.
FALLBACK_MIN_S = 120.0
FALLBACK_FACTOR = 20.0


def stall_of(run: Any, now: float | None = None) -> tuple[bool, float | None, float | None]:
    """(stalled, seconds since the step last advanced, threshold) of a run record."""
    try:
        from tuitrain.store.liveness import stall_state
    except ImportError:
        stall_state = None
    if stall_state is not None:
        return stall_state(run, now)
    if getattr(run, "status", None) != "running":
        return False, None, None
    now = time.time() if now is None else now
    since = getattr(run, "step_advanced", None) or getattr(run, "heartbeat", None)
    if since is None:
        return False, None, None
    per_step = getattr(run, "step_time_s", None) or 0.0
    limit = max(FALLBACK_MIN_S, FALLBACK_FACTOR * per_step)
    age = max(0.0, now - since)
    return age > limit, age, limit
