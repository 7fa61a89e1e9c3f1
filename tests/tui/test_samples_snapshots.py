"""Snapshots of the samples screen at 80x24 and 120x40: one run across its evaluations, two
compared runs side by side at their best steps, the empty state, and the word diff on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.tui.conftest import make_app, settle
from tests.tui.fixture_db import add_samples

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


async def samples_open(pilot: Pilot, timeout: float = 30.0) -> None:
    """Press `a` on the monitor or compare screen and wait until the samples grid is shown."""
    await settle(pilot, rounds=1)
    await pilot.press("a")
    deadline = time.monotonic() + timeout
    while type(pilot.app.screen).__name__ != "SamplesScreen" or pilot.app.screen.grid is None:
        assert time.monotonic() < deadline, "the samples screen did not load"
        await pilot.pause(0.05)
    await settle(pilot, rounds=1)


def _snap(snap_compare, app, size, run_before) -> bool:
    same = snap_compare(app, terminal_size=size, run_before=run_before)
    assert app.return_code == 0, "the app raised; see the captured log"
    return same


@pytest.mark.parametrize("size", SIZES)
def test_samples_one_run_across_evals(snap_compare, runs, size):
    """baseline's answers to json.dumps at steps 50, 100 (80x24: reference above two columns)
    or 50-150 beside the reference (120x40), scores under each answer."""
    add_samples(Path("runs"), runs)

    async def run_before(pilot: Pilot) -> None:
        await samples_open(pilot)
        await pilot.press("down")  # the first validation prompt: json.dumps
        await settle(pilot, rounds=1)

    app = make_app(start="watch", run=runs["completed"])
    assert _snap(snap_compare, app, size, run_before)


@pytest.mark.parametrize("size", SIZES)
def test_samples_compared_runs_side_by_side(snap_compare, runs, size):
    """low-lr@150 (exact) beside baseline@400 (repeating): each run's best step."""
    add_samples(Path("runs"), runs)

    async def run_before(pilot: Pilot) -> None:
        await samples_open(pilot)
        await pilot.press("down")
        await settle(pilot, rounds=1)

    app = make_app(start="compare", compare=[runs["early"], runs["completed"]])
    assert _snap(snap_compare, app, size, run_before)


@pytest.mark.parametrize("size", SIZES)
def test_samples_empty_state(snap_compare, runs, size):
    """A run without samples: what samples are and how to get them."""
    app = make_app(start="watch", run=runs["completed"])
    assert _snap(snap_compare, app, size, samples_open)


@pytest.mark.parametrize("size", SIZES)
def test_samples_diff_on(snap_compare, runs, size):
    """d at steps 300-350: the words that changed since the answer to the left are marked."""
    add_samples(Path("runs"), runs)

    async def run_before(pilot: Pilot) -> None:
        await samples_open(pilot)
        await pilot.press("down", "shift+right", "left", "left", "d")
        await settle(pilot, rounds=1)

    app = make_app(start="watch", run=runs["completed"])
    assert _snap(snap_compare, app, size, run_before)
