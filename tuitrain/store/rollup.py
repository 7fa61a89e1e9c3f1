"""Provides metric ingest with write-time rollups, and downsampled series whose cost does not grow with run length.

Each series (run, metric name) keeps, besides its raw rows, per-block aggregates at the levels
in ROLLUP_SHIFTS (8, 64, ... steps per block): min, max, last step, last value, count. The
writer updates them in the same transaction as the raw rows, so they are never behind.
`series()` covers the requested range with the coarsest blocks that fit and finer blocks (or
raw rows) at the edges, so it reads about (range / block) + a few dozen rows at most.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable

from tuitrain.store.db import ROLLUP_SHIFTS

NAN = float("nan")
# A series read picks the coarsest level whose blocks are at most 1/8 of a bucket, so rounding
# the bucket width to whole blocks changes the bucket count by at most ~12%.
MIN_BLOCKS_PER_BUCKET = 8

Agg = list  # [vmin, vmax, last_step, last_value, n]; vmin/vmax None when every value is NaN

_UPSERT = (
    "INSERT INTO rollup (sid, level, bucket, vmin, vmax, last_step, last_value, n)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sid, level, bucket) DO UPDATE SET"
    " vmin = CASE WHEN vmin IS NULL THEN excluded.vmin WHEN excluded.vmin IS NULL THEN vmin"
    "  ELSE min(vmin, excluded.vmin) END,"
    " vmax = CASE WHEN vmax IS NULL THEN excluded.vmax WHEN excluded.vmax IS NULL THEN vmax"
    "  ELSE max(vmax, excluded.vmax) END,"
    " last_value = CASE WHEN excluded.last_step >= last_step THEN excluded.last_value"
    "  ELSE last_value END,"
    " last_step = max(last_step, excluded.last_step),"
    " n = n + excluded.n"
)


def _aggregate(points: Iterable[tuple[int, float | None]], shift: int) -> dict[int, Agg]:
    """Aggregate (step, value) pairs sorted by step into blocks of 2**shift steps."""
    out: dict[int, Agg] = {}
    for step, v in points:
        b = step >> shift
        a = out.get(b)
        ok = v is not None and v == v  # NaN/None take no part in min/max
        if a is None:
            out[b] = [v, v, step, v, 1] if ok else [None, None, step, v, 1]
            continue
        if ok:
            if a[0] is None or v < a[0]:
                a[0] = v
            if a[1] is None or v > a[1]:
                a[1] = v
        a[2] = step
        a[3] = v
        a[4] += 1
    return out


def _coarsen(aggs: dict[int, Agg], by: int) -> dict[int, Agg]:
    """Merge blocks (in ascending order) into blocks 2**by times wider."""
    out: dict[int, Agg] = {}
    for b in sorted(aggs):
        src = aggs[b]
        key = b >> by
        a = out.get(key)
        if a is None:
            out[key] = list(src)
            continue
        if src[0] is not None and (a[0] is None or src[0] < a[0]):
            a[0] = src[0]
        if src[1] is not None and (a[1] is None or src[1] > a[1]):
            a[1] = src[1]
        if src[2] >= a[2]:
            a[2], a[3] = src[2], src[3]
        a[4] += src[4]
    return out


def ingest(
    conn: sqlite3.Connection, sid: int, points: list[tuple[int, float | None, float]]
) -> None:
    """Write (step, value, time) rows of one series plus its rollups; call inside a write transaction."""
    if not points:
        return
    # Last write wins for a step repeated in the batch, as INSERT OR REPLACE does in the table.
    latest = {p[0]: p for p in points}
    steps = sorted(latest)
    rows = [(sid, s, latest[s][1], latest[s][2]) for s in steps]
    prev = conn.execute(
        "SELECT step FROM metrics WHERE sid = ? ORDER BY step DESC LIMIT 1", (sid,)
    ).fetchall()
    conn.executemany(
        "INSERT OR REPLACE INTO metrics (sid, step, value, time) VALUES (?, ?, ?, ?)", rows
    )
    if prev and steps[0] <= prev[0][0]:
        # Steps rewritten (e.g. a resumed run): rebuild the touched blocks from the data.
        _rebuild(conn, sid, steps[0], steps[-1])
        return
    aggs = _aggregate(((s, latest[s][1]) for s in steps), ROLLUP_SHIFTS[0])
    prev_shift = ROLLUP_SHIFTS[0]
    for shift in ROLLUP_SHIFTS:
        if shift != prev_shift:
            aggs = _coarsen(aggs, shift - prev_shift)
            prev_shift = shift
        conn.executemany(_UPSERT, [(sid, shift, b, *a) for b, a in aggs.items()])


def _rebuild(conn: sqlite3.Connection, sid: int, lo: int, hi: int) -> None:
    """Recompute every rollup block overlapping steps lo..hi, each level from the one below it."""
    prev: int | None = None
    for shift in ROLLUP_SHIFTS:
        b_lo, b_hi = lo >> shift, hi >> shift
        first, last = b_lo << shift, ((b_hi + 1) << shift) - 1
        if prev is None:
            src = conn.execute(
                "SELECT step, value FROM metrics WHERE sid = ? AND step BETWEEN ? AND ? ORDER BY step",
                (sid, first, last),
            ).fetchall()
            aggs = _aggregate(src, shift)
        else:
            finer = conn.execute(
                "SELECT bucket, vmin, vmax, last_step, last_value, n FROM rollup"
                " WHERE sid = ? AND level = ? AND bucket BETWEEN ? AND ?",
                (sid, prev, first >> prev, last >> prev),
            ).fetchall()
            aggs = _coarsen({r[0]: list(r[1:]) for r in finer}, shift - prev)
        conn.execute(
            "DELETE FROM rollup WHERE sid = ? AND level = ? AND bucket BETWEEN ? AND ?",
            (sid, shift, b_lo, b_hi),
        )
        conn.executemany(
            "INSERT INTO rollup (sid, level, bucket, vmin, vmax, last_step, last_value, n)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(sid, shift, b, *a) for b, a in aggs.items()],
        )
        prev = shift


def bucket_width(lo: int, hi: int, buckets: int) -> tuple[int, int]:
    """(width, rollup shift or -1 for raw) for steps lo..hi in at most `buckets` buckets of step // width."""
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1 (got {buckets})")
    span = hi - lo + 1
    if buckets == 1:
        w0 = hi + 1
    else:
        # hi//w - lo//w + 1 <= buckets holds whenever w >= span / (buckets - 1).
        w0 = max(1, math.ceil(span / (buckets - 1)))
    shift = -1
    for s in ROLLUP_SHIFTS:
        if (1 << s) * MIN_BLOCKS_PER_BUCKET <= w0:
            shift = s
    g = 1 << shift if shift >= 0 else 1
    w = math.ceil(w0 / g) * g
    while hi // w - lo // w + 1 > buckets:  # only for buckets == 1 rounding corner cases
        w += g
    return w, shift


def _cover(conn: sqlite3.Connection, sid: int, lo: int, hi: int, level: int) -> list[tuple]:
    """Aggregates (first_step, vmin, vmax, last_step, last_value) covering steps lo..hi exactly."""
    if lo > hi:
        return []
    if level < 0:
        rows = conn.execute(
            "SELECT step, value FROM metrics WHERE sid = ? AND step BETWEEN ? AND ? ORDER BY step",
            (sid, lo, hi),
        ).fetchall()
        return [(s, v, v, s, v) for s, v in rows]
    shift = ROLLUP_SHIFTS[level]
    first_full = -((-lo) >> shift)  # ceil(lo / 2**shift)
    last_full = ((hi + 1) >> shift) - 1
    if first_full > last_full:
        return _cover(conn, sid, lo, hi, level - 1)
    mid = conn.execute(
        "SELECT bucket, vmin, vmax, last_step, last_value FROM rollup"
        " WHERE sid = ? AND level = ? AND bucket BETWEEN ? AND ? ORDER BY bucket",
        (sid, shift, first_full, last_full),
    ).fetchall()
    out = _cover(conn, sid, lo, (first_full << shift) - 1, level - 1)
    out.extend((b << shift, mn, mx, ls, lv) for b, mn, mx, ls, lv in mid)
    out.extend(_cover(conn, sid, (last_full + 1) << shift, hi, level - 1))
    return out


def _nan(v: float | None) -> float:
    return NAN if v is None else float(v)


def read_series(
    conn: sqlite3.Connection, sid: int, buckets: int, start: int | None, end: int | None
) -> list[tuple[int, float, float, float]]:
    """Per bucket of steps (step // width): (last step, min, max, last value) over start..end."""
    lo_q = -(2**62) if start is None else int(start)
    hi_q = 2**62 if end is None else int(end)
    first = conn.execute(
        "SELECT step FROM metrics WHERE sid = ? AND step BETWEEN ? AND ? ORDER BY step LIMIT 1",
        (sid, lo_q, hi_q),
    ).fetchall()
    if not first:
        return []
    last = conn.execute(
        "SELECT step FROM metrics WHERE sid = ? AND step BETWEEN ? AND ? ORDER BY step DESC LIMIT 1",
        (sid, lo_q, hi_q),
    ).fetchall()
    lo, hi = first[0][0], last[0][0]
    w, shift = bucket_width(lo, hi, buckets)
    level = ROLLUP_SHIFTS.index(shift) if shift >= 0 else -1
    out: dict[int, list] = {}
    # Every block lies inside one output bucket: block sizes divide the bucket width.
    for first_step, mn, mx, ls, lv in _cover(conn, sid, lo, hi, level):
        key = first_step // w
        a = out.get(key)
        if a is None:
            out[key] = [ls, mn, mx, lv]
            continue
        if mn is not None and (a[1] is None or mn < a[1]):
            a[1] = mn
        if mx is not None and (a[2] is None or mx > a[2]):
            a[2] = mx
        if ls >= a[0]:
            a[0], a[3] = ls, lv
    return [(a[0], _nan(a[1]), _nan(a[2]), _nan(a[3])) for _, a in sorted(out.items())]
