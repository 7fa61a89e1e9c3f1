"""Provides lane queues: several short runs (an LR race's branches) trained one after another in
ONE training process, so the process start (imports, Accelerate, data) is paid once per slot,
not once per branch. Torch-free: the queue file and LaneDriver (which starts the process) are
here, shared by the race (tuitrain.lrfind) and the process itself (tuitrain.train.lanes).

A queue is a JSON file `{"dirs": [run_dir, ...], "closed": false}` in RUNS_DIR/races/lanes/
(beside it the driver's launch record and its own log, until its first run takes over). The
race appends a run's directory after creating its record (queued, with the driver's pid);
the driver trains the runs in order, skips any that is no longer queued (stopped meanwhile),
and when it runs out waits up to IDLE_S for more before it closes the queue and exits. Every
read-modify-write holds an flock on the file, so a run is never appended to a queue whose
driver has just decided to exit: `LaneDriver.add` then starts a new driver."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

IDLE_S = 30.0  # how long a driver waits for another run (the race judges between rounds)
MODULE = "tuitrain.train.lanes"
LANES_DIR = "lanes"  # under RUNS_DIR/races: queues, drivers' launch records and logs


@contextmanager
def locked(path: Path):
    """The queue's content under an exclusive lock: yields a dict to read and change in place."""
    with open(path.with_suffix(path.suffix + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = read(path)
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                tmp = path.with_suffix(path.suffix + ".tmp")
                tmp.write_text(json.dumps(data, indent=1))
                os.replace(tmp, path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read(path: Path) -> dict:
    """The queue as it is now ({"dirs": [], "closed": False} before the first write)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        data = {}
    dirs = data.get("dirs") if isinstance(data, dict) else None
    return {"dirs": list(dirs or []), "closed": bool(isinstance(data, dict) and data.get("closed"))}


def one_process(cfg: Any) -> bool:
    """Whether runs of this config can share a lane driver: a single local process (a multi-rank
    run would need every rank to agree on each skip; those keep one process per run)."""
    lc = cfg.launch
    return lc.num_processes == 1 and lc.num_machines == 1


class LaneDriver:
    """One slot's training process and its queue; `add` puts a run in it (starting the process,
    or a new one when the last has closed its queue)."""

    def __init__(self, races_dir: Path, label: str, env: dict[str, str] | None = None) -> None:
        self.races_dir, self.label, self.env = Path(races_dir), label, env or {}
        self.queue: Path | None = None
        self.info: dict | None = None  # the driver's launch record (pid, pgid, start, ...)
        self.proc: Any = None
        self.started = 0  # processes started (the race cost: one per slot, plus restarts)

    def add(self, resolved: Any, runs_dir: str | Path, register: Callable[[dict], Any]) -> Any:
        """Register a run for this driver (`register(launch_record)` -> (RunInfo, run_dir), e.g.
        tuitrain.runs.launch.launch_lane) and queue it; returns the RunInfo."""
        for _ in range(2):
            if self.queue is None or self.proc is None or self.proc.poll() is not None:
                self._start(resolved, runs_dir)
            with locked(self.queue) as q:
                if q["closed"]:  # the driver ran out of work and left just now: start another
                    self.queue = None
                    continue
                info, run_dir = register(self.info)
                q["dirs"].append(str(Path(run_dir).resolve()))
                return info
        raise RuntimeError(f"lane driver for {self.label} closed its queue twice in a row")

    def _start(self, resolved: Any, runs_dir: str | Path) -> None:
        from tuitrain.runs.launch import build_command, spawn_command

        self.started += 1
        self.races_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{self.label}-{os.getpid()}-{self.started}"
        self.queue = self.races_dir / f"{stem}.lanes.json"
        with locked(self.queue) as q:
            q["dirs"] = []
        cfg = resolved.config
        cmd = build_command(cfg, self.queue, module=MODULE)
        info_path, log = self.races_dir / f"{stem}.launch.json", self.races_dir / f"{stem}.log"
        self.proc = spawn_command(cmd, cfg, log, info_path, extra_env=self.env)
        # "log": where a run that never got its turn finds the driver's error (its own
        # train.log stays empty), named in its failed status by tuitrain.runs.process.
        self.info = {**json.loads(info_path.read_text()), "lanes": str(self.queue), "log": str(log)}

    def close(self) -> None:
        """No more runs: the driver exits after the queued ones (idempotent)."""
        if self.queue is not None:
            with locked(self.queue) as q:
                q["closed"] = True
