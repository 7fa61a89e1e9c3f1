"""Provides the trainer's reporting side: rank 0 writes metrics, events, samples and status to the
store through the run client (tuitrain.client.core) and prints a line to train.log; every other
rank's Reporter does nothing."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

from tuitrain.client.core import RunClient
from tuitrain.samples import scores

EVENT_CHARS = 160  # a generation event's line; the whole answer is in its data and the sample


class Reporter:
    """Store writes for one run, active on rank 0 only."""

    def __init__(self, run_dir: Path, active: bool):
        self.active = active
        self.run_id = run_dir.name
        # The launcher made the record; rank 0 attaches to it.
        self.client = RunClient(run_dir.parent, self.run_id) if active else None

    @property
    def store(self):
        """The client's store connection (None off rank 0)."""
        return self.client.store if self.client is not None else None

    @property
    def writer(self):
        """The client's batched writer (None off rank 0)."""
        return self.client.writer if self.client is not None else None

    def started(self) -> None:
        """Status running with this process's pid and host."""
        if self.active:
            self.client.started()

    def log(self, step: int, values: dict[str, float]) -> None:
        """Metrics of one step (buffered by the RunWriter thread)."""
        if self.active:
            self.client.log(step, values)

    def event(
        self, kind: str, message: str, step: int | None = None, data: dict | None = None
    ) -> None:
        """A timeline event; also printed to train.log."""
        if self.active:
            self.client.event(kind, message, step, data)
            print(
                f"[{kind}] {'step ' + str(step) + ': ' if step is not None else ''}{message}",
                flush=True,
            )

    def samples(self, step: int, rows: list[dict]) -> None:
        """One evaluation's generated answers: scored (tuitrain.samples.scores), stored in one
        write, their means logged as samples/* metrics at `step`, and a short `generation`
        event per answer for the events pane."""
        if not self.active:
            return
        for r in rows:
            r.update(scores.score(r["output"], r.get("reference")))
        try:
            self.store.samples.add(self.run_id, [{**r, "step": step} for r in rows])
        except Exception as exc:  # a busy database must cost the samples, never the run
            msg = f"{len(rows)} samples of step {step} not stored: {exc}"
            self.event("warning", msg, step)
        self.log(step, scores.means(rows))
        for r in rows:
            said = r["output"].strip() or "(empty answer)"
            text = " ".join(f"{r['prompt']} -> {said}".split())  # one line in the events pane
            line = text if len(text) <= EVENT_CHARS else text[: EVENT_CHARS - 1] + "…"
            data = {"prompt": r["prompt"], "text": r["output"], "prompt_id": r["prompt_id"]}
            self.event("generation", line, step, data)

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
            self.client.flush()

    def update(self, derived: dict | None = None, summary: dict | None = None) -> None:
        """Record the actual derived values / merge into the summary."""
        if self.active:
            self.store.update_run(self.run_id, derived=derived, summary=summary)

    def finish(self, status: str, reason: str | None, summary: dict) -> None:
        """Flush everything, then set the terminal status (so readers see all metrics first)."""
        if not self.active:
            return
        self.client.finish(status, reason, summary, event=False)
        print(f"[finished] status {status}" + (f": {reason}" if reason else ""), flush=True)

    def close(self) -> None:
        """Release the writer thread and connection (idempotent)."""
        if self.active:
            try:
                self.client.writer.close()
            except Exception as exc:  # closing must not hide the error that brought us here
                print(f"warning: closing the metric writer failed: {exc}", file=sys.stderr)
            self.client.store.close()
            self.active = False
