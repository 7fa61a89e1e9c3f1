"""Provides metric ingest with write-time rollups, and downsampled series whose cost does not grow with run length.

Each series (run, metric name) keeps, besides its raw rows, per-block aggregates at the levels
in ROLLUP_SHIFTS (8, 64, ... steps per block): min, max, last step, last value, count. The
writer refreshes them in the same transaction as the raw rows, so they are never behind.
`series()` covers the requested range with the coarsest blocks that still give the requested
number of buckets (< 8 blocks per bucket), grouped into buckets inside SQLite, plus finer
blocks or raw rows at the edges: it reads under ~8 * buckets + a few dozen rows and hands at
most `buckets` + a few dozen to Python, whatever the run length.
"""

from __future__ import annotations

import operator
import sqlite3
from itertools import chain

from tuitrain.store.db import ROLLUP_SHIFTS

NAN = float("nan")
# Multi-row INSERT statements (as sqlite-utils does for bulk inserts): 300 bound values each,
# under SQLite's oldest variable limit (999).
ROWS_PER_INSERT = 100

# Rollup blocks of one level, recomputed from the level below over the touched range. The last
# value is joined back from the finer row that holds the block's last step (a primary-key
# lookup), so everything runs inside SQLite and a rewritten step (a resumed run) is handled
# the same way as an append.
_FROM_RAW = (
    "INSERT OR REPLACE INTO rollup (sid, level, bucket, vmin, vmax, last_step, last_value, n)"
    " SELECT ?1, ?2, g.b, g.mn, g.mx, g.ls, m.value, g.n FROM"
    " (SELECT step >> ?2 AS b, min(value) AS mn, max(value) AS mx, max(step) AS ls,"
    "  count(*) AS n FROM metrics WHERE sid = ?1 AND step BETWEEN ?3 AND ?4 GROUP BY b) AS g"
    " JOIN metrics AS m ON m.sid = ?1 AND m.step = g.ls"
)
_FROM_FINER = (
    "INSERT OR REPLACE INTO rollup (sid, level, bucket, vmin, vmax, last_step, last_value, n)"
    " SELECT ?1, ?2, g.b, g.mn, g.mx, g.ls, r.last_value, g.n FROM"
    " (SELECT bucket >> (?2 - ?5) AS b, min(vmin) AS mn, max(vmax) AS mx,"
    "  max(last_step) AS ls, sum(n) AS n FROM rollup"
    "  WHERE sid = ?1 AND level = ?5 AND bucket BETWEEN ?3 AND ?4 GROUP BY b) AS g"
    " JOIN rollup AS r ON r.sid = ?1 AND r.level = ?5 AND r.bucket = g.ls >> ?5"
)


# Merge a block aggregate computed from newly appended steps into the stored one.
_MERGE = (
    "INSERT INTO rollup (sid, level, bucket, vmin, vmax, last_step, last_value, n)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sid, level, bucket) DO UPDATE SET"
    " vmin = CASE WHEN vmin IS NULL THEN excluded.vmin WHEN excluded.vmin IS NULL THEN vmin"
    "  ELSE min(vmin, excluded.vmin) END,"
    " vmax = CASE WHEN vmax IS NULL THEN excluded.vmax WHEN excluded.vmax IS NULL THEN vmax"
    "  ELSE max(vmax, excluded.vmax) END,"
    " last_value = CASE WHEN excluded.last_step >= last_step THEN excluded.last_value"
    "  ELSE last_value END,"
    " last_step = max(last_step, excluded.last_step), n = n + excluded.n"
)


def ingest(
    conn: sqlite3.Connection, sid: int, points: list[tuple[int, float | None, float]]
) -> int:
    """Write (step, value, time) rows of one series, refresh its rollups, return the top step (in a write transaction)."""
    if not points:
        return -1
    steps = [p[0] for p in points]
    lo, hi = min(steps), max(steps)
    prev = conn.execute(
        "SELECT step FROM metrics WHERE sid = ? ORDER BY step DESC LIMIT 1", (sid,)
    ).fetchall()
    _insert_points(conn, sid, points)
    if (not prev or lo > prev[0][0]) and _append_first_level(conn, sid, steps, points):
        refresh(conn, sid, lo, hi, first_level=1)
    else:
        refresh(conn, sid, lo, hi)
    return hi


def _insert_points(conn: sqlite3.Connection, sid: int, points: list[tuple]) -> None:
    """INSERT OR REPLACE (step, value, time) rows; ROWS_PER_INSERT rows per statement (~2x executemany)."""
    # sid is an int from our own table, so inlining it is safe and saves a bound value per row.
    head = "INSERT OR REPLACE INTO metrics (sid, step, value, time) VALUES "
    one = f"({int(sid)}, ?, ?, ?)"
    full = len(points) - len(points) % ROWS_PER_INSERT
    if full:
        sql = head + ",".join([one] * ROWS_PER_INSERT)
        flat = list(chain.from_iterable(points[:full]))
        width = 3 * ROWS_PER_INSERT
        for i in range(0, len(flat), width):
            conn.execute(sql, flat[i : i + width])
    if full < len(points):
        conn.executemany(head + one, points[full:])


def _append_first_level(conn: sqlite3.Connection, sid: int, steps: list[int], points: list) -> bool:
    """Fast path for the usual flush (consecutive new steps, no NaN): first-level blocks from slices.

    Returns False (nothing written) when the batch does not qualify; refresh() then does it in SQL.
    """
    n = len(steps)
    lo = steps[0]
    if steps[-1] - lo != n - 1 or not all(map(operator.lt, steps, steps[1:])):
        return False
    values = [p[1] for p in points]
    try:
        total = sum(values)
    except TypeError:  # None values
        return False
    if total != total:  # a NaN somewhere: min()/max() of Python floats mishandle it
        return False
    shift = ROLLUP_SHIFTS[0]
    width = 1 << shift
    rows = []
    i = 0
    while i < n:
        j = min(n, i + width - ((lo + i) & (width - 1)))  # up to the end of this block
        chunk = values[i:j]
        rows.append(
            (sid, shift, (lo + i) >> shift, min(chunk), max(chunk), lo + j - 1, chunk[-1], j - i)
        )
        i = j
    conn.executemany(_MERGE, rows)
    return True


def refresh(conn: sqlite3.Connection, sid: int, lo: int, hi: int, first_level: int = 0) -> None:
    """Recompute every rollup block overlapping steps lo..hi, each level from the one below it."""
    prev = 0 if first_level == 0 else ROLLUP_SHIFTS[first_level - 1]
    for shift in ROLLUP_SHIFTS[first_level:]:
        b_lo, b_hi = lo >> shift, hi >> shift
        if prev == 0:
            conn.execute(_FROM_RAW, (sid, shift, b_lo << shift, ((b_hi + 1) << shift) - 1))
        else:
            f_lo, f_hi = b_lo << (shift - prev), ((b_hi + 1) << (shift - prev)) - 1
            conn.execute(_FROM_FINER, (sid, shift, f_lo, f_hi, prev))
        prev = shift


def bucket_plan(lo: int, hi: int, buckets: int) -> tuple[int, int, int, int]:
    """How steps lo..hi map to buckets: (shift, first block, blocks, buckets used).

    The level is the coarsest whose blocks (2**shift steps; shift 0 = raw steps) still number
    at least `buckets` over the range, so fewer than ~8 * buckets blocks are read. Block i
    goes to bucket i * used // blocks: widths differ by at most one block.
    """
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1 (got {buckets})")
    shift = 0
    for s in ROLLUP_SHIFTS:
        if (hi >> s) - (lo >> s) + 1 < buckets:
            break
        shift = s
    first = lo >> shift
    blocks = (hi >> shift) - first + 1
    return shift, first, blocks, min(buckets, blocks)


def bucket_of(step: int, plan: tuple[int, int, int, int]) -> int:
    """The bucket index of a step under a bucket_plan()."""
    shift, first, blocks, used = plan
    return ((step >> shift) - first) * used // blocks


LEVELS = (0, *ROLLUP_SHIFTS)  # 0: raw rows


def _cover(conn: sqlite3.Connection, sid: int, lo: int, hi: int, level: int) -> list[tuple]:
    """Aggregates (first_step, vmin, vmax, last_step, last_value) covering steps lo..hi exactly.

    Whole blocks of LEVELS[level] inside the range, finer levels (down to raw rows) at the edges.
    """
    if lo > hi:
        return []
    if level == 0:
        rows = conn.execute(
            "SELECT step, value FROM metrics WHERE sid = ? AND step BETWEEN ? AND ? ORDER BY step",
            (sid, lo, hi),
        ).fetchall()
        return [(s, v, v, s, v) for s, v in rows]
    shift = LEVELS[level]
    first_full = -((-lo) >> shift)  # ceil(lo / 2**shift)
    last_full = ((hi + 1) >> shift) - 1
    if first_full > last_full:
        return _cover(conn, sid, lo, hi, level - 1)
    mid = conn.execute(
        "SELECT bucket, vmin, vmax, last_step, last_value FROM rollup"
        " WHERE sid = ? AND level = ? AND bucket BETWEEN ? AND ?",
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
    """Per bucket (see bucket_plan): (last step, min, max, last value) over steps start..end."""
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
    shift, first_block, blocks, used = bucket_plan(lo, hi, buckets)
    level = LEVELS.index(shift)
    # Whole blocks of the chosen level are grouped into buckets inside SQLite (at most
    # `buckets` rows come back); partial blocks at the edges come from finer levels.
    if level == 0:
        full, edges = (lo, hi), []
    else:
        f_full, l_full = -((-lo) >> shift), ((hi + 1) >> shift) - 1
        if f_full > l_full:
            full, edges = None, _cover(conn, sid, lo, hi, level - 1)
        else:
            full = (f_full, l_full)
            edges = _cover(conn, sid, lo, (f_full << shift) - 1, level - 1)
            edges += _cover(conn, sid, (l_full + 1) << shift, hi, level - 1)
    grouped = []
    if full is not None:
        sql = _GROUP_RAW if level == 0 else _GROUP_ROLLUP
        grouped = conn.execute(sql, (first_block, used, blocks, sid, shift, *full)).fetchall()
    out: dict[int, list] = {k: [ls, mn, mx, lv] for k, mn, mx, ls, lv in grouped}
    # Each edge aggregate lies inside one block of the chosen level, hence inside one bucket.
    for first_step, mn, mx, ls, lv in edges:
        key = ((first_step >> shift) - first_block) * used // blocks
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


# Bucket k of block b is (b - first) * used / blocks (integer division, as bucket_of does);
# the last value is joined back by the bucket's last step (a primary-key lookup).
_GROUP_RAW = (
    "SELECT g.k, g.mn, g.mx, g.ls, m.value FROM"
    " (SELECT ((step - ?1) * ?2) / ?3 AS k, min(value) AS mn, max(value) AS mx,"
    "  max(step) AS ls FROM metrics WHERE sid = ?4 AND step BETWEEN ?6 AND ?7 GROUP BY k) AS g"
    " JOIN metrics AS m ON m.sid = ?4 AND m.step = g.ls"
)
_GROUP_ROLLUP = (
    "SELECT g.k, g.mn, g.mx, g.ls, r.last_value FROM"
    " (SELECT ((bucket - ?1) * ?2) / ?3 AS k, min(vmin) AS mn, max(vmax) AS mx,"
    "  max(last_step) AS ls FROM rollup WHERE sid = ?4 AND level = ?5"
    "  AND bucket BETWEEN ?6 AND ?7 GROUP BY k) AS g"
    " JOIN rollup AS r ON r.sid = ?4 AND r.level = ?5 AND r.bucket = g.ls >> ?5"
)
