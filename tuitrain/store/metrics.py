"""Provides the metric side of Store: direct writes, incremental tails, last values and downsampled series."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable

from tuitrain.store import rollup
from tuitrain.store.models import InvalidValue, MetricPoint


class MetricsMixin:
    """Metric reads and writes; mixed into Store (uses its per-thread conn and _q)."""

    conn: sqlite3.Connection

    def _sid(self, run_id: str, name: str) -> int | None:
        rows = self._q("SELECT id FROM series WHERE run_id = ? AND name = ?", (run_id, name))
        return rows[0][0] if rows else None

    def log_metrics(self, run_id: str, rows: Iterable[tuple[int, str, float, float]]) -> int:
        """Write (step, name, value, time) rows now, in one transaction (RunWriter batches for you)."""
        from tuitrain.store.writer import write_batch

        series: dict[str, list[tuple[int, float | None, float]]] = {}
        for step, name, value, t in rows:
            series.setdefault(str(name), []).append(
                (int(step), None if value is None else float(value), float(t))
            )
        return write_batch(self.conn, run_id, series, [], heartbeat=False)

    def metric_names(self, run_id: str) -> list[str]:
        """Names of the metrics this run has logged, sorted."""
        return [
            r[0]
            for r in self._q("SELECT name FROM series WHERE run_id = ? ORDER BY name", (run_id,))
        ]

    def last_step(self, run_id: str) -> int | None:
        """The highest step with any metric, or None."""
        rows = self._q("SELECT last_step FROM runs WHERE id = ?", (run_id,))
        if rows and rows[0][0] is not None:
            return rows[0][0]
        got = self._q(
            "SELECT max(m.step) FROM series s JOIN metrics m ON m.sid = s.id WHERE s.run_id = ?",
            (run_id,),
        )
        return got[0][0] if got else None

    def tail(
        self,
        run_id: str,
        names: Iterable[str] | None = None,
        after_step: int = -1,
        until: int | None = None,
    ) -> list[MetricPoint]:
        """Metric points with after_step < step (<= until), optionally only these names, by step then name.

        The cursor is a step, not an insertion order: a step already read can still gain rows
        (an eval's val_* land after the train metrics of the same step), so a live reader
        passes its newest step minus one and overwrites what it sees again."""
        sids = self._q("SELECT id, name FROM series WHERE run_id = ?", (run_id,))
        if names is not None:
            wanted = set(names)
            sids = [s for s in sids if s[1] in wanted]
        if not sids:
            return []
        by_sid = dict(sids)
        marks = ",".join("?" * len(by_sid))
        hi = 2**62 if until is None else int(until)
        rows = self._q(
            f"SELECT sid, step, value, time FROM metrics WHERE sid IN ({marks}) AND step > ?"
            " AND step <= ?",
            (*by_sid, int(after_step), hi),
        )
        pts = [
            MetricPoint(step, by_sid[sid], math.nan if v is None else v, t)
            for sid, step, v, t in rows
        ]
        pts.sort(key=lambda p: (p.step, p.name))
        return pts

    def last_values(self, run_id: str) -> dict[str, MetricPoint]:
        """The latest point of each metric of the run, by name."""
        out = {}
        for sid, name in self._q(
            "SELECT id, name FROM series WHERE run_id = ? ORDER BY name", (run_id,)
        ):
            rows = self._q(
                "SELECT step, value, time FROM metrics WHERE sid = ? ORDER BY step DESC LIMIT 1",
                (sid,),
            )
            if rows:
                step, v, t = rows[0]
                out[name] = MetricPoint(step, name, math.nan if v is None else v, t)
        return out

    def step_range(self, run_id: str) -> tuple[int, int] | None:
        """(lowest, highest) step with any metric of the run, or None when it has none."""
        lo = hi = None
        for (sid,) in self._q("SELECT id FROM series WHERE run_id = ?", (run_id,)):
            # Two index probes per series: min() and max() together would scan the range.
            first = self._q("SELECT step FROM metrics WHERE sid = ? ORDER BY step LIMIT 1", (sid,))
            last = self._q(
                "SELECT step FROM metrics WHERE sid = ? ORDER BY step DESC LIMIT 1", (sid,)
            )
            if first:
                lo = first[0][0] if lo is None else min(lo, first[0][0])
                hi = last[0][0] if hi is None else max(hi, last[0][0])
        return None if lo is None else (lo, hi)

    def count_points(self, run_id: str) -> int:
        """Number of stored metric points of the run (a full index count: for CLI summaries, not hot paths)."""
        rows = self._q(
            "SELECT count(*) FROM series s JOIN metrics m ON m.sid = s.id WHERE s.run_id = ?",
            (run_id,),
        )
        return int(rows[0][0])

    def series(
        self,
        run_id: str,
        name: str,
        buckets: int = 200,
        start: int | None = None,
        end: int | None = None,
    ) -> list[tuple[int, float, float, float]]:
        """Downsampled (step, min, max, last) per bucket; steps start..end; cost independent of run length."""
        if not isinstance(buckets, int) or buckets < 1:
            raise InvalidValue(f"buckets must be a positive integer (got {buckets!r})")
        sid = self._sid(run_id, name)
        if sid is None:
            return []
        # One read transaction: the edges and the blocks come from the same snapshot.
        conn = self.conn
        conn.execute("BEGIN")
        try:
            return rollup.read_series(conn, sid, buckets, start, end)
        finally:
            conn.execute("COMMIT")
