"""Tests `tuitrain run --print-launch` / `--print-sbatch`: the per-node commands parse and build the
`accelerate launch --num_machines/--machine_rank/--main_process_ip/--main_process_port` command of
their node; the Slurm script runs for real on one machine, with stand-ins for Slurm's `srun` and
`scontrol` (two "nodes" of one CPU rank over localhost), and each node runs that same command."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.helpers import DEMO, ENV, REPO, TINY, free_port
from tuitrain.cli import build_parser
from tuitrain.config import load_config
from tuitrain.runs.launch import build_command
from tuitrain.runs.nodes import NODES_DIR
from tuitrain.store import Store

NODES = [
    "launch.num_machines=2",
    "launch.num_processes=2",
    "launch.main_process_ip=10.1.2.3",
    "launch.main_process_port=29777",
]


def tuitrain(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tuitrain", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, **ENV, "PYTHONPATH": str(REPO)},
    )


def _sets(sets: list[str]) -> list[str]:
    return [a for kv in sets for a in ("--set", kv)]


def _node_config(line: str):
    """The config `tuitrain run` would train with for this printed command line."""
    argv = shlex.split(line)
    assert argv[:1] == ["tuitrain"]
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.machine_rank is not None
    sets = [*args.sets, f"launch.machine_rank={args.machine_rank}"]
    return load_config(args.config, env=args.env, sets=sets).config


def test_print_launch_prints_one_command_per_node_each_building_its_accelerate_command():
    out = tuitrain("run", str(DEMO), *_sets(NODES), "--print-launch")
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == 2
    for k, line in enumerate(lines):
        cfg = _node_config(line)
        cmd = build_command(cfg, "/tmp/r")
        flags = {cmd[i]: cmd[i + 1] for i in range(len(cmd) - 1) if cmd[i].startswith("--")}
        assert flags["--num_machines"] == "2" and flags["--machine_rank"] == str(k)
        assert flags["--main_process_ip"] == "10.1.2.3"
        assert flags["--main_process_port"] == "29777"
        assert flags["--num_processes"] == "2"
    assert "main machine (10.1.2.3)" in out.stdout  # says where node 0 runs


def test_print_launch_and_sbatch_need_a_multi_node_config():
    for flag in ("--print-launch", "--print-sbatch"):
        out = tuitrain("run", str(DEMO), flag)
        assert out.returncode == 2 and "launch.num_machines" in out.stderr, out.stderr
    out = tuitrain("run", str(DEMO), *_sets(NODES), "--machine-rank", "2", "--print-launch")
    assert out.returncode == 2 and "launch.machine_rank" in out.stderr  # rank 2 of 2 machines


FAKE_SRUN = """#!/bin/bash
# Stand-in for Slurm's srun on one machine: one task per "node" (SLURM_JOB_NUM_NODES of them),
# each with its SLURM_NODEID, all in parallel; fails if any task fails (as --kill-on-bad-exit).
while [[ "$1" == --* ]]; do shift; done
pids=()
for ((n = 0; n < SLURM_JOB_NUM_NODES; n++)); do
  SLURM_NODEID=$n SLURM_PROCID=$n "$@" > "$SRUN_LOGS/task$n.out" 2>&1 &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
exit $rc
"""
FAKE_SCONTROL = """#!/bin/bash
# Stand-in for `scontrol show hostnames LIST`: this machine is every node.
echo 127.0.0.1
"""


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_sbatch_script_runs_both_nodes_with_the_same_accelerate_command(tmp_path):
    runs = tmp_path / "runs"
    sets = [*TINY, *NODES[:3], f"launch.main_process_port={free_port()}", "launch.cpu=true"]
    sets += ["doctor.enabled=false", "training.max_steps=20"]
    out = tuitrain("--runs-dir", str(runs), "run", str(DEMO), *_sets(sets), "--print-sbatch", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    script = tmp_path / "job.sbatch"
    script.write_text(out.stdout)
    assert "#SBATCH --nodes=2" in out.stdout and "#SBATCH --ntasks-per-node=1" in out.stdout
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    fake = tmp_path / "bin"
    fake.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (fake / name).write_text(text)
        (fake / name).chmod(0o755)
    logs = tmp_path / "tasks"
    logs.mkdir()
    env = {**os.environ, **ENV, "PYTHONPATH": str(REPO), "SRUN_LOGS": str(logs)}
    env |= {"SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "node[1-2]"}
    env["PATH"] = os.pathsep.join([str(fake), str(Path(sys.executable).parent), env["PATH"]])
    proc = subprocess.Popen(["bash", str(script)], cwd=tmp_path, env=env, start_new_session=True)
    try:
        rc = proc.wait(timeout=240)
    except subprocess.TimeoutExpired:
        rc = None
    finally:
        groups = {proc.pid} | {json.loads(f.read_text())["pgid"] for f in runs.rglob("launch.json")}
        for g in groups:
            try:
                os.killpg(g, signal.SIGKILL)
            except ProcessLookupError:
                pass
    report = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(logs.iterdir()))
    report += "".join(f"\n--- {p}\n{p.read_text()[-2000:]}" for p in runs.rglob("train.log"))
    assert rc == 0, report
    with Store(runs) as s:
        (run,) = s.list_runs()  # one record: the main node's; none from the worker
        assert run.status == "completed", report
    (node_dir,) = (runs / NODES_DIR).iterdir()
    for k, d in ((0, Path(run.run_dir)), (1, node_dir)):
        ran = json.loads((d / "launch.json").read_text())["command"]
        cfg = load_config(d / "config.yaml").config
        assert cfg.launch.machine_rank == k and cfg.launch.main_process_ip == "127.0.0.1"
        # What `tuitrain run --machine-rank K` runs (the interpreter: the `tuitrain` script's own).
        assert ran[1:] == build_command(cfg, d)[1:]
        assert ran[ran.index("--machine_rank") + 1] == str(k)


def test_readme_multi_node_commands_run_as_written(tmp_path):
    import re

    text = (REPO / "README.md").read_text()
    section = text.split("## Several machines", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    lines = [ln for ln in block.splitlines() if ln.startswith("tuitrain run ")]
    assert any("--print-launch" in ln for ln in lines)
    assert any("--print-sbatch" in ln for ln in lines)
    (tmp_path / "configs").symlink_to(REPO / "configs")  # the README runs from the repo root
    env = {**os.environ, **ENV, "PYTHONPATH": str(REPO)}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    for line in lines:
        out = subprocess.run(
            ["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, (line, out.stderr)
        if "--print-launch" in line:
            assert out.stdout.count("--machine-rank") == 2
    script = tmp_path / "demo.sbatch"
    assert "#SBATCH --nodes=2" in script.read_text()
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
