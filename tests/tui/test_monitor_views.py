"""Pilot tests of the monitor's reading and views: late eval rows, the poll thread and its Store,
the one-line events pane, zoom and small terminals, notes, stall / failure / memory in the header."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from textual.widgets import Input, Static

from tests.tui.conftest import aio, make_app, settle
from tuitrain.runs import liveness
from tuitrain.store import Store
from tuitrain.tui.app import Settings
from tuitrain.tui.dialogs.pick import PickDialog
from tuitrain.tui.dialogs.prompt import PromptDialog
from tuitrain.tui.dialogs.text import TextDialog
from tuitrain.tui.screens.monitor import MonitorScreen
from tuitrain.tui.widgets.events import one_line
from tuitrain.tui.widgets.run_panes import RunHeader, memory_text, stalled_text

FAST = Settings(poll_s=0.2, list_poll_s=0.3, chart_cpu_budget=1.0)


def _header(app) -> str:
    return str(app.screen.query_one("#run-header", Static).render())


def _events(app) -> list[str]:
    pane = app.screen.query_one("#events")
    return [str(pane.get_option_at_index(i).prompt) for i in range(pane.option_count)]


@aio
async def test_an_eval_written_at_a_step_already_read_shows_in_chart_and_header(runs):
    """val_* land after the train metrics of their step: the monitor must not wait for a new step."""
    rid = runs["running"]
    app = make_app(start="watch", run=rid, settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        chart = app.screen.query_one("#chart-loss")
        assert [ln.label for ln in chart.lines] == ["train", "val"]
        assert chart.lines[1].xs[-1] == 150  # fixture: val every 50 steps, train up to 160
        with Store("runs") as s:  # the eval of step 160 arrives after step 160 was read
            s.log_metrics(rid, [(160, "val_loss", 1.2345, time.time())])
        await settle(pilot)
        assert chart.lines[1].xs[-1] == 160 and chart.lines[1].ys[-1] == 1.2345
        assert "val 1.234" in _header(app)
        # The final eval of a run that has already finished (no step will ever follow).
        with Store("runs") as s:
            s.set_status(rid, "completed", "finished")
        await settle(pilot)
        assert "completed" in _header(app)
        with Store("runs") as s:
            s.log_metrics(rid, [(160, "val_loss", 1.1111, time.time())])
        await settle(pilot)
        assert chart.lines[1].ys[-1] == 1.1111
        assert "val 1.111" in _header(app)


HOLD_READ_MARKS = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 5, 123, os.SEEK_SET)
print("locked", flush=True)
sys.stdin.read()
"""


@aio
async def test_leaving_the_monitor_during_a_blocked_read_closes_the_store_after_it(runs):
    """The poll thread may be inside a read when the screen goes: nothing may use a closed Store,
    the thread ends without an error, and its Store is closed after its last read."""
    rid = runs["running"]
    slow = Settings(poll_s=60.0, list_poll_s=60.0, chart_cpu_budget=1.0)  # reads only when woken
    app = make_app(start="watch", run=rid, settings=slow)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        dead = subprocess.Popen(["true"])
        dead.wait()
        with Store("runs") as s:  # the trainer is gone: the next read shows 'crashed'...
            s.mark_started(rid, dead.pid)
        # ...but another process holds every WAL read mark (the -shm bytes 123-127 that a reader
        # takes a shared lock on), so that read waits inside SQLite (it gives up after ~10 s).
        blocker = subprocess.Popen(
            [sys.executable, "-c", HOLD_READ_MARKS, str(Path("runs") / "tuitrain.db-shm")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert blocker.stdout.readline().strip() == "locked"
        try:
            before = screen.polls
            screen.poll()
            await pilot.pause(0.8)
            assert screen.polls == before and not screen.loop_done  # the read is stuck in SQLite
            await pilot.press("escape")  # leave: the screen unmounts mid-read
            deadline = time.monotonic() + 10
            while not screen._closed and time.monotonic() < deadline:
                await pilot.pause(0.05)
            assert screen._closed and not screen.loop_done  # unmounted; the read still waits
        finally:
            blocker.stdin.close()  # the holder exits: its locks go with it
            blocker.wait(timeout=30)
        deadline = time.monotonic() + 20
        while not screen.loop_done and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert screen.loop_done  # the thread ended (and closed its Store after its last read)
        assert screen.loop_error is None, screen.loop_error  # its read never met a closed Store
        with Store("runs") as s:
            assert liveness.view_run(s, rid).status == "crashed"
            assert s.get_run(rid).status == "running"  # the screen's reads wrote nothing


@aio
async def test_a_deleted_run_is_reported_in_the_header(runs):
    rid = runs["crashed"]
    app = make_app(start="watch", run=rid, settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        with Store("runs") as s:
            s.delete_run(rid)
        await settle(pilot)
        assert "no run with id or name" in _header(app)


def test_one_line_escapes_control_characters():
    assert one_line("def f():\n\treturn 1\r\x1b[31m") == "def f():⏎\\treturn 1\\r\\x1b[31m"


@aio
async def test_events_are_one_line_each_enter_opens_one_and_generations_can_be_hidden(runs):
    rid = runs["running"]
    sample = "def main(\n    x = 1\n    return x\n" * 4
    with Store("runs") as s:
        s.add_event(rid, "generation", sample, 160, {"prompt": "def main(", "text": sample})
        s.add_event(rid, "lr", "LR set to 2e-4 by command 3", 160)
        s.add_event(rid, "checkpoint", "saved checkpoints/step-160", 160)
    app = make_app(start="watch", run=rid, settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        lines = _events(app)
        gen = [ln for ln in lines if "generation" in ln]
        assert len(gen) == 1 and "\n" not in gen[0] and "⏎" in gen[0]
        # The three events that matter are still on screen, below the sample.
        assert lines[-2:] == [ln for ln in lines if "lr" in ln or "checkpoint" in ln][-2:]
        pane = app.screen.query_one("#events")
        assert pane.virtual_size.height == pane.option_count  # rendered: one row per event
        assert pane.has_focus
        pane.highlighted = lines.index(gen[0])
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, TextDialog)
        assert sample in app.screen.text  # the full text, newlines kept
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MonitorScreen)
        await pilot.press("f")  # the picker: all, no generations, then each kind with its count
        await pilot.pause()
        assert isinstance(app.screen, PickDialog)
        labels = [label for label, _ in app.screen.choices]
        assert labels[0].startswith("all events (") and labels[1].startswith("no generations (")
        assert any(label.startswith("only generation") and "(1)" in label for label in labels)
        await pilot.press("down", "enter")  # all -> no generations
        await pilot.pause()
        assert not [ln for ln in _events(app) if "generation" in ln]
        assert any("checkpoint" in ln for ln in _events(app))
        assert "no generations" in pane.border_title
        await pilot.press("f", "down", "enter")  # -> only one kind (the first, alphabetically)
        await pilot.pause()
        kinds = {ln.split()[1] for ln in _events(app)}
        assert len(kinds) == 1


def _chart_rows(app, cid: str) -> int:
    return app.screen.query_one(cid).size.height


@aio
async def test_zoom_shows_one_chart_at_full_height_with_every_point_in_range(runs):
    rid = runs["running"]
    with Store("runs") as s:  # one spike inside a bucket: the last value per bucket hides it
        s.log_metrics(rid, [(155, "loss", 137.0, time.time())])
    app = make_app(start="watch", run=rid, settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert not screen.single  # 80x24: three charts fit
        normal = _chart_rows(app, "#chart-loss")
        await pilot.press("z")
        await pilot.pause()
        chart = screen.query_one("#chart-loss")
        assert not screen.query_one("#chart-lr").display
        assert not screen.query_one("#monitor-bottom").display
        assert _chart_rows(app, "#chart-loss") >= 2 * normal
        text = str(chart.render())
        labels = [ln.split("┤")[0].strip() for ln in text.splitlines() if "┤" in ln]
        assert 137 <= float(labels[0]) < 137 * 1.5  # the y axis reaches the spike (with room)
        assert len(labels) >= 6  # enough y ticks to read a value off the axis
        await pilot.press("n")  # next chart, still zoomed
        await pilot.pause()
        assert screen.query_one("#chart-lr").display and not chart.display
        await pilot.press("z")
        await pilot.pause()
        assert all(screen.query_one(c).display for c in ("#chart-loss", "#chart-lr", "#chart-grad"))


@aio
async def test_a_small_terminal_shows_one_chart_at_a_time_and_the_header_keeps_the_essentials(runs):
    rid = runs["running"]
    app = make_app(start="watch", run=rid, settings=FAST)
    async with app.run_test(size=(60, 20)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert screen.single
        shown = [
            c for c in ("#chart-loss", "#chart-lr", "#chart-grad") if screen.query_one(c).display
        ]
        assert shown == ["#chart-loss"]
        assert _chart_rows(app, "#chart-loss") >= 8
        assert "n: next" in screen.query_one("#chart-loss").title
        await pilot.press("n")
        await pilot.pause()
        assert screen.query_one("#chart-lr").display and not screen.query_one("#chart-loss").display
        header = _header(app).splitlines()
        assert "step 160/400 40%" in header[0] and "ETA" in header[0]
        assert "loss" in header[1] and "lr" in header[1] and "mem" in header[1]
        assert all(len(line) <= 58 for line in header), header  # nothing cut by the ellipsis


@aio
async def test_notes_show_under_the_header_and_can_be_edited(runs):
    rid = runs["running"]
    app = make_app(start="watch", run=rid, settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        notes = app.screen.query_one("#run-notes")
        assert not notes.display  # no notes yet: the line takes no room
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, PromptDialog)
        app.screen.query_one(Input).value = "warmup 10% vs 5%"
        await pilot.press("enter")
        await settle(pilot)
        with Store("runs") as s:
            assert s.get_run(rid).config["run"]["notes"] == "warmup 10% vs 5%"
        assert notes.display and "warmup 10% vs 5%" in str(notes.render())


def _run(store: Store, rid: str):
    return store.get_run(rid)


def test_header_shows_stall_failure_reason_and_both_memory_figures(runs):
    with Store("runs") as s:
        run = _run(s, runs["running"])
        run.stalled = True  # what the store's liveness check sets (RunInfo.stalled)
        run.last_step_age_s = 185.0
        assert stalled_text(run) == "stalled 3m05s"
        run.stalled = False
        assert stalled_text(run) == ""
        failed = s.create_run({}, {}, name="never-started")
        s.set_status(
            failed.id,
            "failed",
            "launcher exited before training started:\nModuleNotFoundError: No module named 'x'",
        )
        failed = _run(s, failed.id)
    assert memory_text({"gpu_mem_alloc_gb": 1.25, "gpu_mem_peak_gb": 3.5}) == "1.2/3.5G"
    assert memory_text({"gpu_mem_gb": 3.5}) == "3.5G"  # runs from before the split
    assert memory_text({}) == "-"
    header = RunHeader()
    header.show(failed, {}, None, time.time())
    text = str(header.render())
    assert "failed" in text and "ModuleNotFoundError" in text.splitlines()[1]
