"""Provides the notifier's one door to the liveness rule: run_state(store, run_id) -> the run and
whether it is alive, stalled or ended (crashed included), as tuitrain.runs.liveness says."""

from __future__ import annotations

import time
from typing import Any


def run_state(
    store: Any, run_id: str, now: float | None = None, record: bool = True
) -> tuple[Any, str, float | None, float | None]:
    """(run, state, seconds since its step advanced, stall threshold). state: "queued", "alive",
    "stalled", or the run's final status. The store's reader applies the liveness model (a run
    whose process is gone is recorded crashed by this writer); the stall rule is the one it uses."""
    from tuitrain.runs.liveness import get_run, stall_state, view_run

    # The notifier daemon acts on runs (records a dead one crashed); a TUI only reads.
    run = get_run(store, run_id) if record else view_run(store, run_id)
    if run.terminal or run.status == "queued":
        return run, run.status, None, None
    stalled, age, limit = stall_state(run, time.time() if now is None else now)
    return run, "stalled" if stalled else "alive", age, limit
