"""The doctor screen's rollback: a live spiking run with a config and a complete checkpoint
before the spike offers `rollback`; Enter asks to confirm (branch from step N with lr X -> Y,
stop the current run); yes branches a real child through tuitrain.doctor.rollback, sends the
parent a stop (who: user) and opens the child's monitor. Snapshots of the dialog at 80x24, 120x40."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import OptionList

from tests.tui.conftest import aio, kill_runs, make_app, settle, until
from tests.tui.test_doctor_snapshots import add_spiky, doctor_ready
from tuitrain.config import load_config, save_yaml
from tuitrain.store import Store
from tuitrain.tui.dialogs.confirm import ConfirmDialog

REPO = Path(__file__).resolve().parents[2]
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


def add_spiky_with_checkpoints() -> str:
    """The doctor tests' spiky run (spike at step 150, LR 1e-3) with its config.yaml and
    complete checkpoints at steps 100 and 150 (150 is not before the spike)."""
    rid = add_spiky(Path("runs"))
    rdir = Path("runs") / rid
    rdir.mkdir(parents=True, exist_ok=True)
    cfg = load_config(REPO / "configs" / "demo.yaml", sets=["training.max_steps=400"])
    assert cfg.config.optimizer.lr == 1e-3
    save_yaml(cfg.config, rdir / "config.yaml", header=f"run {rid}")
    for s in (100, 150):
        d = rdir / "checkpoints" / f"step-{s}"
        d.mkdir(parents=True)
        (d / "complete.json").write_text(json.dumps({"step": s}))
    return rid


async def open_rollback_dialog(pilot) -> None:
    """h, the cursor on the first rollback diagnosis, Enter: the confirm dialog."""
    await doctor_ready(pilot)
    await pilot.press("h")
    await until(pilot, lambda: pilot.app.screen.id == "doctor", "the doctor screen")
    screen = pilot.app.screen
    kinds = [d.action.kind if d.action else None for d in screen.diagnoses]
    assert "rollback" in kinds, kinds
    screen.query_one("#doctor-list", OptionList).highlighted = kinds.index("rollback")
    await pilot.pause()
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog), "the dialog")
    await settle(pilot, rounds=1)


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_rollback_confirm(snap_compare, runs, size):
    """The question names the checkpoint step, the LR change and that the run stops."""
    rid = add_spiky_with_checkpoints()
    app = make_app(start="watch", run=rid)
    assert snap_compare(app, terminal_size=size, run_before=open_rollback_dialog)
    assert app.return_code == 0


@pytest.mark.e2e  # launches the child run: a real trainer
@aio
async def test_rollback_from_doctor_screen_branches_and_stops_the_parent(runs):
    rid = add_spiky_with_checkpoints()
    app = make_app(start="watch", run=rid)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await open_rollback_dialog(pilot)
            question = app.screen.question
            assert "branch from step 100 with lr 0.001 -> 0.0005, stop the current run" in question
            await pilot.press("n")  # no: nothing happens
            await until(pilot, lambda: app.screen.id == "doctor", "the dialog to close")
            assert app.screen.id == "doctor"
            with Store("runs") as store:
                assert [r.id for r in store.list_runs() if r.parent == rid] == []
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
            await pilot.press("y")
            await until(
                pilot,
                lambda: type(app.screen).__name__ == "MonitorScreen" and app.screen.run_ref != rid,
                "the child's monitor",
            )
            child_id = app.screen.run_ref
        with Store("runs") as store:
            child = store.get_run(child_id)
            assert child.parent == rid and child.fork_step == 100
            assert child.config["optimizer"]["lr"] == 5e-4
            (stop,) = store.commands(rid)
            assert stop.kind == "stop" and stop.payload["who"] == "user"
            assert stop.payload["diagnosis"] in ("loss_spike", "exploding_gradients")
            assert child_id in stop.payload["reason"]
        plan = json.loads((Path("runs") / child_id / "branch.json").read_text())
        assert plan["checkpoint"].endswith("step-100")
    finally:
        kill_runs(Path("runs"))
