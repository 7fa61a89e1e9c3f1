"""Provides SampleTable: the generation samples of the run store (one row per answer to one prompt
at one step), read back as store.models.Sample."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tuitrain.store.db import dumps, immediate, loads
from tuitrain.store.models import SAMPLE_SOURCES, InvalidValue, Sample

COLUMNS = (
    "run_id", "step", "prompt_id", "source", "prompt", "messages", "reference", "output", "tokens",
    "seconds", "settings", "exact_match", "similarity", "repetition", "created",
)  # fmt: skip
_JSON = frozenset({"messages", "settings"})


class SampleTable:
    """Reads and writes sample rows over the owning Store's per-thread connection (`conn()`)."""

    def __init__(self, conn: Callable[[], sqlite3.Connection]) -> None:
        self._conn = conn

    def add(self, run_id: str, rows: Iterable[Mapping[str, Any]]) -> list[int]:
        """Insert one evaluation's (or one question's) samples in one transaction; returns their
        ids. Each row needs prompt_id, source, prompt and output; the rest may be missing."""
        values = [_row_values(run_id, r) for r in rows]
        conn = self._conn()
        ids: list[int] = []
        with immediate(conn):
            for v in values:
                cur = conn.execute(
                    f"INSERT INTO samples ({', '.join(COLUMNS)})"
                    f" VALUES ({', '.join('?' * len(COLUMNS))})",
                    v,
                )
                ids.append(int(cur.lastrowid or 0))
        return ids

    def for_runs(
        self, run_ids: Iterable[str], steps: Iterable[int] | None = None, after_id: int = 0
    ) -> list[Sample]:
        """The samples of these runs (optionally only at these steps, or newer than after_id),
        in run order, then by step, then prompt order within the step."""
        ids = list(run_ids)
        if not ids:
            return []
        where = [f"run_id IN ({', '.join('?' * len(ids))})", "id > ?"]
        params: list[Any] = [*ids, after_id]
        if steps is not None:
            st = list(steps)
            where.append(f"step IN ({', '.join('?' * len(st))})" if st else "0")
            params += st
        rows = (
            self._conn()
            .execute(
                f"SELECT id, {', '.join(COLUMNS)} FROM samples WHERE {' AND '.join(where)}"
                " ORDER BY step IS NULL, step, id",
                params,
            )
            .fetchall()
        )
        order = {r: i for i, r in enumerate(ids)}
        out = [_sample(r) for r in rows]
        out.sort(key=lambda s: order[s.run_id])  # stable: step and id order kept within a run
        return out

    def steps(self, run_id: str) -> list[int]:
        """The steps at which this run has samples, ascending."""
        rows = (
            self._conn()
            .execute(
                "SELECT DISTINCT step FROM samples WHERE run_id = ? AND step IS NOT NULL"
                " ORDER BY step",
                (run_id,),
            )
            .fetchall()
        )
        return [int(r[0]) for r in rows]

    def newest_id(self) -> int:
        """The highest sample id in the store (0 when none): a cheap change marker for pollers."""
        row = self._conn().execute("SELECT MAX(id) FROM samples").fetchone()
        return int(row[0] or 0)


def _row_values(run_id: str, r: Mapping[str, Any]) -> tuple:
    for key in ("prompt_id", "source", "prompt", "output"):
        if r.get(key) is None:
            raise InvalidValue(f"sample lacks {key!r}: every sample needs {key}")
    if r["source"] not in SAMPLE_SOURCES:
        raise InvalidValue(
            f"sample source {r['source']!r} is not one of {', '.join(SAMPLE_SOURCES)}"
        )
    out = []
    for col in COLUMNS:
        if col == "run_id":
            v: Any = run_id
        elif col == "created":
            v = r.get("created") or time.time()
        else:
            v = r.get(col)
            if col in _JSON and v is not None:
                v = dumps(v)
            elif col in ("prompt_id", "source", "prompt", "output", "reference") and v is not None:
                v = str(v)
        out.append(v)
    return tuple(out)


def _sample(r: tuple) -> Sample:
    d = dict(zip(("id", *COLUMNS), r, strict=True))
    for k in _JSON:
        d[k] = loads(d[k] or None, None)
    d["settings"] = d["settings"] or {}
    return Sample(**d)
