"""The sweep screens on a real store and real sweep records, driven by Textual's pilot."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from textual.worker import WorkerCancelled

from tuitrain.store import Store
from tuitrain.sweep import records
from tuitrain.sweep.records import SweepRecord, TrialRecord
from tuitrain.tui.app import TuitrainApp


def build(runs_dir: Path) -> SweepRecord:
    """A finished 4-trial sweep: 2 complete, 1 pruned, 1 invalid (never ran)."""
    rec = SweepRecord(
        id=records.new_sweep_id("demo"), name="demo", method="tpe", metric="val_loss", direction="minimize",
        n_trials=4, parallel=1, study_name="s", storage="sqlite://", pid=os.getpid(), status="completed",
        spec={"space": {"optimizer.lr": {}, "model.arch.num_layers": {}}}, importance={"optimizer.lr": 0.9, "model.arch.num_layers": 0.1},
    )  # fmt: skip
    with Store(runs_dir) as s:
        for n, (lr, layers, state, value, status) in enumerate(
            [
                (1e-3, 1, "complete", 3.5, "completed"),
                (1e-2, 2, "complete", 2.25, "completed"),
                (1e-6, 1, "pruned", 5.4, "pruned"),
            ]
        ):
            run = s.create_run(
                {"optimizer": {"lr": lr}},
                {"total_steps": 10},
                name=f"demo-t{n:03d}",
                sweep_id=rec.id,
            )
            s.log_metrics(run.id, [(2, "val_loss", value, 0.0)])
            s.set_status(run.id, status)
            rec.trials.append(
                TrialRecord(
                    n,
                    {"optimizer.lr": lr, "model.arch.num_layers": layers},
                    run_id=run.id,
                    run_name=run.name,
                    state=state,
                    value=value,
                    run_status=status,
                    pruned_step=2 if state == "pruned" else None,
                )
            )
    rec.trials.append(
        TrialRecord(
            3,
            {"optimizer.lr": 1e-4, "model.arch.num_layers": 3},
            state="failed",
            error="model.arch.num_heads must divide hidden_size",
        )
    )
    records.save(rec, runs_dir)
    return rec


async def settle(pilot) -> None:
    for _ in range(2):
        await pilot.pause(0.3)
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
