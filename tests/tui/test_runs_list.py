"""Pilot tests of the runs list: focus, `/` filter, tags, progress text, stall and failure reasons,
and reads that stay flat in the number of runs (skip when nothing changed, changed rows only)."""

from __future__ import annotations

from textual.widgets import DataTable, Input, Static

from tests.tui.conftest import aio, make_app, polled, settle
from tests.tui.fixture_db import add_run
from tuitrain.store import Store
from tuitrain.tui.app import Settings
from tuitrain.tui.screens.monitor import MonitorScreen
from tuitrain.tui.screens.runs import RunsScreen
from tuitrain.tui.screens.runs_cells import progress_text, status_text

FAST = Settings(poll_s=0.2, list_poll_s=0.3, chart_cpu_budget=1.0)


def _status(app) -> str:
    return str(app.screen.query_one("#runs-status", Static).render())


def _names(app) -> list[str]:
    return [r.name for r in app.screen.runs]


def test_progress_text_never_needs_more_than_the_column():
    assert progress_text(1000, 1000) == "1000/1000 100%"
    assert progress_text(12_500, 100_000) == "12k/100k 12%"
    assert progress_text(999_999, 1_000_000) == "1.0M/1.0M 100%"
    cases = [(1000, 1000), (9999, 9999), (12_345, 99_999), (99_999, 99_999), (999_499, 999_499)]
    cases += [(9_960_000, 9_960_000), (123_456_789, 123_456_789)]
    for step, total in cases:
        assert len(progress_text(step, total)) <= 14, progress_text(step, total)


@aio
async def test_the_table_has_focus_after_coming_back_from_the_monitor(runs):
    app = make_app(settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert isinstance(app.focused, DataTable)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, MonitorScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        assert isinstance(app.focused, DataTable)
        await pilot.press("space")  # the very first space marks the run under the cursor
        await pilot.pause()
        assert len(app.screen.marked) == 1
        assert "1 marked" in _status(app)


@aio
async def test_tags_show_and_slash_filters_by_tag_or_name(runs):
    with Store("runs") as s:
        rid = add_run(s, "lora-r8", 1e-3, 100, 100)
        s.set_status(rid, "completed", "finished")
        conn = s.conn
        with conn:  # a run launched with run.tags (the launcher stores the config as given)
            row = conn.execute("SELECT config FROM runs WHERE id = ?", (rid,)).fetchone()
            import json

            cfg = json.loads(row[0])
            cfg["run"]["tags"] = ["lora", "ablation"]
            conn.execute("UPDATE runs SET config = ? WHERE id = ?", (json.dumps(cfg), rid))
    app = make_app(settings=FAST)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#runs-table", DataTable)
        assert "lora ablation" in table.get_cell(rid, "name").plain
        await pilot.press("slash")
        await pilot.pause()
        assert isinstance(app.focused, Input)
        await pilot.press(*"ablation")
        await pilot.pause()
        assert _names(app) == ["lora-r8"] and table.row_count == 1
        assert "1 shown" in _status(app)
        await pilot.press("enter")  # keep the filter, keys back to the table
        await pilot.pause()
        assert isinstance(app.focused, DataTable) and table.row_count == 1
        await pilot.press("slash", "end", *["backspace"] * len("ablation"), *"low")
        await pilot.pause()
        assert _names(app) == ["low-lr"]  # by name
        await pilot.press("escape")  # clears
        await pilot.pause()
        assert table.row_count == 5 and isinstance(app.focused, DataTable)


@aio
async def test_stalled_and_failure_reason_show_in_the_list(runs):
    with Store("runs") as s:
        rid = s.create_run({}, {}, name="never-started").id
        s.set_status(rid, "failed", "launcher died before training started:\nImportError: x")
    app = make_app(settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert _names(app)[0] == "never-started"  # newest first, under the cursor
        detail = str(app.screen.query_one("#runs-detail", Static).render())
        assert "failed" in detail and "ImportError: x" in detail and "\n" not in detail
        run = app.screen.runs[0]
        run.stalled, run.last_step_age_s, run.status = True, 190.0, "running"
        assert status_text(run).plain == "stalled 3m10s"


@aio
async def test_idle_polls_read_nothing_and_a_change_reads_only_its_row(runs):
    with Store("runs") as s:  # every run finished: nothing is live
        s.set_status(runs["running"], "completed", "finished")
        for i in range(30):
            rid = add_run(s, f"old-{i}", 1e-3, 10, 10)
            s.set_status(rid, "completed", "finished")
    app = make_app(settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert screen.query_one("#runs-table", DataTable).row_count == 34
        reads = screen.row_reads
        for _ in range(3):
            await polled(pilot)
        assert screen.row_reads == reads  # nothing committed: not one run record read
        with Store("runs") as s:
            s.set_status(
                runs["early"], "early_stopped", "patience: 3 evals", summary={"best_value": 1.5}
            )
        await settle(pilot)
        assert screen.last_changed == {runs["early"]}
        assert screen.row_reads == reads + 1
        table = screen.query_one("#runs-table", DataTable)
        assert table.get_cell(runs["early"], "best").plain == "1.5"
        # A new run appears (and only it is read).
        with Store("runs") as s:
            new = add_run(s, "fresh", 1e-3, 10, 1)
        await settle(pilot)
        assert table.row_count == 35 and new in screen.last_changed
        assert len(screen.last_changed) == 1
