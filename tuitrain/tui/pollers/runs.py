"""Provides RunsReader: one runs-list poll (the first screenful, then only the runs whose
record changed, plus live runs for liveness and stall) and the state kept between polls.

Only the list's poll thread calls read(); `full` is set by the main thread (r: refresh)."""

from __future__ import annotations

from typing import Any

from tuitrain.runs import liveness
from tuitrain.runs.columns import best_value
from tuitrain.tui.lineage_view import fork_value
from tuitrain.tui.messages import RunsChanged
from tuitrain.tui.widgets.doctor import DoctorIndex

# A full re-list is cheaper than this many single-row reads.
MAX_ROW_READS = 200
# Runs read by the very first query (a screenful at 120x40 and more), before the full list.
FIRST_PAGE = 60


class RunsReader:
    """The runs list's reads, and what it remembers between them."""

    def __init__(self) -> None:
        self.full = False  # next read re-lists everything (r: refresh; set by the main thread)
        self.row_reads = 0  # run records read (the bench and tests read it)
        self._version: int | None = None
        self._fps: dict[str, tuple] = {}
        self._live: set[str] = set()
        self._paged = False  # the first screenful was read
        self._fork_values: dict[tuple, float | None] = {}  # (parent, step) -> value
        self._doctor = DoctorIndex()  # open doctor warnings per run, from its events

    def read(self, store: Any, page_shown: bool) -> RunsChanged | None:
        """One poll: the first screenful, then only what changed (None: nothing did)."""
        if self._version is None and not self._paged:
            # The first read lists only a screenful (one small query, a few JSON parses), so
            # the list opens at once; the full listing follows once that page is on screen
            # (on_runs_changed wakes the loop after the refresh: parsing thousands of records
            # in this thread would otherwise hold the GIL while the first frame is drawn).
            self._paged = True
            page = liveness.view_runs(store, limit=FIRST_PAGE)
            self.row_reads += len(page)
            return RunsChanged([r.id for r in page], {r.id: r for r in page})
        if not page_shown:
            return None  # the page is not drawn yet: on_runs_changed wakes the loop when it is
        version = store.data_version()
        full, self.full = self.full or self._version is None, False
        if version == self._version and not self._live and not full:
            return None
        self._version = version
        fps = store.run_fingerprints()
        ids = [i for i, _ in fps]
        order = ids if full or ids != list(self._fps) else None
        changed_ids = [i for i, fp in fps if self._fps.get(i) != fp]
        live = [i for i in self._live if i in self._fps and i not in changed_ids]
        if full or len(changed_ids) > MAX_ROW_READS:
            changed = {r.id: r for r in liveness.view_runs(store)}
        else:
            changed = {}
            for i in [*changed_ids, *live]:  # live runs: liveness and stall are read each poll
                try:
                    changed[i] = liveness.view_run(store, i)
                except LookupError:  # deleted between the two reads: the next poll drops it
                    pass
        self.row_reads += len(changed)
        for r in changed.values():
            if r.parent and r.fork_step is not None:
                # The parent's points up to the fork never change once the child exists.
                key = (r.parent, r.fork_step)
                if self._fork_values.get(key) is None:
                    self._fork_values[key] = fork_value(store, r)
                r.fork_value = self._fork_values[key]
        for r in changed.values():
            r.best = best_value(store, r)[1]  # live runs: from the metrics logged so far
        self._doctor.update(store, changed.values())  # sets run.doctor for the status marker
        self._fps = dict(fps)
        self._live = {i for i in self._live if i in self._fps}
        for i, r in changed.items():
            (self._live.discard if r.terminal else self._live.add)(i)
        if order is None and not changed:
            return None
        return RunsChanged(order, changed)
