"""Tests the trainer's announced phase (store column phase: eval, save) on screen: the monitor
header says 'evaluating 30s' instead of looking idle, the runs list's status cell 'eval 30s';
a phase shorter than PHASE_SHOW_S (most evals) shows nothing."""

from __future__ import annotations

import time
from pathlib import Path

from tests.tui.conftest import aio, make_app, settle
from tests.tui.fixture_db import NOW
from tuitrain.store import RunInfo, Store
from tuitrain.tui.screens.runs_cells import status_text
from tuitrain.tui.widgets.run_panes import RunHeader, phase_text


def _run(**kw) -> RunInfo:
    base = dict(id="r", name="r", status="running", config={}, derived={}, created=NOW - 100)
    return RunInfo(**{**base, **kw})


def test_phase_text_only_for_a_running_run_in_a_phase_that_lasted():
    assert phase_text(_run(phase="eval", phase_since=NOW - 30), NOW) == "evaluating 30s"
    assert phase_text(_run(phase="save", phase_since=NOW - 75), NOW, short=True) == "save 1m15s"
    assert phase_text(_run(phase="eval", phase_since=NOW - 2), NOW) == ""  # a blink: nothing
    assert phase_text(_run(phase=None), NOW) == ""
    assert phase_text(_run(status="completed", phase="eval", phase_since=NOW - 30), NOW) == ""
    now_run = _run(phase="eval", phase_since=time.time() - 40)
    assert str(status_text(now_run)).startswith("eval ")
    assert str(status_text(_run())) == "running"


def _set_phase(run_id: str, phase: str, since: float) -> None:
    with Store(Path("runs")) as s:
        s.set_phase(run_id, phase)
        s.conn.execute("UPDATE runs SET phase_since = ? WHERE id = ?", (since, run_id))
        s.conn.commit()


@aio
async def test_monitor_header_says_evaluating_not_stalled(runs):
    """The fixture's running run last stepped long ago (it reads as stalled); in an eval that
    began 30 s ago it is not stalled, and the header says what it is doing."""
    _set_phase(runs["running"], "eval", time.time() - 30)
    app = make_app(start="watch", run=runs["running"], now=time.time)  # the store's clock
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        text = str(app.screen.query_one("#run-header", RunHeader).render())
        assert "running evaluating 3" in text and "stalled" not in text, text
