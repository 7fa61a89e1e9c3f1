"""Tests of RunWriter behaviour: retry on a locked database, idle heartbeat, flush at interpreter exit."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from tuitrain.store import RunWriter, Store
from tuitrain.store import writer as writer_mod


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "runs")
    yield s
    s.close()


def test_locked_database_is_retried_not_dropped(store):
    run = store.create_run({}, {})
    w = RunWriter(store.runs_dir, run.id, flush_interval=0.1, busy_timeout=0.05)
    try:
        blocker = sqlite3.connect(store.path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        for step in range(1, 501):
            w.log(step, {"loss": 1.0 / step})
        deadline = time.monotonic() + 10
        while w.failed_flushes == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert w.failed_flushes > 0 and w.pending > 0  # it did hit the lock, and kept the rows
        for step in range(501, 601):
            w.log(step, {"loss": 1.0 / step})
        blocker.execute("COMMIT")
        blocker.close()
        deadline = time.monotonic() + 10
        while w.pending and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        w.close()
    pts = store.tail(run.id)
    assert [p.step for p in pts] == list(range(1, 601))  # all of them, in order, once


def test_idle_writer_keeps_heartbeat(store, monkeypatch):
    monkeypatch.setattr(writer_mod, "HEARTBEAT_INTERVAL_S", 0.2)
    run = store.create_run({}, {})
    store.mark_started(run.id, os.getpid())
    with RunWriter(store.runs_dir, run.id, flush_interval=0.1):
        first = store.get_run(run.id).heartbeat
        deadline = time.monotonic() + 10
        while store.get_run(run.id).heartbeat == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.get_run(run.id).heartbeat > first  # nothing logged, heartbeat still moves
        assert store.get_run(run.id).last_step is None


def test_unclosed_writer_flushes_at_exit(store):
    run = store.create_run({}, {})
    code = textwrap.dedent(
        """
        import sys
        from tuitrain.store import RunWriter
        w = RunWriter(sys.argv[1], sys.argv[2], flush_interval=1.0)
        for step in range(1, 1001):
            w.log(step, {"loss": 1.0 / step})
        w.event("finished", "bye", step=1000)
        # no close(): the atexit hook must write what is queued
        """
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(store.runs_dir), run.id],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert store.last_step(run.id) == 1000 and len(store.tail(run.id)) == 1000
    assert store.events(run.id)[-1].message == "bye"


def test_log_copies_the_dict_and_accepts_numeric_like_values(store):
    class Scalar:  # what a 0-d tensor looks like to the writer: float() works
        def __float__(self) -> float:
            return 0.25

    run = store.create_run({}, {})
    with RunWriter(store.runs_dir, run.id) as w:
        d = {"loss": 1.0, "acc": Scalar()}
        w.log(1, d)
        d["loss"] = 99.0  # the caller reuses its dict: the logged values must not change
    vals = {p.name: p.value for p in store.tail(run.id)}
    assert vals == {"loss": 1.0, "acc": 0.25}


def test_log_after_close_is_reported_not_silent(store, caplog):
    run = store.create_run({}, {})
    w = RunWriter(store.runs_dir, run.id)
    w.log(1, {"loss": 1.0})
    w.close()
    with caplog.at_level("WARNING", logger="tuitrain.store"):
        w.log(2, {"loss": 0.5})
        w.event("finished", "late")
    assert "after close()" in caplog.text
    assert [p.step for p in store.tail(run.id)] == [1]


def test_bad_steps_and_non_string_names_do_not_lose_good_rows(store):
    run = store.create_run({}, {})
    with RunWriter(store.runs_dir, run.id) as w:
        w.log(1, {"loss": 1.0, 7: 2.0})
        w.log("not-a-step", {"loss": 3.0})
        w.log(2, {"loss": 0.5, 7: 2.5})
    assert [(p.step, p.name, p.value) for p in store.tail(run.id)] == [
        (1, "7", 2.0), (1, "loss", 1.0), (2, "7", 2.5), (2, "loss", 0.5)
    ]  # fmt: skip
    assert any("not an integer" in e.message for e in store.events(run.id))
