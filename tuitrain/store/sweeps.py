"""Provides SweepTable: the sweeps table of the run store (one row per sweep, trials as JSON),
as plain dicts; tuitrain.sweep.records turns them into SweepRecords."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from tuitrain.store import liveness
from tuitrain.store.db import SWEEP_COLUMNS, SWEEP_JSON_COLUMNS, immediate, put_sweep_row

if TYPE_CHECKING:
    from tuitrain.store.store import Store


class SweepTable:
    """Reads and writes sweep rows over the owning Store's per-thread connection."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def put(self, row: dict[str, Any]) -> None:
        """Insert or replace the sweep's row (the sweep process writes its whole record)."""
        missing = [c for c in ("id", "name", "status", "created") if not row.get(c)]
        if missing:
            raise ValueError(f"sweep row lacks {', '.join(missing)}")
        with immediate(self._store.conn):
            put_sweep_row(self._store.conn, row)

    def get(self, sweep_id: str) -> dict[str, Any] | None:
        """The sweep with this exact id, or None."""
        rows = self._select("WHERE id = ?", (sweep_id,))
        return rows[0] if rows else None

    def all(self) -> list[dict[str, Any]]:
        """Every sweep, newest first."""
        return self._select("ORDER BY created DESC, id DESC", ())

    def _select(self, tail: str, params: tuple) -> list[dict[str, Any]]:
        cols = ", ".join(SWEEP_COLUMNS)
        out = []
        for r in self._store._q(f"SELECT {cols} FROM sweeps {tail}", params):
            row = dict(zip(SWEEP_COLUMNS, r, strict=True))
            for c in SWEEP_JSON_COLUMNS:
                row[c] = json.loads(row[c]) if row[c] is not None else None
            out.append(self._check_alive(row))
        return out

    def _check_alive(self, row: dict[str, Any]) -> dict[str, Any]:
        # A running sweep whose process is gone (checked on its own host only) is crashed; the
        # same rule as for runs, persisted so every reader agrees.
        if row["status"] != "running" or (row["host"] and row["host"] != self._store.host):
            return row
        if row["pid"] and liveness.is_process(row["pid"], row["pid_start"]):
            return row
        now = time.time()
        with immediate(self._store.conn):
            self._store.conn.execute(
                "UPDATE sweeps SET status = 'crashed', ended = coalesce(ended, ?),"
                " error = coalesce(error, ?) WHERE id = ? AND status = 'running'",
                (now, f"sweep process {row['pid']} is gone without a final status", row["id"]),
            )
        return {**row, "status": "crashed", "ended": row["ended"] or now}
