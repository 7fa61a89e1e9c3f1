"""Tests the custom-loop API with two real ranks (torchrun, gloo on CPU): one run record, and the
same LR change and stop on both ranks after the same step."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuitrain.store import Store

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.e2e
@pytest.mark.timeout(150)
def test_two_ranks_share_one_run_and_its_commands(tmp_path):
    pytest.importorskip("torch")
    runs, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    script = Path(__file__).with_name("ddp_loop_script.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(free_port()), str(script), str(runs), str(out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    with open(tmp_path / "train.log", "w") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        store, run = None, None
        deadline = time.monotonic() + 90
        while run is None and time.monotonic() < deadline and proc.poll() is None:
            if store is None and (runs / "tuitrain.db").exists():
                store = Store(runs)
            if store is not None:
                run = next((r for r in store.list_runs() if (r.last_step or 0) >= 10), None)
            time.sleep(0.1)
        assert run is not None, (tmp_path / "train.log").read_text()[-3000:]
        set_cmd = store.wait_command(store.send_command(run.id, "set_lr", {"lr": 0.002}), 30)
        stop_cmd = store.wait_command(store.send_command(run.id, "stop"), 30)
        assert proc.wait(timeout=60) == 0, (tmp_path / "train.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["rows"] == ranks[1]["rows"]  # same LR after every step, same stop step
    assert ranks[0]["run_id"] == ranks[1]["run_id"] == run.id
    assert ranks[1]["dir"] == str(run.run_dir)
    lr_after = {step: lr for step, lr, _ in ranks[0]["rows"]}
    assert lr_after[set_cmd.applied_step] == pytest.approx(0.002, rel=1e-9)
    assert ranks[0]["rows"][-1] == [
        stop_cmd.applied_step,
        pytest.approx(lr_after[stop_cmd.applied_step]),
        True,
    ]
    info = store.get_run(run.id)
    assert info.status == "early_stopped" and info.derived["num_processes"] == 2
    assert len(store.list_runs()) == 1
    assert store.last_step(run.id) == stop_cmd.applied_step
    store.close()
