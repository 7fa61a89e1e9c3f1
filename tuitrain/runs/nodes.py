"""Provides multi-node launching: whether a config starts a worker node, starting a worker node's
ranks (no run record: the main node's rank 0 writes the store), and the per-node commands and
Slurm batch script that `tuitrain run --print-launch / --print-sbatch` print."""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
import time
from pathlib import Path

from tuitrain.config import Resolved, TrainConfig, save_yaml
from tuitrain.runs.launch import LaunchError, build_command, spawn

# A worker node's ranks run in <runs_dir>/nodes/<name>-node<K>-<stamp>/: config.yaml, train.log,
# launch.json and that node's share of each checkpoint. Not a run of the store (the run record is
# the main node's), so `tuitrain ls` never lists a record that no process will ever update.
NODES_DIR = "nodes"


def is_worker(cfg: TrainConfig) -> bool:
    """Whether this config starts a worker node of a multi-node run (machine_rank > 0)."""
    return cfg.launch.num_machines > 1 and cfg.launch.machine_rank > 0


def start_worker(
    resolved: Resolved,
    runs_dir: str | Path,
    name: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen, Path]:
    """Start this worker node's ranks (`accelerate launch --machine_rank K ...`) detached, in
    RUNS_DIR/nodes/<name>-node<K>-<stamp>/; returns (launcher process, that folder).

    No run record is made: the ranks here never write the store (only global rank 0 does, on the
    main node), so a record here would stay `queued` forever. The caller waits for the process."""
    cfg = resolved.config
    if not is_worker(cfg):
        raise LaunchError(
            "start_worker is for machine_rank > 0 of a multi-node run;"
            f" this config has launch.num_machines={cfg.launch.num_machines},"
            f" launch.machine_rank={cfg.launch.machine_rank}"
        )
    stem = name or cfg.run.name or (Path(resolved.source).stem if resolved.source else "run")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in stem)[:40] or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    node_dir = (
        Path(runs_dir)
        / NODES_DIR
        / f"{safe}-node{cfg.launch.machine_rank}-{stamp}-{secrets.token_hex(2)}"
    )
    node_dir.mkdir(parents=True)
    save_yaml(
        cfg,
        node_dir / "config.yaml",
        header=f"node {cfg.launch.machine_rank} of {cfg.launch.num_machines}: the config its ranks train with",
    )
    try:
        proc = spawn(cfg, node_dir, extra_env=extra_env)
    except OSError as exc:
        raise LaunchError(f"could not start node {cfg.launch.machine_rank}'s ranks: {exc}") from exc
    return proc, node_dir


def node_command(argv: list[str], machine_rank: int | str) -> list[str]:
    """`argv` (a `tuitrain run CONFIG ...` command line) for one node: `--machine-rank K` added."""
    return [*argv, "--machine-rank", str(machine_rank)]


def per_node_lines(cfg: TrainConfig, argv: list[str]) -> list[str]:
    """One shell line per node (with a comment saying where to run it): `tuitrain run ...
    --machine-rank K`, each of which runs `accelerate launch --num_machines N --machine_rank K
    --main_process_ip IP --main_process_port P ...` on its machine."""
    lc = cfg.launch
    per = lc.num_processes // lc.num_machines
    out = []
    for k in range(lc.num_machines):
        where = (
            f"on the main machine ({lc.main_process_ip}); its rank 0 writes the run to the store"
            if k == 0
            else "on another machine; its ranks follow the main node (no run record here)"
        )
        out.append(f"# node {k} of {lc.num_machines} ({per} process(es)), {where}")
        out.append(shlex.join(node_command(argv, k)))
    return out


def sbatch_script(cfg: TrainConfig, argv: list[str], job_name: str = "tuitrain") -> str:
    """A Slurm batch script for a multi-node run: one task per node, each running `argv` (a
    `tuitrain run CONFIG ...` command line) with `--machine-rank $SLURM_NODEID` and the first
    node of the allocation as `launch.main_process_ip`; each task thus runs the same
    `accelerate launch` command as `tuitrain run --machine-rank K` (build_command)."""
    lc = cfg.launch
    per = lc.num_processes // lc.num_machines
    node_argv = [
        *argv,
        "--set",
        "launch.main_process_ip=$MAIN_IP",
        "--machine-rank",
        "$SLURM_NODEID",
    ]
    # shlex.join quotes '$' away; the two variables must expand in the task's shell.
    line = shlex.join(node_argv).replace(
        "'launch.main_process_ip=$MAIN_IP'", '"launch.main_process_ip=$MAIN_IP"'
    )
    line = line.replace("'$SLURM_NODEID'", '"$SLURM_NODEID"')
    # The accelerate command each task ends up running (build_command), shown with its variables.
    shown = shlex.join(build_command(cfg, "/RUN_DIR"))
    shown = shown.replace(str(Path("/RUN_DIR").resolve()), "RUNS_DIR/RUN_ID")
    shown = shown.replace(f"--machine_rank {lc.machine_rank}", "--machine_rank $SLURM_NODEID")
    shown = shown.replace(
        f"--main_process_ip {shlex.quote(str(lc.main_process_ip))}", "--main_process_ip $MAIN_IP"
    )
    gpus = "" if cfg.launch.cpu else f"#SBATCH --gpus-per-node={per}\n"
    return (
        "#!/bin/bash\n"
        f"#SBATCH --job-name={job_name}\n"
        f"#SBATCH --nodes={lc.num_machines}\n"
        "#SBATCH --ntasks-per-node=1\n"
        f"{gpus}"
        f"#SBATCH --output={job_name}-%j.out\n"
        "# Submit with `sbatch FILE`. One task per node: node 0 (the first of the allocation) is\n"
        "# the main node, its rank 0 records the run in the runs directory; the others follow it.\n"
        "# Each task runs `tuitrain run ... --machine-rank $SLURM_NODEID`, which runs:\n"
        f"#   {shown}\n"
        "# The nodes need this tuitrain installed (activate its environment before sbatch).\n"
        "set -euo pipefail\n"
        f"cd {shlex.quote(os.getcwd())}\n"
        'MAIN_IP=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)\n'
        "export MAIN_IP\n"
        f"srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c {shlex.quote(line)}\n"
    )
