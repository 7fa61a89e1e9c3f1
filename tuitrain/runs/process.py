"""Provides process control for runs on this host: /proc lookups (is this pid alive, is it still
the process we recorded), process groups, a run's launch record (launch.json), the processes that
run it, which groups may be signalled, and the tail of its train.log.

Torch-free and store-free: it reads /proc and files only. Whether a run is alive, stalled or
dead is decided from these facts by tuitrain.runs.liveness.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOG_TAIL_LINES = 6
LOG_TAIL_CHARS = 1200
LAUNCH_FILE = (
    "launch.json"  # written by tuitrain.runs.launch.spawn: pid, pgid, start, host, command
)
LOG_FILE = "train.log"


def this_host() -> str:
    """The host name runs record (pids are only meaningful on the host that recorded them)."""
    return socket.gethostname()


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


def zombie(pid: int | None, start: int | None = None) -> bool:
    """Whether pid has exited and waits for its parent to reap it (with this start time; None:
    any). tuitrain's launching process writes why its launcher ended before it reaps it."""
    if not pid or pid <= 0:
        return False
    f = _stat(pid)
    if not f or len(f) < 20 or f[0] != "Z":
        return False
    return start is None or f[19] == str(start)


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


def launch_info(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """RUN_DIR/launch.json (pid, pgid, start, host, command, cwd of the latest start), or {}."""
    try:
        data = json.loads((Path(run_dir) / LAUNCH_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


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
        argv = _argv(int(name))
        if b"tuitrain.train" in argv and dirs.intersection(argv) and proc_start(int(name)):
            out.append(int(name))
    return out


def log_tail(path: Path) -> str:
    """The last LOG_TAIL_LINES lines of a log (without our "$ command" lines), or ''."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode(errors="replace")
    except OSError:
        text = ""
    # The first line of each start is the command we ran ("$ python -m accelerate..."): noise here.
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip() and not ln.startswith("$ ")]
    return "\n".join(lines[-LOG_TAIL_LINES:])[-LOG_TAIL_CHARS:]


def _argv(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().split(b"\0")
    except OSError:
        return []


def trainer_pids(pgids: tuple[int, ...] | list[int]) -> list[int]:
    """The training processes (`-m tuitrain.train ...` or a lane driver `-m
    tuitrain.train.lanes ...`) among the live members of these groups, never their launcher
    (`accelerate.commands.launch`, which also names tuitrain.train in its argv)."""
    out = []
    for g in pgids:
        for pid in group_members(g):
            argv = _argv(pid)
            if b"accelerate.commands.launch" in argv:
                continue
            if b"tuitrain.train" in argv or b"tuitrain.train.lanes" in argv:
                out.append(pid)
    return out


def died_before_start_reason(run: Any) -> str:
    """'exited before training started' and the last lines of the log that has its error: the
    run's train.log, or, for a run queued in a lane driver that never got to train it, the
    driver's own log (launch.json "log")."""
    path = Path(run.run_dir) / LOG_FILE
    tail = log_tail(path)
    head = f"the training process exited before training started (launcher pid {run.pid})"
    driver_log = launch_info(run.run_dir).get("log")
    if not tail and driver_log:
        path, tail = Path(driver_log), log_tail(Path(driver_log))
        head = f"its lane driver (pid {run.pid}) exited before training it"
    return f"{head}; last lines of {path}:\n{tail}" if tail else f"{head}; {path} is empty"


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
