"""`tuitrain run`: foreground progress without a TTY, --detach, Ctrl-C as a graceful stop."""

from __future__ import annotations

import re
import signal
import time

import pytest

from tuitrain.runs.launch import group_alive
from tuitrain.store import Store

from .helpers import wait_for


def test_invalid_config_exits_2_naming_the_field(cli):
    rc, out = cli.run(
        "run", "tiny.yaml", "--set", "optimizer.lr=-1", "--runs-dir", "runs", timeout=60
    )
    assert rc == 2 and "optimizer.lr" in out
    assert not (cli.runs_dir / "tuitrain.db").exists() or not Store(cli.runs_dir).list_runs()


@pytest.mark.e2e
def test_foreground_run_prints_plain_progress_and_exits_0(cli):
    rc, out = cli.run("run", "tiny.yaml", "--name", "fg", "--runs-dir", "runs", timeout=180)
    assert rc == 0, out
    assert "\x1b" not in out and "\r" not in out  # no control codes without a TTY
    assert re.search(r"step 6/6 \(100%\) \| loss [0-9.]+ \| lr [0-9.e+-]+", out), out
    assert "[eval] step 2" in out and out.rstrip().endswith("completed")
    with Store(cli.runs_dir) as s:
        assert s.get_run("fg").status == "completed"


@pytest.mark.e2e
def test_detach_returns_at_once_and_training_goes_on(cli):
    t0 = time.monotonic()
    rc, out = cli.run("run", "tiny.yaml", "--detach", "--runs-dir", "runs", timeout=60)
    assert rc == 0, out
    run_id = out.strip().splitlines()[-1]
    assert time.monotonic() - t0 < 30  # it does not wait for training (which needs longer to start)
    with Store(cli.runs_dir) as s:
        assert s.get_run(run_id).status in ("queued", "running")
        wait_for(
            lambda: s.get_run(run_id).status == "completed", 180, "the detached run to complete"
        )


@pytest.mark.e2e
def test_ctrl_c_stops_gracefully_and_exits_nonzero(cli):
    proc = cli.start(
        "run",
        "tiny.yaml",
        "--name",
        "cc",
        "--set",
        "training.max_steps=100000",
        "--runs-dir",
        "runs",
    )

    def training():
        if not (cli.runs_dir / "tuitrain.db").exists():
            return False
        with Store(cli.runs_dir) as s:
            runs = s.list_runs()
            return (
                bool(runs) and runs[0].status == "running" and (s.last_step(runs[0].id) or 0) >= 2
            )

    wait_for(training, 150, "the run to be training")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    # the trainer's graceful stop: evaluate, save, end as early_stopped
    assert "stopping" in out and "early_stopped" in out.splitlines()[-1]
    with Store(cli.runs_dir) as s:
        run = s.get_run("cc")
        assert run.status == "early_stopped"
        assert any(c.kind == "stop" and c.status == "applied" for c in s.commands(run.id))
    assert not any(group_alive(g) for g in cli.trainer_groups())
