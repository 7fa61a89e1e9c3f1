"""Provides the events side of Store: a run's timeline (append, read after an id)."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from tuitrain.store.db import dumps as _dumps
from tuitrain.store.db import immediate
from tuitrain.store.db import loads as _loads
from tuitrain.store.models import Event


class EventsMixin:
    """Run events; mixed into Store (uses its per-thread conn and _q)."""

    conn: sqlite3.Connection

    def _add_event(
        self, run_id: str, kind: str, message: str, step: int | None, data: Any, now: float
    ) -> int:
        cur = self.conn.execute(
            "INSERT INTO events (run_id, time, step, kind, message, data) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, now, step, kind, message, None if data is None else _dumps(data)),
        )
        return int(cur.lastrowid)

    def add_event(
        self, run_id: str, kind: str, message: str, step: int | None = None, data: Any = None
    ) -> int:
        """Append an event to the run's timeline; returns its id."""
        with immediate(self.conn):
            return self._add_event(run_id, kind, message, step, data, time.time())

    def events(self, run_id: str, after_id: int = 0) -> list[Event]:
        """The run's events with id > after_id, oldest first."""
        rows = self._q(
            "SELECT id, run_id, time, step, kind, message, data FROM events"
            " WHERE run_id = ? AND id > ? ORDER BY id",
            (run_id, after_id),
        )
        return [Event(r[0], r[1], r[2], r[3], r[4], r[5] or "", _loads(r[6], None)) for r in rows]
