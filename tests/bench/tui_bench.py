"""Benchmark of the TUI: cold start to the first screen, chart refresh cost vs run length, and CPU
use while watching a live run. Prints figures; asserts nothing.

    python tests/bench/tui_bench.py            # all three (about 2 minutes on 2 cores)
    python tests/bench/tui_bench.py --quick    # smaller 1M-point DB step, shorter CPU window
    python tests/bench/tui_bench.py --only runs-list   # runs list with 200 and 2000 runs

Targets (DESIGN.md, issue 16): first screen < 1 s; refresh flat in run length; < 5% of one core
watching; runs list with 2000 finished runs: open < 1 s, idle < 1% of one core.
The last line is the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

# ---- cold start -------------------------------------------------------------------------------

COLD = r"""
import time, sys
t0 = time.perf_counter()
from tuitrain.tui.app import TuitrainApp
t_import = time.perf_counter() - t0
mode, runs_dir, arg = sys.argv[1], sys.argv[2], sys.argv[3]
marks = {}

def ready(app):
    # The first screen is usable: rows listed / form shown / run header filled.
    s = app.screen
    if mode == "runs":
        t = s.query("#runs-table")
        return bool(t) and t.first().row_count > 0
    if mode == "edit":
        return bool(s.query("#f-run--name"))
    h = s.query("#run-header")
    return bool(h) and "step" in str(h.first().render())

async def first_screen(pilot):
    while not ready(pilot.app):
        await pilot.pause(0.01)
    marks["first"] = time.perf_counter() - t0
    pilot.app.exit()

kw = {"runs": {}, "edit": {"start": "edit"}, "watch": {"start": "watch", "run": arg}}[mode]
TuitrainApp(runs_dir=runs_dir, **kw).run(headless=True, size=(80, 24), auto_pilot=first_screen)
print(f"{t_import:.3f} {marks['first']:.3f}")
"""


def cold_start(runs_dir: Path, run_id: str, repeats: int = 3) -> dict:
    """Interpreter start + imports + first usable screen, in a fresh process each time."""
    print(f"\n== cold start (fresh process, 80x24; best of {repeats}) ==")
    figures = {}
    for mode, what in (
        ("runs", "`tuitrain` runs list (4 runs)"),
        ("edit", "`tuitrain edit` (demo config)"),
        ("watch", "`tuitrain watch RUN` (160 steps)"),
    ):
        rows = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", COLD, mode, str(runs_dir), run_id],
                capture_output=True,
                text=True,
                cwd=REPO,
                timeout=120,
            )
            total = time.perf_counter() - t0
            imp, first = (float(x) for x in out.stdout.split()[-2:])
            rows.append((first, imp, total))
        first, imp, total = min(rows)
        figures[f"first_screen_{mode}_s"] = round(first, 3)
        print(
            f"  {what:<34} first screen {first:.2f} s (import {imp:.2f} s; whole process incl. interpreter and exit {total:.2f} s)   target < 1 s"
        )
    return figures


# ---- chart refresh vs run length -------------------------------------------------------------


def build_long_run(runs_dir: Path, steps: int, name: str) -> str:
    """A run with `steps` points of loss, lr and grad_norm, written through the store's batch path."""
    from tuitrain.store import Store

    with Store(runs_dir) as s:
        run = s.create_run({}, {"total_steps": steps}, name=name, status="running")
        chunk = 50_000
        t = time.time()
        for lo in range(1, steps + 1, chunk):
            rows = []
            for st in range(lo, min(steps, lo + chunk - 1) + 1):
                x = st / steps
                rows += [
                    (st, "loss", 2 + 3 * math.exp(-5 * x) + 0.1 * math.sin(st), t),
                    (st, "lr", 1e-3 * (1 - x), t),
                    (st, "grad_norm", 1 + 0.2 * math.cos(st / 7), t),
                ]
            s.log_metrics(run.id, rows)
        s.set_status(run.id, "completed")
    return run.id


async def _refresh_cost(
    runs_dir: Path, run_id: str, repeats: int = 5
) -> tuple[float, float, float, int]:
    """(DB read ms: series + header tail, chart build ms, naive full-resolution build ms, points)."""
    from tuitrain.store import Store
    from tuitrain.tui.app import TuitrainApp
    from tuitrain.tui.pollers.run import HEADER_METRICS
    from tuitrain.tui.widgets.chart import Line

    app = TuitrainApp(runs_dir=runs_dir, start="watch", run=run_id)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.5)
        await app.workers.wait_for_complete()
        await pilot.pause(0.2)
        screen = app.screen
        buckets = screen.buckets()
        store = Store(runs_dir)
        reads, builds = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            series = {
                n: store.series(run_id, n, buckets) for n in ("loss", "val_loss", "lr", "grad_norm")
            }
            last = store.last_step(run_id) or 0
            store.tail(run_id, HEADER_METRICS, after_step=last - 1)  # the header's newest values
            reads.append(time.perf_counter() - t)
            screen.series = series
            t = time.perf_counter()
            screen.redraw()
            for cid in ("#chart-loss", "#chart-lr", "#chart-grad"):
                chart = screen.query_one(cid)
                chart._cache = None  # measure the build, not the render cache
                chart.render()
            builds.append(time.perf_counter() - t)
        points = sum(len(v) for v in series.values())
        naive = math.nan
        n = store.last_step(run_id) or 0
        if n <= 100_000:  # plotting every point: what downsampling avoids (linear in points)
            chart = screen.query_one("#chart-loss")
            pts = store.tail(run_id, ["loss"])
            chart.set_lines(
                [Line("train", tuple(p.step for p in pts), tuple(p.value for p in pts))]
            )
            chart._cache = None
            t = time.perf_counter()
            chart.render()
            naive = time.perf_counter() - t
        store.close()
    return min(reads) * 1000, min(builds) * 1000, naive * 1000, points


def refresh_vs_length(tmp: Path, sizes: list[int]) -> None:
    """Downsampled series read + three charts built, at several run lengths."""
    print("\n== chart refresh vs run length (3 charts, 120x40, buckets = 2 x chart width) ==")
    print(
        f"  {'steps':>9} {'DB read ms':>11} {'build ms':>9} {'points':>7} {'naive loss-chart build ms':>26}"
    )
    for n in sizes:
        d = tmp / f"len{n}"
        t = time.perf_counter()
        rid = build_long_run(d, n, f"len{n}")
        made = time.perf_counter() - t
        read, build, naive, pts = asyncio.run(_refresh_cost(d, rid))
        naive_s = "-" if math.isnan(naive) else f"{naive:.0f}"
        print(
            f"  {n:>9,} {read:>11.1f} {build:>9.1f} {pts:>7} {naive_s:>26}   (DB built in {made:.1f} s)"
        )


# ---- CPU while watching ----------------------------------------------------------------------

WRITER = r"""
import math, sys, time
from tuitrain.store import RunWriter
w = RunWriter(sys.argv[1], sys.argv[2], flush_interval=0.5)
step, end = 0, time.time() + float(sys.argv[3])
while time.time() < end:  # a fast trainer: 20 optimizer steps/s, every step logged
    step += 1
    w.log(step, {"loss": 2 + math.exp(-step / 500), "lr": 1e-3, "grad_norm": 1.0, "epoch": step / 1000, "tokens_per_s": 9000.0})
    if step % 200 == 0:
        w.event("eval", f"val_loss {1.5 + math.exp(-step / 500):.4f}", step)
        w.log(step, {"val_loss": 1.5 + math.exp(-step / 500)})
    time.sleep(0.05)
w.close()
"""

WATCH = r"""
import os, sys, time, json
from tuitrain.tui.app import TuitrainApp
secs = float(sys.argv[3])
out = {}

async def watch(pilot):
    await pilot.pause(2.0)  # warm up: mount, first reads
    t0, c0 = time.perf_counter(), os.times()
    await pilot.pause(secs)
    c1, t1 = os.times(), time.perf_counter()
    out["cpu"] = (c1.user - c0.user + c1.system - c0.system) / (t1 - t0)
    out["step"] = pilot.app.screen.run.last_step if pilot.app.screen.run else None
    pilot.app.exit()

TuitrainApp(runs_dir=sys.argv[1], start="watch", run=sys.argv[2]).run(headless=True, size=(120, 40), auto_pilot=watch)
print(json.dumps(out))
"""


def cpu_watching(tmp: Path, secs: float) -> dict:
    """CPU share of one core used by the TUI watching a run that logs 20 steps/s (and an idle one)."""
    from tuitrain.store import Store

    print(f"\n== CPU while watching ({secs:.0f} s window, 120x40) ==")
    d = tmp / "live"
    with Store(d) as s:
        live = s.create_run({}, {"total_steps": 100000}, name="live")
        s.mark_started(live.id, os.getpid())
        idle = s.create_run({}, {"total_steps": 100}, name="idle")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(d), live.id, str(secs + 6)], cwd=REPO, env=env
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", WATCH, str(d), live.id, str(secs)],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=secs + 60,
        )
        got = json.loads(out.stdout.strip().splitlines()[-1])
        live_cpu = got["cpu"]
        print(
            f"  live run (20 steps/s, flush 0.5 s): {100 * got['cpu']:.1f}% of one core (target < 5%); reached step {got['step']}"
        )
    finally:
        writer.terminate()
        writer.wait(10)
    with Store(d) as s:
        s.set_status(idle.id, "completed")
    out = subprocess.run(
        [sys.executable, "-c", WATCH, str(d), idle.id, str(secs)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=secs + 60,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  finished run (nothing new):          {100 * got['cpu']:.1f}% of one core")
    return {
        "watch_live_cpu_pct": round(100 * live_cpu, 2),
        "watch_idle_cpu_pct": round(100 * got["cpu"], 2),
    }


# ---- runs list vs number of runs --------------------------------------------------------------

# Opened as `tuitrain --runs-dir DIR` opens it: through tuitrain.cli.main, whose imports (the
# CLI, the exception types it reports) come before the app's. App.run is wrapped only to run
# headless with a pilot that watches for the first rows.
LIST = r"""
import os, sys, time, json
t0, t0_wall = time.perf_counter(), time.time()
import tuitrain.cli
n, secs = int(sys.argv[2]), float(sys.argv[3])
out = {"cli_import_s": time.perf_counter() - t0, "t0_wall": t0_wall}

async def idle(pilot):
    table = None
    while True:  # open: the first screenful of rows shown
        t = pilot.app.screen.query("#runs-table")
        if t and t.first().row_count >= min(n, 20):
            break
        await pilot.pause(0.005)
    out["open_s"] = time.perf_counter() - t0
    out["open_wall"] = time.time()
    while t.first().row_count < n:  # every row added (the rest come in chunks, per frame)
        await pilot.pause(0.005)
    out["all_rows_s"] = time.perf_counter() - t0
    await pilot.pause(2.0)  # settle: first polls after the listing
    screen = pilot.app.screen
    reads0, polls0 = screen.row_reads, screen.polls
    t1, c1 = time.perf_counter(), os.times()
    await pilot.pause(secs)
    c2, t2 = os.times(), time.perf_counter()
    out["cpu"] = (c2.user - c1.user + c2.system - c1.system) / (t2 - t1)
    out["row_reads"] = screen.row_reads - reads0
    out["polls"] = screen.polls - polls0
    pilot.app.exit()

def wrap(App):
    real = App.run
    def run(self, **kw):
        out["import_s"] = time.perf_counter() - t0  # everything the entry point imported
        return real(self, headless=True, size=(80, 24), auto_pilot=idle)
    App.run = run

import tuitrain.cli.tui_cmds as tui_cmds
start = tui_cmds._run
def _run(args, **kw):
    from textual.app import App  # imported by tuitrain.tui.app at this point anyway
    wrap(App)
    return start(args, **kw)
tui_cmds._run = _run
tuitrain.cli.main(["--runs-dir", sys.argv[1]])
print(json.dumps(out))
"""


def build_many_runs(runs_dir: Path, n: int) -> None:
    """n finished runs with a demo-sized config and summary (the runs list reads no metrics)."""
    from tuitrain.store import Store

    cfg = {
        "run": {"name": "demo", "seed": 42, "tags": ["bench"], "notes": ""},
        "model": {
            "task": "causal-lm",
            "tokenizer": "bytes",
            "arch": {"type": "gpt2", "hidden_size": 128},
        },
        "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01},
        "scheduler": {"name": "cosine", "warmup_ratio": 0.05},
        "batch": {"size": 16, "grad_accum": 1},
        "training": {"max_steps": 600, "eval_every": 100},
    }
    summary = {"best_metric": "val_loss", "best_value": 2.5, "best_step": 600, "steps": 600}
    with Store(runs_dir) as s:
        for i in range(n):
            run = s.create_run(cfg, {"total_steps": 600}, name=f"run-{i:04d}")
            s.set_status(run.id, "completed", "finished", summary=summary)


def runs_list_scale(tmp: Path, sizes: list[int], secs: float, repeats: int = 3) -> dict:
    """Open time and idle CPU of the runs list with N finished runs (fresh process each)."""
    print(
        f"\n== runs list vs number of runs (80x24, idle {secs:.0f} s window, {repeats} runs each) =="
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    figures = {}
    for n in sizes:
        d = tmp / f"many{n}"
        t = time.perf_counter()
        build_many_runs(d, n)
        made = time.perf_counter() - t
        got = []
        for _ in range(repeats):
            started = time.time()
            out = subprocess.run(
                [sys.executable, "-c", LIST, str(d), str(n), str(secs)],
                capture_output=True,
                text=True,
                cwd=REPO,
                env=env,
                timeout=secs + 120,
            )
            got.append(json.loads(out.stdout.strip().splitlines()[-1]))
            got[-1]["exec_open_s"] = got[-1]["open_wall"] - started
        cpus = [100 * g["cpu"] for g in got]
        # Process start: from the exec (interpreter start included) to the first rows.
        opens = [g["exec_open_s"] for g in got]
        imports = [g["import_s"] for g in got]
        alls = [g["all_rows_s"] for g in got]
        # The app's own part: from the entry point's imports done to the first rows.
        apps = [g["open_s"] - g["import_s"] for g in got]
        print(
            f"  {n:>5} runs: open (exec of `tuitrain` to first rows) {min(opens):.2f}-{max(opens):.2f} s"
            f" (target < 1 s; imports {min(imports):.2f}-{max(imports):.2f} s, after the imports"
            f" {min(apps):.2f}-{max(apps):.2f} s), all rows"
            f" {min(alls):.2f}-{max(alls):.2f} s; idle "
            f"{min(cpus):.2f}-{max(cpus):.2f}% of one core (target < 1%); run records read while "
            f"idle: {got[-1]['row_reads']} in {got[-1]['polls']} polls   (DB built in {made:.1f} s)"
        )
        figures[f"runs_list_{n}_open_s"] = round(max(opens), 3)
        figures[f"runs_list_{n}_import_s"] = round(max(imports), 3)
        figures[f"runs_list_{n}_open_after_import_s"] = round(max(apps), 3)
        figures[f"runs_list_{n}_idle_cpu_pct"] = round(max(cpus), 3)
    return figures


def main() -> None:
    """Run the benchmarks and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the 1M-point run; 10 s CPU window")
    ap.add_argument("--only", choices=["runs-list"], help="run one part only")
    args = ap.parse_args()
    os.environ.setdefault("TZ", "UTC")
    print(
        f"tuitrain TUI benchmark · python {sys.version.split()[0]} · {os.cpu_count()} CPUs · load {os.getloadavg()[0]:.1f}"
    )
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        from tests.tui.fixture_db import build

        if args.only in (None, "runs-list"):
            figures.update(runs_list_scale(tmp, [200, 2000], 10.0 if args.quick else 20.0))
        if args.only is None:
            ids = build(tmp / "fixture")
            figures.update(cold_start(tmp / "fixture", ids["running"]))
            refresh_vs_length(tmp, [1_000, 100_000] if args.quick else [1_000, 100_000, 1_000_000])
            figures.update(cpu_watching(tmp, 10.0 if args.quick else 20.0))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
