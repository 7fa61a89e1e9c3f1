"""The monitor's LR race keys over a real store: R asks keep running / pause (snapshots at 80x24
and 120x40), Escape cancels; on a live trainer R races its checkpoint, W applies the winner with
set_lr, G branches a full-length run from the winner."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from tests.train.helpers import ENV, TINY, Launcher
from tests.tui.conftest import aio, make_app, settle
from tuitrain.lrfind.apply import clamp_steps, default_steps
from tuitrain.lrfind.records import RECORD_DIR, list_records
from tuitrain.runs.launch import LAUNCH_FILE
from tuitrain.store import Store
from tuitrain.tui.app import Settings
from tuitrain.tui.dialogs.confirm import ConfirmDialog
from tuitrain.tui.screens import lrrace as lrfind
from tuitrain.tui.screens.lrrace import RaceDialog, RaceLine, RacePlan
from tuitrain.tui.screens.monitor import MonitorScreen

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]
FAST = Settings(poll_s=0.2, list_poll_s=0.3, chart_cpu_budget=1.0)
LIVE = [*TINY, "training.max_steps=100000", "training.save_every=20", "training.log_every=1"]


async def until(pilot: Pilot, cond, timeout: float, what: str) -> None:
    """Let the app run until cond() holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        await pilot.pause(0.02)


@pytest.mark.parametrize("size", SIZES)
def test_race_dialog(snap_compare, runs, size):
    """R on a running run: the race's factors and steps, keep running / pause / cancel."""
    app = make_app(start="watch", run=runs["running"])

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("R")
        await until(pilot, lambda: isinstance(pilot.app.screen, RaceDialog), 20, "race dialog")
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)
    assert app.return_code == 0


@aio
async def test_race_dialog_defaults_to_a_tenth_of_the_remaining_steps_and_clamps_to_the_end(runs):
    """The running fixture run is at step 160 of 400: 240 left, so 24 steps per branch by
    default; 500 would train past step 400 and is clamped to 240; bad fields say which and why."""
    app = make_app(start="watch", run=runs["running"], settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, RaceDialog), 20, "race dialog")
        dialog = app.screen
        assert dialog.query_one("#race-steps", Input).value == "24"
        assert dialog.query_one("#race-factors", Input).value == "0.3,1,3"
        assert dialog.plan(False) == RacePlan(False, [0.3, 1.0, 3.0], 24)
        dialog.query_one("#race-steps", Input).value = "500"
        dialog.query_one("#race-factors", Input).value = "0.5,2"
        plan = dialog.plan(True)
        assert (plan.pause, plan.factors, plan.steps) == (True, [0.5, 2.0], 240)
        assert "past the run's end (step 400): clamped to 240" in plan.note
        dialog.query_one("#race-factors", Input).value = "2"
        await pilot.press("k")  # refused: the error shows, the dialog stays
        await settle(pilot)
        assert isinstance(app.screen, RaceDialog)
        assert "at least two positive factors" in str(dialog.query_one("#race-error").render())
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MonitorScreen), 20, "back to monitor")
    assert not any(w.group == "lr-race" for w in app.workers)


def test_default_steps_and_clamp():
    assert default_steps(400, 160) == 24
    assert default_steps(300, 194) == 10  # the run: 106 left
    assert default_steps(100000, 20) == 200  # a long run: the 200-step default
    assert default_steps(None, 5) == 200 and default_steps(10, 9) == 1
    assert clamp_steps(200, 300, 194) == (106, clamp_steps(200, 300, 194)[1])
    assert "clamped to 106" in clamp_steps(200, 300, 194)[1]
    assert clamp_steps(50, 300, 194) == (50, "") and clamp_steps(5, None, 10) == (5, "")
    assert clamp_steps(5, 300, 300)[0] == 0  # at its end: nothing to race


@aio
async def test_race_dialog_escape_starts_nothing_and_w_needs_a_race(runs):
    rid = runs["running"]
    app = make_app(start="watch", run=rid, settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("W")  # no race yet: nothing is sent
        await pilot.press("G")
        await settle(pilot)
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, RaceDialog), 20, "race dialog")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MonitorScreen), 20, "back to monitor")
        await settle(pilot)
        assert not any(w.group == "lr-race" for w in app.workers)
    assert not (Path("runs") / RECORD_DIR).exists()
    with Store("runs") as s:
        assert s.commands(rid) == []
        assert [r.id for r in s.list_runs() if r.parent == rid] == []


@pytest.mark.e2e
@pytest.mark.timeout(900)
@aio
async def test_r_races_a_live_run_w_applies_g_branches(tmp_path, monkeypatch):
    """A real trainer: R (keep running) races x0.3/x3 for 6 steps from its latest checkpoint,
    W sends the winning LR as set_lr (applied by the trainer), G branches from the winner."""
    monkeypatch.setattr(lrfind, "RACE_FACTORS", (0.3, 3.0))
    monkeypatch.setattr(lrfind, "RACE_STEPS", 6)
    monkeypatch.setattr(lrfind, "RACE_EXTEND", 0)
    for k, v in ENV.items():  # the branches inherit this process's environment
        monkeypatch.setenv(k, v)
    lx = Launcher(tmp_path)
    runs_dir = lx.runs_dir
    try:
        parent = lx.start(LIVE, name="live")
        ckpts = Path(parent.run_dir) / "checkpoints"
        deadline = time.monotonic() + 240
        while not list(ckpts.glob("step-*/complete.json")):
            assert time.monotonic() < deadline, "no checkpoint within 240 s:\n" + lx.log(parent)
            time.sleep(0.5)
        app = make_app(
            start="watch", run=parent.id, runs_dir=str(runs_dir), now=time.time, settings=FAST
        )
        async with app.run_test(size=(120, 40)) as pilot:
            monitor = app.screen
            await until(pilot, lambda: monitor.run is not None, 60, "monitor loaded the run")
            await pilot.press("R")
            await until(pilot, lambda: isinstance(app.screen, RaceDialog), 20, "race dialog")
            await pilot.press("k")
            await until(
                pilot, lambda: getattr(monitor, "race_lr", None) is not None, 600, "race verdict"
            )
            start, verdict, rec = monitor.race
            assert start.parent.id == parent.id and len(verdict.lanes) == 2
            with Store(runs_dir) as s:
                assert not s.get_run(parent.id).terminal  # kept running through the race
                for lane in verdict.lanes:
                    assert s.get_run(lane.run_id).parent == parent.id
            await pilot.press("W")
            if verdict.too_close:  # a second confirmation before it applies anything
                await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), 20, "confirm")
                await pilot.press("y")

            def applied() -> list:
                with Store(runs_dir) as s:
                    return [c for c in s.commands(parent.id) if c.status != "pending"]

            await until(pilot, applied, 120, "the winner applied")
            (cmd,) = applied()
            # The run trained on during the race: a factor on its schedule, not an absolute LR.
            assert cmd.kind == "scale_lr" and cmd.status == "applied"
            assert cmd.payload["factor"] == pytest.approx(verdict.winner.factor)
            assert cmd.applied_step > start.fork_step
            # The monitor's race line: the race, its winner and what was applied.
            line = monitor.query_one("#race-line", RaceLine)

            def race_line() -> str:
                return str(line.render()) if line.display else ""

            await until(
                pilot,
                lambda: "scale_lr" in race_line() and "applied @" in race_line(),
                60,
                "race line",
            )
            assert f"LR race {rec['race_id']}: x{verdict.winner.factor:g} won" in race_line()
            await pilot.press("G")

            def branched() -> list:
                with Store(runs_dir) as s:
                    return [r for r in s.list_runs() if r.parent == verdict.winner.run_id]

            await until(pilot, branched, 120, "branch from the winner")
            (child,) = branched()
            with Store(runs_dir) as s:
                win = s.get_run(verdict.winner.run_id)
            assert child.config["optimizer"]["lr"] == pytest.approx(win.config["optimizer"]["lr"])
            assert child.config["training"]["max_steps"] == 100000  # the full run's length
            assert child.fork_step == start.fork_step + 6  # the winner's final checkpoint
            await until(pilot, lambda: rec.get("branched") == child.id, 30, "record updated")
        (stored,) = list_records(runs_dir)
        assert stored["race_id"] == rec["race_id"] and stored["status"] == "done"
        assert stored["verdict"]["winner"]["run_id"] == verdict.winner.run_id
        assert stored["applied"]["kind"] == "scale_lr"
        assert stored["applied"]["value"] == pytest.approx(verdict.winner.factor)
        assert stored["branched"] == child.id and not stored["paused"]
    finally:
        lx.kill_all()
        for f in runs_dir.glob(f"*/{LAUNCH_FILE}"):
            try:
                os.killpg(json.loads(f.read_text())["pgid"], signal.SIGKILL)
            except (ProcessLookupError, KeyError, ValueError):
                pass
