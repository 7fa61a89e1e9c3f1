"""Benchmark of notifications: the training step time with notifications on (three targets: one
answering, one answering 500, one never answering) vs off, on the tiny demo model, runs
alternating; and the delay from an event to its delivery (a run's end, a trainer killed -9).

    python tests/bench/notify_bench.py [--runs 2] [--steps 300]

The last line is JSON: step_s_off / step_s_on (median seconds per optimizer step: data wait +
compute + overhead, as the run's summary records it), step_cost_pct, and delivery delays in seconds."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.notify.server import Hook  # noqa: E402
from tests.train.helpers import TINY, Launcher  # noqa: E402
from tuitrain.notify.daemon import running_pid  # noqa: E402

NOTIFY_ENV = (
    "TUITRAIN_NOTIFY",
    "TUITRAIN_NOTIFY_CONFIG",
    "TUITRAIN_NOTIFY_POLL_S",
    "TUITRAIN_NOTIFY_IDLE_S",
)


def one_run(
    base: Path, steps: int, hooks: list[Hook] | None, tag: str
) -> tuple[float, float | None]:
    """(median step seconds, end-to-delivery delay or None) of one tiny run."""
    for k in NOTIFY_ENV:
        os.environ.pop(k, None)
    conf = base / f"{tag}.yaml"
    conf.write_text("retries: 2\nbackoff_s: 1\ntimeout_s: 5\n")
    os.environ["TUITRAIN_NOTIFY_CONFIG"] = str(conf)
    if hooks:
        os.environ["TUITRAIN_NOTIFY"] = " ".join(h.url for h in hooks)
        os.environ["TUITRAIN_NOTIFY_IDLE_S"] = "2"
    lx = Launcher(base / tag)
    try:
        run = lx.start([*TINY, f"training.max_steps={steps}", "training.log_every=10",
                        f"training.eval_every={steps}"], name=tag)  # fmt: skip
        end = lx.wait(run, 900)
        delay = None
        if hooks:
            got = hooks[-1].wait_for(lambda m: m["title"] == f"{tag} completed", 60, "the end")
            delay = got[0]["_received"] - end.ended
        # Seconds per optimizer step as the trainer measures it (data wait + compute + tuitrain's
        # own overhead, evals and checkpoints excluded): `tuitrain show`'s breakdown.
        return float(sum(end.summary["time"].values())), delay
    finally:
        lx.kill_all()
        _stop_notifier(lx.runs_dir)


def crash_delay(base: Path, hook: Hook) -> float:
    """Seconds from kill -9 of a trainer to the delivery of its crash notification."""
    os.environ["TUITRAIN_NOTIFY"] = hook.url
    lx = Launcher(base / "k9")
    try:
        run = lx.start(
            [*TINY, "training.max_steps=100000", "training.eval_every=100000"], name="k9"
        )
        lx.wait_step(run, 5)
        with lx.store() as s:
            pid = s.get_run(run.id).pid
        t0 = time.time()
        os.kill(pid, signal.SIGKILL)
        got = hook.wait_for(lambda m: m["title"] == "k9 crashed", 60, "the crash")
        return got[0]["_received"] - t0
    finally:
        lx.kill_all()
        _stop_notifier(lx.runs_dir)


def _stop_notifier(runs_dir: Path) -> None:
    pid = running_pid(runs_dir) if runs_dir.is_dir() else None
    if pid and pid > 0:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 40
        while running_pid(runs_dir) and time.monotonic() < deadline:
            time.sleep(0.1)


def rounds(base: Path, a: argparse.Namespace) -> tuple[list, list, list, float]:
    """Alternating off / on runs, then one trainer killed -9."""
    off, on, delays = [], [], []
    with Hook("ok") as good, Hook("500") as bad, Hook("hang") as slow:
        for i in range(a.runs):
            off.append(one_run(base, a.steps, None, f"off{i}")[0])
            s, d = one_run(base, a.steps, [slow, bad, good], f"on{i}")
            on.append(s)
            delays.append(d)
            print(f"round {i}: off {off[-1] * 1000:.2f} ms/step, on {on[-1] * 1000:.2f} ms/step, "
                  f"delivered {d:.2f} s after the end", flush=True)  # fmt: skip
        k9 = crash_delay(base, good)
        print(f"kill -9 to delivery: {k9:.2f} s", flush=True)
    return off, on, delays, k9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2, help="runs per mode (alternating)")
    ap.add_argument("--steps", type=int, default=300)
    a = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="notify-bench-"))
    try:
        off, on, delays, k9 = rounds(base, a)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    m_off, m_on = statistics.median(off), statistics.median(on)
    print(json.dumps({
        "step_s_off": m_off, "step_s_on": m_on,
        "step_cost_pct": 100 * (m_on - m_off) / m_off,
        "step_s_off_all": off, "step_s_on_all": on,
        "end_to_delivery_s": {"median": statistics.median(delays), "max": max(delays)},
        "kill9_to_delivery_s": k9,
        "note": "notifications on: 3 targets (200, 500, never answers); poll 2 s (default)",
    }))  # fmt: skip


if __name__ == "__main__":
    main()
