"""Provides RunReader: one monitor poll of a run (its record, new events, series when a watched
series changed, and the doctor's diagnoses on their own slower cadence), as typed messages.

Only the monitor's poll thread calls read(); the state below is that thread's alone."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from tuitrain.runs import liveness
from tuitrain.tui.lineage_view import parent_series
from tuitrain.tui.messages import Diagnosed, NewEvents, RunMissing, RunSnapshot
from tuitrain.tui.widgets.system import chart_names, wanted

CHART_METRICS = ("loss", "val_loss", "lr", "grad_norm", "val_accuracy")  # accuracy: header only
HEADER_METRICS = (
    "loss",
    "val_loss",
    "val_accuracy",
    "lr",
    "grad_norm",
    "epoch",
    "tokens_per_s",
    "gpu_mem_gb",  # runs from before the split into allocated / peak
    "gpu_mem_alloc_gb",
    "gpu_mem_peak_gb",
)
# An unchanged database is re-read anyway this often, so a run whose process died
# (which commits nothing) is still found crashed (tuitrain.runs.liveness.view_run).
LIVENESS_S = 2.0
# A live run is re-diagnosed this often (each diagnosis reads downsampled series: a few ms);
# an ended one only when the database changed, or at most every DOCTOR_ENDED_S.
DOCTOR_LIVE_S = 5.0
DOCTOR_ENDED_S = 30.0


def _sig_value(v: float) -> float | None:
    return None if isinstance(v, float) and math.isnan(v) else v


class RunReader:
    """The monitor's reads of one run, and what it remembers between them."""

    def __init__(self, run_ref: str, now: Callable[[], float]) -> None:
        self.run_ref = run_ref
        self.now = now  # the app's clock (the doctor's "stalled" uses it)
        self.terminal = False  # the run has ended: the loop polls it slower
        self._after_event = 0
        self._sig: tuple | None = None
        self._seen_buckets = 0
        self._seen_sys = False  # the system chart's series were read at the last read
        self._version: int | None = None
        self._full_read = 0.0
        self._diagnosed_at = -math.inf
        self._diagnosed_version: int | None = None

    def read(self, store: Any, buckets: int, want_sys: bool) -> list:
        """One poll: nothing when the DB did not change; series when any watched series gained a row."""
        version = store.data_version()
        now = time.monotonic()
        out: list = []
        if not (
            self._version == version
            and buckets == self._seen_buckets
            and want_sys == self._seen_sys
            and now - self._full_read < LIVENESS_S
        ):
            self._version, self._full_read = version, now
            try:
                # A dead 'running' run reads crashed (in memory: this poll thread never writes).
                run = liveness.view_run(store, self.run_ref)
            except LookupError as exc:  # RunNotFound: deleted meanwhile, or a typo
                return [RunMissing(self.run_ref, str(exc))]
            self.terminal = run.terminal  # an ended run changes rarely: poll it slower
            out += self._snapshot(store, run, buckets, want_sys)
        diag = self._diagnose(store, version, now)
        return out + ([diag] if diag is not None else [])

    def _snapshot(self, store: Any, run: Any, buckets: int, want_sys: bool) -> list:
        out: list = []
        events = store.events(run.id, self._after_event)
        if events:
            self._after_event = events[-1].id
            out.append(NewEvents(run.id, events))
        # The newest point of every series: a val_* row written at a step already read (an
        # eval lands after that step's train metrics; a finished run's final eval) changes
        # this signature even though the run's last step did not move.
        last = store.last_values(run.id)
        sig = tuple(sorted((n, p.step, _sig_value(p.value)) for n, p in last.items()))
        series = latest = None
        if sig != self._sig or buckets != self._seen_buckets or want_sys != self._seen_sys:
            names = set(last)
            series = {n: store.series(run.id, n, buckets) for n in CHART_METRICS if n in names}
            series.update(parent_series(store, run, CHART_METRICS, buckets))  # a branch's prefix
            if want_sys:  # g: the system chart's series (GPU util/mem, or CPU/RAM)
                series.update({n: store.series(run.id, n, buckets) for n in chart_names(names)})
            latest = {n: p.value for n, p in last.items() if n in HEADER_METRICS or wanted(n)}
            self._sig, self._seen_buckets, self._seen_sys = sig, buckets, want_sys
        from tuitrain.lrfind.records import race_progress

        race = race_progress(store, run.id)
        cmds = store.commands(run.id)
        out.append(RunSnapshot(run.id, run, latest, run.last_step, cmds, series, race))
        return out

    def _diagnose(self, store: Any, version: int, now: float) -> Diagnosed | None:
        """The doctor line's findings, from this same thread and Store (no second poller)."""
        from tuitrain.doctor import diagnose_run

        since = now - self._diagnosed_at
        if self.terminal:
            if since < DOCTOR_ENDED_S and version == self._diagnosed_version:
                return None
        elif since < DOCTOR_LIVE_S:
            return None
        self._diagnosed_at, self._diagnosed_version = now, version
        try:
            run = liveness.view_run(store, self.run_ref)
        except LookupError:
            return None  # the header says the run is missing
        from tuitrain.tui.widgets.doctor import run_history

        diags = diagnose_run(store, run, now=self.now())
        return Diagnosed(run.id, diags, run_history(store, run, diags))
