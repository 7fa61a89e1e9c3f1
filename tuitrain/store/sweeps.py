"""Provides SweepTable: the sweeps table of the run store (one row per sweep, trials as JSON),
as plain dicts; tuitrain.sweep.records turns them into SweepRecords."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from tuitrain.store.db import SWEEP_COLUMNS, SWEEP_JSON_COLUMNS, immediate, put_sweep_row


class SweepTable:
    """Reads and writes sweep rows over the owning Store's per-thread connection (`conn()`)."""

    def __init__(self, conn: Callable[[], sqlite3.Connection]) -> None:
        self._conn = conn

    def put(self, row: dict[str, Any]) -> None:
        """Insert or replace the sweep's row (the sweep process writes its whole record)."""
        missing = [c for c in ("id", "name", "status", "created") if not row.get(c)]
        if missing:
            raise ValueError(f"sweep row lacks {', '.join(missing)}")
        conn = self._conn()
        with immediate(conn):
            put_sweep_row(conn, row)

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
        for r in self._conn().execute(f"SELECT {cols} FROM sweeps {tail}", params).fetchall():
            row = dict(zip(SWEEP_COLUMNS, r, strict=True))
            for c in SWEEP_JSON_COLUMNS:
                row[c] = json.loads(row[c]) if row[c] is not None else None
            out.append(row)
        return out

    def mark_crashed(self, sweep_id: str, reason: str) -> None:
        """A running sweep whose process is gone (decided by tuitrain.runs.liveness) is crashed."""
        conn = self._conn()
        with immediate(conn):
            conn.execute(
                "UPDATE sweeps SET status = 'crashed', ended = coalesce(ended, ?),"
                " error = coalesce(error, ?) WHERE id = ? AND status = 'running'",
                (time.time(), reason, sweep_id),
            )
