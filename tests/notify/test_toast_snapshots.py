"""Snapshots of the runs list with the toast an open TUI shows when a run ends (80x24, 120x40),
from the deterministic fixture database of the TUI tests."""

from __future__ import annotations

import pytest
from textual.pilot import Pilot

from tests.tui.conftest import make_app, runs, settle  # noqa: F401 -- `runs` is a fixture
from tuitrain.notify.message import Notification

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


async def _toast(pilot: Pilot) -> None:
    await settle(pilot)
    body = (
        "run lora-r8 (20250101-000000-aaaa) on gpu-box, step 100/100\n"
        "best val_loss 1.234 at step 80 (kept in checkpoints/best-80)\n→ tuitrain show lora-r8"
    )
    n = Notification("completed", "k", "lora-r8 completed", body, "info", "x", "lora-r8")
    pilot.app.terminal_notifier.emit([n])
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_runs_list_with_a_run_end_toast(snap_compare, runs, size, monkeypatch):  # noqa: F811
    monkeypatch.setenv("TUITRAIN_TERM_NOTIFY", "off")
    app = make_app()
    assert snap_compare(app, terminal_size=size, run_before=_toast)
    assert app.return_code == 0
