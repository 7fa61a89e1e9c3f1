"""Benchmark of the monitor over a slow link: bytes written to the terminal, CPU and memory of
`tuitrain watch` in a pseudo-terminal while a run logs. Prints figures; asserts nothing. The last
line is JSON.

    python tests/bench/terminal_bench.py                  # stream; 80x24 and 120x40; SSH and local; 30 s
    python tests/bench/terminal_bench.py --sizes 80x24 --modes ssh --secs 20 --repeats 3
    python tests/bench/terminal_bench.py --demo --sizes 60x20 --term screen --no-color

Source: by default a synthetic stream at a fixed rate, with no trainer, so the machine's load
does not change what there is to draw (issue 27): a writer process logs loss, LR and grad norm
every step and val_loss every 100 steps, 20 steps/s, through the store's RunWriter (flush every
0.5 s, as a trainer does). --demo watches a live demo run (configs/demo.yaml) instead.
Modes: ssh sets SSH_CONNECTION (charts at 1 Hz), local leaves it unset (2 Hz); both honour
TUITRAIN_MAX_REDRAW_HZ if it is set in the environment.

Targets: issue 27, 80x24, 20 steps/s: at most 1.0 KB/s in SSH mode, 1.5 KB/s locally (W&B LEET
wrote 818-954 B/s on the same stream); issue 16: under 3% of one core. `tuitrain watch RUN`
runs under a pty of the given size, its output is read (and counted) as a terminal would, its
CPU comes from /proc/PID/stat and its memory from /proc/PID/status.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import re
import select
import signal
import statistics
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
TOTAL_STEPS = 100_000  # the stream's announced length (the header shows progress and ETA)

# The stream: 20 steps/s on a fixed schedule (a late step does not shift the next ones), values
# from a seeded generator so every repeat draws the same curves.
STREAM = r"""
import math, os, random, signal, sys, time
from tuitrain.store import RunWriter, Store
runs_dir, run_id, rate = sys.argv[1], sys.argv[2], float(sys.argv[3])
with Store(runs_dir) as s:
    s.mark_started(run_id, os.getpid())
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
w = RunWriter(runs_dir, run_id, flush_interval=0.5)
rng = random.Random(0)
t0, step = time.monotonic(), 0
while not stop:
    step += 1
    warm = min(1.0, step / 200)
    lr = 3e-4 * warm * (0.5 + 0.5 * math.cos(math.pi * min(1.0, step / 100000)))
    loss = 2.0 + 1.5 * math.exp(-step / 600) + rng.gauss(0, 0.08)
    w.log(step, {"loss": loss, "lr": lr, "grad_norm": abs(1.0 + rng.gauss(0, 0.25))})
    if step % 100 == 0:
        w.log(step, {"val_loss": 2.05 + 1.4 * math.exp(-step / 600) + rng.gauss(0, 0.01)})
    time.sleep(max(0.0, t0 + step / rate - time.monotonic()))
w.close()
with Store(runs_dir) as s:
    s.set_status(run_id, "completed")
"""


# UTF-8 of the braille cells (U+2800..U+28FF) the charts are drawn with: a write that holds one
# carries a chart redraw (the header, events and footer have none).
BRAILLE = re.compile(rb"\xe2[\xa0-\xa3][\x80-\xbf]")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_stream(runs_dir: Path, env: dict, rate: float) -> tuple[str, subprocess.Popen]:
    """Create a run and start the writer process; return (run id, process) once steps arrive."""
    from tuitrain.store import Store

    with Store(runs_dir) as s:
        run = s.create_run({}, {"total_steps": TOTAL_STEPS}, name="stream")
    proc = subprocess.Popen(
        [sys.executable, "-c", STREAM, str(runs_dir), run.id, str(rate)], cwd=REPO, env=env
    )
    wait_steps(runs_dir, run.id, 10, 120)
    return run.id, proc


def stop_stream(proc: subprocess.Popen) -> None:
    """End the writer (it flushes and marks the run completed); kill it if it hangs."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def wait_steps(runs_dir: Path, run_id: str, steps: int, timeout: float) -> None:
    """Wait (bounded) until the run has logged `steps` steps."""
    from tuitrain.store import Store

    deadline = time.monotonic() + timeout
    with Store(runs_dir) as s:
        while time.monotonic() < deadline:
            run = s.get_run(run_id)
            if run.terminal:
                raise SystemExit(f"run ended before the bench: {run.status} {run.exit_reason}")
            if (run.last_step or 0) >= steps:
                return
            time.sleep(0.2)
    raise SystemExit(f"the run logged no step within {timeout:.0f} s")


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
    wait_steps(runs_dir, run_id, 10, 300)
    return run_id


def stop_demo(runs_dir: Path, run_id: str, env: dict) -> None:
    """Hard-stop the demo run (the bench must leave no trainer behind)."""
    subprocess.run(
        [*TUITRAIN, "stop", run_id, "--runs-dir", str(runs_dir)],
        capture_output=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )


def watch(
    runs_dir: Path,
    run_id: str,
    cols: int,
    rows: int,
    env: dict,
    warm: float,
    secs: float,
    dump: Path | None = None,
):
    """Run `tuitrain watch` under a pty; (bytes in the window, CPU s, wall s, RSS MB, writes,
    writes with chart cells)."""
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
    counted = frames = charts = 0
    t_start = time.monotonic()
    t0 = c0 = None
    try:
        while True:
            now = time.monotonic()
            if t0 is None and now - t_start >= warm:
                t0, c0, counted, frames, charts = now, cpu_seconds(proc.pid), 0, 0, 0
            if t0 is not None and now - t0 >= secs:
                c1 = cpu_seconds(proc.pid)
                return counted, c1 - c0, now - t0, rss_mb(proc.pid), frames, charts
            if proc.poll() is not None:
                raise SystemExit(f"tuitrain watch exited early with {proc.returncode}")
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                counted += len(data)
                if dump is not None and t0 is not None:
                    with dump.open("ab") as f:  # one record per read: time, length, bytes
                        f.write(b"%.3f %d\n" % (now - t0, len(data)) + data + b"\n")
                frames += data.count(b"\x1b[?2026h") or (1 if data else 0)
                charts += BRAILLE.search(data) is not None
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


def base_env(args) -> dict:
    """The watcher's environment: this checkout, the chosen TERM / NO_COLOR, no SSH marker."""
    drop = ("COLORTERM", "NO_COLOR", "SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PYTHONPATH=str(REPO), TERM=args.term, HF_HUB_OFFLINE="1", TZ=env.get("TZ", "UTC"))
    if args.no_color:
        env["NO_COLOR"] = "1"
    return env


def measure(args, runs_dir: Path, run_id: str, env: dict) -> list[dict]:
    """Every size x mode x repeat against one live run; one row of figures each."""
    rows = []
    for rep in range(args.repeats):
        for size in args.sizes.split(","):
            cols, nrows = (int(x) for x in size.lower().split("x"))
            for mode in args.modes.split(","):
                e = dict(env)
                if mode == "ssh":
                    e["SSH_CONNECTION"] = "10.0.0.2 50000 10.0.0.1 22"
                elif mode != "local":
                    raise SystemExit(f"--modes: {mode!r} is not ssh or local")
                dump = Path(f"{args.dump}.{rep + 1}.{size}.{mode}") if args.dump else None
                nbytes, cpu, wall, rss, frames, charts = watch(
                    runs_dir, run_id, cols, nrows, e, args.warm, args.secs, dump
                )
                row = {
                    "size": size,
                    "mode": mode,
                    "bytes_per_s": round(nbytes / wall),
                    "cpu_pct": round(100 * cpu / wall, 2),
                    "rss_mb": round(rss),
                    "writes_per_s": round(frames / wall, 2),
                    "chart_writes_per_s": round(charts / wall, 2),
                }
                rows.append(row)
                print(
                    f"  [{rep + 1}] {size:>6} {mode:<5}  {row['bytes_per_s']:>6} B/s"
                    f"  ({nbytes / max(1, frames):.0f} B per write, {row['writes_per_s']} writes/s,"
                    f" {row['chart_writes_per_s']} with chart cells)"
                    f"  CPU {row['cpu_pct']:.1f}%  RSS {row['rss_mb']} MB",
                    flush=True,
                )
    return rows


def summary(rows: list[dict]) -> dict:
    """Median and range per size x mode (the spread across repeats is the noise)."""
    out: dict = {}
    keys = sorted({(r["size"], r["mode"]) for r in rows})
    for size, mode in keys:
        got = [r for r in rows if (r["size"], r["mode"]) == (size, mode)]
        for field in ("bytes_per_s", "cpu_pct", "chart_writes_per_s"):
            vals = [r[field] for r in got]
            out[f"{field}_{size}_{mode}"] = round(statistics.median(vals), 2)
            if len(vals) > 1:
                out[f"{field}_{size}_{mode}_range"] = [min(vals), max(vals)]
        out[f"rss_mb_{size}_{mode}"] = max(r["rss_mb"] for r in got)
    return out


def main() -> None:
    """Start the source, watch it in each size and mode, print the figures (last line JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="80x24,120x40", help="COLSxROWS,... (default 80x24,120x40)")
    ap.add_argument("--size", help="one size (same as --sizes SIZE)")
    ap.add_argument("--modes", default="ssh,local", help="ssh,local (default both)")
    ap.add_argument("--ssh", action="store_true", help="SSH mode only (same as --modes ssh)")
    ap.add_argument("--term", default="xterm-256color", help="TERM (default xterm-256color)")
    ap.add_argument("--no-color", action="store_true", help="set NO_COLOR=1")
    ap.add_argument("--secs", type=float, default=30.0, help="measured window (default 30 s)")
    ap.add_argument("--warm", type=float, default=8.0, help="start-up not counted (default 8 s)")
    ap.add_argument("--repeats", type=int, default=1, help="rounds over all sizes and modes")
    ap.add_argument("--rate", type=float, default=20.0, help="stream steps/s (default 20)")
    ap.add_argument("--dump", help="write what the terminal received to DUMP.<round>.<size>.<mode>")
    ap.add_argument("--demo", action="store_true", help="watch a live demo run, not the stream")
    args = ap.parse_args()
    if args.size:
        args.sizes = args.size
    if args.ssh:
        args.modes = "ssh"
    env = base_env(args)
    src = "demo run" if args.demo else f"stream {args.rate:g} steps/s"
    hz = os.environ.get("TUITRAIN_MAX_REDRAW_HZ")
    print(
        f"terminal bench · {src} · TERM={args.term}{' NO_COLOR=1' if args.no_color else ''}"
        f"{f' TUITRAIN_MAX_REDRAW_HZ={hz}' if hz else ''} · {args.secs:g} s windows"
        f" · {os.cpu_count()} CPUs · load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(tmp) / "runs"
        if args.demo:
            run_id = start_demo(runs_dir, env)
            try:
                rows = measure(args, runs_dir, run_id, env)
            finally:
                stop_demo(runs_dir, run_id, env)
        else:
            run_id, proc = start_stream(runs_dir, env, args.rate)
            try:
                rows = measure(args, runs_dir, run_id, env)
            finally:
                stop_stream(proc)
    out = summary(rows)
    print(
        "  targets (issue 27, 80x24, 20 steps/s): <= 1000 B/s SSH, <= 1500 B/s local;"
        " CPU < 3% of one core (issue 16)"
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
