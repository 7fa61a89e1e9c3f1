"""Tests SIGTERM handling of runs reported from user scripts (what `tuitrain stop` sends): a
polling loop and the HF callback stop cleanly, a loop that never polls exits; all end `stopped`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuitrain.store import Store

ROOT = Path(__file__).resolve().parents[2]

POLLING = """
import sys, time, tuitrain
run = tuitrain.init(name="t", runs_dir=sys.argv[1])
status = "completed"
for step in range(1, 100_000):
    run.log({"loss": 1.0 / step}, step=step)
    print("logged", step, flush=True)
    for cmd in run.poll(step):
        if cmd.kind == "stop":
            run.ack(cmd, step)
            status = "early_stopped" if cmd.id is not None else "stopped"
    if status != "completed":
        run.event("checkpoint", "saved before stopping")
        break
    time.sleep(0.005)
run.finish(status)
"""

SILENT = """
import sys, time, tuitrain
run = tuitrain.init(name="t", runs_dir=sys.argv[1])
for step in range(1, 100_000):
    run.log({"loss": 1.0 / step}, step=step)
    print("logged", step, flush=True)
    time.sleep(0.005)
run.finish()
"""


def start(tmp_path: Path, argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    with open(tmp_path / "script.log", "w") as log:  # the child keeps its own copy of the fd
        return subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_for_steps(runs: Path, proc: subprocess.Popen, steps: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if (runs / "tuitrain.db").exists():
            with Store(runs) as store:
                found = [r for r in store.list_runs() if (r.last_step or 0) >= steps]
            if found:
                return found[0].id
        time.sleep(0.1)
    raise AssertionError(f"no run with {steps} steps logged (exit code {proc.poll()})")


def terminate(proc: subprocess.Popen, timeout: float) -> int:
    try:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("script", "code"), [(POLLING, 0), (SILENT, 128 + signal.SIGTERM)], ids=["polling", "silent"]
)
def test_api_run_ends_stopped_on_sigterm(tmp_path, script, code):
    runs = tmp_path / "runs"
    proc = start(tmp_path, [sys.executable, "-c", script, str(runs)])
    run_id = wait_for_steps(runs, proc, 3, timeout=60)
    assert terminate(proc, timeout=30) == code, (tmp_path / "script.log").read_text()
    with Store(runs) as store:
        run = store.get_run(run_id)
        assert run.status == "stopped"
        kinds = [e.kind for e in store.events(run_id)]
        assert kinds[-1] == "finished"
        assert ("checkpoint" in kinds) == (script is POLLING)  # only the polling loop saved
        # Nothing queued is lost on SIGTERM: every step the script logged is in the store.
        printed = [
            ln
            for ln in (tmp_path / "script.log").read_text().splitlines()
            if ln.startswith("logged ")
        ]
        last = int(printed[-1].split()[1])
        steps = [p.step for p in store.tail(run_id, ["loss"])]
        assert steps == list(range(1, len(steps) + 1)) and steps[-1] >= last


@pytest.mark.e2e
@pytest.mark.timeout(150)
def test_hf_trainer_saves_and_ends_stopped_on_sigterm(tmp_path):
    pytest.importorskip("transformers")
    runs, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    script = Path(__file__).with_name("hf_ddp_script.py")
    proc = start(tmp_path, [sys.executable, str(script), str(runs), str(out)])
    run_id = wait_for_steps(runs, proc, 5, timeout=120)
    assert terminate(proc, timeout=60) == 0, (tmp_path / "script.log").read_text()[-3000:]
    with Store(runs) as store:
        run = store.get_run(run_id)
        assert run.status == "stopped"
        step = run.summary["steps"]
        assert (out / f"checkpoint-{step}").is_dir()
        assert any("SIGTERM" in e.message for e in store.events(run_id))
