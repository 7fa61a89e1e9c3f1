"""Provides SamplesReader: one samples-screen poll (the grid of its runs' answers, read again only
when a sample was stored, the step choice changed, or a run's status or best step changed).

The screen calls read() from one thread worker at a time; the lock keeps it so."""

from __future__ import annotations

import threading
import time
from typing import Any

from tuitrain.runs import liveness
from tuitrain.samples.select import grid, known_best
from tuitrain.tui.messages import SamplesLoaded

# A live run's record (status, best step) is read again this often even when no sample came:
# the one-row read is what tells that the run ended (and its best step moved).
RUNS_EVERY_S = 2.0


def marked_best(store: Any, run: Any) -> int | None:
    """The sample step to mark `best`: only where the run knows its best (select.known_best: its
    summary's best step or its lowest val_loss), never the last step `best` falls back to."""
    return known_best(store, run, store.samples.steps(run.id))


class SamplesReader:
    """The samples screen's reads, and what it remembers between them."""

    def __init__(self, run_refs: list[str]) -> None:
        self.run_refs = run_refs
        self.force = False  # the next read rebuilds the grid (set by the main thread)
        self.reads = 0  # grids built (tests and the bench read it)
        self.live = True  # a run may still change (the screen polls faster while it does)
        self._lock = threading.Lock()
        self._newest = -1
        self._runs: list[Any] = []
        self._runs_read = -float("inf")
        self._sig: tuple | None = None

    def read(self, store: Any, which: str | int) -> SamplesLoaded | None:
        """One poll: newest sample id (one cheap query); the runs and the grid only when
        something they show may have changed. None: nothing did."""
        with self._lock:
            newest = store.samples.newest_id()
            now = time.monotonic()
            stale = self.live and now - self._runs_read >= RUNS_EVERY_S
            same = self._sig is not None and self._sig[1] == which and newest == self._newest
            if same and not stale and not self.force:
                return None
            try:
                runs = [liveness.view_run(store, ref) for ref in self.run_refs]
            except LookupError as exc:  # deleted while shown
                return SamplesLoaded(self._runs, None, which, error=str(exc))
            self._runs_read = now
            self.live = any(not r.terminal for r in runs)
            sig = (
                newest,
                which,
                tuple((r.id, r.status, (r.summary or {}).get("best_step")) for r in runs),
            )
            if sig == self._sig and not self.force:
                return None
            self.force = False
            self._newest, self._runs, self._sig = newest, runs, sig
            self.reads += 1
            best = {r.id: marked_best(store, r) for r in runs}
            return SamplesLoaded(runs, grid(store, runs, which), which, best)
