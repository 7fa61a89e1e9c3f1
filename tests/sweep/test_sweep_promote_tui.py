"""P in the sweep view (issue 12, "From sweeps"): a real trial with checkpoints is promoted from
the TUI (confirm dialog, a child run with parent = the trial's run and fork_step = its last
checkpoint, the child's monitor opens); refusals (no checkpoint, never ran, still running) are
notices and start nothing; the detail line shows a pruned trial's reason; dialog snapshots at
80x24 and 120x40 from a fixture sweep built without training."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.tui.conftest import settle, until
from tuitrain.store import Store
from tuitrain.tui.app import TuitrainApp
from tuitrain.tui.dialogs.promote import PromoteDialog
from tuitrain.tui.screens.sweep import SweepScreen

from .helpers import PRUNE_REASON, build_sweep, promo_copy

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


async def _open_sweep(pilot, sweep_id: str) -> SweepScreen:
    """Push the sweep view and wait for its first load (trials in the table)."""
    screen = SweepScreen(sweep_id)
    pilot.app.push_screen(screen)
    await until(pilot, lambda: pilot.app.screen is screen and bool(screen.rows), "the trials")
    await settle(pilot, rounds=1)
    return screen


async def _cursor_to_trial(pilot, screen: SweepScreen, number: int) -> None:
    row = [t.number for t in screen.rows].index(number)
    screen.query_one("#sweep-table").move_cursor(row=row)
    await pilot.pause()


def _messages(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def _dialog(pilot) -> PromoteDialog:
    """Wait for P's confirm dialog; a refusal notice instead fails with its text."""
    app = pilot.app
    await until(
        pilot,
        lambda: (
            isinstance(app.screen, PromoteDialog)
            or any(n.title == "cannot promote" for n in app._notifications)
        ),
        "the promote dialog",
    )
    assert isinstance(app.screen, PromoteDialog), _messages(app)
    return app.screen


def _run_count(runs_dir: Path) -> int:
    with Store(runs_dir) as s:
        return len(s.list_runs())


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_P_promotes_trial_and_opens_the_new_runs_monitor(cli, promo_trained):
    """A real 6-step trial (checkpoints at 3 and 6, base length 12): P, the dialog says step 6
    and 12 steps, enter launches; the child's parent is the trial's run, fork_step 6, and the
    child's monitor is the current screen."""
    rec = promo_copy(cli, promo_trained)  # promo_sweep(cli), run once per session
    (trial,) = rec.trials

    async def go() -> str:
        app = TuitrainApp(runs_dir=cli.runs_dir)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot, rounds=1)
            screen = await _open_sweep(pilot, rec.id)
            await pilot.press("P")
            text = str((await _dialog(pilot)).query_one("#promote-text").render())
            assert "from step  6 (its last complete checkpoint)" in text, text
            assert "max_steps  12 steps (the trial ran 6)" in text, text
            assert f"new run    {trial.run_name}-full" in text, text
            await pilot.press("enter")
            await until(
                pilot, lambda: type(app.screen).__name__ == "MonitorScreen", "the child's monitor"
            )
            assert app.screen_stack[-2] is screen  # escape goes back to the sweep view
            return app.screen.run_ref

    ref = asyncio.run(go())
    with Store(cli.runs_dir) as s:
        child = s.get_run(ref)
    assert child.parent == trial.run_id and child.fork_step == 6
    assert child.name == f"{trial.run_name}-full" and child.sweep_id is None
    assert child.config["training"]["max_steps"] == 12
    assert child.config["optimizer"]["lr"] == trial.params["optimizer.lr"]


@pytest.mark.timeout(120)
def test_P_refusals_start_nothing_and_escape_cancels(tmp_path, monkeypatch):
    """Fixture sweep (no training): the pruned trial has no checkpoint, the invalid one never
    ran, a running one is still running: each is a notice naming why, no dialog, no run; the
    best trial's dialog cancelled with escape starts nothing, nor does one confirmed when the new
    run's name is taken (the launch's error is the notice)."""
    monkeypatch.chdir(tmp_path)
    runs = Path("runs")
    rec = build_sweep(runs, tmp_path)
    by_number = {t.number: t for t in rec.trials}

    async def go() -> None:
        app = TuitrainApp(runs_dir=runs)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot, rounds=1)
            screen = await _open_sweep(pilot, rec.id)
            detail = screen.query_one("#sweep-detail")
            for number, says in (
                (2, "has no complete checkpoint to continue from"),
                (3, "trial 3 never ran (model.arch.num_heads must divide hidden_size)"),
            ):
                await _cursor_to_trial(pilot, screen, number)
                await pilot.press("P")
                await until(pilot, lambda s=says: any(s in m for m in _messages(app)), says)
                assert app.screen is screen
            await _cursor_to_trial(pilot, screen, 2)
            assert PRUNE_REASON in str(detail.render())  # the run's status reason
            await _cursor_to_trial(pilot, screen, 1)
            assert "P promotes it" in str(detail.render())
            await pilot.press("P")
            await _dialog(pilot)
            await pilot.press("escape")
            await until(pilot, lambda: app.screen is screen, "the sweep view again")
            assert _run_count(runs) == 3
            # confirmed, but the new run's name is taken: the launch's refusal, nothing started
            with Store(runs) as s:
                s.create_run({}, {}, name="demo-t001-full")
            await pilot.press("P")
            await _dialog(pilot)
            await pilot.press("y")
            says = "demo-t001-full"
            await until(
                pilot,
                lambda: any(
                    n.title == "promote failed" and says in str(n.message)
                    for n in app._notifications
                ),
                "the launch's refusal",
            )
            assert app.screen is screen
            # trial 0's run is running again (a live process: this one)
            with Store(runs) as s:
                s.mark_started(by_number[0].run_id, os.getpid())
            await settle(pilot, rounds=1)
            await _cursor_to_trial(pilot, screen, 0)
            await pilot.press("P")
            says = "trial 0 (run demo-t000) is still running"
            await until(pilot, lambda: any(says in m for m in _messages(app)), says)
            assert app.screen is screen

    asyncio.run(go())
    assert _run_count(runs) == 4  # the three trial runs and the name holder, nothing started


def test_plan_promote_refuses_a_diverged_trial_with_its_reason(tmp_path):
    """A trial whose run diverged is not continued at full length: PromoteError with the run's
    status reason (last line); the best trial's plan forks at its newest checkpoint."""
    from tuitrain.sweep.promote import PromoteError, plan_promote

    runs = tmp_path / "runs"
    rec = build_sweep(runs, tmp_path)
    t0 = rec.trials[0]
    with Store(runs) as s:
        s.set_status(t0.run_id, "diverged", "step 4: loss nan\nloss is nan at step 4; lower the LR")
    with pytest.raises(PromoteError) as err:
        plan_promote(runs, rec.id, 0)
    assert str(err.value).startswith("trial 0 (run demo-t000) diverged: loss is nan at step 4;")
    p = plan_promote(runs, rec.name)  # no --trial: the best (trial 1)
    assert (p.trial.number, p.fork_step, p.max_steps, p.name) == (1, 6, 12, "demo-t001-full")


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_promote_dialog(snap_compare, tmp_path, monkeypatch, size):
    """The confirm dialog over the sweep view for the best trial (1): its run, step 6, 12 steps
    (the trial ran 6), its params, the new run's name."""
    monkeypatch.chdir(tmp_path)
    rec = build_sweep(Path("runs"), tmp_path)
    app = TuitrainApp(runs_dir=Path("runs"))

    async def run_before(pilot) -> None:
        await settle(pilot, rounds=1)
        screen = await _open_sweep(pilot, rec.id)
        await _cursor_to_trial(pilot, screen, 1)
        await pilot.press("P")
        await _dialog(pilot)
        await settle(pilot, rounds=1)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
    assert app.return_code == 0


PROBE = r"""
import json, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from tests.sweep.helpers import build_sweep
from tuitrain.tui.app import TuitrainApp
from tuitrain.tui.dialogs.promote import PromoteDialog
from tuitrain.tui.screens.sweep import SweepScreen

rec = build_sweep(Path("runs"), Path.cwd())

async def tour(pilot):
    app = pilot.app
    await pilot.pause()
    screen = SweepScreen(rec.id)
    app.push_screen(screen)
    while not screen.rows:
        await pilot.pause(0.05)
    await pilot.press("P")
    while not isinstance(app.screen, PromoteDialog):
        await pilot.pause(0.05)
    app.exit(type(app.screen).__name__)

shown = TuitrainApp(runs_dir="runs").run(headless=True, size=(80, 24), auto_pilot=tour)
print(json.dumps({{"shown": shown, "modules": sorted({{m.split(".")[0] for m in sys.modules}})}}))
"""


@pytest.mark.timeout(120)
def test_promote_check_in_the_tui_loads_no_ml_stack(tmp_path):
    """P's check (sweep record, trial run, checkpoint, full config) and the dialog run in the TUI
    process without importing torch / transformers / accelerate / peft."""
    import json
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(root=root)],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["shown"] == "PromoteDialog"
    assert "textual" in got["modules"]
    assert not {"torch", "transformers", "accelerate", "peft"} & set(got["modules"])
