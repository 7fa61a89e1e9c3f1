"""Provides the launcher: builds the `accelerate launch` command, starts it detached (own session,
output to RUN_DIR/train.log), stops it (SIGTERM to its training processes, SIGKILL to its process
groups after a grace period) and resumes it; a worker node of a multi-node run is started by
tuitrain.runs.nodes. Torch-free: it only starts processes. Whether a run's processes are alive and which group may be
signalled is decided by tuitrain.runs.process and tuitrain.runs.liveness."""

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
from tuitrain.runs.process import (
    LAUNCH_FILE,
    LOG_FILE,
    group_alive,
    launch_info,
    proc_start,
    signal_target,
    trainer_pids,
)

__all__ = [
    "LAUNCH_FILE",
    "LOG_FILE",
    "LaunchError",
    "build_command",
    "build_env",
    "group_alive",
    "launch",
    "launch_lane",
    "process_group",
    "resume",
    "spawn",
    "spawn_command",
    "stop",
]


class LaunchError(RuntimeError):
    """A run that cannot be started, stopped or resumed as asked; the message says why and what to do."""


def gpus_visible() -> bool:
    """Whether this machine has an NVIDIA GPU (checked without importing torch)."""
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


def build_command(
    cfg: TrainConfig, run_dir: str | Path, resume: bool = False, module: str = "tuitrain.train"
) -> list[str]:
    """The `accelerate launch ... -m tuitrain.train RUN_DIR` argv for this config (`module`
    tuitrain.train.lanes with a lane queue file for RUN_DIR: several runs in one process)."""
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
    cmd += ["-m", module, str(Path(run_dir).resolve())]
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


def _reap(proc: subprocess.Popen, log_path: Path) -> None:
    # While the launching process lives, wait() in a thread so a finished run leaves no zombie,
    # and say in train.log how the launcher ended when it did not end well: for a launcher that
    # dies before training starts, that line is the reason the run is failed with. The line is
    # written before the launcher is reaped (waitid with WNOWAIT), and liveness leaves a queued
    # run alone while its launcher is an unreaped zombie: no reader sees it dead without it.
    def wait() -> None:
        code = _exit_code_unreaped(proc.pid)
        if code is None:
            code = proc.wait()
        if code != 0:
            how = f"was killed by {_signame(-code)}" if code < 0 else f"exited with code {code}"
            try:
                with open(log_path, "a", encoding="utf-8") as fh:
                    fh.write(f"[tuitrain] launcher pid {proc.pid} {how}\n")
            except OSError:
                pass
        proc.wait()

    threading.Thread(target=wait, daemon=True, name=f"reap-{proc.pid}").start()


def _exit_code_unreaped(pid: int) -> int | None:
    """Wait for the child to end without reaping it; its code as Popen.returncode gives it
    (-N: killed by signal N), or None where waitid is missing or another wait reaped it."""
    if not hasattr(os, "waitid"):
        return None
    try:
        r = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    except (ChildProcessError, OSError):
        return None
    if r is None:
        return None
    return r.si_status if r.si_code == os.CLD_EXITED else -r.si_status


def _signame(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def spawn(
    cfg: TrainConfig,
    run_dir: Path,
    resume: bool = False,
    extra_env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> subprocess.Popen:
    """Start training detached in its own session (SIGHUP-proof), appending to RUN_DIR/train.log."""
    cmd = build_command(cfg, run_dir, resume)
    return spawn_command(
        cmd, cfg, run_dir / LOG_FILE, run_dir / LAUNCH_FILE, resume, extra_env, cwd
    )


def spawn_command(
    cmd: list[str],
    cfg: TrainConfig,
    log_path: Path,
    info_path: Path,
    resume: bool = False,
    extra_env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> subprocess.Popen:
    """Start `cmd` detached in its own session, output appended to `log_path`, its launch record
    (pid, pgid, start time, host, command) written to `info_path`."""
    cwd = cwd or os.getcwd()
    with open(log_path, "ab") as log:
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
        # Start time of the launcher (/proc/PID/stat field 22): a later signal goes to this group
        # only while its leader is this very process, never to a process that reused the pid.
        "start": proc_start(proc.pid),
        "host": socket.gethostname(),
        "command": cmd,
        "cwd": cwd,
        "resume": resume,
        "time": time.time(),
    }
    info_path.write_text(json.dumps(info, indent=1))
    _reap(proc, log_path)
    subprocess.Popen([sys.executable, "-m", "tuitrain.notify", "serve", str(log_path.parent.parent)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # the runs dir's notifier (tuitrain.notify.daemon); it exits at once if none is configured or one runs  # fmt: skip
    return proc


def launch(
    resolved: Resolved,
    runs_dir: str | Path,
    name: str | None = None,
    sweep_id: str | None = None,
    extra_env: dict[str, str] | None = None,
    exact_name: bool = False,
    parent: str | None = None,
    fork_step: int | None = None,
    files: dict[str, str] | None = None,
):
    """Create the run record and runs/<id>/config.yaml, then start training detached; returns RunInfo.
    The run's name is `name`, else run.name, else the config file's stem, made unique (demo,
    demo-2, ...); with exact_name (an explicit --name) a taken name is InvalidValue instead."""
    from tuitrain.store import Store

    cfg = resolved.config
    with Store(runs_dir) as store:
        run, run_dir = _register(
            store, resolved, name, sweep_id, exact_name, parent, fork_step, files
        )
        try:
            proc = spawn(cfg, run_dir, extra_env=extra_env)
        except OSError as exc:
            store.set_status(run.id, "failed", f"could not start the launcher: {exc}")
            raise LaunchError(f"could not start training for run {run.id}: {exc}") from exc
        store.mark_launched(run.id, proc.pid, _launch_start(run_dir, proc.pid))
        return store.get_run(run.id)


def launch_lane(
    resolved: Resolved,
    runs_dir: str | Path,
    driver: dict,
    name: str | None = None,
    parent: str | None = None,
    fork_step: int | None = None,
    files: dict[str, str] | None = None,
):
    """Create a run that an already started lane driver (tuitrain.train.lanes, `driver`: its
    launch record) will train in its own process after the runs queued before it; the run is
    queued with the driver's pid until then. Returns (RunInfo, run_dir); the caller appends
    run_dir to the driver's queue."""
    from tuitrain.store import Store

    with Store(runs_dir) as store:
        run, run_dir = _register(store, resolved, name, None, False, parent, fork_step, files)
        (run_dir / LAUNCH_FILE).write_text(json.dumps(driver, indent=1))
        store.mark_launched(run.id, driver["pid"], driver.get("start"))
        return store.get_run(run.id), run_dir


def _register(store, resolved, name, sweep_id, exact_name, parent, fork_step, files):
    """The queued run record and its directory: config.yaml and any extra files."""
    cfg = resolved.config
    run = store.create_run(
        to_dict(cfg),
        resolved.derived.as_dict(),
        name=name or cfg.run.name or (Path(resolved.source).stem if resolved.source else None),
        sweep_id=sweep_id,
        status="queued",
        exact_name=exact_name,
        parent=parent,
        fork_step=fork_step,
    )
    run_dir = store.run_dir(run.id)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, run_dir / "config.yaml", header=f"run {run.id}: the config this run trains with")
    for fname, text in (files or {}).items():  # e.g. branch.json, read by the trainer at start
        (run_dir / fname).write_text(text)
    return run, run_dir


def _launch_start(run_dir: Path, pid: int) -> int | None:
    # The start time spawn() recorded (read right after the fork, before the launcher can exit).
    try:
        start = json.loads((run_dir / LAUNCH_FILE).read_text()).get("start")
    except (OSError, ValueError):
        return None
    return start if isinstance(start, int) else None


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # ended between the check and the signal


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # ended between the look-up and the signal


def process_group(run) -> int | None:
    """The run's process group if it still lives and is verifiably this run's (any status)."""
    return signal_target(run, after_end=True).pgid


def stop(
    run, grace_s: float = 30.0, runs_dir: str | Path | None = None, after_end: bool = False
) -> str:
    """SIGTERM the run's processes (the trainer saves and ends as stopped); SIGKILL every group
    of the run after `grace_s` seconds. Returns what happened: 'not running', 'stopped' or 'killed'.

    Only groups that tuitrain.runs.process.signal_target verifies are signalled: the run
    (re-read from the store) is not terminal (after_end=True: cleaning up processes that outlive
    the final status), was started on this host, and each group is the recorded launcher's (same
    start time) or holds a trainer of this run; a reused pid is never signalled."""
    from tuitrain.runs import liveness
    from tuitrain.store import RunNotFound, Store

    with Store(runs_dir or Path(run.run_dir).parent) as store:
        try:
            run = liveness.get_run(store, run.id)  # fresh status (and liveness) before any signal
        except RunNotFound:
            return "not running"
    target = signal_target(run, after_end=after_end)
    if not target.pgids:
        return "not running"
    if run.status == "queued" and launch_info(run.run_dir).get("lanes"):
        # Waiting in a lane driver that trains another run now: the driver skips a run that is
        # no longer queued, and a signal would stop the run it is training instead.
        with Store(runs_dir or Path(run.run_dir).parent) as store:
            store.set_status(run.id, "stopped", "stopped before training started")
        return "stopped"
    if run.status == "queued":
        # Stopped before its trainer marked it running: a launcher that exits on our SIGTERM must
        # read as stopped, not as "died before training started". A trainer that has already
        # installed its SIGTERM handler still marks itself running and then ends as stopped.
        with Store(runs_dir or Path(run.run_dir).parent) as store:
            store.set_status(run.id, "stopped", "stopped before training started")
    # SIGTERM to the training processes themselves, not to their launcher: `accelerate launch`
    # answers a SIGTERM by killing its child 5 s later, and a trainer still starting up needs
    # longer than that to reach a step, save and record `stopped` (killed, it read as crashed).
    # The launcher exits once its child has. No trainer yet (the launcher is still importing):
    # the launcher's group, so it never starts one; torchrun forwards it to ranks it started.
    trainers = trainer_pids(target.pgids)
    for pid in trainers:
        _kill(pid, signal.SIGTERM)
    if not trainers:
        leader = launch_info(run.run_dir).get("pgid")
        first = target.pgids[:1] if target.pgids[0] == leader else target.pgids
        for g in first:
            _killpg(g, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not any(group_alive(g) for g in target.pgids):
            return "stopped"
        time.sleep(0.1)
    # Every group of the run, looked up again: a rank started meanwhile dies too.
    groups = set(target.pgids) | set(signal_target(run, after_end=True).pgids)
    if not any(group_alive(g) for g in groups):
        return "stopped"
    # The status first: once the processes are gone, any reader would take the run for crashed.
    with Store(runs_dir or Path(run.run_dir).parent) as store:
        if store.get_run(run.id).status in ("running", "queued"):
            store.set_status(run.id, "stopped", f"killed after a {grace_s:g} s grace period")
            store.add_event(
                run.id, "error", f"did not stop within {grace_s:g} s of SIGTERM; killed"
            )
    for g in groups:
        _killpg(g, signal.SIGKILL)
    return "killed"


def resume(
    run_ref: str,
    runs_dir: str | Path,
    extra_env: dict[str, str] | None = None,
    notes: list[str] | None = None,
):
    """Continue a run from its newest valid checkpoint, in the same run (same id and metrics);
    returns RunInfo. `notes` gets a line per damaged checkpoint skipped."""
    from tuitrain.config import load_config
    from tuitrain.runs import liveness
    from tuitrain.runs.checkpoints import CheckpointError, choose_resume
    from tuitrain.store import Store

    with Store(runs_dir) as store:
        run = liveness.get_run(store, run_ref)
        if run.status in ("running", "queued") and process_group(run) is not None:
            raise LaunchError(
                f"run {run.id} is {run.status}; stop it first (tuitrain stop {run.id})"
            )
        if run.status == "completed":
            raise LaunchError(
                f"run {run.id} completed all its steps; nothing to resume (start a new run)"
            )
        run_dir = Path(run.run_dir)
        # Checked before launching (sizes and hashes against each manifest): a damaged newest
        # checkpoint is named and skipped; none usable refuses, leaving the status as it was.
        try:
            _, skipped = choose_resume(run_dir)
        except CheckpointError as exc:
            raise LaunchError(f"run {run.id}: {exc}") from None
        if notes is not None:
            notes.extend(skipped)
        cfg = load_config(run_dir / "config.yaml").config
        cwd = None
        f = run_dir / LAUNCH_FILE
        if f.is_file():
            cwd = json.loads(f.read_text()).get("cwd")
            cwd = cwd if cwd and Path(cwd).is_dir() else None
        proc = spawn(cfg, run_dir, resume=True, extra_env=extra_env, cwd=cwd)
        # Status, pid and start time in one write: never queued with the old, dead pid.
        store.mark_launched(run.id, proc.pid, _launch_start(run_dir, proc.pid), reason="resuming")
        return store.get_run(run.id)
