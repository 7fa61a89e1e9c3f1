"""Tests that downsampled series equal a brute-force computation from raw rows, and cost does not grow with length."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuitrain.store import Store
from tuitrain.store.rollup import bucket_of, bucket_plan


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store(tmp_path_factory.mktemp("runs"))
    yield s
    s.close()


def brute(values: dict[int, float], buckets: int, start=None, end=None):
    """The definition: bucket_of(step) over the points in start..end, aggregated row by row."""
    pts = sorted(
        (s, v)
        for s, v in values.items()
        if (start is None or s >= start) and (end is None or s <= end)
    )
    if not pts:
        return []
    plan = bucket_plan(pts[0][0], pts[-1][0], buckets)
    out: dict[int, list] = {}
    for s, v in pts:
        a = out.setdefault(bucket_of(s, plan), [s, math.nan, math.nan, v])
        a[0], a[3] = s, v
        if not math.isnan(v):
            a[1] = v if math.isnan(a[1]) else min(a[1], v)
            a[2] = v if math.isnan(a[2]) else max(a[2], v)
    return [tuple(a) for _, a in sorted(out.items())]


def same(a, b) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x[0] != y[0]:
            return False
        for p, q in zip(x[1:], y[1:], strict=True):
            if not (p == q or (math.isnan(p) and math.isnan(q))):
                return False
    return True


def log_in_batches(store: Store, run_id: str, items: list[tuple[int, float]], batch: int) -> None:
    for i in range(0, len(items), batch):
        store.log_metrics(run_id, [(s, "m", v, 0.0) for s, v in items[i : i + batch]])


values_st = st.dictionaries(
    st.integers(0, 70_000),
    st.one_of(st.floats(-1e6, 1e6), st.just(math.nan)),
    min_size=1,
    max_size=300,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=values_st,
    buckets=st.integers(1, 300),
    batch=st.integers(1, 400),
    window=st.tuples(
        st.one_of(st.none(), st.integers(0, 70_000)), st.one_of(st.none(), st.integers(0, 70_000))
    ),
)
def test_series_matches_brute_force_sparse(store, values, buckets, batch, window):
    run = store.create_run({}, {})
    log_in_batches(store, run.id, sorted(values.items()), batch)
    start, end = window
    got = store.series(run.id, "m", buckets=buckets, start=start, end=end)
    assert same(got, brute(values, buckets, start, end))
    assert len(got) <= buckets


@pytest.mark.parametrize("buckets", [1, 7, 200, 5000])
def test_series_matches_brute_force_dense_with_rewrites(store, buckets):
    rng = random.Random(buckets)
    run = store.create_run({}, {})
    values = {s: rng.gauss(0, 1) for s in range(1, 40_001)}
    values[777] = math.nan
    log_in_batches(store, run.id, sorted(values.items()), 997)
    # A resumed run logs steps again from an earlier checkpoint: the new values win.
    for s in range(20_000, 25_001):
        values[s] = rng.gauss(5, 1)
    log_in_batches(store, run.id, [(s, values[s]) for s in range(20_000, 25_001)], 1500)
    # And an out-of-order single point in the middle.
    values[3] = 100.0
    store.log_metrics(run.id, [(3, "m", 100.0, 0.0)])
    for start, end in [(None, None), (1, 40_000), (123, 39_001), (20_001, 20_001), (30_000, None)]:
        got = store.series(run.id, "m", buckets=buckets, start=start, end=end)
        assert same(got, brute(values, buckets, start, end)), (start, end)


def test_bucket_plan_uses_coarse_levels_and_full_bucket_count():
    assert bucket_plan(1, 100, 200) == (0, 1, 100, 100)  # short: one bucket per step
    shift, first, blocks, used = bucket_plan(1, 1_000_000, 200)
    assert shift == 12 and used == 200 and 200 <= blocks < 8 * 200 + 8
    plan = bucket_plan(1, 1_000_000, 200)
    assert {bucket_of(s, plan) for s in range(1, 1_000_001, 97)} | {199} == set(range(200))
    assert bucket_plan(5, 5, 1) == (15, 0, 1, 1)
    with pytest.raises(ValueError):
        bucket_plan(1, 10, 0)


def _vm_steps(store: Store, run_id: str) -> int:
    """SQLite VM instructions (in units of 100) spent by one series() call: a work count, not a timing."""
    count = [0]

    def tick():
        count[0] += 1
        return 0

    store.conn.set_progress_handler(tick, 100)
    try:
        store.series(run_id, "m", buckets=200)
    finally:
        store.conn.set_progress_handler(None, 0)
    return count[0]


def test_series_cost_does_not_grow_with_run_length(store):
    costs = []
    for n in (20_000, 400_000):
        run = store.create_run({}, {})
        step = 0
        while step < n:
            store.log_metrics(
                run.id, [(s, "m", float(s % 97), 0.0) for s in range(step + 1, step + 50_001)]
            )
            step += 50_000
        costs.append(_vm_steps(store, run.id))
    # A scan would cost 20x more for a 20x longer run; the rollup plan stays about flat.
    assert costs[1] < 2 * costs[0], costs


def test_step_repeated_within_one_batch_last_value_wins(store):
    run = store.create_run({}, {})
    rows = [(s, "m", float(s), 0.0) for s in range(1, 251)]
    rows[10] = (5, "m", 99.0, 0.0)  # step 5 again, inside the first multi-row statement
    rows.append((200, "m", -1.0, 0.0))  # step 200 again, in the single-row remainder
    store.log_metrics(run.id, rows)
    vals = {p.step: p.value for p in store.tail(run.id)}
    assert vals[5] == 99.0 and vals[200] == -1.0 and 11 not in vals
    expect = {s: float(s) for s in range(1, 251) if s != 11}
    expect[5], expect[200] = 99.0, -1.0
    assert vals == expect
    assert same(store.series(run.id, "m", buckets=9), brute(expect, 9))
