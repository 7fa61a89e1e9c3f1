"""Pilot and snapshot tests of the doctor's history in the TUI: a finished run whose loss spike
recovered still says what went wrong on the monitor's doctor line, lists the closed episode (steps,
peak, why closed) under the open ones on the doctor screen (h), and in compare's Doctor tab. The
episode is written the way the trainer writes it: real doctor events through DoctorWatch into a
real Store."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.doctor import curves, replay
from tests.tui.conftest import aio, make_app, settle, until
from tuitrain.config.schema import DoctorGroup
from tuitrain.doctor.watch import DoctorWatch
from tuitrain.store import Store

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


def add_recovered(runs_dir: Path) -> str:
    """A completed run whose loss spiked at step 500 and recovered (the watch closed it)."""
    with Store(runs_dir) as store:
        fx = curves.make("loss_spike")
        rid = replay.create(store, fx)
        emit = lambda kind, msg, step, data: store.add_event(rid, kind, msg, step, data)  # noqa: E731
        w = DoctorWatch(
            store, rid, DoctorGroup(persist_steps=0, hold_steps=0), emit, clock=lambda: 0.0
        )
        for upto in (499, 502, 520, 640):
            store.log_metrics(rid, [r for r in replay.rows_of(fx, upto) if r[0] > upto - 200])
            w.check(upto)
        store.log_metrics(rid, replay.rows_of(fx))
        store.set_status(rid, "completed")
    return rid


async def doctor_ready(pilot: Pilot) -> None:
    """Settle until the monitor's doctor line has diagnosed the run."""
    await settle(pilot)
    line = pilot.app.screen.query_one("#doctor-line")
    await until(pilot, lambda: line.checks >= 1, "the doctor line's first diagnosis")
    await settle(pilot, rounds=1)


async def open_doctor(pilot: Pilot) -> None:
    await doctor_ready(pilot)
    await pilot.press("h")
    await until(pilot, lambda: pilot.app.screen.id == "doctor", "the doctor screen")
    await settle(pilot, rounds=1)


@aio
async def test_a_finished_run_still_says_what_went_wrong(runs):
    rid = add_recovered(Path("runs"))
    app = make_app(start="watch", run=rid)
    async with app.run_test(size=(120, 40)) as pilot:
        await doctor_ready(pilot)
        line = app.screen.query_one("#doctor-line")
        text = str(line.render())
        assert line.display and "was WARNING loss_spike" in text and "recovered" in text, text
        await pilot.press("h")
        await until(pilot, lambda: app.screen.id == "doctor", "the doctor screen")
        title = str(app.screen.query_one("#doctor-title").render())
        assert "0 open diagnoses" in title and "closed episode" in title, title
        opts = app.screen.query_one("#doctor-list")
        texts = [str(opts.get_option_at_index(i).prompt) for i in range(opts.option_count)]
        closed = [t for t in texts if "loss_spike" in t and "closed" in t]
        assert closed and "recovered" in closed[0] and "peak:" in closed[0], texts
        assert "steps " in closed[0] and "loss " in closed[0], closed[0]
        await pilot.press("enter")  # a closed episode is history: nothing to apply, no dialog
        await settle(pilot, rounds=1)
        assert app.screen.id == "doctor"


@aio
async def test_compare_shows_each_runs_doctor_history(runs):
    rid = add_recovered(Path("runs"))
    other = runs["completed"]
    app = make_app(start="compare", compare=[rid, other])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        table = app.screen.query_one("#doctor-table")
        await until(pilot, lambda: table.row_count >= 2, "the doctor table")
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        spike = [r for r in rows if "loss_spike" in r[2]]
        assert spike and spike[0][1] == "closed" and spike[0][5] == "recovered", rows
        assert spike[0][4].startswith("loss "), rows
        assert any("nothing" in r[2] for r in rows), rows  # the healthy baseline: no history


@pytest.mark.parametrize("size", SIZES)
def test_doctor_screen_with_history(snap_compare, runs, size):
    """h on a finished run: no diagnosis open, the recovered spike listed under it."""
    rid = add_recovered(Path("runs"))
    app = make_app(start="watch", run=rid)
    assert snap_compare(app, terminal_size=size, run_before=open_doctor)


@pytest.mark.parametrize("size", SIZES)
def test_compare_doctor_tab(snap_compare, runs, size):
    """Compare's Doctor tab: each run's open diagnoses, then closed episodes."""
    rid = add_recovered(Path("runs"))
    app = make_app(start="compare", compare=[rid, runs["completed"]])

    async def run_before(pilot: Pilot) -> None:
        await pilot.press("4")
        table = pilot.app.screen.query_one("#doctor-table")
        await until(pilot, lambda: table.row_count >= 2, "the doctor table")
        await settle(pilot, rounds=1)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
