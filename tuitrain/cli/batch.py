"""Provides `tuitrain run CONFIG`: launch a run and follow it in the foreground (progress line on
a terminal, plain lines otherwise); Ctrl-C stops it gracefully, a second Ctrl-C kills it. For a
multi-node run: `--machine-rank K` starts one node (a worker node waits for its ranks and exits
with their code), `--print-launch` / `--print-sbatch` print the per-node commands / a Slurm script."""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from tuitrain.cli import exits
from tuitrain.runs import liveness

OK_STATUSES = ("completed", "early_stopped")
EXIT_RUN_NOT_OK = exits.FAILED
EXIT_INTERRUPTED = exits.INTERRUPTED
FOLLOWED = ("loss", "lr", "val_loss", "val_accuracy", "val_perplexity")
PLAIN_EVERY_S = 10.0  # without a TTY, one progress line per this many seconds keeps CI logs short
PLAIN_STALLED_S = 60.0  # ...and while the step does not move, one line per minute shows it is alive
HARD_STOP_WAIT_S = 15.0
EXIT_WAIT_S = 60.0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `run`."""
    from tuitrain.cli import add_config_source

    p = sub.add_parser(
        "run", help="launch a training run from a config file and follow it (Ctrl-C stops it)"
    )
    add_config_source(p)
    p.add_argument(
        "--name",
        default=None,
        help="run name; must be free (default: run.name from the config, made unique: demo-2, ...)",
    )
    p.add_argument(
        "--detach", action="store_true", help="print the run id and return; training keeps running"
    )
    p.add_argument(
        "--machine-rank",
        type=int,
        default=None,
        metavar="K",
        help="multi-node: start machine K's ranks (0 = main node, records the run; same as"
        " --set launch.machine_rank=K)",
    )
    printing = p.add_mutually_exclusive_group()
    printing.add_argument(
        "--print-launch",
        action="store_true",
        help="multi-node: print the command to run on each node, then exit",
    )
    printing.add_argument(
        "--print-sbatch",
        action="store_true",
        help="multi-node: print a Slurm batch script that runs every node, then exit",
    )
    p.set_defaults(handler=cmd_run, parser=p)


def cmd_run(args: argparse.Namespace) -> int:
    """Validate, launch, and (unless --detach) follow the run to its end."""
    from tuitrain.config import load_config
    from tuitrain.runs.launch import launch
    from tuitrain.runs.nodes import is_worker

    sets = list(args.sets)
    if args.machine_rank is not None:
        if args.machine_rank < 0:
            args.parser.error(f"--machine-rank must be 0 or more, got {args.machine_rank}")
        sets.append(f"launch.machine_rank={args.machine_rank}")  # validated like any --set
    if args.print_sbatch:
        # Under Slurm the main node is the allocation's first: the script sets the address.
        sets.append("launch.main_process_ip=$MAIN_IP")
    resolved = load_config(args.config, env=args.env, sets=sets)
    for w in resolved.warnings:
        print(f"warning: {w}", file=sys.stderr)
    runs_dir = Path(args.runs_dir)
    if args.print_launch or args.print_sbatch:
        return print_nodes(args, resolved.config)
    from tuitrain.data.estimate import with_data

    resolved = with_data(resolved)  # the data checked (and counted) once, before any process starts
    if is_worker(resolved.config):
        return run_worker(resolved, runs_dir, args.name, args.detach)
    # An explicit --name must be free (an error names the run holding it); run.name is made unique.
    info = launch(resolved, runs_dir, name=args.name, exact_name=args.name is not None)
    if args.detach:
        print(info.id)
        return 0
    print(f"run {info.id} ({info.name}) started; log: {info.run_dir / 'train.log'}", flush=True)
    return Follower(runs_dir, info.id, sys.stdout).follow()


def _node_argv(args: argparse.Namespace, drop: tuple[str, ...] = ()) -> list[str]:
    """The `tuitrain run` command line the user gave, without any machine rank (added per node)
    nor the fields in `drop` (set per node by the Slurm script)."""
    argv = ["tuitrain"]
    if "runs_dir" in vars(args) and args.runs_dir != "runs":
        argv += ["--runs-dir", str(args.runs_dir)]
    argv += ["run", args.config]
    if args.env:
        argv += ["--env", args.env]
    for kv in args.sets:
        if kv.split("=", 1)[0].strip() not in ("launch.machine_rank", *drop):
            argv += ["--set", kv]
    if args.name:
        argv += ["--name", args.name]
    return argv


def print_nodes(args: argparse.Namespace, cfg: Any) -> int:
    """--print-launch: one command per node; --print-sbatch: a Slurm batch script."""
    from tuitrain.runs.nodes import per_node_lines, sbatch_script

    if cfg.launch.num_machines < 2:
        print(
            "error: launch.num_machines: --print-launch and --print-sbatch are for multi-node runs;"
            " set launch.num_machines (2 or more) and launch.main_process_ip",
            file=sys.stderr,
        )
        return exits.BAD_INPUT
    if args.print_sbatch:
        name = args.name or cfg.run.name or Path(args.config).stem
        argv = _node_argv(args, drop=("launch.main_process_ip",))
        print(sbatch_script(cfg, argv, job_name=name), end="")
    else:
        print("\n".join(per_node_lines(cfg, _node_argv(args))))
    return 0


def run_worker(resolved: Any, runs_dir: Path, name: str | None, detach: bool) -> int:
    """A worker node (machine_rank > 0): start its ranks, wait for them, exit with their code.
    No run record is made here: the main node's rank 0 records the run."""
    from tuitrain.runs.nodes import start_worker

    lc = resolved.config.launch
    proc, node_dir = start_worker(resolved, runs_dir, name=name)
    log = node_dir / "train.log"
    print(
        f"node {lc.machine_rank} of {lc.num_machines}: ranks started (launcher pid {proc.pid});"
        f" the run is recorded by the main node ({lc.main_process_ip}:{lc.main_process_port});"
        f" log: {log}",
        flush=True,
    )
    if detach:
        print(node_dir)
        return 0
    return WorkerWait(proc, log, sys.stdout).wait()


class WorkerWait:
    """Waits for a worker node's launcher; Ctrl-C says where to stop the run, a second kills."""

    def __init__(self, proc: Any, log: Path, out: TextIO) -> None:
        self.proc, self.log, self.out = proc, log, out
        self.interrupts = 0

    def wait(self) -> int:
        """The ranks' exit code (0 when they all succeeded; 128+N after signal N)."""
        restore = None
        if threading.current_thread() is threading.main_thread():
            old = signal.signal(signal.SIGINT, self._on_sigint)
            restore = lambda: signal.signal(signal.SIGINT, old)  # noqa: E731
        warned = killed = False
        try:
            while self.proc.poll() is None:
                if self.interrupts == 1 and not warned:
                    warned = True
                    print(
                        "this node's ranks follow the main node: stop the run there"
                        " (tuitrain ctl RUN stop); Ctrl-C again kills this node's ranks"
                        " (the run then fails)",
                        file=self.out,
                        flush=True,
                    )
                elif self.interrupts >= 2 and not killed:
                    killed = True
                    print("killing this node's ranks", file=self.out, flush=True)
                    self._kill()
                time.sleep(0.2)
        finally:
            if restore:
                restore()
        code = self.proc.returncode
        code = 128 - code if code < 0 else code
        if code:
            print(f"node ranks exited with code {code}; last lines of {self.log}:", file=self.out)
            for line in _tail(self.log, 6):
                print(f"  {line}", file=self.out)
        else:
            print("node ranks exited with code 0", file=self.out, flush=True)
        return code

    def _on_sigint(self, _signum: int, _frame: object) -> None:
        self.interrupts += 1

    def _kill(self) -> None:
        import os

        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the launcher and its ranks
        except ProcessLookupError:
            pass


def _tail(path: Path, n: int) -> list[str]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [ln for ln in lines if ln.strip()][-n:]


def fmt_duration(seconds: float) -> str:
    """H:MM:SS."""
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def fmt_num(name: str, v: float) -> str:
    """A metric value as it reads best: LRs in scientific notation."""
    return f"{v:.2e}" if name == "lr" else f"{v:.4g}"


class Follower:
    """Tails one run's metrics and events from the store until it ends."""

    def __init__(self, runs_dir: Path, run_id: str, out: TextIO, poll_s: float = 0.5) -> None:
        from tuitrain.store import Store

        self.store = Store(runs_dir)
        self.run_id = run_id
        self.out = out
        self.tty = out.isatty()
        self.poll_s = poll_s
        self.latest: dict[str, float] = {}
        self.step = 0
        self.last_event = 0
        self.rate: list[tuple[float, int]] = []  # (time, step) samples for the ETA
        self.interrupts = 0
        self.hard_at: float | None = None
        self.last_plain = 0.0
        self.last_plain_step: int | None = None
        self.line_shown = False
        self.stop_sent = False
        from tuitrain.doctor.follow import DoctorLines

        self.doctor_lines = DoctorLines()

    def follow(self) -> int:
        """Follow to the end; the exit code says whether the run ended well."""
        restore = self._install_sigint()
        after = -1
        try:
            while True:
                self._handle_interrupts()
                # Re-read the newest step: an eval's metrics land after the train metrics of
                # the same step, and a cursor strictly past it would never see them.
                for p in self.store.tail(self.run_id, names=list(FOLLOWED), after_step=after - 1):
                    after = max(after, p.step)
                    if p.value is not None:
                        self.latest[p.name] = p.value
                    self.step = max(self.step, p.step)
                for ev in self.store.events(self.run_id, after_id=self.last_event):
                    self.last_event = ev.id
                    if ev.kind == "doctor":  # new warnings only, once (tuitrain.doctor.follow)
                        if line := self.doctor_lines.line(ev):
                            self._line(line)
                        continue
                    self._line(
                        f"[{ev.kind}]"
                        + (f" step {ev.step}" if ev.step is not None else "")
                        + f": {ev.message}"
                    )
                run = liveness.get_run(self.store, self.run_id)
                self.rate.append((time.monotonic(), self.step))
                self.rate = self.rate[-40:]
                if run.status not in ("queued", "running"):
                    break
                if self.hard_at is not None and time.monotonic() - self.hard_at > HARD_STOP_WAIT_S:
                    self._line(
                        "the run did not confirm its end after the hard stop; check `tuitrain ls`"
                    )
                    return EXIT_RUN_NOT_OK
                self._progress(run)
                time.sleep(self.poll_s)
        finally:
            if restore:
                restore()
        self._progress(run, final=True)
        self._wait_gone(run)
        reason = f" ({run.exit_reason})" if run.exit_reason else ""
        self._line(f"run {run.id} {run.status}{reason}")
        if self.stop_sent:
            return (
                EXIT_INTERRUPTED  # a job script must not mistake an interrupted run for a done one
            )
        return 0 if run.status in OK_STATUSES else EXIT_RUN_NOT_OK

    def _wait_gone(self, run: Any) -> None:
        # The final status is written a moment before the processes exit; return only once they
        # are gone, so a job script's next step finds the GPU (and the checkpoint files) free.
        from tuitrain.runs.launch import stop
        from tuitrain.runs.process import processes_alive

        if run.host and run.host != socket.gethostname():
            return  # trained elsewhere: nothing of it runs here
        end = time.monotonic() + EXIT_WAIT_S
        while processes_alive(run):
            if time.monotonic() > end:
                self._line(
                    f"training processes still alive {EXIT_WAIT_S:g} s after the end; killing them"
                )
                stop(run, grace_s=5.0, runs_dir=self.store.runs_dir, after_end=True)
                return
            time.sleep(0.2)

    # -- display ---------------------------------------------------------------------------

    def _status_text(self, run: Any) -> str:
        total = (run.derived or {}).get("total_steps")
        parts = [f"step {self.step}/{total}" if total else f"step {self.step}"]
        if total:
            parts[0] += f" ({100 * self.step / total:.0f}%)"
        parts += [f"{k} {fmt_num(k, self.latest[k])}" for k in FOLLOWED if k in self.latest]
        if len(self.rate) >= 2 and total:
            (t0, s0), (t1, s1) = self.rate[0], self.rate[-1]
            if s1 > s0 and t1 > t0:
                speed = (s1 - s0) / (t1 - t0)
                parts.append(f"{speed:.2f} steps/s ETA {fmt_duration((total - self.step) / speed)}")
        if run.status == "queued":
            parts.append("starting")
        if run.stalled:
            # Alive, step not moving (a hung collective, a frozen rank or trainer): say so.
            parts.append(f"{liveness.stall_label(run)}: no new step")
        return " | ".join(parts)

    def _progress(self, run: Any, final: bool = False) -> None:
        text = self._status_text(run)
        if self.tty:
            self.out.write("\r\x1b[K" + text + ("\n" if final else ""))
            self.out.flush()
            self.line_shown = not final
        elif final or self._plain_due():
            self.last_plain = time.monotonic()
            self.last_plain_step = self.step
            print(text, file=self.out, flush=True)

    def _plain_due(self) -> bool:
        waited = time.monotonic() - self.last_plain
        moved = self.step != self.last_plain_step
        return waited >= (PLAIN_EVERY_S if moved else PLAIN_STALLED_S)

    def _line(self, text: str) -> None:
        if self.tty and self.line_shown:
            self.out.write("\r\x1b[K")  # lines go above the live progress line
            self.line_shown = False
        print(text, file=self.out, flush=True)

    # -- Ctrl-C -----------------------------------------------------------------------------

    def _install_sigint(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_sigint(_signum: int, _frame: object) -> None:
            self.interrupts += 1  # acted on by the loop: never touch SQLite inside a handler

        old = signal.signal(signal.SIGINT, on_sigint)
        return lambda: signal.signal(signal.SIGINT, old)

    def _handle_interrupts(self) -> None:
        if self.interrupts >= 1 and not self.stop_sent:
            self.stop_sent = True
            self.store.send_command(self.run_id, "stop")
            self._line(
                "stopping: the run saves and ends at its next step (Ctrl-C again to kill it)"
            )
        elif self.interrupts >= 2 and self.hard_at is None:
            from tuitrain.runs.launch import stop

            self.hard_at = time.monotonic()
            self._line("killing the run")
            stop(
                liveness.get_run(self.store, self.run_id), grace_s=3.0, runs_dir=self.store.runs_dir
            )
