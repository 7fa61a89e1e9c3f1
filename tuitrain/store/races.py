"""Provides RaceTable: the LR races of the run store (one row per race, its record as JSON), as
plain dicts; tuitrain.lrfind.records builds and reads the records."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from tuitrain.store.db import immediate, put_race_row


class RaceTable:
    """Reads and writes race rows over the owning Store's per-thread connection (`conn()`)."""

    def __init__(self, conn: Callable[[], sqlite3.Connection]) -> None:
        self._conn = conn

    def put(self, rec: dict[str, Any]) -> None:
        """Insert or replace the race's whole record (one transaction: never half of it)."""
        if not rec.get("race_id"):
            raise ValueError("race record lacks race_id")
        conn = self._conn()
        with immediate(conn):
            put_race_row(conn, rec)

    def get(self, race_id: str) -> dict[str, Any] | None:
        """The race with this exact id, or None."""
        rows = self._select("WHERE id = ?", (race_id,))
        return rows[0] if rows else None

    def with_prefix(self, prefix: str) -> list[dict[str, Any]]:
        """The races whose id starts with prefix, oldest first."""
        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return self._select("WHERE id LIKE ? ESCAPE '\\' ORDER BY id", (like,))

    def all(self) -> list[dict[str, Any]]:
        """Every race, oldest first (ids sort by time)."""
        return self._select("ORDER BY id", ())

    def _select(self, tail: str, params: tuple) -> list[dict[str, Any]]:
        rows = self._conn().execute(f"SELECT record FROM races {tail}", params).fetchall()
        return [json.loads(r[0]) for r in rows]
