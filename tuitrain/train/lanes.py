"""Provides the lane driver: `accelerate launch -m tuitrain.train.lanes QUEUE` trains the runs
of a lane queue (tuitrain.runs.lane_queue) one after another in this one process, each exactly as
`tuitrain.train` would (its own record, config, train.log, checkpoints), so the imports,
Accelerate and the data cache are paid once. A run that is no longer queued when its turn comes
(stopped meanwhile) is skipped. SIGTERM stops the run in training (it saves and ends stopped, as
ever) and the driver: the runs still waiting end stopped, never left queued."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from tuitrain.runs import lane_queue as lanes

WAITING_STOPPED = "stopped before training started: its lane driver was stopped"


@contextmanager
def output_to(log_path: Path):
    """stdout and stderr (the file descriptors: tqdm and warnings too) appended to log_path."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _status(run_dir: Path) -> str | None:
    from tuitrain.store import RunNotFound, Store

    try:
        with Store(run_dir.parent) as store:
            return store.get_run(run_dir.name).status
    except RunNotFound:
        return None


def _stop_waiting(dirs: list[str]) -> None:
    from tuitrain.store import Store

    for d in map(Path, dirs):
        if _status(d) == "queued":
            with Store(d.parent) as store:
                store.set_status(d.name, "stopped", WAITING_STOPPED)


def drive(queue: Path, idle_s: float = lanes.IDLE_S) -> int:
    """Train the queue's runs in order until it is closed (or idle for idle_s); 1 if any failed."""
    from tuitrain.train.loop import train

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a dropped SSH session must not end training
    sigterm = [False]

    def on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
        sigterm[0] = True

    signal.signal(signal.SIGTERM, on_sigterm)
    done, failed, idle_since = 0, False, time.monotonic()
    while True:
        with lanes.locked(queue) as q:
            dirs = q["dirs"]
            if sigterm[0]:
                q["closed"] = True
            elif done >= len(dirs) and (q["closed"] or time.monotonic() - idle_since > idle_s):
                q["closed"] = True  # under the lock: nothing can be added after this
                return int(failed)
        if sigterm[0]:
            _stop_waiting(dirs[done:])
            return int(failed)
        if done >= len(dirs):
            time.sleep(0.2)
            continue
        run_dir = Path(dirs[done])
        done += 1
        if _status(run_dir) != "queued":
            continue  # stopped (or gone) while it waited
        print(f"[lanes] run {run_dir.name}: training in driver pid {os.getpid()}", flush=True)
        with output_to(run_dir / "train.log"):
            print(f"[lanes] trained in lane driver pid {os.getpid()} ({queue.name})", flush=True)
            code = train(run_dir, sigterm=sigterm)
        print(f"[lanes] run {run_dir.name}: exit code {code}", flush=True)
        failed = failed or code != 0
        gc.collect()  # the last run's model and optimizer, before the next one builds its own
        if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
            sys.modules["torch"].cuda.empty_cache()
        idle_since = time.monotonic()


def main(argv: list[str] | None = None) -> int:
    """`python -m tuitrain.train.lanes QUEUE`."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tuitrain.train.lanes QUEUE.lanes.json", file=sys.stderr)
        return 2
    return drive(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
