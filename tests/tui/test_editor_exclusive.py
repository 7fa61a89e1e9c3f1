"""Pilot test: in the editor (the latest layer), setting one of an exclusive pair clears the other."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from textual.widgets import Input

from tests.tui.conftest import aio, make_app, settle

EDITOR_YAML = Path(__file__).parent / "data" / "editor.yaml"  # sets scheduler.warmup_ratio


async def _type(pilot, path: str, value: str) -> None:
    await pilot.app.screen.jump_to(path)
    await pilot.pause()
    pilot.app.screen.query_one("#f-" + path.replace(".", "--"), Input).value = value
    await settle(pilot, rounds=1)


async def _until(pilot, cond, timeout: float = 30.0) -> None:
    """Wait for a condition (derived values come from a debounced worker)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


@aio
async def test_setting_warmup_steps_clears_warmup_ratio(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(EDITOR_YAML, "demo.yaml")
    app = make_app(start="edit", config="demo.yaml")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, rounds=1)
        doc = app.screen.doc.data["scheduler"]
        assert doc["warmup_ratio"] > 0 and doc["warmup_steps"] is None
        await _type(pilot, "scheduler.warmup_steps", "7")
        assert doc["warmup_steps"] == 7 and doc["warmup_ratio"] == 0.0
        ratio = app.screen.query_one("#f-scheduler--warmup_ratio", Input)
        assert float(ratio.value) == 0.0  # the form shows the cleared value
        # valid (no "both set" error), and the derived warmup is the edited one
        await _until(pilot, lambda: getattr(app.screen.resolved, "derived", None) is not None)
        await _until(pilot, lambda: app.screen.resolved.derived.warmup_steps == 7)
        await _type(pilot, "scheduler.warmup_ratio", "0.2")  # and back: the other way round
        assert doc["warmup_ratio"] == 0.2 and doc["warmup_steps"] is None
        assert app.screen.query_one("#f-scheduler--warmup_steps", Input).value == ""
