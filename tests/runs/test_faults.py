"""Faults injected into real processes: a frozen trainer (SIGSTOP) is stalled, never crashed, and
running again after SIGCONT. The trainer here is a torch-free process that writes its run the
way the real one does (Store.mark_started + RunWriter): what is tested is the liveness rule and
the CLI, not training. Thresholds are lowered by the documented environment variables."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tuitrain.cli import main
from tuitrain.store import Store

TRAINER = textwrap.dedent(
    """
    import os, sys, time
    from tuitrain.store import RunWriter, Store
    runs_dir, run_id = sys.argv[1], sys.argv[2]
    Store(runs_dir).mark_started(run_id, os.getpid())
    with RunWriter(runs_dir, run_id, flush_interval=0.1) as w:
        step = 0
        while True:
            step += 1
            w.log(step, {"loss": 1.0 / step})
            if step == 3:
                print("ready", flush=True)
            time.sleep(0.05)
    """
)


@pytest.fixture
def trainer(tmp_path):
    """A live trainer writing its run in tmp_path/runs; killed (and reaped) whatever happens."""
    runs_dir = tmp_path / "runs"
    with Store(runs_dir) as s:
        run = s.create_run({}, {"total_steps": 1_000_000}, name="frozen")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    p = subprocess.Popen(
        [sys.executable, "-c", TRAINER, str(runs_dir), run.id],
        stdout=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        assert p.stdout.readline().strip() == "ready"
        yield runs_dir, run.id, p
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGCONT)  # a stopped process dies only once continued
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=30)


def ls(capsys, runs_dir, run_id: str) -> dict:
    capsys.readouterr()
    assert main(["ls", "--runs-dir", str(runs_dir), "--format", "json"]) == 0
    return next(r for r in json.loads(capsys.readouterr().out) if r["id"] == run_id)


def test_a_frozen_trainer_is_stalled_never_crashed(trainer, capsys, monkeypatch):
    """SIGSTOP: `ls` (a writer: it persists what it decides) says stalled, with how long, and
    never crashed -- not even after a heartbeat silence past the limit that would make a run
    on another host crashed; SIGCONT: running again. Nothing is recorded as crashed."""
    runs_dir, run_id, p = trainer
    monkeypatch.setenv("TUITRAIN_STALL_MIN_S", "1")
    monkeypatch.setenv("TUITRAIN_HEARTBEAT_STALL_S", "1.5")
    monkeypatch.setenv("TUITRAIN_REMOTE_DEAD_S", "3")
    assert ls(capsys, runs_dir, run_id)["status"] == "running"
    # Its twin on "another host" (same pid, nobody writing it): there only the heartbeat can
    # tell, so past TUITRAIN_REMOTE_DEAD_S it is crashed -- the limit the frozen run outlives.
    with Store(runs_dir) as s:
        twin = s.create_run({}, {}, name="remote-twin")
        s.mark_started(twin.id, p.pid, host="elsewhere")
    os.kill(p.pid, signal.SIGSTOP)
    seen: list[tuple[str, bool]] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            doc = ls(capsys, runs_dir, run_id)
            seen.append((doc["status"], doc["stalled"]))
            with Store(runs_dir) as s:
                silent = time.time() - s.get_run(run_id).heartbeat
            twin_status = ls(capsys, runs_dir, twin.id)["status"]
            if doc["stalled"] and silent > 4 and twin_status == "crashed":
                break
            assert time.monotonic() < deadline, seen
            time.sleep(0.2)
        assert doc["status"] == "running" and doc["last_step_age_s"] > 1
        capsys.readouterr()
        assert main(["ls", "--runs-dir", str(runs_dir)]) == 0
        table = capsys.readouterr().out
        assert "stalled " in table, table  # the table says it too, with how long
    finally:
        os.kill(p.pid, signal.SIGCONT)
    deadline = time.monotonic() + 60
    while (doc := ls(capsys, runs_dir, run_id))["stalled"]:
        seen.append((doc["status"], doc["stalled"]))
        assert time.monotonic() < deadline, seen
        time.sleep(0.2)
    assert doc["status"] == "running"
    assert all(status == "running" for status, _ in seen), seen
    with Store(runs_dir) as s:
        assert not [e for e in s.events(run_id) if "crashed" in e.message]


def _handles_sigterm(pid: int) -> bool:
    """Whether the process has its own SIGTERM handler installed (/proc/PID/status SigCgt)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            caught = next(ln for ln in fh if ln.startswith("SigCgt:")).split()[1]
    except (OSError, StopIteration):
        return False
    return bool(int(caught, 16) & (1 << (signal.SIGTERM - 1)))


# accelerate launch answers a SIGTERM by killing its child this long after (and a trainer that
# starts up on a busy machine needs longer than that to reach a step, save and say `stopped`).
LAUNCHER_KILL_AFTER_S = 5.0


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_stop_while_the_trainer_starts_up_is_stopped(tmp_path):
    """`tuitrain stop` the moment the trainer has installed its SIGTERM handler, while it still
    sets up: it must end `stopped`, never `crashed`. The trainer is held (SIGSTOP) for longer
    than its launcher's kill delay, as a slow start-up would be: signalled through the launcher
    it was SIGKILLed before it could record anything (crashed, "gone without a final status")."""
    from tests.train.helpers import ENV, Launcher
    from tuitrain.runs.process import launch_info, trainer_pids

    lx = Launcher(tmp_path)
    stopper = None
    try:
        run = lx.start(["training.max_steps=100000", "training.save_every=100000"], name="s")
        pgid = launch_info(run.run_dir)["pgid"]
        deadline = time.monotonic() + 300
        while not (ready := [p for p in trainer_pids([pgid]) if _handles_sigterm(p)]):
            assert time.monotonic() < deadline, "no trainer with its SIGTERM handler in 300 s"
            with Store(lx.runs_dir) as s:
                assert not s.get_run(run.id).terminal, lx.log(run)[-2000:]
            time.sleep(0.02)
        trainer = ready[0]
        os.kill(trainer, signal.SIGSTOP)
        stopper = subprocess.Popen(
            [sys.executable, "-m", "tuitrain", "stop", run.id, "--runs-dir", str(lx.runs_dir),
             "--grace", "180"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, **ENV, "PYTHONPATH": os.getcwd()},
        )  # fmt: skip
        # Held past the launcher's kill delay (with margin for a loaded machine), then let go.
        time.sleep(LAUNCHER_KILL_AFTER_S + 3)
        with contextlib.suppress(ProcessLookupError):  # killed meanwhile: the status says so
            os.kill(trainer, signal.SIGCONT)
        out, _ = stopper.communicate(timeout=300)
        assert stopper.returncode == 0, out
        with Store(lx.runs_dir) as s:
            got = s.get_run(run.id)
        assert got.status == "stopped", (got.status, got.exit_reason, lx.log(run)[-2000:])
        assert "crashed" not in out, out
    finally:
        if stopper is not None and stopper.poll() is None:
            stopper.kill()
            stopper.wait(timeout=30)
        for pid in trainer_pids(lx.pgids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        lx.kill_all()
