"""End to end: launch a real tiny training from the editor; the monitor shows its points live."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.tui.conftest import aio, make_app, settle
from tuitrain.config import load_config, save_yaml
from tuitrain.runs.launch import LAUNCH_FILE
from tuitrain.store import Store
from tuitrain.tui.app import Settings
from tuitrain.tui.configdoc import DEMO_CONFIG
from tuitrain.tui.screens.monitor import MonitorScreen

# A tiny from-scratch byte LM on a slice of the stdlib corpus: seconds of CPU.
TINY = [
    "model.arch.hidden_size=32",
    "model.arch.num_layers=1",
    "model.arch.num_heads=2",
    "model.arch.max_position_embeddings=64",
    "data.max_seq_length=32",
    "data.max_bytes=60000",
    "batch.size=8",
    "training.max_steps=40",
    "training.eval_every=20",
    "training.eval_max_batches=2",
    "training.log_every=2",
    "generation.max_new_tokens=8",
    "run.name=tui-e2e",
]
DEADLINE_S = 180


def _kill_runs(runs_dir: Path) -> None:
    """No orphans: SIGKILL every process group a launch in this test started."""
    for f in runs_dir.glob(f"*/{LAUNCH_FILE}"):
        pgid = json.loads(f.read_text())["pgid"]
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.e2e
@pytest.mark.timeout(DEADLINE_S + 60)
@aio
async def test_launch_from_editor_runs_training_and_monitor_shows_points(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    save_yaml(load_config(DEMO_CONFIG, sets=TINY).config, "tiny.yaml")
    app = make_app(start="edit", config="tiny.yaml", now=time.time, settings=Settings(poll_s=0.3))
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, rounds=1)
            await pilot.press("ctrl+g")
            deadline = time.monotonic() + DEADLINE_S
            shown = False
            while time.monotonic() < deadline:
                await pilot.pause(0.5)
                screen = app.screen
                if isinstance(screen, MonitorScreen) and screen.run is not None:
                    chart = screen.query_one("#chart-loss")
                    points = sum(len(line.xs) for line in chart.lines)
                    if points >= 5 and screen.run.terminal:
                        shown = True
                        break
            assert shown, (Path("runs") / "tuitrain.db").exists() and [
                p.read_text()[-3000:] for p in Path("runs").glob("*/train.log")
            ]
            run = app.screen.run
            assert run.status == "completed", run.exit_reason
            header = str(app.screen.query_one("#run-header").render())
            assert "completed" in header and "step 40/40" in header
            await settle(pilot, rounds=1)
            pane = app.screen.query_one("#events")  # an OptionList: one option per event
            events = "\n".join(
                str(pane.get_option_at_index(i).prompt) for i in range(pane.option_count)
            )
            assert "eval" in events
            # The monitor was opened from the editor: escape goes back there, not to the list.
            await pilot.press("escape")
            await pilot.pause()
            assert type(app.screen).__name__ == "EditorScreen"
        with Store("runs") as s:
            (info,) = s.list_runs()
            assert info.name == "tui-e2e" and info.last_step == 40
            losses = [p.value for p in s.tail(info.id, ["loss"])]
            assert len(losses) >= 10 and losses[-1] < losses[0]
    finally:
        _kill_runs(Path("runs"))
