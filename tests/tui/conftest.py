"""Shared TUI test setup: a deterministic runs directory (relative path, UTC clock) and helpers."""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.worker import WorkerState

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


# Workers that loop for a screen's lifetime (one thread, one Store): waited on by their
# `polls` counter, never for completion.
LOOP_GROUPS = {"monitor-poll", "runs-poll"}


async def flush(pilot: Pilot) -> None:
    """Let the current screen handle every message already queued (what threads posted too),
    without pause()'s wait for an idle CPU (at least 20 ms each; settle calls this often)."""
    await pilot._wait_for_screen()
    await asyncio.sleep(0)


async def polled(pilot: Pilot, timeout: float = 20.0) -> None:
    """Wake the current screen's poll loop and wait until it has read the database after this
    call (a read already under way when it is called may predate what the test just wrote, so
    the loop is woken twice: the second read starts after the first one ended)."""
    screen = pilot.app.screen
    if not hasattr(screen, "polls"):
        return
    deadline = time.monotonic() + timeout
    for _ in range(2):
        before = screen.polls
        screen.poll()
        while screen.polls <= before:
            if time.monotonic() > deadline:
                raise AssertionError(f"{screen!r} did not poll within {timeout} s")
            await pilot.pause(0.01)
    await flush(pilot)


async def settle(pilot: Pilot, rounds: int = 2) -> None:
    """Wait, on conditions only, until what the test did has landed: key handlers and
    call-afters ran, one-shot workers ended and their messages were handled, the screen's
    deferring timers fired, the poll loop read the database since, and the pending chart
    draw ran. Twice by default: a read's messages can start more work (the runs list reads
    a first page, then the rest)."""
    for _ in range(rounds):
        await pilot.pause()
        await idle_workers(pilot)
        await timers_fired(pilot)
        await idle_workers(pilot)
        await polled(pilot)
        await idle_workers(pilot)
        await drawn(pilot)
        await pilot.pause()


async def timers_fired(pilot: Pilot, timeout: float = 20.0) -> None:
    """Fire now the current screen's timers that defer work, then wait for their effect:
    the editor's derive delay (DERIVE_DELAY_S, a debounce; tests check the derived values,
    not the delay: its callback, the derive worker, starts at once and idle_workers waits
    for it) and the runs list's later row chunks (each a 0.01 s timer: waited for)."""
    screen = pilot.app.screen
    timer = getattr(screen, "_derive_timer", None)
    if timer is not None and timer._task is not None and not timer._task.done():
        timer.stop()
        timer._callback()  # what the timer would have called

    def pending() -> bool:
        target, cells = getattr(screen, "_target", None), getattr(screen, "_cells", None)
        return target is not None and isinstance(cells, dict) and len(cells) < len(target)

    deadline = time.monotonic() + timeout
    while pending():
        if time.monotonic() > deadline:
            raise AssertionError(f"{screen!r}: row chunks still pending after {timeout} s")
        await pilot.pause(0.01)
    await flush(pilot)


async def drawn(pilot: Pilot) -> None:
    """Draw now what the current screen's pacing has deferred (a loaded machine makes chart
    builds slow, and the monitor then postpones the next draw by build cost / chart_cpu_budget:
    20 s once on CI). Tests check what is drawn, not the pacing, so the pending draw runs at once."""
    screen = pilot.app.screen
    timer = getattr(screen, "_draw_timer", None)
    if timer is not None:
        timer.stop()
        screen.redraw()  # clears _draw_timer
    await flush(pilot)


async def idle_workers(pilot: Pilot, timeout: float = 30.0) -> None:
    """Wait until no one-shot worker is pending or running (poll loops never end: skipped)."""
    deadline = time.monotonic() + timeout
    while any(
        w.group not in LOOP_GROUPS and w.state in (WorkerState.PENDING, WorkerState.RUNNING)
        for w in pilot.app.workers
    ):
        if time.monotonic() > deadline:
            raise AssertionError(f"workers still running after {timeout} s")
        await pilot.pause(0.02)


def aio(fn):
    """Run an async test with asyncio.run (no async pytest plugin needed)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


async def until(pilot: Pilot, cond, what: str, timeout: float = 60.0) -> None:
    """Pause the pilot until cond() holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def kill_runs(runs_dir: Path) -> None:
    """No orphans: SIGKILL every process group a launch under runs_dir started."""
    import json
    import os
    import signal

    for f in Path(runs_dir).glob("*/launch.json"):
        try:
            os.killpg(json.loads(f.read_text())["pgid"], signal.SIGKILL)
        except (ProcessLookupError, PermissionError, KeyError, ValueError):
            pass
