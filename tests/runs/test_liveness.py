"""Tests of the liveness rule (tuitrain.runs.liveness, tuitrain.runs.process) with real processes: reused pids are
never signalled, commands of dead runs are rejected, stall thresholds, per-thread connections."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tuitrain.cli import main
from tuitrain.runs import liveness
from tuitrain.runs.liveness import stall_state
from tuitrain.runs.process import proc_start, signal_target
from tuitrain.store import InvalidValue, RunInfo, RunNotFound, RunWriter, Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "runs")
    yield s
    s.close()


def wait_until(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def sleeper(procs, seconds: int = 120) -> subprocess.Popen:
    """An unrelated live process leading its own session (so its pgid is its pid)."""
    p = subprocess.Popen(["sleep", str(seconds)], start_new_session=True)
    procs.append(p)
    wait_until(lambda: proc_start(p.pid) is not None, 10, "the sleep to exist")
    return p


def other_start(pid: int) -> int:
    """A start time that is not this process's: the recorded process started earlier. (Two
    processes can share a start time to the clock tick, so a real exited process's start would
    not do.)"""
    return proc_start(pid) - 1


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# ---- stopping the right process ------------------------------------------------------------


def test_reused_pid_survives_stop(store, procs, capsys):
    """The record's pid (and launch.json's pgid) now belong to an unrelated `sleep`: stop must
    not signal it, and readers see the run as crashed (its own process is gone)."""
    sl = sleeper(procs)
    run = store.create_run({}, {})
    store.mark_started(run.id, sl.pid, pid_start=other_start(sl.pid))
    run_dir = store.run_dir(run.id)
    run_dir.mkdir()
    launch = {"pid": sl.pid, "pgid": sl.pid, "start": other_start(sl.pid), "host": store.host}
    (run_dir / "launch.json").write_text(json.dumps(launch))
    assert signal_target(store.get_run(run.id), after_end=True).pgid is None
    rc, out, _ = cli(capsys, "stop", run.id, "--runs-dir", str(store.runs_dir), "--grace", "1")
    # Had stop signalled the group, it would have waited for it to die and said "stopped".
    assert rc == 0 and "not running" in out
    assert sl.poll() is None, "tuitrain stop killed an unrelated process"
    got = liveness.get_run(store, run.id)
    assert got.status == "crashed" and "now belongs to another process" in got.exit_reason


def test_pid_without_a_recorded_start_time_is_never_signalled(store, procs, capsys):
    """A record from before start times were kept: the pid is alive but cannot be verified."""
    sl = sleeper(procs)
    run = store.create_run({}, {})
    store.mark_started(run.id, sl.pid, host=store.host)
    store.conn.execute("UPDATE runs SET pid_start = NULL WHERE id = ?", (run.id,))
    rc, out, _ = cli(capsys, "stop", run.id, "--runs-dir", str(store.runs_dir), "--grace", "1")
    assert rc == 0 and "no start time was recorded" in out
    assert sl.poll() is None


def test_the_recorded_process_is_stopped(store, procs, capsys):
    sl = sleeper(procs)
    run = store.create_run({}, {})
    store.mark_started(run.id, sl.pid)  # start time read from /proc: this very process
    assert store.get_run(run.id).pid_start == proc_start(sl.pid)
    rc, out, _ = cli(capsys, "stop", run.id, "--runs-dir", str(store.runs_dir), "--grace", "10")
    assert rc == 0 and "stopped" in out
    assert sl.wait(timeout=10) == -signal.SIGTERM


def test_terminal_or_remote_runs_are_not_signalled(store, procs):
    sl = sleeper(procs)
    run = store.create_run({}, {})
    store.mark_started(run.id, sl.pid)
    store.set_status(run.id, "completed")
    t = signal_target(store.get_run(run.id))
    assert t.pgid is None and "completed" in t.why
    assert signal_target(store.get_run(run.id), after_end=True).pgid == sl.pid  # cleanup only
    other = store.create_run({}, {})
    store.mark_started(other.id, sl.pid, host="elsewhere")
    t = signal_target(store.get_run(other.id))
    assert t.pgid is None and "elsewhere" in t.why


# ---- commands of dead runs -----------------------------------------------------------------

CLAIM_THEN_CRASH = textwrap.dedent(
    """
    import os, sys, time
    from tuitrain.store import Store
    s = Store(sys.argv[1]); run_id = sys.argv[2]
    s.mark_started(run_id, os.getpid())
    print("ready", flush=True)
    while True:
        if s.claim_commands(run_id):
            os._exit(3)  # dies between claim and ack: no final status, no ack
        time.sleep(0.02)
    """
)


def test_ctl_wait_returns_when_the_trainer_crashes_after_claiming(store, procs, capsys):
    run = store.create_run({}, {})
    p = subprocess.Popen(
        [sys.executable, "-c", CLAIM_THEN_CRASH, str(store.runs_dir), run.id],
        stdout=subprocess.PIPE,
        text=True,
    )
    procs.append(p)
    assert p.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    rc, _, err = cli(capsys, "ctl", run.id, "eval", "--wait", "--timeout", "60",
                     "--runs-dir", str(store.runs_dir))  # fmt: skip
    assert p.wait(timeout=10) == 3
    assert rc == 1 and "rejected: run crashed before applying it" in err
    assert time.monotonic() - t0 < 30
    cmd = store.commands(run.id)[0]
    assert cmd.claimed and cmd.status == "rejected"
    assert liveness.get_run(store, run.id).status == "crashed"


def test_claimed_command_of_an_ended_run_is_rejected_once_its_process_exits(store, procs):
    sl = sleeper(procs)
    run = store.create_run({}, {})
    store.mark_started(run.id, sl.pid)
    cid = store.send_command(run.id, "checkpoint")
    assert [c.id for c in store.claim_commands(run.id)] == [cid]
    store.set_status(run.id, "completed")
    # The trainer still lives: it may acknowledge in its last moments.
    assert liveness.wait_command(store, cid, timeout=0.3).status == "pending"
    sl.kill()
    sl.wait(timeout=10)
    cmd = liveness.wait_command(store, cid, timeout=10)
    assert cmd.status == "rejected" and cmd.reason == "run ended before applying it"
    assert any("ended before applying it" in e.message for e in store.events(run.id))


def test_marking_a_run_crashed_rejects_its_pending_commands(store, procs):
    sl = sleeper(procs)
    run = store.create_run({}, {})
    store.mark_started(run.id, sl.pid)
    a = store.send_command(run.id, "eval")
    store.claim_commands(run.id)
    b = store.send_command(run.id, "stop")
    sl.kill()
    sl.wait(timeout=10)
    assert liveness.get_run(store, run.id).status == "crashed"
    for cid in (a, b):
        c = store.get_command(cid)
        assert c.status == "rejected" and c.reason == "run crashed before applying it"


# ---- stall threshold -------------------------------------------------------------------------


def _running(**kw) -> RunInfo:
    base = dict(id="r", name="r", status="running", config={}, derived={}, created=1000.0,
                started=1000.0, heartbeat=1.0e12)  # fmt: skip
    return RunInfo(**{**base, **kw})


def test_stall_state_thresholds():
    # Before the first step of a (re)start the first-step grace applies.
    r = _running()
    assert stall_state(r, 1000.0 + 899, 120, 900) == (False, 899.0, 900.0)
    assert stall_state(r, 1000.0 + 901, 120, 900)[0] is True
    # After a step: max(min, 20 x median step time).
    r = _running(step_advanced=2000.0, step_time_s=0.5, last_step=10)
    assert stall_state(r, 2119.0, 120, 900) == (False, 119.0, 120.0)
    assert stall_state(r, 2121.0, 120, 900)[0] is True
    assert stall_state(r, 2121.0, 120, 900, factor=300) == (False, 121.0, 150.0)  # doctor's own
    slow = _running(step_advanced=2000.0, step_time_s=30.0, last_step=10)
    assert stall_state(slow, 2500.0, 120, 900) == (False, 500.0, 600.0)
    assert stall_state(slow, 2601.0, 120, 900)[0] is True
    # A resumed run: an advance from before the restart does not count as a step of this start.
    resumed = _running(started=5000.0, step_advanced=2000.0, step_time_s=0.5, last_step=30)
    assert stall_state(resumed, 5200.0, 120, 900) == (False, 200.0, 900.0)
    # Only running runs stall.
    for status in ("queued", "completed", "crashed"):
        assert stall_state(_running(status=status), 1.0e9, 120, 900) == (False, None, None)


def test_a_long_eval_or_save_is_not_a_stall(tmp_path):
    """The trainer announces its phase between steps (store column phase): an eval that has run
    for 10 min after a 0.5 s step is not stalled; it is once the phase outlasts the first-step
    grace; a phase from before a restart counts for nothing."""
    r = _running(step_advanced=2000.0, step_time_s=0.5, last_step=10)
    assert stall_state(r, 2600.0, 120, 900)[0] is True  # no phase: 600 s > 120 s
    ev = _running(
        step_advanced=2000.0, step_time_s=0.5, last_step=10, phase="eval", phase_since=2001.0
    )
    assert stall_state(ev, 2600.0, 120, 900) == (False, 600.0, 900.0)
    assert stall_state(ev, 2902.0, 120, 900)[0] is True  # the eval itself hangs: 901 s
    old = _running(started=5000.0, step_advanced=5100.0, step_time_s=0.5, last_step=30,
                   phase="save", phase_since=4000.0)  # fmt: skip
    assert stall_state(old, 5300.0, 120, 900)[0] is True
    with Store(tmp_path) as s:  # the column: set, read back, cleared by a (re)start
        run = s.create_run({}, {}, name="p")
        s.mark_started(run.id, os.getpid())
        s.set_phase(run.id, "eval")
        got = s.get_run(run.id)
        assert got.phase == "eval" and got.phase_since is not None
        s.set_phase(run.id, None)
        assert (s.get_run(run.id).phase, s.get_run(run.id).phase_since) == (None, None)
        s.set_phase(run.id, "save")
        s.mark_started(run.id, os.getpid())
        assert s.get_run(run.id).phase is None
        with pytest.raises(RunNotFound):
            s.set_phase("nope", "eval")


def test_stall_thresholds_from_the_environment(monkeypatch):
    monkeypatch.setenv("TUITRAIN_STALL_MIN_S", "3")
    monkeypatch.setenv("TUITRAIN_STALL_FIRST_STEP_S", "7.5")
    assert liveness.stall_thresholds() == (3.0, 7.5)
    r = _running(step_advanced=2000.0, step_time_s=0.01, last_step=1)
    assert stall_state(r, 2004.0) == (True, 4.0, 3.0)
    monkeypatch.setenv("TUITRAIN_STALL_MIN_S", "soon")
    with pytest.raises(InvalidValue, match="TUITRAIN_STALL_MIN_S='soon'.*seconds"):
        liveness.stall_thresholds()


def test_writer_records_step_progress_and_median_step_time(store, monkeypatch):
    run = store.create_run({}, {})
    store.mark_started(run.id, os.getpid())
    got = liveness.view_run(store, run.id)
    assert got.step_advanced is None and got.stalled is False and got.last_step_age_s >= 0
    with RunWriter(store.runs_dir, run.id, flush_interval=0.1) as w:
        t = time.time()
        for step in range(1, 11):  # every other step logged, 0.2 s apart: 0.1 s per step
            w.log(2 * step, {"loss": 1.0}, time=t + 0.2 * step)
        w.flush()
        before = store.get_run(run.id)
        assert before.step_time_s == pytest.approx(0.1)
        assert before.step_advanced and before.last_step == 20
        # A step written again (resume) is progress of this process; no new step is not.
        monkeypatch.setenv("TUITRAIN_STALL_MIN_S", "0.2")
        stamp = before.step_advanced
        w.event("warning", "no step in this batch")
        w.flush()
        assert store.get_run(run.id).step_advanced == stamp
        wait_until(lambda: liveness.view_run(store, run.id).stalled, 10, "the run to read stalled")
        w.log(21, {"loss": 0.5})
        w.flush()
        after = liveness.view_run(store, run.id)
        assert after.step_advanced > stamp and not after.stalled


# ---- one connection per thread ---------------------------------------------------------------


def test_threads_get_their_own_connection_and_transactions(store):
    run = store.create_run({}, {})
    store.mark_started(run.id, os.getpid())
    conns, errors = [], []

    def work(i: int) -> None:
        try:
            conns.append(store.conn)
            for k in range(30):
                store.add_event(run.id, "warning", f"t{i}-{k}")
                store.send_command(run.id, "eval")
                store.claim_commands(run.id)
                store.list_runs()
        except Exception as exc:  # noqa: BLE001 -- reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert len({id(c) for c in conns}) == 4 and store.conn not in conns
    assert len(store.events(run.id)) == 120
    assert len(store.commands(run.id)) == 120
    # Connections of threads that ended are closed when the next thread opens one.
    t = threading.Thread(target=lambda: store.conn)
    t.start()
    t.join()
    assert len(store._conns) <= 2
    store.close()
    with pytest.raises(Exception, match="closed"):
        store.get_run(run.id)


def test_a_queued_runs_launcher_is_judged_once_its_parent_has_reaped_it(store, procs):
    """A launcher that has exited but is not yet reaped (a zombie) leaves its queued run alone:
    the launching process writes how it ended to train.log before it reaps it, so no reader
    fails the run without that line."""
    from dataclasses import replace

    p = sleeper(procs)
    start = proc_start(p.pid)
    run = replace(store.create_run({}, {}, name="z"), status="queued", pid=p.pid, pid_start=start)
    assert liveness.assess(run) is None  # alive
    os.kill(p.pid, signal.SIGKILL)
    os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)  # ended, still a zombie
    assert liveness.assess(run) is None
    p.wait()  # reaped
    change = liveness.assess(run)
    assert change is not None and change.status == "failed"
    assert "exited before training started" in change.reason
