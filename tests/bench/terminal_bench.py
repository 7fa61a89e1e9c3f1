"""Benchmark of the monitor over a slow link: bytes written to the terminal and CPU while watching
a live demo run in a pseudo-terminal. Prints figures; asserts nothing. The last line is JSON:
{"bytes_per_s": ..., "cpu_pct": ...}.

    python tests/bench/terminal_bench.py                       # 80x24, TERM=xterm-256color, 30 s
    python tests/bench/terminal_bench.py --size 60x20 --term screen --no-color --secs 20
    python tests/bench/terminal_bench.py --ssh                 # as if remote (SSH_CONNECTION set)

Target (issue 16): under 10 KB/s averaged over 30 s and under 3% of one core at 80x24, default
settings. The demo run (configs/demo.yaml) is started detached in a temporary runs directory and
stopped at the end; `tuitrain watch RUN` runs under a pty of the given size, its output is read
(and counted) as a terminal would, and its CPU comes from /proc/PID/stat.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # this checkout's tuitrain, for the bench and its children alike
# `tuitrain` as the console script runs it, from this checkout (PYTHONPATH=REPO below).
TUITRAIN = [sys.executable, "-c", "import sys; from tuitrain.cli import main; sys.exit(main())"]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def start_demo(runs_dir: Path, env: dict) -> str:
    """Launch the demo detached; return its run id once it has logged a few steps."""
    out = subprocess.run(
        [*TUITRAIN, "run", "configs/demo.yaml", "--detach", "--runs-dir", str(runs_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    if out.returncode != 0:
        raise SystemExit(f"demo did not start: {out.stderr or out.stdout}")
    run_id = out.stdout.strip().split()[0]
    from tuitrain.store import Store

    deadline = time.monotonic() + 300
    with Store(runs_dir) as s:
        while time.monotonic() < deadline:
            run = s.get_run(run_id)
            if run.terminal:
                raise SystemExit(f"demo ended before the bench: {run.status} {run.exit_reason}")
            if (run.last_step or 0) >= 10:
                return run_id
            time.sleep(0.5)
    raise SystemExit("demo logged no step within 300 s")


def stop_demo(runs_dir: Path, run_id: str, env: dict) -> None:
    """Hard-stop the demo run (the bench must leave no trainer behind)."""
    subprocess.run(
        [*TUITRAIN, "stop", run_id, "--runs-dir", str(runs_dir)],
        capture_output=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )


def watch(runs_dir: Path, run_id: str, cols: int, rows: int, env: dict, warm: float, secs: float):
    """Run `tuitrain watch` under a pty; (bytes written in the window, CPU seconds, wall seconds)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(
        [*TUITRAIN, "--runs-dir", str(runs_dir), "watch", run_id],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=REPO,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    counted = 0
    t_start = time.monotonic()
    t0 = c0 = None
    try:
        while True:
            now = time.monotonic()
            if t0 is None and now - t_start >= warm:
                t0, c0, counted = now, cpu_seconds(proc.pid), 0
            if t0 is not None and now - t0 >= secs:
                c1 = cpu_seconds(proc.pid)
                return counted, c1 - c0, now - t0
            if proc.poll() is not None:
                raise SystemExit(f"tuitrain watch exited early with {proc.returncode}")
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                counted += len(data)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        os.close(master)


def main() -> None:
    """Start the demo, watch it, print the figures (last line JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="80x24", help="terminal COLSxROWS (default 80x24)")
    ap.add_argument("--term", default="xterm-256color", help="TERM (default xterm-256color)")
    ap.add_argument("--no-color", action="store_true", help="set NO_COLOR=1")
    ap.add_argument("--ssh", action="store_true", help="set SSH_CONNECTION (a remote session)")
    ap.add_argument("--secs", type=float, default=30.0, help="measured window (default 30 s)")
    ap.add_argument("--warm", type=float, default=8.0, help="start-up not counted (default 8 s)")
    args = ap.parse_args()
    cols, rows = (int(x) for x in args.size.lower().split("x"))
    env = {
        k: v for k, v in os.environ.items() if k not in ("COLORTERM", "NO_COLOR", "SSH_CONNECTION")
    }
    env.update(PYTHONPATH=str(REPO), TERM=args.term, HF_HUB_OFFLINE="1", TZ=env.get("TZ", "UTC"))
    if args.no_color:
        env["NO_COLOR"] = "1"
    if args.ssh:
        env["SSH_CONNECTION"] = "10.0.0.2 50000 10.0.0.1 22"
    print(
        f"terminal bench · {cols}x{rows} TERM={args.term}"
        f"{' NO_COLOR=1' if args.no_color else ''}{' SSH_CONNECTION' if args.ssh else ''}"
        f" · {os.cpu_count()} CPUs · load {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(tmp) / "runs"
        run_id = start_demo(runs_dir, env)
        try:
            nbytes, cpu, wall = watch(runs_dir, run_id, cols, rows, env, args.warm, args.secs)
            from tuitrain.store import Store

            with Store(runs_dir) as s:
                run = s.get_run(run_id)
            print(
                f"  watched {wall:.0f} s of a live demo run (now {run.status}, step "
                f"{run.last_step}): {nbytes / wall / 1024:.1f} KiB/s to the terminal "
                f"(target < 10 KB/s), {100 * cpu / wall:.1f}% of one core (target < 3%)"
            )
            if run.terminal:
                print("  warning: the run ended inside the window; the figure is too low")
        finally:
            stop_demo(runs_dir, run_id, env)
    print(json.dumps({"bytes_per_s": round(nbytes / wall), "cpu_pct": round(100 * cpu / wall, 2)}))


if __name__ == "__main__":
    main()
