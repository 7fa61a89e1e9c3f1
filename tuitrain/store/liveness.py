"""Provides the one liveness model: whether a run is alive, crashed, failed before it started or
stalled, which of its commands can no longer be applied, and which process group may be signalled.

Everything that asks "is this run still alive?" or "may I signal it?" calls this module: the
store's readers (Store.get_run/list_runs), `tuitrain run`, the sweep runner, `tuitrain stop` and
the launcher. The functions are pure over a RunInfo-like record (and /proc); the store persists
the status changes they return.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuitrain.store.models import InvalidValue

# A running run whose heartbeat is older than this is crashed. The writer refreshes it at least
# every 5 s (HEARTBEAT_INTERVAL_S), so this leaves a wide margin.
STALE_HEARTBEAT_S = 60.0
# Stall: a running run with a fresh heartbeat whose step has not advanced for longer than
# max(STALL_MIN_S, STALL_STEP_FACTOR x median step time). Before the first step of a (re)start
# model loading and data preparation count, hence the longer FIRST_STEP_GRACE_S.
STALL_MIN_S = 120.0
STALL_STEP_FACTOR = 20.0
FIRST_STEP_GRACE_S = 900.0
ENV_STALL_MIN = "TUITRAIN_STALL_MIN_S"
ENV_FIRST_STEP = "TUITRAIN_STALL_FIRST_STEP_S"
# A queued run that never got a launcher pid (the launching process died between creating the
# record and spawning) is failed after this long.
QUEUED_NO_PID_S = 120.0
# A command claimed by a trainer that ended on another host (where we cannot look at processes):
# its trainer had this long after the end to acknowledge it.
REMOTE_ACK_GRACE_S = 10.0
LOG_TAIL_LINES = 6
LOG_TAIL_CHARS = 1200
LAUNCH_FILE = (
    "launch.json"  # written by tuitrain.runs.launch.spawn: pid, pgid, start, host, command
)
LOG_FILE = "train.log"
CRASHED_BEFORE_APPLYING = "run crashed before applying it"
ENDED_BEFORE_APPLYING = "run ended before applying it"


def this_host() -> str:
    """The host name runs record (pids are only meaningful on the host that recorded them)."""
    return socket.gethostname()


# ---- processes -------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (state first), or None when there is no such process."""
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="ascii", errors="replace") as fh:
            # The command name (field 2) is parenthesised and may hold spaces or ')'.
            return fh.read().rpartition(")")[2].split()
    except (OSError, ValueError):
        return None


def _has_proc() -> bool:
    return os.path.isdir("/proc/self")


def proc_start(pid: int | None) -> int | None:
    """The process's start time (clock ticks after boot, /proc/PID/stat field 22), or None if it
    does not exist, is a zombie, or this system has no /proc."""
    if not pid or pid <= 0:
        return None
    f = _stat(pid)
    if not f or len(f) < 20 or f[0] in ("Z", "X"):
        return None
    try:
        return int(f[19])
    except ValueError:
        return None


def pid_alive(pid: int | None) -> bool:
    """True if a process with this pid exists on this host and is not a zombie."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return False
    f = _stat(pid)
    if f is None:
        return not _has_proc()  # no /proc (macOS): os.kill is all we can ask
    return bool(f) and f[0] not in ("Z", "X")


def is_process(pid: int | None, start: int | None) -> bool:
    """Whether pid is alive and is the process recorded with this start time (None: unknown, any)."""
    if not pid_alive(pid):
        return False
    if start is None or not _has_proc():
        return True
    return proc_start(pid) == start


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) pids of the process group, from /proc; [] when there are none."""
    if not pgid or pgid <= 0:
        return []
    if not _has_proc():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        f = _stat(int(name))
        # f[2] is field 5, the process group id.
        if f and len(f) > 2 and f[0] not in ("Z", "X") and f[2] == str(pgid):
            out.append(int(name))
    return out


def group_alive(pgid: int | None) -> bool:
    """Whether any live (non-zombie) process of the group still exists."""
    if not pgid or pgid <= 0:
        return False
    try:
        os.killpg(pgid, 0)  # cheap first answer: no such group at all
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return bool(group_members(pgid))


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def launch_info(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """RUN_DIR/launch.json (pid, pgid, start, host, command, cwd of the latest start), or {}."""
    try:
        data = json.loads((Path(run_dir) / LAUNCH_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ---- the run's state -------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """A status the store must persist for a run that is not what its record says."""

    status: str  # crashed | failed
    reason: str


def assess(run: Any, now: float | None = None, host: str | None = None) -> Change | None:
    """The status change a reader must persist for this run, or None when its record is right.

    queued: the launcher pid is gone (and no process of its group is left) -> failed, with the
    last lines of train.log as the reason; no pid at all after QUEUED_NO_PID_S -> failed.
    running: the recorded process is gone or is another process now (pid reused) -> crashed;
    heartbeat older than STALE_HEARTBEAT_S -> crashed. Pids are checked only on their own host.
    """
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
    return Change("failed", died_before_start_reason(run))


def launcher_alive(run: Any) -> bool:
    """Whether the launcher of a queued run (its recorded pid), or a trainer it started, lives."""
    start = proc_start(run.pid)
    if start is not None:
        return getattr(run, "pid_start", None) in (None, start)
    if pid_alive(run.pid):
        return True  # no /proc: os.kill says it exists
    # A launcher killed on its own leaves its trainers running (torchrun starts each rank in a
    # session of its own): they may still be starting and will mark the run running.
    return bool(run_processes(run))


def run_processes(run: Any) -> list[int]:
    """Live pids (any session) running this run: argv holds `tuitrain.train` and the run's
    directory, which only our launcher and trainers do (not, say, `tail -f RUN_DIR/train.log`)."""
    if not _has_proc():
        return []
    d = Path(run.run_dir)
    dirs = {os.fsencode(str(d)), os.fsencode(str(d.resolve()))}
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if b"tuitrain.train" in argv and dirs.intersection(argv) and proc_start(int(name)):
            out.append(int(name))
    return out


def died_before_start_reason(run: Any) -> str:
    """'exited before training started' and the last lines of the run's train.log."""
    path = Path(run.run_dir) / LOG_FILE
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode(errors="replace")
    except OSError:
        text = ""
    # The first line of each start is the command we ran ("$ python -m accelerate..."): noise here.
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip() and not ln.startswith("$ ")]
    tail = "\n".join(lines[-LOG_TAIL_LINES:])[-LOG_TAIL_CHARS:]
    head = f"the training process exited before training started (launcher pid {run.pid})"
    return f"{head}; last lines of {path}:\n{tail}" if tail else f"{head}; {path} is empty"


def _assess_running(run: Any, now: float, host: str) -> Change | None:
    if run.pid and (run.host or host) == host:
        start = getattr(run, "pid_start", None)
        if not is_process(run.pid, start):
            why = "is gone" if proc_start(run.pid) is None else "now belongs to another process"
            return Change(
                "crashed", f"process {run.pid} on {run.host or host} {why} without a final status"
            )
    beat = run.heartbeat or run.started or run.created
    if now - beat > STALE_HEARTBEAT_S:
        return Change(
            "crashed", f"no heartbeat for {now - beat:.0f} s (limit {STALE_HEARTBEAT_S:.0f} s)"
        )
    return None


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
    least first_step_s instead. min_s and first_step_s default to stall_thresholds()
    (environment, else 120 s / 900 s).
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


# ---- commands --------------------------------------------------------------------------------


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


# ---- signalling ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The process groups that may be signalled for a run (empty: none), and why.

    pgids[0] is the launcher's group when it is alive; the others are groups of trainer
    processes outside it (torchrun starts each rank in a session of its own)."""

    pgids: tuple[int, ...]
    why: str

    @property
    def pgid(self) -> int | None:
        """The first group (the launcher's while it lives), or None."""
        return self.pgids[0] if self.pgids else None


def signal_target(run: Any, host: str | None = None, after_end: bool = False) -> Target:
    """The run's process groups, only those verifiably this run's: the run is not terminal
    (unless after_end, for cleaning up processes that outlive a final status), it was started on
    this host, and each group is led by the recorded launcher (same start time) or holds a
    trainer of this run (argv names the run directory), or is the recorded pid's with the
    recorded start time. A reused pid is never returned."""
    host = host or this_host()
    if run.terminal and not after_end:
        return Target((), f"run is {run.status}")
    if run.host and run.host != host:
        return Target((), f"run was started on {run.host}, not on this host ({host})")
    info = launch_info(run.run_dir)
    if info.get("host") not in (None, host):
        return Target((), f"run was launched on {info['host']}, not on this host ({host})")
    own = os.getpgid(0)
    groups: list[int] = []
    why = "no process of this run is running"
    leader = info.get("pgid")
    if isinstance(leader, int) and leader > 0:
        start = proc_start(leader)
        if start is not None and info.get("start") is not None and start == info["start"]:
            groups.append(leader)
        elif start is not None:
            why = f"pid {leader} now belongs to another process"
    for pid in run_processes(run):
        g = _pgid_of(pid)
        if g and g not in groups:
            groups.append(g)
    if run.pid and (run.host or host) == host and not groups:
        start = getattr(run, "pid_start", None)
        if start is None and pid_alive(run.pid):
            why = f"no start time was recorded for pid {run.pid}: cannot tell it from a reused pid"
        elif start is not None and is_process(run.pid, start):
            g = _pgid_of(run.pid)
            if g:
                groups.append(g)
        elif pid_alive(run.pid):
            why = f"pid {run.pid} now belongs to another process"
    if own in groups:
        groups.remove(own)  # never the caller's own group (tuitrain.init inside this process)
        why = "the run shares this process's own group; not signalling it"
    groups = [g for g in groups if g > 0 and group_alive(g)]
    return Target(tuple(groups), "verified" if groups else why)


def _pgid_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def processes_alive(run: Any, host: str | None = None) -> bool:
    """Whether any verified process of the run (any status) is still alive on this host."""
    return bool(signal_target(run, host, after_end=True).pgids)
