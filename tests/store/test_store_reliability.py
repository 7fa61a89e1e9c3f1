"""Reliability tests with real processes: SIGKILLed writer, 3 writers + 2 readers under load, concurrent claimers."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tuitrain.runs import liveness
from tuitrain.store import Store
from tuitrain.store.db import DB_NAME

FLUSH = 0.2
# CPU here is shared with other jobs: a flush can start late. The bound checked is
# "lost at most one flush interval plus this scheduling slack".
SCHED_SLACK_S = 1.5


def spawn(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def wait_until(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


KILLED_WRITER = """
    import os, sys, time
    from tuitrain.store import RunWriter, Store
    runs_dir, run_id = sys.argv[1], sys.argv[2]
    Store(runs_dir).mark_started(run_id, os.getpid())
    w = RunWriter(runs_dir, run_id, flush_interval=float(sys.argv[3]))
    step, reported = 0, 0
    while True:
        step += 1
        w.log(step, {"loss": 1.0 / step, "lr": 1e-3}, time=time.time())
        if step % 50 == 0:
            w.event("eval", f"step {step}", step=step)
        if w.rows_written != reported:  # tell the parent what the writer has committed
            reported = w.rows_written
            print(reported, flush=True)
        time.sleep(0.001)
"""


def test_sigkilled_writer_loses_at_most_last_interval(tmp_path, procs):
    store = Store(tmp_path)
    run = store.create_run({}, {})
    p = spawn(KILLED_WRITER, str(tmp_path), run.id, str(FLUSH))
    procs.append(p)
    wait_until(lambda: (store.last_step(run.id) or 0) >= 300, 60, "the writer to flush rows")
    # Kill while it is in full flow: a few more flushes after the first 300 steps were seen.
    first = store.last_step(run.id)
    wait_until(lambda: store.last_step(run.id) >= first + 100, 60, "more flushes")
    t_kill = time.time()
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)

    committed = [int(x) for x in p.stdout.read().split()]
    conn = sqlite3.connect(tmp_path / DB_NAME)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    pts = store.tail(run.id)
    # Everything the writer reported committed before the kill survived it.
    assert committed and len(pts) >= committed[-1]
    by_name = {n: [q for q in pts if q.name == n] for n in ("loss", "lr")}
    top = max(q.step for q in pts)
    # Whole batches only: every step up to the last one written is there, for both names.
    for rows in by_name.values():
        assert [q.step for q in rows] == list(range(1, top + 1))
    newest = max(q.time for q in pts)
    assert newest >= t_kill - FLUSH - SCHED_SLACK_S, f"lost {t_kill - newest:.2f} s of metrics"
    assert store.events(run.id)[-1].step <= top
    got = liveness.get_run(store, run.id)
    assert got.status == "crashed" and got.last_step == top
    # Rollups were written in the same transactions as the rows: series still exact.
    ser = store.series(run.id, "loss", buckets=7)
    assert ser[-1][0] == top and ser[0][2] == 1.0 and ser[-1][1] == pytest.approx(1.0 / top)
    # The database stays writable: a resumed run appends after the crash.
    store.log_metrics(run.id, [(top + 1, "loss", 0.5, time.time())])
    assert store.last_step(run.id) == top + 1
    store.close()


LOAD_WRITER = """
    import json, os, sys, time
    from tuitrain.store import RunWriter, Store
    runs_dir, run_id, duration = sys.argv[1], sys.argv[2], float(sys.argv[3])
    locked, acked = 0, 0
    s = Store(runs_dir)
    s.mark_started(run_id, os.getpid())
    w = RunWriter(runs_dir, run_id, flush_interval=0.2)
    end = time.monotonic() + duration
    step, next_poll = 0, 0.0
    while time.monotonic() < end:
        step += 1
        w.log(step, {"loss": 1.0 / step, "lr": 1e-3, "grad_norm": 0.5, "samples_per_s": 100.0})
        if time.monotonic() > next_poll:  # the trainer polls its commands like this
            next_poll = time.monotonic() + 0.1
            try:
                for c in s.claim_commands(run_id):
                    s.ack_command(c.id, step)
                    acked += 1
            except Exception as exc:
                if "locked" in str(exc):
                    locked += 1
                else:
                    raise
        time.sleep(0.0005)
    w.close()
    s.set_status(run_id, "completed", summary={"steps": step})
    print(json.dumps({"steps": step, "failed_flushes": w.failed_flushes, "locked": locked, "acked": acked}))
"""

LOAD_READER = """
    import json, sys, time
    from tuitrain.store import Store, CommandRefused
    runs_dir, duration = sys.argv[1], float(sys.argv[2])
    s = Store(runs_dir)
    end = time.monotonic() + duration
    seen, reads, locked, sent, errors = {}, 0, 0, 0, []
    while time.monotonic() < end:
        try:
            for run in s.list_runs():
                new = s.tail(run.id, after_step=seen.get(run.id, -1))
                if new:
                    seen[run.id] = new[-1].step
                s.series(run.id, "loss", buckets=200)
                s.events(run.id)
                if run.status == "running" and reads % 10 == 0:
                    try:
                        s.send_command(run.id, "scale_lr", {"factor": 0.99})
                        sent += 1
                    except CommandRefused:
                        pass
                reads += 1
        except Exception as exc:
            if "locked" in str(exc):
                locked += 1
            else:
                errors.append(repr(exc))
        time.sleep(0.02)
    print(json.dumps({"reads": reads, "locked": locked, "sent": sent, "errors": errors}))
"""


@pytest.mark.e2e
def test_three_writers_two_readers_never_locked(tmp_path, procs):
    # Five processes busy on the database for 8 s: on 2 cores about 40 flushes per writer and
    # some hundreds of reads and commands (tests/bench/store_bench.py measures throughput).
    duration = 8.0
    store = Store(tmp_path)
    runs = [store.create_run({}, {}, name=f"w{i}") for i in range(3)]
    writers = [spawn(LOAD_WRITER, str(tmp_path), r.id, str(duration)) for r in runs]
    readers = [spawn(LOAD_READER, str(tmp_path), str(duration)) for _ in range(2)]
    procs.extend(writers + readers)
    results = []
    for p in writers + readers:
        out, err = p.communicate(timeout=duration + 90)
        assert p.returncode == 0, err
        assert "locked" not in err.lower(), err
        results.append(json.loads(out.strip().splitlines()[-1]))
    wres, rres = results[:3], results[3:]
    for r in rres:
        assert r["locked"] == 0 and r["errors"] == [] and r["reads"] > 10, r
    for run, r in zip(runs, wres, strict=True):
        assert r["locked"] == 0 and r["failed_flushes"] == 0, r
        assert r["steps"] > 100
        # Nothing lost: every logged step of every metric is in the database.
        assert store.last_step(run.id) == r["steps"]
        assert store.count_points(run.id) == 4 * r["steps"]
        assert store.get_run(run.id).status == "completed"
    assert sum(r["acked"] for r in wres) > 0 and sum(r["sent"] for r in rres) > 0
    conn = sqlite3.connect(tmp_path / DB_NAME)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    store.close()


CLAIMER = """
    import json, sys, time
    from tuitrain.store import Store
    s = Store(sys.argv[1]); run_id = sys.argv[2]
    s.claim_commands(run_id)  # the connection is open and the first poll done
    print("polling", flush=True)
    total, end = int(sys.argv[3]), time.monotonic() + 60
    got = []
    # Claim until every command the test sends is applied (by any claimer), at most 60 s.
    while time.monotonic() < end:
        for c in s.claim_commands(run_id):
            s.ack_command(c.id, step=len(got))  # raises if someone else finished it already
            got.append(c.id)
        if sum(c.status == "applied" for c in s.commands(run_id)) >= total:
            break
        time.sleep(0.002)
    print(json.dumps(got))
"""


def test_commands_claimed_exactly_once(tmp_path, procs):
    store = Store(tmp_path)
    run = store.create_run({}, {})
    store.mark_started(run.id, os.getpid())
    claimers = [spawn(CLAIMER, str(tmp_path), run.id, "200") for _ in range(4)]
    procs.extend(claimers)
    for p in claimers:  # every claimer is polling before the first command goes out
        assert p.stdout.readline().strip() == "polling", p.stderr.read()
    sent = []
    for i in range(200):
        sent.append(store.send_command(run.id, "scale_lr", {"factor": 1.0 + i / 1000}))
        if i % 20 == 0:
            time.sleep(0.05)
    claimed: list[int] = []
    for p in claimers:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        claimed.extend(json.loads(out.strip().splitlines()[-1]))
    assert sorted(claimed) == sorted(sent)  # all claimed, none twice
    assert all(c.status == "applied" for c in store.commands(run.id))
    store.close()


def test_hostile_names_never_touch_paths(tmp_path):
    runs_dir = tmp_path / "runs"
    store = Store(runs_dir)
    names = ["../../escape", "/etc/passwd", "a/../../b", "..", "q'\"`$(touch x)`", "ünï 名 \n\t"]
    for n in names:
        run = store.create_run({}, {}, name=n)
        store.log_metrics(run.id, [(1, "loss", 1.0, 0.0)])
        store.delete_run(run.id)
    # Only the DB files were ever created, all inside the runs directory.
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["runs", *[p.name for p in Path(runs_dir).iterdir()]]
    )
    assert all(p.name.startswith("tuitrain.db") for p in runs_dir.iterdir())
    store.close()


OPENER = """
    import sys
    from tuitrain.store import Store
    s = Store(sys.argv[1])
    print(s.create_run({}, {}, name=sys.argv[2]).id)
"""


def test_processes_racing_to_create_a_fresh_database(tmp_path, procs):
    runs_dir = tmp_path / "fresh"
    openers = [spawn(OPENER, str(runs_dir), f"p{i}") for i in range(6)]
    procs.extend(openers)
    for p in openers:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    with Store(runs_dir) as s:
        assert sorted(r.name for r in s.list_runs()) == [f"p{i}" for i in range(6)]
