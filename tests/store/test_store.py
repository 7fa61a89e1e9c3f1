"""Tests of Store and RunWriter basics: runs, statuses, metrics, events, commands, names and ids."""

from __future__ import annotations

import math
import os
import sqlite3
import time

import pytest

from tuitrain.store import (
    CommandRefused,
    InvalidValue,
    RunNotFound,
    RunWriter,
    Store,
)
from tuitrain.store.db import DB_NAME, SCHEMA_VERSION


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "runs")
    yield s
    s.close()


def test_db_is_wal_with_schema_version(store):
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "metrics", "events", "commands", "series", "rollup"} <= tables
    conn.close()
    # Reopening an existing DB keeps it (no re-migration, no error).
    Store(store.runs_dir).close()


def test_newer_schema_is_refused(tmp_path):
    Store(tmp_path).close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        Store(tmp_path)


def test_create_get_list_and_lifecycle(store):
    a = store.create_run({"optimizer": {"lr": 5e-5}}, {"total_steps": 10}, name="first")
    b = store.create_run({}, {}, sweep_id="sw1")
    assert a.status == "queued" and a.config == {"optimizer": {"lr": 5e-5}}
    assert b.name == b.id and a.run_dir == store.runs_dir / a.id
    assert [r.id for r in store.list_runs()] == [b.id, a.id]
    assert [r.id for r in store.list_runs(sweep_id="sw1")] == [b.id]
    assert store.get_run("first").id == a.id
    assert store.get_run(a.id).derived == {"total_steps": 10}

    store.mark_started(a.id, os.getpid(), "h")
    run = store.get_run(a.id)
    assert (run.status, run.pid, run.host) == ("running", os.getpid(), "h")
    assert run.started and run.heartbeat and run.ended is None
    store.update_run(a.id, derived={"total_steps": 20}, summary={"best_value": 1.0})
    store.set_status(a.id, "completed", reason="done", summary={"steps": 20})
    run = store.get_run(a.id)
    assert run.status == "completed" and run.terminal and run.ended is not None
    assert run.summary == {"best_value": 1.0, "steps": 20} and run.exit_reason == "done"
    assert run.derived == {"total_steps": 20}
    with pytest.raises(InvalidValue, match="status 'finished' is not one of"):
        store.set_status(a.id, "finished")


def test_ambiguous_and_missing_names(store):
    x = store.create_run({}, {}, name="dup")
    y = store.create_run({}, {}, name="dup")
    assert y.name == "dup-2"  # new runs get a free name (tests/cli/test_names.py)
    # a database from before that may still hold two runs of one name
    with sqlite3.connect(store.runs_dir / DB_NAME) as conn:
        conn.execute("UPDATE runs SET name = 'dup' WHERE id = ?", (y.id,))
    with pytest.raises(RunNotFound, match="matches 2 runs"):
        store.get_run("dup")
    with pytest.raises(RunNotFound, match="no run with id or name 'nope'"):
        store.get_run("nope")
    assert store.get_run(x.id).id == x.id


HOSTILE = [
    'it\'s "quoted"',
    "../../etc/passwd",
    "a/b\\c",
    "..",
    "名前 🚀",
    "x; DROP TABLE runs;--",
    "",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_data_not_paths(store, name):
    run = store.create_run({}, {}, name=name)
    stored = store.get_run(run.id)
    assert stored.name == (name or run.id)
    assert stored.run_dir.parent == store.runs_dir
    assert store.run_dir(run.id) == stored.run_dir and stored.run_dir.parent == store.runs_dir
    if name:
        assert store.get_run(name).id == run.id
    assert {"runs", "metrics"} <= {
        r[0] for r in store.conn.execute("SELECT name FROM sqlite_master").fetchall()
    }


@pytest.mark.parametrize("bad", ["..", "../x", "a/b", "/abs", "", ".hidden", "x" * 100, "a b"])
def test_run_dir_rejects_unsafe_ids(store, bad):
    with pytest.raises(InvalidValue, match="run id"):
        store.run_dir(bad)


def test_writer_tail_series_and_last_step(store):
    run = store.create_run({}, {})
    store.mark_started(run.id, os.getpid())
    with RunWriter(store.runs_dir, run.id, flush_interval=0.1) as w:
        for step in range(1, 101):
            w.log(step, {"loss": 10.0 / step, "lr": 1e-3})
        w.log(101, {"loss": float("nan"), "lr": float("inf")})
        w.event("eval", "evaluated", step=100, data={"val_loss": 0.5})
        deadline = time.monotonic() + 5
        # The flush thread writes within the interval without flush() being called.
        while store.last_step(run.id) != 101 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert store.last_step(run.id) == 101
    assert store.metric_names(run.id) == ["loss", "lr"]
    pts = store.tail(run.id, after_step=99)
    assert [(p.step, p.name) for p in pts] == [
        (100, "loss"),
        (100, "lr"),
        (101, "loss"),
        (101, "lr"),
    ]
    assert (
        pts[0].value == pytest.approx(0.1) and math.isnan(pts[2].value) and pts[3].value == math.inf
    )
    assert [p.step for p in store.tail(run.id, ["loss"], after_step=98)] == [99, 100, 101]
    assert len(store.tail(run.id)) == 202
    ser = store.series(run.id, "loss", buckets=1000)
    assert len(ser) == 101 and ser[0] == (1, 10.0, 10.0, 10.0)
    ser = store.series(run.id, "loss", buckets=10)
    assert len(ser) <= 10 and ser[-1][0] == 101 and math.isnan(ser[-1][3])
    assert store.series(run.id, "nope") == []
    ev = store.events(run.id)
    assert ev[-1].kind == "eval" and ev[-1].data == {"val_loss": 0.5} and ev[-1].step == 100
    assert store.events(run.id, after_id=ev[-1].id) == []
    assert store.get_run(run.id).heartbeat > run.created


def test_writer_log_never_touches_sqlite_and_flush_writes(store):
    run = store.create_run({}, {})
    w = RunWriter(store.runs_dir, run.id, flush_interval=1.0)
    try:
        # Hold the write lock: log() must not block on it.
        blocker = sqlite3.connect(store.path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        t0 = time.perf_counter()
        for step in range(1000):
            w.log(step, {"loss": 1.0})
        elapsed = time.perf_counter() - t0
        blocker.execute("COMMIT")
        blocker.close()
        # Not a speed check: touching SQLite would wait out the 10 s busy timeout on the lock.
        assert elapsed < 5, "log() waited on the database"
        assert w.flush() and w.pending == 0
        assert len(store.tail(run.id)) == 1000
    finally:
        w.close()


def test_writer_rejects_bad_args(store):
    run = store.create_run({}, {})
    with pytest.raises(InvalidValue, match="flush_interval"):
        RunWriter(store.runs_dir, run.id, flush_interval=5)
    with pytest.raises(RunNotFound):
        RunWriter(store.runs_dir, "20200101-000000-0000")


def test_non_numeric_metric_is_skipped_with_warning_event(store):
    run = store.create_run({}, {})
    with RunWriter(store.runs_dir, run.id) as w:
        w.log(1, {"loss": 1.0, "note": "hello"})
    assert store.metric_names(run.id) == ["loss"]
    assert any(e.kind == "warning" and "note" in e.message for e in store.events(run.id))


def test_commands_lifecycle(store):
    run = store.create_run({}, {})
    store.mark_started(run.id, os.getpid())
    c1 = store.send_command(run.id, "set_lr", {"lr": "5E-5"})
    c2 = store.send_command(run.id, "stop")
    assert store.get_command(c1).payload == {"lr": 5e-5}
    claimed = store.claim_commands(run.id)
    assert [c.id for c in claimed] == [c1, c2] and all(c.claimed for c in claimed)
    assert store.claim_commands(run.id) == []
    store.ack_command(c1, 42)
    store.reject_command(c2, "not now", step=42)
    got = {c.id: c for c in store.commands(run.id)}
    assert (got[c1].status, got[c1].applied_step) == ("applied", 42)
    assert (got[c2].status, got[c2].reason) == ("rejected", "not now")
    assert store.wait_command(c1, timeout=0.1).status == "applied"
    kinds = [(e.kind, e.step) for e in store.events(run.id)]
    assert kinds == [("command", 42), ("command", 42)]
    with pytest.raises(InvalidValue, match="already applied"):
        store.ack_command(c1, 43)


@pytest.mark.parametrize(
    "kind,payload,match",
    [
        ("set_lr", {"lr": "abc"}, "set_lr needs payload"),
        ("set_lr", {}, "set_lr needs payload"),
        ("set_lr", {"lr": -1}, "positive"),
        ("scale_lr", {"factor": float("nan")}, "positive"),
        ("explode", None, "unknown command kind"),
    ],
)
def test_bad_commands_refused(store, kind, payload, match):
    run = store.create_run({}, {})
    with pytest.raises(CommandRefused, match=match):
        store.send_command(run.id, kind, payload)


def test_commands_refused_for_ended_runs_and_pending_rejected_on_end(store):
    run = store.create_run({}, {})
    store.mark_started(run.id, os.getpid())
    cid = store.send_command(run.id, "checkpoint")
    store.set_status(run.id, "stopped")
    with pytest.raises(CommandRefused, match="is stopped"):
        store.send_command(run.id, "eval")
    # Rejected by the end itself (set_status), so a waiter returns at once.
    cmd = store.get_command(cid)
    assert cmd.status == "rejected" and cmd.reason == "run ended before applying it"
    assert store.wait_command(cid, timeout=5) == cmd


def test_wait_command_times_out_pending(store):
    run = store.create_run({}, {})
    store.mark_started(run.id, os.getpid())
    cid = store.send_command(run.id, "eval")
    t0 = time.monotonic()
    assert store.wait_command(cid, timeout=0.3).status == "pending"
    assert time.monotonic() - t0 < 10  # returned at its timeout, not stuck


def test_delete_run_removes_rows_and_files(store):
    run = store.create_run({}, {})
    d = store.run_dir(run.id)
    (d / "checkpoints").mkdir(parents=True)
    (d / "config.yaml").write_text("x: 1\n")
    store.log_metrics(run.id, [(1, "loss", 1.0, time.time())])
    store.add_event(run.id, "started", "go")
    store.send_command(run.id, "stop")
    other = store.create_run({}, {})
    store.log_metrics(other.id, [(1, "loss", 2.0, time.time())])
    store.delete_run(run.id)
    assert not d.exists()
    with pytest.raises(RunNotFound):
        store.get_run(run.id)
    for table in ("series", "events", "commands"):
        assert (
            store.conn.execute(
                f"SELECT count(*) FROM {table} WHERE run_id = ?", (run.id,)
            ).fetchone()[0]
            == 0
        )
    assert store.conn.execute("SELECT count(*) FROM metrics").fetchone()[0] == 1
    assert store.tail(other.id)[0].value == 2.0


def test_forward_migrations_run_in_order(tmp_path, monkeypatch):
    from tuitrain.store import db

    Store(tmp_path).close()

    def v2(conn):
        conn.execute("ALTER TABLE runs ADD COLUMN tags TEXT")

    monkeypatch.setattr(db, "MIGRATIONS", [*db.MIGRATIONS, v2])
    monkeypatch.setattr(db, "SCHEMA_VERSION", len(db.MIGRATIONS))
    s = Store(tmp_path)
    cols = {r[1] for r in s.conn.execute("PRAGMA table_info(runs)").fetchall()}
    assert "tags" in cols
    assert s.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    s.close()
    Store(tmp_path).close()  # already at the new version: nothing runs twice


def test_data_version_moves_on_other_connections_commits(store):
    other = Store(store.runs_dir)
    try:
        v = store.data_version()
        assert store.data_version() == v  # nothing new
        run = other.create_run({}, {})
        assert store.data_version() != v
        v = store.data_version()
        with RunWriter(store.runs_dir, run.id) as w:
            w.log(1, {"loss": 1.0})
        assert store.data_version() != v
    finally:
        other.close()
