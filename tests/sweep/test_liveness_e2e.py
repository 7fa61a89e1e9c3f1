"""Liveness end to end with real launchers and trainers: a launcher that dies before training
(import error, kill -9) fails the run with its train.log tail; a frozen rank makes the run
stalled while rank 0's writer keeps heart-beating."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import pytest

from tuitrain.config import load_config
from tuitrain.runs import liveness
from tuitrain.runs.launch import launch
from tuitrain.runs.process import launch_info, run_processes
from tuitrain.store import Store

from .helpers import ENV, REPO, wait_for

pytestmark = pytest.mark.e2e

FAILS_AT_IMPORT = "raise ImportError('accelerate is broken here: rendezvous library missing')\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broken_accelerate(tmp_path) -> str:
    """A PYTHONPATH entry whose `accelerate` fails to import: the launcher dies at once."""
    d = tmp_path / "broken"
    (d / "accelerate").mkdir(parents=True)
    (d / "accelerate" / "__init__.py").write_text(FAILS_AT_IMPORT)
    return str(d)


def test_run_exits_nonzero_with_the_reason_when_the_launcher_dies_at_once(cli, tmp_path):
    env = {"PYTHONPATH": f"{broken_accelerate(tmp_path)}{os.pathsep}{REPO}"}
    t0 = time.monotonic()
    rc, out = cli.run(
        "run", "tiny.yaml", "--name", "dies", "--runs-dir", "runs", timeout=120, env=env
    )
    assert rc == 1, out
    assert "failed" in out and "exited before training started" in out, out
    assert "rendezvous library missing" in out, out  # the last lines of train.log
    assert time.monotonic() - t0 < 60  # it does not wait for a timeout
    with Store(cli.runs_dir) as s:
        run = s.get_run("dies")
        assert run.status == "failed" and "rendezvous library missing" in run.exit_reason
        assert any(e.kind == "error" and "marked failed" in e.message for e in s.events(run.id))


def test_kill_9_of_the_launcher_fails_the_queued_run_within_15_s(cli, monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(cli.dir)
    resolved = load_config(cli.dir / "tiny.yaml")
    run = launch(resolved, cli.runs_dir, name="k9")
    # At once: the launcher is still importing accelerate and has started no trainer yet.
    os.killpg(run.pid, signal.SIGKILL)
    killed = time.monotonic()
    with Store(cli.runs_dir) as s:
        assert liveness.get_run(s, run.id).status in ("queued", "failed")
        got = wait_for(
            lambda: (r := liveness.get_run(s, run.id)).status != "queued" and r,
            15,
            "the run to be failed",
        )
        assert time.monotonic() - killed <= 15
        assert got.status == "failed", cli.log(got)
        # The launching process (this one) reaped the launcher and wrote how it ended.
        assert "killed by SIGKILL" in got.exit_reason, got.exit_reason
        assert f"launcher pid {run.pid}" in got.exit_reason


def test_run_exits_nonzero_when_its_launcher_is_killed_before_training(cli):
    proc = cli.start("run", "tiny.yaml", "--name", "k9cli", "--runs-dir", "runs")
    # The launch record appears right after the spawn; the launcher then needs seconds to import
    # accelerate before it starts the trainer, so this kill lands before training starts.
    info = wait_for(
        lambda: next((json.loads(f.read_text()) for f in cli.runs_dir.glob("*/launch.json")), None),
        60,
        "the launcher to be spawned",
        poll=0.01,
    )
    os.killpg(info["pgid"], signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert "failed" in out and "exited before training started" in out, out
    assert f"launcher pid {info['pid']} was killed by SIGKILL" in out, out


def ranks(run) -> list[int]:
    """The trainer processes (accelerate's children running tuitrain.train) of a run."""
    launcher = launch_info(run.run_dir)["pid"]
    return [p for p in run_processes(run) if p != launcher]


def ls_json(cli, run_id: str, env: dict) -> dict:
    rc, out = cli.run("ls", "--runs-dir", "runs", "--format", "json", timeout=60, env=env)
    assert rc == 0, out
    return next(r for r in json.loads(out) if r["id"] == run_id)


def test_a_frozen_rank_makes_the_run_stalled_not_healthy(cli):
    sets = [
        "--set", "launch.num_processes=2", "--set", "launch.cpu=true",
        "--set", f"launch.main_process_port={free_port()}", "--set", "training.max_steps=100000",
        "--set", "training.eval_every=100000",
    ]  # fmt: skip
    rc, out = cli.run("run", "tiny.yaml", "--detach", "--name", "ddp", *sets, "--runs-dir", "runs")
    assert rc == 0, out
    run_id = out.strip().splitlines()[-1]
    s = Store(cli.runs_dir)
    frozen = None
    try:
        run = wait_for(
            lambda: (r := s.get_run(run_id)).status == "running" and (r.last_step or 0) >= 3 and r,
            240,
            "the 2-rank run to be training",
        )
        others = [p for p in ranks(run) if p != run.pid]
        assert len(others) == 1 and run.pid in ranks(run), (ranks(run), run.pid)
        frozen = others[0]
        os.kill(frozen, signal.SIGSTOP)
        # A short threshold for this reader (documented: TUITRAIN_STALL_MIN_S).
        env = {"TUITRAIN_STALL_MIN_S": "3"}
        doc = wait_for(
            lambda: (d := ls_json(cli, run_id, env))["stalled"] and d, 120, "ls to say stalled"
        )
        assert doc["status"] == "running" and doc["last_step_age_s"] > 3
        # Rank 0 is stuck in a collective but alive: its writer keeps the heartbeat fresh.
        beat = s.get_run(run_id).heartbeat
        assert time.time() - beat < 30
        rc, text = cli.run(
            "show", run_id, "--runs-dir", "runs", "--events", "0", timeout=60, env=env
        )
        assert rc == 0 and "stalled" in text, text
        stuck_at = s.get_run(run_id).last_step
        os.kill(frozen, signal.SIGCONT)
        frozen = None
        doc = wait_for(
            lambda: (d := ls_json(cli, run_id, env))["step"] > stuck_at and not d["stalled"] and d,
            120,
            "the run to move on after SIGCONT",
        )
        assert doc["status"] == "running"
        rc, out = cli.run("stop", run_id, "--runs-dir", "runs", "--grace", "30", timeout=90)
        assert rc == 0 and "stopped" in out, out
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGCONT)
        s.close()
