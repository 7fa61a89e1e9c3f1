"""Real-process tests of lane drivers (tuitrain.runs.lane_queue / tuitrain.train.lanes): several runs
trained one after another in ONE training process, as the LR race does per slot. A run stopped
while it waits is skipped without touching the run in training; a driver killed with -9 leaves
no run queued."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.train.helpers import DEMO, ENV, TINY, Launcher
from tuitrain.config import load_config
from tuitrain.runs import liveness
from tuitrain.runs.lane_queue import LANES_DIR, LaneDriver, read
from tuitrain.runs.launch import launch_lane, stop

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
LONG = [*TINY, "training.max_steps=100000", "training.log_every=1", "doctor.enabled=false"]
SHORT = [*TINY, "training.max_steps=6", "training.eval_every=6", "doctor.enabled=false"]


@pytest.fixture
def lx(tmp_path):
    lx = Launcher(tmp_path)
    yield lx
    lx.kill_all()


def _add(lx: Launcher, driver: LaneDriver, sets: list[str], name: str):
    resolved = load_config(DEMO, sets=sets)
    run = driver.add(
        resolved, lx.runs_dir, lambda info: launch_lane(resolved, lx.runs_dir, info, name=name)
    )
    lx.pgids.append(driver.info["pgid"])
    return run


def test_runs_share_one_process_and_a_waiting_run_stopped_is_skipped(lx):
    driver = LaneDriver(lx.runs_dir / "races" / LANES_DIR, "t", ENV)
    a = _add(lx, driver, LONG, "a")  # trains until told to stop
    b = _add(lx, driver, SHORT, "b")
    c = _add(lx, driver, SHORT, "c")
    assert {a.pid, b.pid, c.pid} == {driver.proc.pid} and driver.started == 1
    assert (a.status, b.status, c.status) == ("queued",) * 3
    lx.wait_step(a, 3)

    # b waits behind a: stopping it must not signal the process (that would stop a).
    assert stop(b, runs_dir=lx.runs_dir) == "stopped"
    with lx.store() as s:
        assert s.get_run(b.id).status == "stopped"
        assert s.get_run(a.id).status == "running"
        s.send_command(a.id, "stop")
    ended_a = lx.wait(a)
    ended_c = lx.wait(c)
    driver.close()
    assert driver.proc.wait(timeout=60) == 0
    assert ended_a.status == "early_stopped" and ended_a.exit_reason == "user", lx.log(a)[-2000:]
    assert ended_c.status == "completed" and ended_c.pid == ended_a.pid, lx.log(c)[-2000:]
    with lx.store() as s:
        assert s.get_run(b.id).status == "stopped" and not s.tail(b.id, ["loss"])
        assert max(p.step for p in s.tail(c.id, ["loss"])) == 6
    assert "[lanes] trained in lane driver" in lx.log(c) and "[started]" in lx.log(c)
    assert "[started]" not in lx.log(b) and "[lanes]" not in lx.log(b)
    assert read(driver.queue)["closed"]


def test_a_driver_killed_leaves_no_run_queued_and_the_next_add_starts_another(lx):
    driver = LaneDriver(lx.runs_dir / "races" / LANES_DIR, "k", ENV)
    a = _add(lx, driver, LONG, "a")
    b = _add(lx, driver, SHORT, "b")
    lx.wait_step(a, 2)
    os.killpg(driver.info["pgid"], signal.SIGKILL)
    driver.proc.wait(timeout=30)
    with lx.store() as s:  # liveness: a dead launcher's runs end, none stays queued or running
        deadline = time.monotonic() + 30
        while not (liveness.get_run(s, a.id).terminal and liveness.get_run(s, b.id).terminal):
            assert time.monotonic() < deadline, (
                liveness.get_run(s, a.id),
                liveness.get_run(s, b.id),
            )
            time.sleep(0.2)
        assert liveness.get_run(s, a.id).status == "crashed"
        assert liveness.get_run(s, b.id).status in ("crashed", "failed"), liveness.get_run(s, b.id)
    # The slot goes on: its next run gets a new process.
    c = _add(lx, driver, SHORT, "c")
    assert driver.started == 2 and c.pid == driver.proc.pid
    driver.close()
    assert lx.wait(c).status == "completed", lx.log(c)[-2000:]
