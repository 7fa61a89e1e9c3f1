"""Provides the trainer's reporting side: rank 0 writes metrics, events and status to the store
(and a line to train.log); every other rank's Reporter does nothing."""

from __future__ import annotations

import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path


class Reporter:
    """Store writes for one run, active on rank 0 only."""

    def __init__(self, run_dir: Path, active: bool):
        self.active = active
        self.run_id = run_dir.name
        self.store = self.writer = None
        if active:
            from tuitrain.store import RunWriter, Store

            self.store = Store(run_dir.parent)
            # sys/ metrics (GPU, CPU, RAM, disk) sampled by the writer's thread, never the step path.
            from tuitrain.telemetry.sysinfo import DEFAULT_INTERVAL_S

            self.writer = RunWriter(run_dir.parent, self.run_id, system_interval=DEFAULT_INTERVAL_S)

    def started(self) -> None:
        """Status running with this process's pid and host."""
        if self.active:
            self.store.mark_started(self.run_id, os.getpid(), socket.gethostname())

    def log(self, step: int, values: dict[str, float]) -> None:
        """Metrics of one step (buffered by the RunWriter thread)."""
        if self.active:
            self.writer.log(step, values)

    def event(
        self, kind: str, message: str, step: int | None = None, data: dict | None = None
    ) -> None:
        """A timeline event; also printed to train.log."""
        if self.active:
            self.writer.event(kind, message, step, data)
            print(
                f"[{kind}] {'step ' + str(step) + ': ' if step is not None else ''}{message}",
                flush=True,
            )

    @contextmanager
    def phase(self, name: str):
        """The run's phase between steps (eval, save) in the store while the block runs: readers
        then take a long eval for what it is, not for a stall."""
        self._set_phase(name)
        try:
            yield
        finally:
            self._set_phase(None)

    def _set_phase(self, name: str | None) -> None:
        if not self.active:
            return
        try:
            self.store.set_phase(self.run_id, name)
        except Exception as exc:  # a busy database must cost the phase, never the run
            print(f"warning: could not record phase {name}: {exc}", file=sys.stderr, flush=True)

    def sync(self) -> None:
        """Write every queued metric and event now (before a checkpoint: a kill -9 right after
        it must not lose steps the resume will not redo)."""
        if self.active:
            self.writer.flush()

    def update(self, derived: dict | None = None, summary: dict | None = None) -> None:
        """Record the actual derived values / merge into the summary."""
        if self.active:
            self.store.update_run(self.run_id, derived=derived, summary=summary)

    def finish(self, status: str, reason: str | None, summary: dict) -> None:
        """Flush everything, then set the terminal status (so readers see all metrics first)."""
        if not self.active:
            return
        self.writer.close()
        self.store.set_status(self.run_id, status, reason, summary)
        print(f"[finished] status {status}" + (f": {reason}" if reason else ""), flush=True)

    def close(self) -> None:
        """Release the writer thread and connection (idempotent)."""
        if self.active:
            try:
                self.writer.close()
            except Exception as exc:  # closing must not hide the error that brought us here
                print(f"warning: closing the metric writer failed: {exc}", file=sys.stderr)
            self.store.close()
            self.active = False
