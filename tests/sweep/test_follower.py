"""The `tuitrain run` progress display on a real store: a live line on a TTY, plain lines otherwise."""

from __future__ import annotations

import io
import subprocess
import sys

from tuitrain.cli.batch import Follower, fmt_duration
from tuitrain.runs import liveness
from tuitrain.store import Store


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    p = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return int(p.stdout)


def finished_run(runs_dir, status="completed"):
    with Store(runs_dir) as s:
        run = s.create_run({}, {"total_steps": 10}, name="r")
        s.mark_started(run.id, pid=dead_pid())
        s.log_metrics(
            run.id,
            [(st, "loss", 3.0 - st / 10, 0.0) for st in range(1, 11)]
            + [(st, "lr", 1e-3, 0.0) for st in range(1, 11)],
        )
        s.log_metrics(run.id, [(10, "val_loss", 2.5, 0.0)])
        s.add_event(run.id, "eval", "val_loss 2.5", step=10)
        s.set_status(run.id, status, reason="why" if status != "completed" else None)
        return run.id


def test_plain_output_has_no_control_codes(tmp_path):
    run_id = finished_run(tmp_path)
    out = io.StringIO()
    assert Follower(tmp_path, run_id, out, poll_s=0.01).follow() == 0
    text = out.getvalue()
    assert "\x1b" not in text and "\r" not in text
    assert "[eval] step 10: val_loss 2.5" in text
    assert "step 10/10 (100%) | loss 2 | lr 1.00e-03 | val_loss 2.5" in text
    assert text.rstrip().endswith(f"run {run_id} completed")


def test_tty_output_redraws_one_line_and_failed_run_exits_1(tmp_path):
    run_id = finished_run(tmp_path, status="failed")
    out = Tty()
    assert Follower(tmp_path, run_id, out, poll_s=0.01).follow() == 1
    text = out.getvalue()
    assert "\r\x1b[K" in text and text.rstrip().endswith(f"run {run_id} failed (why)")


def test_duration_format():
    assert fmt_duration(3725) == "1:02:05" and fmt_duration(-3) == "0:00:00"


def test_late_metric_of_an_already_seen_step_is_shown(tmp_path):
    """An eval's val_loss lands after the train metrics of its step; the final line must show it."""
    import threading
    import time

    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with Store(tmp_path) as s:
        run = s.create_run({}, {"total_steps": 10}, name="late")
        s.mark_started(run.id, pid=trainer.pid)
        s.log_metrics(run.id, [(10, "loss", 1.5, 0.0), (10, "lr", 1e-3, 0.0)])
    out = io.StringIO()
    follower = Follower(tmp_path, run.id, out, poll_s=0.05)
    seen_step_10 = threading.Event()

    def finish_later() -> None:
        # Wait for the condition itself (the follower has read step 10), not for a guess of time.
        deadline = time.monotonic() + 60
        while follower.step < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        seen_step_10.set()
        with Store(tmp_path) as s2:
            s2.log_metrics(run.id, [(10, "val_loss", 1.25, 0.0)])
            s2.set_status(run.id, "completed")
        trainer.kill()  # the follower returns once the training process is gone
        trainer.wait(timeout=10)

    t = threading.Thread(target=finish_later)
    t.start()
    try:
        follower.follow()
    finally:
        t.join(timeout=70)
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait(timeout=10)
    assert seen_step_10.is_set() and follower.step == 10
    final = [ln for ln in out.getvalue().splitlines() if ln.startswith("step 10/10")][-1]
    assert "val_loss 1.25" in final


def test_stalled_run_is_said_in_the_progress_line(tmp_path, monkeypatch):
    """Heartbeat fresh, step not moving past the threshold: the progress line says stalled."""
    import time

    monkeypatch.setenv("TUITRAIN_STALL_MIN_S", "0.5")
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with Store(tmp_path) as s:
            run = s.create_run({}, {"total_steps": 10}, name="hung")
            s.mark_started(run.id, pid=trainer.pid)
            s.log_metrics(run.id, [(3, "loss", 1.5, time.time())])
            f = Follower(tmp_path, run.id, io.StringIO())
            got = liveness.view_run(s, run.id)
            deadline = time.monotonic() + 30
            while not got.stalled and time.monotonic() < deadline:
                time.sleep(0.05)
                s.conn.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time(), run.id))
                got = liveness.view_run(s, run.id)
            assert got.stalled and got.status == "running"
            assert f"{liveness.stall_label(got)}: no new step" in f._status_text(got)
            assert liveness.stall_label(got).startswith("stalled ")
    finally:
        trainer.kill()
        trainer.wait(timeout=10)
