"""Provides the launcher: builds the `accelerate launch` command, starts it detached (own session,
output to RUN_DIR/train.log), stops it (SIGTERM to the process group, SIGKILL after a grace
period) and resumes it. Torch-free: it only starts processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tuitrain.config import Resolved, TrainConfig, save_yaml, to_dict

LAUNCH_FILE = "launch.json"  # pgid, pid, command and cwd of the latest start
LOG_FILE = "train.log"


class LaunchError(RuntimeError):
    """A run that cannot be started, stopped or resumed as asked; the message says why and what to do."""


def gpus_visible() -> bool:
    """Whether this machine has an NVIDIA GPU (checked without importing torch)."""
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


def build_command(cfg: TrainConfig, run_dir: str | Path, resume: bool = False) -> list[str]:
    """The `accelerate launch ... -m tuitrain.train RUN_DIR` argv for this config."""
    lc = cfg.launch
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if lc.accelerate_config:
        cmd += ["--config_file", lc.accelerate_config]
    cmd += ["--num_processes", str(lc.num_processes), "--num_machines", str(lc.num_machines)]
    cmd += ["--mixed_precision", cfg.training.mixed_precision, "--dynamo_backend", "no"]
    multi = lc.num_processes > 1 or lc.num_machines > 1
    if multi and not lc.accelerate_config:
        # On CPU too: `--cpu --num_processes 2` starts ONE process; --multi_gpu with
        # ACCELERATE_USE_CPU=1 (see build_env) starts N gloo ranks.
        cmd.append("--multi_gpu")
    if lc.num_machines > 1:
        cmd += [
            "--machine_rank",
            str(lc.machine_rank),
            "--main_process_ip",
            str(lc.main_process_ip),
        ]
    if multi:
        cmd += ["--main_process_port", str(lc.main_process_port)]
    if lc.gpu_ids and not _on_cpu(cfg):
        cmd += ["--gpu_ids", lc.gpu_ids]
    if _on_cpu(cfg) and not multi:
        cmd.append("--cpu")
    cmd += ["-m", "tuitrain.train", str(Path(run_dir).resolve())]
    if resume:
        cmd.append("--resume")
    return cmd


def _on_cpu(cfg: TrainConfig) -> bool:
    return cfg.launch.cpu or not gpus_visible()


def build_env(cfg: TrainConfig, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the training processes."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # train.log shows progress as it happens
    if _on_cpu(cfg):
        env["ACCELERATE_USE_CPU"] = "1"
    env.update(extra_env or {})
    return env


def _reap(proc: subprocess.Popen) -> None:
    # While the launching process lives, wait() in a thread so a finished run leaves no zombie
    # (a zombie's pid still looks alive to the store's crash detection).
    threading.Thread(target=proc.wait, daemon=True, name=f"reap-{proc.pid}").start()


def spawn(
    cfg: TrainConfig,
    run_dir: Path,
    resume: bool = False,
    extra_env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> subprocess.Popen:
    """Start training detached in its own session (SIGHUP-proof), appending to RUN_DIR/train.log."""
    cmd = build_command(cfg, run_dir, resume)
    cwd = cwd or os.getcwd()
    with open(run_dir / LOG_FILE, "ab") as log:
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=build_env(cfg, extra_env),
            cwd=cwd,
            start_new_session=True,
        )
    info = {
        "pid": proc.pid,
        "pgid": proc.pid,
        "host": socket.gethostname(),
        "command": cmd,
        "cwd": cwd,
        "resume": resume,
        "time": time.time(),
    }
    (run_dir / LAUNCH_FILE).write_text(json.dumps(info, indent=1))
    _reap(proc)
    return proc


def launch(
    resolved: Resolved,
    runs_dir: str | Path,
    name: str | None = None,
    sweep_id: str | None = None,
    extra_env: dict[str, str] | None = None,
):
    """Create the run record and runs/<id>/config.yaml, then start training detached; returns RunInfo."""
    from tuitrain.store import Store

    cfg = resolved.config
    with Store(runs_dir) as store:
        run = store.create_run(
            to_dict(cfg),
            resolved.derived.as_dict(),
            name=name or cfg.run.name,
            sweep_id=sweep_id,
            status="queued",
        )
        run_dir = store.run_dir(run.id)
        run_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(
            cfg, run_dir / "config.yaml", header=f"run {run.id}: the config this run trains with"
        )
        proc = spawn(cfg, run_dir, extra_env=extra_env)
        store.update_run(run.id, pid=proc.pid)
        return store.get_run(run.id)


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_group(run) -> int | None:
    """The run's process group id (from launch.json, else from its recorded pid), if it still exists."""
    f = Path(run.run_dir) / LAUNCH_FILE
    if f.is_file():
        pgid = json.loads(f.read_text()).get("pgid")
        if pgid and group_alive(pgid):
            return int(pgid)
    if run.pid and (not run.host or run.host == socket.gethostname()):  # a pid is per host
        try:
            pgid = os.getpgid(run.pid)
        except ProcessLookupError:
            return None
        return pgid if pgid > 0 else None  # killpg(0) would signal the caller's own group
    return None


def stop(run, grace_s: float = 30.0, runs_dir: str | Path | None = None) -> str:
    """SIGTERM the run's process group (the trainer saves and ends as stopped); SIGKILL after
    `grace_s` seconds. Returns what happened: 'not running', 'stopped' or 'killed'."""
    pgid = process_group(run)
    if pgid is None or pgid == os.getpgid(0):
        return "not running"
    os.killpg(
        pgid, signal.SIGTERM
    )  # the whole group: a 1-process `accelerate launch` forwards nothing
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return "stopped"
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return "stopped"
    from tuitrain.store import Store

    with Store(runs_dir or Path(run.run_dir).parent) as store:
        if store.get_run(run.id).status in ("running", "queued"):
            store.set_status(run.id, "stopped", f"killed after a {grace_s:g} s grace period")
            store.add_event(
                run.id, "error", f"did not stop within {grace_s:g} s of SIGTERM; killed"
            )
    return "killed"


def resume(run_ref: str, runs_dir: str | Path, extra_env: dict[str, str] | None = None):
    """Continue a run from its last checkpoint, in the same run (same id and metrics); returns RunInfo."""
    from tuitrain.config import load_config
    from tuitrain.store import Store

    with Store(runs_dir) as store:
        run = store.get_run(run_ref)
        if run.status in ("running", "queued") and process_group(run) is not None:
            raise LaunchError(
                f"run {run.id} is {run.status}; stop it first (tuitrain stop {run.id})"
            )
        if run.status == "completed":
            raise LaunchError(
                f"run {run.id} completed all its steps; nothing to resume (start a new run)"
            )
        run_dir = Path(run.run_dir)
        ckpts = sorted((run_dir / "checkpoints").glob("step-*/complete.json"))
        if not ckpts:
            raise LaunchError(
                f"run {run.id} has no complete checkpoint in {run_dir / 'checkpoints'}; start a new run instead"
            )
        cfg = load_config(run_dir / "config.yaml").config
        cwd = None
        f = run_dir / LAUNCH_FILE
        if f.is_file():
            cwd = json.loads(f.read_text()).get("cwd")
            cwd = cwd if cwd and Path(cwd).is_dir() else None
        store.set_status(run.id, "queued", "resuming")
        proc = spawn(cfg, run_dir, resume=True, extra_env=extra_env, cwd=cwd)
        store.update_run(run.id, pid=proc.pid)
        return store.get_run(run.id)
