"""Provides RunWriter: buffered metric/event writes from the training process, flushed by a thread, with heartbeat."""

from __future__ import annotations

import atexit
import json
import logging
import os
import sqlite3
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuitrain.store import rollup
from tuitrain.store.db import BUSY_TIMEOUT_MS, DB_NAME, connect, immediate, is_locked_error
from tuitrain.store.models import InvalidValue, RunNotFound

log = logging.getLogger("tuitrain.store")

# An idle writer (long eval, data loading) still refreshes the heartbeat this often.
HEARTBEAT_INTERVAL_S = 5.0
MAX_FLUSH_INTERVAL_S = 1.0
# close() keeps retrying a locked database this long before giving up (and saying so).
CLOSE_RETRY_S = 30.0
# The median step time (for the stall threshold) is taken over this many recent step intervals.
STEP_TIME_WINDOW = 1024


def write_batch(
    conn: sqlite3.Connection,
    run_id: str,
    series: Mapping[str, list[tuple[int, float | None, float]]],
    events: list[tuple[str, str, int | None, Any, float]],
    heartbeat: bool = True,
    pid: int | None = None,
    advanced: bool | None = None,
    step_time_s: float | None = None,
) -> int:
    """Write {name: [(step, value, time)]}, (kind, message, step, data, time) events and the heartbeat in one transaction.

    advanced: the step moved on (the writer knows; None: when a step beyond last_step is written);
    it stamps runs.step_advanced, which the stall check reads. step_time_s: the median step time.
    """
    now = time.time()
    with immediate(conn):
        known = dict(
            conn.execute("SELECT name, id FROM series WHERE run_id = ?", (run_id,)).fetchall()
        )
        top = None
        for name, pts in series.items():
            if not pts:
                continue
            sid = known.get(name)
            if sid is None:
                sid = int(
                    conn.execute(
                        "INSERT INTO series (run_id, name) VALUES (?, ?)", (run_id, name)
                    ).lastrowid
                )
            hi = rollup.ingest(conn, sid, pts)
            top = hi if top is None or hi > top else top
        if events:
            conn.executemany(
                "INSERT INTO events (run_id, time, step, kind, message, data) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        run_id,
                        t,
                        step,
                        kind,
                        message,
                        None if data is None else json.dumps(data, default=str),
                    )
                    for kind, message, step, data, t in events
                ],
            )
        if heartbeat:
            # A run a reader marked crashed for a stale heartbeat comes back if its process lives.
            revived = conn.execute(
                "UPDATE runs SET status = 'running', ended = NULL, exit_reason = NULL"
                " WHERE id = ? AND status = 'crashed' AND pid = ?",
                (run_id, pid),
            ).rowcount
            if revived:
                conn.execute(
                    "INSERT INTO events (run_id, time, step, kind, message) VALUES (?, ?, ?, 'warning', ?)",
                    (run_id, now, top, "heartbeat resumed after the run was marked crashed"),
                )
            conn.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (now, run_id))
        if top is not None:
            # SET expressions see the old row, so the CASE compares with the old last_step.
            conn.execute(
                "UPDATE runs SET step_advanced = CASE WHEN ? OR (? IS NULL AND ? > coalesce(last_step, -1))"
                " THEN ? ELSE step_advanced END, last_step = max(coalesce(last_step, -1), ?),"
                " step_time_s = coalesce(?, step_time_s) WHERE id = ?",
                (bool(advanced), advanced, top, now, top, step_time_s, run_id),
            )
    return sum(len(p) for p in series.values())


class RunWriter:
    """Buffers metrics and events of one run; a daemon thread writes them every flush_interval (rank 0 only)."""

    def __init__(
        self,
        runs_dir: str | os.PathLike[str],
        run_id: str,
        flush_interval: float = 0.5,
        busy_timeout: float = BUSY_TIMEOUT_MS / 1000,
        system_interval: float | None = None,
    ) -> None:
        """system_interval: seconds between `sys/` samples (tuitrain.telemetry.sysinfo) taken by the flush
        thread and stored at the newest logged step; None or 0: off. Rank 0 of a node turns it on."""
        if not 0 < flush_interval <= MAX_FLUSH_INTERVAL_S:
            raise InvalidValue(
                f"flush_interval must be in (0, {MAX_FLUSH_INTERVAL_S}] seconds, got {flush_interval}"
            )
        self.run_id = run_id
        self.flush_interval = float(flush_interval)
        self.path = Path(runs_dir) / DB_NAME
        if not self.path.exists():
            raise RunNotFound(
                f"no tuitrain database at {self.path}; create the run with Store first"
            )
        if system_interval is not None and not (
            system_interval == 0 or 0 < system_interval < float("inf")
        ):
            raise InvalidValue(
                f"system_interval must be a positive number of seconds (0 or None: off), got {system_interval}"
            )
        self.system_interval = float(system_interval or 0.0)
        self._runs_dir = Path(runs_dir)
        self._sampler: Any = (
            None  # tuitrain.telemetry.sysinfo.SystemSampler, created by the flush thread
        )
        self._next_sample = 0.0  # monotonic time of the next sample: the first comes at once
        self.system_samples = 0  # samples stored (tests and the overhead bench read it)
        self.system_sample_s = 0.0  # seconds the flush thread spent sampling in total
        self._conn = connect(self.path, int(busy_timeout * 1000))
        rows = self._conn.execute("SELECT pid FROM runs WHERE id = ?", (run_id,)).fetchall()
        if not rows:
            self._conn.close()
            raise RunNotFound(f"no run with id {run_id!r} in {runs_dir}")
        self._pid = os.getpid()
        self._buf_lock = threading.Lock()  # guards the buffers only; held for an append
        self._db_lock = threading.Lock()  # one flush at a time (thread, flush(), close())
        self._metrics: list[tuple[int, Mapping[str, Any], float]] = []
        self._events: list[tuple[str, str, int | None, Any, float]] = []
        self._bad_names: set[str] = set()
        self._last_beat = 0.0
        self._last_error = ""
        # Step progress of this process (a resumed run rewrites steps below the stored last_step,
        # which still counts as progress): the newest step written, the last (step, time) logged
        # and recent per-step durations.
        self._top = -1
        self._prev: tuple[int, float] | None = None
        self._step_times: deque[float] = deque(maxlen=STEP_TIME_WINDOW)
        self.rows_written = 0
        self.failed_flushes = 0  # flushes that hit an error and were kept for retry
        self._stop = threading.Event()
        self._closed = False
        self._warned_closed = False
        self._thread = threading.Thread(
            target=self._loop, name=f"tuitrain-writer-{run_id}", daemon=True
        )
        self._thread.start()
        atexit.register(self.close)

    def log(self, step: int, metrics: Mapping[str, Any], time: float | None = None) -> None:
        """Queue metric values for a step; never touches SQLite (values may be floats or 0-d tensors)."""
        if self._closed:
            self._after_close("log")
            return
        t = _now() if time is None else time
        with self._buf_lock:
            self._metrics.append((step, dict(metrics), t))

    def event(self, kind: str, message: str, step: int | None = None, data: Any = None) -> None:
        """Queue an event for the run's timeline."""
        if self._closed:
            self._after_close("event")
            return
        with self._buf_lock:
            self._events.append((kind, message, step, data, _now()))

    @property
    def pending(self) -> int:
        """Number of queued log() calls and events not yet written."""
        with self._buf_lock:
            return len(self._metrics) + len(self._events)

    def flush(self) -> bool:
        """Write everything queued now, on the caller's thread; False if the DB stayed locked (kept for retry)."""
        with self._db_lock:
            return self._flush_once(force_beat=True)

    def close(self, timeout: float = CLOSE_RETRY_S) -> None:
        """Stop the thread and write what is left (retrying a locked DB up to timeout); idempotent."""
        if self._closed:
            return
        self._closed = True
        if os.getpid() != self._pid:
            return  # a forked copy (e.g. a data-loader worker): the parent owns the connection
        self._stop.set()
        self._thread.join(timeout=timeout)
        if self.system_interval and not self.system_samples and not self._thread.is_alive():
            # A run shorter than one flush interval still gets one sample (at its end, off the steps).
            try:
                self._sample_system()
            except Exception:
                log.exception("tuitrain system sampler failed for run %s", self.run_id)
        deadline = _mono() + timeout
        with self._db_lock:
            while not self._flush_once(force_beat=True) and _mono() < deadline:
                time.sleep(0.1)
            left = self.pending
            if left:
                print(
                    f"tuitrain: {left} queued metric/event entries of run {self.run_id} could not be"
                    f" written ({self._last_error})",
                    file=sys.stderr,
                )
            self._conn.close()
        if self._sampler is not None:
            self._sampler.close()
        atexit.unregister(self.close)

    def _after_close(self, what: str) -> None:
        if not self._warned_closed:
            self._warned_closed = True
            log.warning(
                "RunWriter of run %s is closed: %s() calls after close() are not written",
                self.run_id,
                what,
            )

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_interval):
            if self.system_interval:
                try:
                    self._sample_system()
                except Exception:  # a sampler bug must cost the sys/ metrics, never the run's rows
                    log.exception(
                        "tuitrain system sampler failed for run %s; sampling off", self.run_id
                    )
                    self.system_interval = 0.0
            try:
                with self._db_lock:
                    self._flush_once(force_beat=False)
            except Exception:  # never let the flush thread die: the rows stay queued
                log.exception("tuitrain writer flush failed for run %s", self.run_id)

    def _sample_system(self) -> None:
        """On the flush thread: every system_interval, queue one `sys/` sample at the newest step."""
        now = _mono()
        if now < self._next_sample:
            return
        with self._buf_lock:
            step = self._newest_step()
        if step is None:
            return  # nothing logged yet: the first sample waits for a step to attach to
        if self._sampler is None:
            from tuitrain.telemetry.sysinfo import (
                SystemSampler,  # NVML is opened here, off the step path
            )

            self._sampler = SystemSampler(self._runs_dir)
        values = self._sampler.sample()
        done = _mono()
        self.system_sample_s += done - now
        self._next_sample = now + self.system_interval
        with self._buf_lock:
            # Re-read: the trainer may have logged a newer step while we sampled. The same step
            # as its train metrics, so the sample never counts as step progress.
            step = self._newest_step()
            self._metrics.append((step, values, _now()))
        self.system_samples += 1

    def _newest_step(self) -> int | None:
        """The newest step queued or written by this writer (call with _buf_lock held)."""
        best = self._prev[0] if self._prev is not None else None
        for raw, _, _ in self._metrics:
            try:
                step = int(raw)
            except (TypeError, ValueError):
                continue
            best = step if best is None or step > best else best
        return best

    def _series(
        self, batch: list[tuple[int, Mapping[str, Any], float]], events: list
    ) -> dict[str, list[tuple[int, float, float]]]:
        out: dict[str, list[tuple[int, float, float]]] = {}
        for raw_step, metrics, t in batch:
            try:
                step = int(raw_step)
            except (TypeError, ValueError):
                self._warn_once(
                    f"step {raw_step!r}",
                    f"step {raw_step!r} is not an integer; its values are skipped",
                    None,
                    events,
                )
                continue
            self._note_step(step, t)
            for name, value in metrics.items():
                try:
                    v = float(value)  # 0-d tensors sync here, on this thread, not the trainer's
                except (TypeError, ValueError):
                    msg = f"metric {name!r} has a non-numeric value {value!r}; such values are skipped"
                    self._warn_once(name, msg, step, events)
                    continue
                key = name if isinstance(name, str) else str(name)
                pts = out.get(key)
                if pts is None:
                    pts = out[key] = []
                pts.append((step, v, t))
        return out

    def _warn_once(self, key: Any, msg: str, step: int | None, events: list) -> None:
        """Log a data problem once per key, and put it on the run's timeline (never silent)."""
        if key in self._bad_names:
            return
        self._bad_names.add(key)
        log.warning(msg)
        events.append(("warning", msg, step, None, _now()))

    def _flush_once(self, force_beat: bool) -> bool:
        with self._buf_lock:
            batch, self._metrics = self._metrics, []
            events, self._events = self._events, []
        beat_due = force_beat or _now() - self._last_beat >= HEARTBEAT_INTERVAL_S
        if not batch and not events and not beat_due:
            return True
        series = self._series(batch, events)
        top = max((p[0] for pts in series.values() for p in pts), default=-1)
        advanced = top > self._top
        try:
            n = write_batch(
                self._conn, self.run_id, series, events, heartbeat=True, pid=self._pid,
                advanced=advanced, step_time_s=self.step_time_s if advanced else None,
            )  # fmt: skip
        except sqlite3.Error as exc:
            # Keep the batch, in order, ahead of anything logged meanwhile; retry next interval.
            with self._buf_lock:
                self._metrics[:0] = batch
                self._events[:0] = events
            self.failed_flushes += 1
            if str(exc) != self._last_error:
                log.warning("tuitrain writer: will retry, %s", exc)
            self._last_error = str(exc)
            if not is_locked_error(exc):
                log.debug("non-lock SQLite error in writer", exc_info=True)
            return False
        self._last_beat = _now()
        self.rows_written += n
        self._top = max(self._top, top)
        return True

    @property
    def step_time_s(self) -> float | None:
        """Median seconds per optimizer step over the recent logged steps (None before two)."""
        return statistics.median(self._step_times) if self._step_times else None

    def _note_step(self, step: int, t: float) -> None:
        # log_every may skip steps: a gap of k steps in d seconds is k steps of d / k each.
        prev = self._prev
        if prev is not None and step > prev[0] and t >= prev[1]:
            self._step_times.append((t - prev[1]) / (step - prev[0]))
        if prev is None or step > prev[0]:
            self._prev = (step, t)


def _now() -> float:
    return time.time()


def _mono() -> float:
    return time.monotonic()
