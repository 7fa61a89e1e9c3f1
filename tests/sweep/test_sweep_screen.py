"""The sweep screens on a real store and real sweep records, driven by Textual's pilot."""

from __future__ import annotations

import asyncio

import pytest
from textual.worker import WorkerCancelled

from tuitrain.tui.app import TuitrainApp

from .helpers import build_sweep as build


async def settle(pilot) -> None:
    for _ in range(2):
        await pilot.pause()
        # Poll loops (the runs list's, the monitor's) live as long as their screen: wait for
        # every other worker; one replaced by a newer exclusive worker counts as done.
        for w in [w for w in pilot.app.workers if not w.group.endswith("-poll")]:
            try:
                await w.wait()
            except WorkerCancelled:
                pass
        await pilot.pause()


@pytest.mark.timeout(60)
def test_sweep_view_ranks_trials_and_opens_compare(tmp_path):
    asyncio.run(_sweep_view(tmp_path))


async def _sweep_view(tmp_path):
    runs_dir = tmp_path / "runs"
    rec = build(runs_dir)
    app = TuitrainApp(runs_dir=runs_dir)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.press("w")  # no sweep under the cursor's run? it opens the sweep or the list
        await settle(pilot)
        if app.screen.id == "sweeps":
            await pilot.press("enter")
            await settle(pilot)
        screen = app.screen
        assert screen.id == "sweep"
        head = str(screen.query_one("#sweep-head").render())
        assert "best: trial 1" in head and "optimizer.lr 0.90" in head
        assert [t.number for t in screen.rows] == [1, 0, 2, 3]  # ranked by val_loss, unscored last
        await pilot.press("b")
        await settle(pilot)
        assert app.screen.id != "sweep"  # the compare screen of the best trials
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen.id == "sweep"
        app.screen.query_one("#sweep-table").move_cursor(row=3)
        await pilot.press("enter")  # the invalid trial never ran: a notice, no monitor
        await settle(pilot)
        assert app.screen.id == "sweep"
        await pilot.press("escape")
        await settle(pilot)
    assert rec.best().number == 1


@pytest.mark.timeout(60)
def test_sweeps_list_shows_every_sweep(tmp_path):
    asyncio.run(_sweeps_list(tmp_path))


async def _sweeps_list(tmp_path):
    runs_dir = tmp_path / "runs"
    build(runs_dir)
    build(runs_dir)
    from tuitrain.tui.screens.sweep import SweepsScreen

    app = TuitrainApp(runs_dir=runs_dir)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        app.push_screen(SweepsScreen())
        await settle(pilot)
        table = app.screen.query_one("#sweeps-table")
        assert table.row_count == 2
