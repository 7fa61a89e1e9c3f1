"""Snapshot and pilot tests of the doctor in the TUI: the monitor's doctor line with an open
diagnosis, spike markers, the doctor screen, applying an action through the steering path
(pending -> applied in Commands), and the runs list's marker."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.tui.conftest import aio, make_app, settle, until
from tests.tui.fixture_db import NOW, add_run, pin_times
from tuitrain.store import Store
from tuitrain.tui.dialogs.confirm import ConfirmDialog

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


def add_spiky(runs_dir: Path) -> str:
    """A running run whose grad norm and loss jump at step 150 and stay up (critical)."""
    store = Store(runs_dir)
    rid = add_run(store, "spiky", 1e-3, 400, 160, scale=2.8)
    t0 = NOW - 3600
    rows = []
    for s in range(150, 161):
        rows += [
            (s, "grad_norm", 40.0 + s - 150, t0 + s),
            (s, "loss", 6.5 + 0.1 * (s - 150), t0 + s),
        ]
    store.log_metrics(rid, rows)  # a step logged again replaces its value
    store.mark_started(rid, os.getpid())
    pin_times(store, rid, NOW - 200, NOW - 190, None)
    store.close()
    return rid


async def doctor_ready(pilot: Pilot) -> None:
    """Settle, then wait until the doctor line has diagnosed the run at least once."""
    await settle(pilot)
    line = pilot.app.screen.query_one("#doctor-line")
    deadline = time.monotonic() + 30
    while line.checks < 1:
        assert time.monotonic() < deadline, "the doctor line never diagnosed"
        await pilot.pause(0.05)
    await settle(pilot, rounds=1)


@pytest.mark.parametrize("size", SIZES)
def test_monitor_with_open_diagnosis(snap_compare, runs, size):
    """The doctor line under the header names the most severe diagnosis; red dots mark the spikes."""
    rid = add_spiky(Path("runs"))
    app = make_app(start="watch", run=rid)
    assert snap_compare(app, terminal_size=size, run_before=doctor_ready)
    assert app.return_code == 0


@pytest.mark.parametrize("size", SIZES)
def test_doctor_screen(snap_compare, runs, size):
    """h opens the list of diagnoses with evidence, remedy and action."""
    rid = add_spiky(Path("runs"))
    app = make_app(start="watch", run=rid)

    async def run_before(pilot: Pilot) -> None:
        await doctor_ready(pilot)
        await pilot.press("h")
        await until(pilot, lambda: pilot.app.screen.id == "doctor", "the doctor screen")
        await settle(pilot, rounds=1)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
    assert app.return_code == 0


@aio
async def test_doctor_action_goes_through_steering(runs):
    """Enter on the diagnosis, confirm: its scale_lr 0.5 is queued like any command, then the
    trainer's ack shows it applied at its step in Commands."""
    rid = add_spiky(Path("runs"))
    app = make_app(start="watch", run=rid)
    async with app.run_test(size=(120, 40)) as pilot:
        await doctor_ready(pilot)
        line = app.screen.query_one("#doctor-line")
        assert line.display and "CRITICAL" in str(line.render())
        await pilot.press("h")
        await until(pilot, lambda: app.screen.id == "doctor", "the doctor screen")
        assert app.screen.id == "doctor"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm dialog")
        await pilot.press("y")
        deadline = time.monotonic() + 20
        store = Store("runs")
        while not store.commands(rid):
            assert time.monotonic() < deadline, "no command was sent"
            await pilot.pause(0.02)
        (cmd,) = store.commands(rid)
        assert cmd.kind == "scale_lr" and cmd.payload["factor"] == 0.5
        assert cmd.payload["diagnosis"] in ("exploding_gradients", "loss_spike")
        assert app.screen.name == "monitor"
        store.claim_commands(rid)
        store.ack_command(cmd.id, 161, "lr scaled")  # what the trainer does
        store.close()
        await settle(pilot)
        text = str(app.screen.query_one("#commands").render())
        assert "161" in text


def test_runs_list_marks_open_warnings(runs):
    """A run whose doctor events leave a critical diagnosis open gets '!!' after its status."""
    from tuitrain.tui.screens.runs_cells import status_text
    from tuitrain.tui.widgets.doctor import DoctorIndex, with_doctor_mark

    store = Store("runs")
    rid = runs["running"]
    store.add_event(
        rid, "doctor", "opened", 160, {"state": "open", "id": "loss_spike", "severity": "critical"}
    )
    idx = DoctorIndex()
    run = store.get_run(rid)
    idx.update(store, [run])
    assert with_doctor_mark(status_text(run), run).plain == "running !!"
    store.add_event(
        rid,
        "doctor",
        "closed",
        170,
        {"state": "closed", "id": "loss_spike", "severity": "critical"},
    )
    idx.update(store, [run])
    assert with_doctor_mark(status_text(run), run).plain == "running"
    store.close()
