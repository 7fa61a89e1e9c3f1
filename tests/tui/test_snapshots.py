"""Snapshot tests of every screen at 80x24 and 120x40, from the deterministic fixture database."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from tests.tui.conftest import make_app, settle
from tests.tui.fixture_db import add_set_lr
from tuitrain.store import Store


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


def _steered_fixture(runs) -> None:
    """Events of a steered run: a long generation sample, an LR change, a checkpoint, a note."""
    sample = "def main(\n    args = parse()\n    return run(args)\n"
    with Store("runs") as s:
        rid = runs["running"]
        s.add_event(rid, "generation", sample, 150, {"prompt": "def main(", "text": sample})
        s.add_event(rid, "lr", "set_lr by tui: lr 0.000488 -> 0.0002 from step 156", 155)
        s.add_event(rid, "checkpoint", "saved checkpoints/step-160", 160)
        s.set_notes(rid, "warmup 10%: does the spike at 30 go away?")


@pytest.mark.parametrize("size", SIZES)
def test_monitor_events_and_notes(snap_compare, runs, size):
    """One line per event (the sample's newlines escaped), the notes line under the header."""
    _steered_fixture(runs)
    assert snap(
        snap_compare,
        make_app(start="watch", run=runs["running"]),
        terminal_size=size,
        run_before=_settle_snap,
    )


@pytest.mark.parametrize("size", SIZES)
def test_monitor_events_filtered(snap_compare, runs, size):
    """f: generations hidden, the pane's title says so."""
    _steered_fixture(runs)

    async def run_before(pilot: Pilot) -> None:
        await _settle_snap(pilot)
        await pilot.press("f", "down", "enter")
        await _settle_snap(pilot)

    app = make_app(start="watch", run=runs["running"])
    assert snap(snap_compare, app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_monitor_event_full_text(snap_compare, runs, size):
    """Enter on the generation event: its whole text, newlines kept."""
    _steered_fixture(runs)

    async def run_before(pilot: Pilot) -> None:
        await _settle_snap(pilot)
        pane = pilot.app.screen.query_one("#events")
        pane.highlighted = next(i for i, e in enumerate(pane.shown) if e.kind == "generation")
        await pilot.press("enter")
        await _settle_snap(pilot)

    app = make_app(start="watch", run=runs["running"])
    assert snap(snap_compare, app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_monitor_zoomed(snap_compare, runs, size):
    """z: the loss chart alone at full height, more y ticks, each bucket's min/max dotted."""

    async def run_before(pilot: Pilot) -> None:
        await _settle_snap(pilot)
        await pilot.press("z")
        await _settle_snap(pilot)

    app = make_app(start="watch", run=runs["running"])
    assert snap(snap_compare, app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize(
    "size", [pytest.param((60, 20), id="60x20"), pytest.param((70, 22), id="70x22")]
)
def test_monitor_small_terminal(snap_compare, runs, size):
    """Too short for three charts: one at a time (n: next), a compact header."""
    assert snap(
        snap_compare,
        make_app(start="watch", run=runs["running"]),
        terminal_size=size,
        run_before=_settle_snap,
    )


@pytest.mark.parametrize("size", SIZES)
def test_runs_list_filtered(snap_compare, runs, size):
    """/ low: only the matching runs, the filter in the status line."""

    async def run_before(pilot: Pilot) -> None:
        await _settle_snap(pilot)
        await pilot.press("slash", *"lr", "enter")
        await _settle_snap(pilot)

    assert snap(snap_compare, make_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_compare_interventions(snap_compare, runs, size):
    """Diff + steering tab: the config keys that differ and each run's LR changes and stops."""
    _steered_fixture(runs)
    ids = [runs["running"], runs["early"], runs["crashed"]]
    assert snap(
        snap_compare,
        make_app(start="compare", compare=ids),
        terminal_size=size,
        press=["3"],
        run_before=_settle_snap,
    )
