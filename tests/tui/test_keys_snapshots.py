"""Snapshots of issue 23's screen states at 80x24 and 120x40 (60x20 where it says): the keys
overlay, the events filter picker, the editor's unsaved marker and its drop-edits question."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.tui.conftest import make_app
from tests.tui.test_snapshots import SIZES, _settle_snap, snap

SIZES_60 = [*SIZES, pytest.param((60, 20), id="60x20")]


@pytest.mark.parametrize("size", SIZES_60)
def test_keys_overlay_runs_list(snap_compare, runs, size):
    """? on the runs list: every key, grouped; the footer behind ends with `? keys`."""

    async def run_before(pilot: Pilot) -> None:
        await _settle_snap(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap(snap_compare, make_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_keys_overlay_monitor(snap_compare, runs, size):
    """? on the monitor: steering, view, the run, LR race and leave keys, grouped."""

    async def run_before(pilot: Pilot) -> None:
        await _settle_snap(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    app = make_app(start="watch", run=runs["running"])
    assert snap(snap_compare, app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_events_filter_picker(snap_compare, runs, size):
    """f on the monitor: the kinds of events with their counts."""

    async def run_before(pilot: Pilot) -> None:
        await _settle_snap(pilot)
        await pilot.press("f")
        await pilot.pause()

    app = make_app(start="watch", run=runs["running"])
    assert snap(snap_compare, app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_editor_unsaved_asks_before_leaving(snap_compare, runs, size):
    """One LR edited: the status line's unsaved marker, and escape's question."""
    shutil.copy(Path(__file__).parent / "data" / "editor.yaml", Path("demo.yaml"))

    async def run_before(pilot: Pilot) -> None:
        await _settle_snap(pilot)
        await pilot.app.screen.jump_to("optimizer.lr")
        await pilot.pause()
        pilot.app.focused.value = "3e-4"
        await _settle_snap(pilot)
        pilot.app.screen.query_one("#sections").focus()
        await pilot.press("escape")
        await pilot.pause()

    app = make_app(start="edit", config="demo.yaml")
    assert snap(snap_compare, app, terminal_size=size, run_before=run_before)
