"""Tests TuiTrainTracker, the Accelerate tracker: the docs/integrations.md example runs as written
and records its run; with two real ranks (accelerate launch, gloo on CPU) the main process alone
writes one run and a set_lr / stop reach both ranks after the same step."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuitrain.store import Store

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "integrations.md"
ENV = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def doc_example(name: str) -> str:
    """The ```python block of docs/integrations.md that opens with `# example: NAME`."""
    for code in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S):
        if re.match(rf"# example: {re.escape(name)}\b", code):
            return code
    raise AssertionError(f"no `# example: {name}` block in {DOC}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.e2e
@pytest.mark.timeout(150)
def test_doc_example_runs_as_written_and_records_its_run(tmp_path):
    (tmp_path / "accelerate_tracker.py").write_text(doc_example("accelerate_tracker.py"))
    proc = subprocess.run(
        [sys.executable, "accelerate_tracker.py"],
        cwd=tmp_path,
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=140,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with Store(tmp_path / "runs") as store:
        (run,) = store.list_runs()
        assert run.name == "my-tracked-loop" and run.status == "completed"
        assert run.config == {"lr": 1e-2, "batch_size": 32}  # init_trackers' config
        assert run.derived["source"] == "accelerate"
        assert {"loss", "lr"} <= set(store.metric_names(run.id))
        assert store.last_step(run.id) == run.summary["steps"] == 160  # 10 epochs x 16 batches


def test_tracker_is_a_general_tracker_with_accelerates_attributes(tmp_path):
    from accelerate.tracking import GeneralTracker

    from tuitrain.integrations.accelerate import TuiTrainTracker

    t = TuiTrainTracker(runs_dir=tmp_path / "runs", name="x")
    assert isinstance(t, GeneralTracker)
    assert (t.name, t.requires_logging_directory, t.main_process_only) == ("tuitrain", False, True)
    assert t.tracker is None  # no record until init_trackers / the first log
    assert not (tmp_path / "runs").exists()
    with pytest.raises(TypeError, match="config must be a dict"):
        TuiTrainTracker(config=["lr"])  # type: ignore[arg-type]


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_two_ranks_one_record_and_commands_at_the_same_step(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    script = Path(__file__).with_name("tracker_ddp_script.py")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
           "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), str(script), str(runs), str(out)]  # fmt: skip
    env = {**os.environ, **ENV, "ACCELERATE_USE_CPU": "1"}
    log = tmp_path / "train.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    store = None
    try:
        run = None
        deadline = time.monotonic() + 120
        while run is None and time.monotonic() < deadline and proc.poll() is None:
            if store is None and (runs / "tuitrain.db").exists():
                store = Store(runs)
            if store is not None:
                run = next((r for r in store.list_runs() if (r.last_step or 0) >= 10), None)
            time.sleep(0.1)
        assert run is not None, log.read_text()[-3000:]
        set_cmd = store.wait_command(store.send_command(run.id, "set_lr", {"lr": 0.002}), 60)
        assert set_cmd.status == "applied", (set_cmd, log.read_text()[-3000:])
        stop_cmd = store.wait_command(store.send_command(run.id, "stop"), 60)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["rows"] == ranks[1]["rows"]  # the same LR after every step, the same stop
    lr_after = {step: lr for step, lr, _ in ranks[0]["rows"]}
    assert lr_after[set_cmd.applied_step] == pytest.approx(0.002, rel=1e-9)
    assert lr_after[set_cmd.applied_step - 1] == pytest.approx(0.01, rel=1e-9)
    assert ranks[0]["rows"][-1][0] == stop_cmd.applied_step and ranks[0]["rows"][-1][2]
    info = store.get_run(run.id)
    assert info.status == "early_stopped" and len(store.list_runs()) == 1
    assert info.config == {"lr": 0.01, "ranks": 2}
    assert store.last_step(run.id) == stop_cmd.applied_step
    store.close()
