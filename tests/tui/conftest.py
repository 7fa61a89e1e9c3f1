"""Shared TUI test setup: a deterministic runs directory (relative path, UTC clock) and helpers."""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.tui.fixture_db import NOW, build
from tuitrain.tui.app import Settings, TuitrainApp


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fixture runs in ./runs under tmp_path (cwd), with times shown in UTC."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    return build(Path("runs"))


def make_app(**kwargs) -> TuitrainApp:
    """An app on ./runs with the fixture clock."""
    kwargs.setdefault("runs_dir", "runs")
    kwargs.setdefault("now", lambda: NOW)
    kwargs.setdefault("settings", Settings())
    return TuitrainApp(**kwargs)


async def settle(pilot: Pilot, rounds: int = 2, wait: float = 0.6) -> None:
    """Let timers fire, workers finish and their messages land (twice: polls chain)."""
    for _ in range(rounds):
        await pilot.pause(wait)
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def aio(fn):
    """Run an async test with asyncio.run (no async pytest plugin needed)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return wrapper
