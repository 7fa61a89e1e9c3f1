"""Provides RunClient: a run's one connection to the store from inside a training process (rank 0):
register the run (or attach to the record the launcher made), the batched writer, the steering
poller, the final status; and install_sigterm(), the one SIGTERM rule for a user's script.

Used by the trainer's Reporter (tuitrain.train.report), `tuitrain.init()` (tuitrain.client.api),
the HF callback (tuitrain.integrations.hf) and, through `Run`, the Accelerate tracker.

Metrics and events are queued by the writer and written every `flush_interval` (0.5 s) by its
thread. A clean end (finish(), a SIGTERM handled as a stop, an exception, interpreter exit)
writes everything queued first; kill -9 loses at most what was queued since the last write
(one flush interval), plus, in the trainer, the steps not yet drained from the device (at most
one `training.log_every` window).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuitrain.steering.poller import SteeringPoller, StoreSource
from tuitrain.store import RunNotFound, RunWriter, Store
from tuitrain.telemetry.sysinfo import DEFAULT_INTERVAL_S


class RunClient:
    """Store access for one run on rank 0: writes (batched), status, commands."""

    def __init__(
        self,
        runs_dir: str | os.PathLike[str],
        run_id: str,
        *,
        flush_interval: float = 0.5,
        system_interval: float | None = DEFAULT_INTERVAL_S,
        store: Store | None = None,
    ) -> None:
        self.runs_dir, self.run_id = Path(runs_dir), run_id
        # Status, phase and commands: own connection, on the loop's thread (short, rare writes).
        self.store = store if store is not None else Store(self.runs_dir)
        # sys/ metrics (GPU, CPU, RAM, disk) are sampled by the writer's thread, never the loop.
        self.writer = RunWriter(
            self.runs_dir, run_id, flush_interval=flush_interval, system_interval=system_interval
        )
        self.finished = False

    @classmethod
    def register(
        cls,
        runs_dir: str | os.PathLike[str],
        config: dict,
        derived: dict,
        name: str | None,
        how: str,
        *,
        resume_id: str | None = None,
        resumed: bool = False,
        step: int | None = None,
        data: dict | None = None,
        **kw: Any,
    ) -> RunClient:
        """Create a run record started by this process, or re-attach to `resume_id` when that
        run exists. `resumed`: this process continues from a checkpoint at `step` (the event is
        `resumed`, with `data`). `how` says what reported it, e.g. "tuitrain.init"."""
        store = Store(runs_dir)
        try:
            run = None
            if resume_id is not None:
                try:
                    run = store.get_run(resume_id)
                except RunNotFound:
                    run = None
            if run is None:
                run = store.create_run(config=config, derived=derived, name=name, status="queued")
            store.mark_started(run.id, os.getpid(), socket.gethostname())
            verb = f"resumed at step {step}" if resumed else "started"
            store.add_event(
                run.id,
                "resumed" if resumed else "started",
                f"{verb} by pid {os.getpid()} ({how})",
                step,
                data if resumed else None,
            )
        except BaseException:
            store.close()
            raise
        return cls(runs_dir, run.id, store=store, **kw)

    @property
    def name(self) -> str:
        """The run's name."""
        return self.store.get_run(self.run_id).name

    @property
    def run_dir(self) -> Path:
        """RUNS_DIR/<run id>."""
        return self.store.run_dir(self.run_id)

    def started(self) -> None:
        """Status running with this process's pid and host (a run the launcher queued)."""
        self.store.mark_started(self.run_id, os.getpid(), socket.gethostname())

    def poller(
        self,
        rank: int = 0,
        world: int = 1,
        interval: float = 0.25,
        broadcast: Callable[[list], None] | None = None,
    ) -> SteeringPoller:
        """A steering poller claiming this run's commands (build it on every rank; pass the
        client on rank 0 only, see poller_for)."""
        return poller_for(self, rank, world, interval, broadcast)

    def log(self, step: int, values: dict) -> None:
        """Queue metrics of one step."""
        self.writer.log(step, values)

    def event(self, kind: str, message: str, step: int | None = None, data: dict | None = None):
        """Queue a timeline event."""
        self.writer.event(kind, message, step, data)

    def flush(self) -> None:
        """Write everything queued now."""
        self.writer.flush()

    def finish(
        self,
        status: str,
        reason: str | None = None,
        summary: dict | None = None,
        step: int | None = None,
        event: bool = True,
    ) -> None:
        """Write everything queued, then the final status (readers see all metrics first);
        with `event`, a `finished` event too. Idempotent."""
        if self.finished:
            return
        self.finished = True
        self.writer.close()
        if event:
            msg = f"run {status}" + (f": {reason}" if reason else "")
            self.store.add_event(self.run_id, "finished", msg, step)
        self.store.set_status(self.run_id, status, reason=reason, summary=summary)

    def close(self) -> None:
        """Release the writer's thread and the connection (idempotent)."""
        try:
            self.writer.close()
        finally:
            self.store.close()


def poller_for(
    client: RunClient | None,
    rank: int,
    world: int,
    interval: float = 0.25,
    broadcast: Callable[[list], None] | None = None,
) -> SteeringPoller:
    """The steering poller of one rank: rank 0 claims through `client`, every rank gets the
    same commands at the same step (client None: this rank does not read the store)."""
    source = None
    if client is not None:
        source = StoreSource(client.runs_dir, client.run_id, store=client.store)
    return SteeringPoller(source, rank=rank, world=world, interval=interval, broadcast=broadcast)


def install_sigterm(handler: Callable[[int, Any], None]) -> Callable[[], None] | None:
    """Route SIGTERM (what `tuitrain stop` sends) to `handler` when nobody else handles it and
    this is the main thread; returns the function that puts the old handler back, or None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    old = signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, old)

    return restore
