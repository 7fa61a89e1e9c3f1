"""Tests TuiTrainCallback with two real ranks (accelerate launch, gloo on CPU): both ranks apply
set_lr and stop after the same optimizer step, and only rank 0 writes to the store."""

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

SCRIPT = Path(__file__).with_name("hf_ddp_script.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_two_ranks_apply_commands_at_the_same_step(tmp_path):
    pytest.importorskip("transformers")
    runs, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    # --multi_gpu with ACCELERATE_USE_CPU=1 starts N gloo ranks (`--cpu` alone starts one).
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), str(SCRIPT), str(runs), str(out)]  # fmt: skip
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    log = open(tmp_path / "train.log", "w")
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        store = None
        deadline = time.monotonic() + 150
        run = None
        while time.monotonic() < deadline and proc.poll() is None:
            if store is None and (runs / "tuitrain.db").exists():
                store = Store(runs)
            if store is not None:
                found = [r for r in store.list_runs() if (r.last_step or 0) >= 10]
                if found:
                    run = found[0]
                    break
            time.sleep(0.2)
        assert run is not None, (tmp_path / "train.log").read_text()[-3000:]
        set_cmd = store.wait_command(store.send_command(run.id, "set_lr", {"lr": 4e-4}), timeout=30)
        stop_cmd = store.wait_command(store.send_command(run.id, "stop"), timeout=30)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
    assert set_cmd.status == "applied" and stop_cmd.status == "applied"
    s1, s2 = set_cmd.applied_step, stop_cmd.applied_step
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    rows0, rows1 = ranks[0]["rows"], ranks[1]["rows"]
    assert rows0 == rows1  # same LR after every step, same stop step, on both ranks
    by_step = {step: (lr, stop) for step, lr, stop in rows0}
    assert by_step[s1][0] == pytest.approx(4e-4, rel=1e-9)
    assert by_step[s1 - 1][0] != pytest.approx(4e-4, rel=1e-3)
    assert rows0[-1][0] == s2 and rows0[-1][2] is True
    info = store.get_run(run.id)
    assert info.status == "early_stopped" and info.derived["num_processes"] == 2
    assert info.derived["effective_batch"] == 8
    assert len(store.list_runs()) == 1  # rank 1 registered nothing
    assert (out / f"checkpoint-{s2}").is_dir()
    store.close()
