"""Snapshot tests of every screen at 80x24 and 120x40, from the deterministic fixture database."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from tests.tui.conftest import make_app, settle
from tests.tui.fixture_db import add_set_lr


def snap(snap_compare, app, **kwargs) -> bool:
    """Compare a snapshot, and fail if the app crashed (a crash still yields a blank SVG)."""
    same = snap_compare(app, **kwargs)
    assert app.return_code == 0, "the app raised; see the captured log"
    return same


SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


async def _settle_snap(pilot: Pilot) -> None:
    await settle(pilot)
    for inp in pilot.app.screen.query(Input):
        inp.cursor_blink = False  # a blinking cursor would make the snapshot flaky


@pytest.mark.parametrize("size", SIZES)
def test_runs_list(snap_compare, runs, size):
    """Running, completed, early-stopped and crashed runs with progress, best, elapsed, start."""
    assert snap(snap_compare, make_app(), terminal_size=size, run_before=_settle_snap)


@pytest.mark.parametrize("size", SIZES)
def test_editor_validation_error(snap_compare, runs, size):
    """The LR field holds 'fast': the field, its section and the status line show the error."""
    shutil.copy(Path(__file__).parent / "data" / "editor.yaml", Path("demo.yaml"))
    app = make_app(start="edit", config="demo.yaml")

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot, rounds=1)
        await pilot.app.screen.jump_to("optimizer.lr")
        await pilot.pause()
        pilot.app.focused.value = "fast"
        await _settle_snap(pilot)

    assert snap(snap_compare, app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_monitor_mid_run(snap_compare, runs, size):
    """A running run at step 160/400: charts, header with ETA, events."""
    assert snap(
        snap_compare,
        make_app(start="watch", run=runs["running"]),
        terminal_size=size,
        run_before=_settle_snap,
    )


@pytest.mark.parametrize("size", SIZES)
def test_monitor_after_set_lr(snap_compare, runs, size):
    """A set-LR command acknowledged by the trainer shows with the step it applied at."""
    add_set_lr(Path("runs"), runs["running"], 2e-4, 160)
    assert snap(
        snap_compare,
        make_app(start="watch", run=runs["running"]),
        terminal_size=size,
        run_before=_settle_snap,
    )


@pytest.mark.parametrize("size", SIZES)
def test_compare_three_runs(snap_compare, runs, size):
    """Three runs overlaid on the loss chart with a legend."""
    ids = [runs["completed"], runs["early"], runs["crashed"]]
    assert snap(
        snap_compare,
        make_app(start="compare", compare=ids),
        terminal_size=size,
        run_before=_settle_snap,
    )


def test_compare_summary_tab(snap_compare, runs):
    """Summary columns of three runs side by side."""
    ids = [runs["completed"], runs["early"], runs["crashed"]]
    assert snap(
        snap_compare,
        make_app(start="compare", compare=ids),
        terminal_size=(80, 24),
        press=["2"],
        run_before=_settle_snap,
    )


def test_compare_config_diff_tab(snap_compare, runs):
    """Only the config keys that differ."""
    ids = [runs["completed"], runs["early"], runs["crashed"]]
    assert snap(
        snap_compare,
        make_app(start="compare", compare=ids),
        terminal_size=(80, 24),
        press=["3"],
        run_before=_settle_snap,
    )
