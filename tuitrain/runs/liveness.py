"""Provides the one liveness rule: whether a run (or a sweep) is alive, stalled or dead, what its
record must say instead, and the writes that make it say so.

Every caller that asks "is this run still alive?" comes here: the CLI, the TUI, the batch
follower, the sweep runner, the LR race and the doctor. Readers (the TUI's poll threads) call
`view_run` / `view_runs` / `observe`: the verdict is applied to the record in memory only.
Writers (CLI commands, the follower, the sweep runner, the race) call `get_run` / `list_runs` /
`reconcile`, which also persist a dead run's final status (with an error event) and reject the
commands it can no longer apply. The store itself never decides and its reads never write.

The rules (README "Reliability"):
- running, process on this host: gone, or its pid now belongs to another process -> crashed.
  Alive but its heartbeat silent for longer than TUITRAIN_HEARTBEAT_STALL_S, or its step not
  advancing past the stall threshold -> stalled (never crashed: a frozen process may resume).
- running on another host (pids cannot be checked here): heartbeat silent for longer than
  TUITRAIN_REMOTE_DEAD_S (far longer than the stall threshold) -> crashed; before that stalled.
- queued: the launcher and every trainer it started are gone -> failed (with train.log's tail);
  no launcher pid at all after QUEUED_NO_PID_S -> failed.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from typing import Any

from tuitrain.runs.process import (
    died_before_start_reason,
    is_process,
    launcher_alive,
    proc_start,
    processes_alive,
    this_host,
    zombie,
)
from tuitrain.store.commands import CRASHED_BEFORE_APPLYING, ENDED_BEFORE_APPLYING
from tuitrain.store.models import InvalidValue

# Stall: a running run whose step has not advanced for longer than max(STALL_MIN_S,
# STALL_STEP_FACTOR x median step time). Before the first step of a (re)start model loading and
# data preparation count, hence the longer FIRST_STEP_GRACE_S.
STALL_MIN_S = 120.0
STALL_STEP_FACTOR = 20.0
FIRST_STEP_GRACE_S = 900.0
# The writer refreshes the heartbeat at least every 5 s (HEARTBEAT_INTERVAL_S): silence past
# this means the trainer is frozen (SIGSTOP, swapped out, a hung writer thread): stalled.
HEARTBEAT_STALL_S = 60.0
# A run on another host whose heartbeat has been silent this long is taken for dead (crashed):
# ten times the heartbeat stall, since we cannot look at its processes from here.
REMOTE_DEAD_S = 600.0
ENV_STALL_MIN = "TUITRAIN_STALL_MIN_S"
ENV_FIRST_STEP = "TUITRAIN_STALL_FIRST_STEP_S"
ENV_HEARTBEAT_STALL = "TUITRAIN_HEARTBEAT_STALL_S"
ENV_REMOTE_DEAD = "TUITRAIN_REMOTE_DEAD_S"
# A queued run that never got a launcher pid (the launching process died between creating the
# record and spawning) is failed after this long.
QUEUED_NO_PID_S = 120.0
# A command claimed by a trainer that ended on another host (where we cannot look at processes):
# its trainer had this long after the end to acknowledge it.
REMOTE_ACK_GRACE_S = 10.0


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise InvalidValue(
            f"environment variable {name}={raw!r} must be a positive number of seconds "
            f"(e.g. {default:g}); fix or unset it"
        )
    return value


def stall_thresholds() -> tuple[float, float]:
    """(minimum stall threshold, first-step grace) in seconds: TUITRAIN_STALL_MIN_S and
    TUITRAIN_STALL_FIRST_STEP_S when set, else 120 s and 900 s."""
    return _env_seconds(ENV_STALL_MIN, STALL_MIN_S), _env_seconds(
        ENV_FIRST_STEP, FIRST_STEP_GRACE_S
    )


def heartbeat_limits() -> tuple[float, float]:
    """(heartbeat silence that makes a live run stalled, silence that makes a run on another host
    crashed): TUITRAIN_HEARTBEAT_STALL_S and TUITRAIN_REMOTE_DEAD_S, else 60 s and 600 s."""
    return _env_seconds(ENV_HEARTBEAT_STALL, HEARTBEAT_STALL_S), _env_seconds(
        ENV_REMOTE_DEAD, REMOTE_DEAD_S
    )


# ---- dead: the status a run's record must get ------------------------------------------------


@dataclass(frozen=True)
class Change:
    """A status the store must persist for a run that is not what its record says."""

    status: str  # crashed | failed
    reason: str


def assess(run: Any, now: float | None = None, host: str | None = None) -> Change | None:
    """The final status this run's record must get, or None when its record is right (see the
    module docstring for the rules). Pids are checked only on their own host."""
    now = time.time() if now is None else now
    host = host or this_host()
    if run.status == "queued":
        return _assess_queued(run, now, host)
    if run.status == "running":
        return _assess_running(run, now, host)
    return None


def _assess_queued(run: Any, now: float, host: str) -> Change | None:
    if not run.pid:
        age = now - (run.created or now)
        if age > QUEUED_NO_PID_S:
            return Change(
                "failed",
                f"no training process was started within {QUEUED_NO_PID_S:.0f} s of creating the "
                "run (the launching process died?); start it again with `tuitrain run`",
            )
        return None
    if run.host and run.host != host:
        return None  # launched elsewhere: only that host can look at its processes
    if launcher_alive(run):
        return None
    if zombie(run.pid, getattr(run, "pid_start", None)):
        return None  # ended, not reaped yet: its parent writes how it ended to train.log first
    return Change("failed", died_before_start_reason(run))


def _assess_running(run: Any, now: float, host: str) -> Change | None:
    if run.pid and (run.host or host) == host:
        start = getattr(run, "pid_start", None)
        if is_process(run.pid, start):
            return None  # alive here: stalled at worst, never crashed
        why = "is gone" if proc_start(run.pid) is None else "now belongs to another process"
        return Change(
            "crashed", f"process {run.pid} on {run.host or host} {why} without a final status"
        )
    beat = run.heartbeat or run.started or run.created
    _, dead_s = heartbeat_limits()
    if now - beat > dead_s:
        where = f"on {run.host}" if run.host else "with no process recorded"
        return Change(
            "crashed",
            f"no heartbeat for {now - beat:.0f} s from a run {where} (limit {dead_s:.0f} s, "
            f"{ENV_REMOTE_DEAD})",
        )
    return None


# ---- stalled: alive but not moving -----------------------------------------------------------


def stall_state(
    run: Any,
    now: float | None = None,
    min_s: float | None = None,
    first_step_s: float | None = None,
    factor: float = STALL_STEP_FACTOR,
) -> tuple[bool, float | None, float | None]:
    """(stalled, last_step_age_s, threshold_s) of a run; pure (no I/O besides the env defaults).

    Only a `running` run can be stalled. last_step_age_s is the time since its step last advanced
    (since its (re)start while it has made no step yet); the threshold is max(min_s,
    factor x median step time), or first_step_s before the first step of a (re)start. While the
    trainer announces a phase (run.phase: eval, save), the phase's own age is compared with at
    least first_step_s instead. A heartbeat silent for longer than TUITRAIN_HEARTBEAT_STALL_S is
    stalled whatever the step (the whole trainer is frozen). min_s and first_step_s default to
    stall_thresholds() (environment, else 120 s / 900 s).
    """
    if run.status != "running":
        return False, None, None
    now = time.time() if now is None else now
    if min_s is None or first_step_s is None:
        env_min, env_first = stall_thresholds()
        min_s = env_min if min_s is None else min_s
        first_step_s = env_first if first_step_s is None else first_step_s
    started = run.started or run.created
    advanced = getattr(run, "step_advanced", None)
    first = advanced is None or advanced < started
    age = max(0.0, now - (started if first else advanced))
    beat = getattr(run, "heartbeat", None)
    if beat is not None:
        silent_s, _ = heartbeat_limits()
        if now - beat > silent_s:
            return True, age, silent_s
    if first:
        threshold = float(first_step_s)
    else:
        per_step = getattr(run, "step_time_s", None)
        threshold = max(float(min_s), factor * per_step if per_step else 0.0)
    since = getattr(run, "phase_since", None)
    if getattr(run, "phase", None) and since is not None and since >= started:
        # An eval or a save announced by the trainer: stalled only when the phase itself has
        # lasted longer than the first-step grace (a long eval is not a hung rank).
        threshold = max(threshold, float(first_step_s))
        return now - since > threshold, age, threshold
    return age > threshold, age, threshold


def duration(seconds: float | None) -> str:
    """1h02m, 4m05s, 12s; '-' when unknown (how every stall is shown)."""
    if seconds is None or seconds < 0 or not math.isfinite(seconds):
        return "-"
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def stall_label(run: Any) -> str:
    """'stalled 3m05s' for a stalled run (how long its step has not advanced), else ''. The one
    place a stall is worded: the runs list, the monitor, `ls`, `show` and the follower use it."""
    if not getattr(run, "stalled", False):
        return ""
    age = getattr(run, "last_step_age_s", None)
    return f"stalled {duration(age)}" if age is not None else "stalled"


# ---- reading: the verdict in memory ----------------------------------------------------------


def observe(run: Any, now: float | None = None, host: str | None = None) -> Any:
    """The run as it really is, without writing anything: a dead run comes back with its final
    status (crashed / failed, reason, ended) and a live one with `stalled` and `last_step_age_s`."""
    now = time.time() if now is None else now
    change = assess(run, now, host)
    if change is not None:
        run = replace(run, status=change.status, exit_reason=change.reason, ended=now)
    run.stalled, run.last_step_age_s, _ = stall_state(run, now)
    return run


def view_run(store: Any, ref: str) -> Any:
    """One run, observed (no write): for screens polling the store."""
    return observe(store.get_run(ref))


def view_runs(store: Any, sweep_id: str | None = None, limit: int | None = None) -> list[Any]:
    """The runs (store.list_runs order), observed (no write): for screens polling the store."""
    now = time.time()
    return [observe(r, now) for r in store.list_runs(sweep_id=sweep_id, limit=limit)]


# ---- writing: the verdict persisted ----------------------------------------------------------


def reconcile(store: Any, runs: list[Any] | None = None) -> list[Any]:
    """Persist the final status of every dead run among `runs` (default: all), with an error
    event, and reject the commands it can no longer apply; returns the runs observed. A write:
    for the CLI, the follower, the sweep runner and the race, never for a screen's poll."""
    runs = store.list_runs() if runs is None else runs
    now, host = time.time(), this_host()
    out = []
    for run in runs:
        change = assess(run, now, host)
        if change is not None:
            store.mark_ended_if(run, change.status, change.reason, now)
            run = store.get_run(run.id)
            settle_commands(store, run)
        out.append(observe(run, now, host))
    return out


def get_run(store: Any, ref: str) -> Any:
    """One run, reconciled (a dead run's final status persisted) and observed; the pending
    commands of an ended run that can no longer be applied are rejected."""
    run = reconcile(store, [store.get_run(ref)])[0]
    if run.terminal:
        settle_commands(store, run)
    return run


def list_runs(store: Any, sweep_id: str | None = None, limit: int | None = None) -> list[Any]:
    """The runs (store.list_runs order), reconciled and observed."""
    return reconcile(store, store.list_runs(sweep_id=sweep_id, limit=limit))


# ---- commands of ended runs ------------------------------------------------------------------


def orphan_reason(
    run: Any, claimed: bool, now: float | None = None, host: str | None = None
) -> str | None:
    """Why a still-pending command of this run can never be applied, or None while it still can.

    Unclaimed: as soon as the run is terminal (nobody claims after the end). Claimed: once the
    run is terminal and its processes are gone (a trainer acknowledges in its last moments);
    on another host, REMOTE_ACK_GRACE_S after the end.
    """
    if not run.terminal:
        return None
    reason = (
        CRASHED_BEFORE_APPLYING if run.status in ("crashed", "failed") else ENDED_BEFORE_APPLYING
    )
    if not claimed:
        return reason
    now = time.time() if now is None else now
    host = host or this_host()
    if run.host and run.host != host:
        return reason if now - (run.ended or now) >= REMOTE_ACK_GRACE_S else None
    return None if processes_alive(run, host) else reason


def settle_commands(store: Any, run: Any) -> int:
    """Reject the run's pending commands that can no longer be applied; how many were."""
    done = 0
    for claimed in (False, True):
        if not store.has_pending(run.id, claimed):
            continue
        reason = orphan_reason(run, claimed)
        if reason is not None:
            done += store.reject_pending(run.id, reason, claimed)
    return done


def wait_command(store: Any, cmd_id: int, timeout: float = 30.0, poll: float = 0.1) -> Any:
    """Poll until the command is applied or rejected, or timeout; returns it (still pending on
    timeout). A command of a run that ended or died before applying it is rejected here (with
    that reason), so nobody waits on it."""
    deadline = time.monotonic() + timeout
    while True:
        cmd = store.get_command(cmd_id)
        if cmd.done:
            return cmd
        if get_run(store, cmd.run_id).terminal and store.get_command(cmd_id).done:
            continue
        if time.monotonic() >= deadline:
            return cmd
        time.sleep(poll)


# ---- sweeps ----------------------------------------------------------------------------------


def sweep_dead_reason(row: dict[str, Any], host: str | None = None) -> str | None:
    """Why a `running` sweep row is dead (its process is gone; checked on its own host only),
    or None while it may live."""
    host = host or this_host()
    if row["status"] != "running" or (row["host"] and row["host"] != host):
        return None
    if row["pid"] and is_process(row["pid"], row["pid_start"]):
        return None
    return f"sweep process {row['pid']} is gone without a final status"


def observe_sweep(row: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """The sweep row as it really is (a dead one crashed), without writing."""
    why = sweep_dead_reason(row)
    if why is None:
        return row
    now = time.time() if now is None else now
    return {**row, "status": "crashed", "ended": row["ended"] or now, "error": row["error"] or why}


def reconcile_sweeps(store: Any) -> None:
    """Persist `crashed` for every running sweep whose process is gone (a write)."""
    for row in store.sweeps.all():
        why = sweep_dead_reason(row)
        if why is not None:
            store.sweeps.mark_crashed(row["id"], why)
