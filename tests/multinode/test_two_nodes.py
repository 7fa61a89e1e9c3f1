"""Tests a real two-node run on one machine: two `tuitrain run --machine-rank 0|1` processes of one
CPU rank each, rendezvous over localhost (gloo). The main node records the run and rank 0 alone
writes the store; a set_lr reaches both ranks at the same step; the worker node exits with its
ranks' code and leaves no run record behind; the worker machine's sys/ metrics reach the store."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.train.helpers import DEMO, ENV, REPO, TINY, free_port
from tuitrain.runs.nodes import NODES_DIR
from tuitrain.store import DB_NAME, Store

pytestmark = pytest.mark.e2e

DEADLINE_S = 240.0  # the whole two-node run, both nodes, on a loaded 2-core machine


class Nodes:
    """The two `tuitrain run` processes of a test, and every process group they started."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.procs: list[subprocess.Popen] = []
        self.outs: list[Path] = []

    def start(self, runs_dir: Path, sets: list[str], rank: int) -> subprocess.Popen:
        out = self.tmp / f"node{rank}.out"
        argv = [sys.executable, "-m", "tuitrain", "--runs-dir", str(runs_dir), "run", str(DEMO)]
        for kv in sets:
            argv += ["--set", kv]
        argv += ["--machine-rank", str(rank)]
        env = {**os.environ, **ENV, "PYTHONPATH": str(REPO)}
        with open(out, "wb") as fh:
            proc = subprocess.Popen(
                argv, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.procs.append(proc)
        self.outs.append(out)
        return proc

    def output(self, i: int) -> str:
        return self.outs[i].read_text(errors="replace") if self.outs[i].exists() else ""

    def report(self) -> str:
        text = [f"--- node {i} stdout ---\n{self.output(i)[-2000:]}" for i in range(len(self.outs))]
        for log in self.tmp.rglob("train.log"):
            text.append(f"--- {log} ---\n{log.read_text(errors='replace')[-2500:]}")
        return "\n".join(text)

    def kill_all(self) -> None:
        """SIGKILL the `tuitrain run` processes and every launcher group they recorded."""
        groups = {p.pid for p in self.procs}
        for f in self.tmp.rglob("launch.json"):
            try:
                groups.add(json.loads(f.read_text())["pgid"])
            except (OSError, ValueError, KeyError):
                pass
        for g in groups:
            try:
                os.killpg(g, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self.procs:
            p.wait(timeout=10)


@pytest.fixture
def nodes(tmp_path):
    n = Nodes(tmp_path)
    yield n
    n.kill_all()


def _wait(cond, deadline: float, nodes: Nodes, what: str):
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        if any(p.poll() is not None for p in nodes.procs) and not value:
            value = cond()  # one last look: a node that ended may have written it just before
            if value:
                return value
            pytest.fail(f"a node exited before {what}:\n{nodes.report()}")
        time.sleep(0.25)
    pytest.fail(f"no {what} within the deadline:\n{nodes.report()}")


def _main_run(runs_dir: Path, step: int):
    """The main node's run once the store holds a loss at `step` or later, else None."""
    if not (runs_dir / DB_NAME).is_file():
        return None
    with Store(runs_dir) as s:
        runs = s.list_runs()
        if runs and any(p.step >= step for p in s.tail(runs[0].id, ["loss"])):
            return runs[0]
    return None


def _applied(log: str, kind: str) -> dict[str, int]:
    return {r: int(s) for r, s in re.findall(rf"\[rank (\d)\] step (\d+): applied {kind}", log)}


@pytest.mark.timeout(300)
def test_two_nodes_on_localhost_steer_together_and_both_exit_zero(nodes, tmp_path):
    deadline = time.monotonic() + DEADLINE_S
    main_dir, worker_dir = tmp_path / "node0-runs", tmp_path / "node1-runs"  # two "machines"
    sets = [
        *TINY,
        "launch.num_machines=2",
        "launch.num_processes=2",
        "launch.main_process_ip=127.0.0.1",
        f"launch.main_process_port={free_port()}",
        "launch.cpu=true",
        "training.max_steps=3000",
        "training.eval_every=1000",
        "scheduler.name=constant",
        "scheduler.warmup_ratio=0",
        "doctor.enabled=false",
    ]
    main = nodes.start(main_dir, sets, 0)
    worker = nodes.start(worker_dir, sets, 1)
    run = _wait(lambda: _main_run(main_dir, 5), deadline, nodes, "step 5 in the main node's store")
    with Store(main_dir) as s:
        cmd = s.send_command(run.id, "set_lr", {"lr": 2.5e-4})
        applied = s.wait_command(cmd, timeout=max(1.0, deadline - time.monotonic()))
        assert applied.status == "applied", (applied, nodes.report())
        stop_cmd = s.send_command(run.id, "stop")
    codes = []
    for proc in (main, worker):
        try:
            codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            pytest.fail(f"node pid {proc.pid} did not exit:\n{nodes.report()}")
    assert codes == [0, 0], nodes.report()

    # The main node: one run record, ended by the stop, world size 2; rank 0 wrote it.
    with Store(main_dir) as s:
        (info,) = s.list_runs()
        assert info.status == "early_stopped" and info.exit_reason == "user", nodes.report()
        assert s.get_command(stop_cmd).status == "applied"
        lrs = {p.step: p.value for p in s.tail(run.id, ["lr"])}
        names = set(s.metric_names(run.id))
        node1 = {k: v.value for k, v in s.last_values(run.id).items() if k.startswith("sys/node1_")}
    assert info.derived.get("num_processes") == 2, info.derived
    # The worker node: no run record anywhere (nothing stays queued), its ranks' log in nodes/.
    assert not (worker_dir / DB_NAME).exists()
    (node_dir,) = (worker_dir / NODES_DIR).iterdir()
    worker_log = (node_dir / "train.log").read_text(errors="replace")
    main_log = (Path(info.run_dir) / "train.log").read_text(errors="replace")
    assert "node ranks exited with code 0" in nodes.output(1), nodes.report()

    # The same step on both ranks, each seen from its own node's log.
    s_lr = applied.applied_step
    assert _applied(main_log, "set_lr") == {"0": s_lr}, nodes.report()
    assert _applied(worker_log, "set_lr") == {"1": s_lr}, nodes.report()
    assert "applied set_lr 0.00025" in worker_log
    stops = _applied(main_log, "stop"), _applied(worker_log, "stop")
    assert stops[0]["0"] == stops[1]["1"], stops
    assert lrs[s_lr + 1] == pytest.approx(2.5e-4) and lrs[s_lr] == pytest.approx(1e-3)
    assert "Traceback" not in main_log + worker_log

    # The worker node's machine reached the main node's store through the per-window all-gather.
    assert "sys/cpu_percent" in names, sorted(names)  # the main node's own sampler
    assert node1.get("sys/node1_cpu_count", 0) >= 1, (sorted(names), nodes.report())
    assert node1.get("sys/node1_ram_total_gb", 0) > 0, node1
    assert not any(n.startswith("sys/node0_") for n in names), sorted(names)
