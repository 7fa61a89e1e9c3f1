"""Pilot and snapshot tests of the runs list's tree view (t: each branch under its parent with its
fork step and the parent's val_loss there), the first-page listing of a long list, and the chart
redraw cap over SSH (a setting the monitor reads)."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Input, Static

from tests.tui.conftest import aio, make_app, settle
from tests.tui.test_branch_tui import _lineage
from tuitrain.store import InvalidValue, Store
from tuitrain.tui import fmt
from tuitrain.tui.app import Settings, redraw_hz
from tuitrain.tui.pollers.runs import FIRST_PAGE
from tuitrain.tui.screens.runs import RunsScreen

FAST = Settings(poll_s=0.2, list_poll_s=0.3, chart_cpu_budget=1.0)
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


def _rows(app) -> list[list[str]]:
    table = app.screen.query_one("#runs-table", DataTable)
    return [[c.plain for c in table.get_row_at(i)] for i in range(table.row_count)]


def _parent_val_at(parent: str, step: int) -> float:
    """The parent's last val_loss at or before `step`, read point by point (not downsampled)."""
    with Store("runs") as s:
        pts = [p for p in s.tail(parent, ["val_loss"]) if p.step <= step]
    assert pts, "the fixture parent has val_loss points before the fork"
    return pts[-1].value


@aio
async def test_t_toggles_the_tree_view_with_fork_step_and_parent_value(runs):
    ids = _lineage(runs)
    app = make_app(settings=FAST)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#runs-table", DataTable)
        labels = [str(c.label) for c in table.columns.values()]
        assert labels[-1] == "started" and "from" not in labels
        await pilot.press("t")
        await pilot.pause()
        assert app.screen.tree_view
        labels = [str(c.label) for c in table.columns.values()]
        assert labels[-1] == "from" and "started" not in labels
        rows = _rows(app)
        names = [r[1] for r in rows]
        i = names.index("baseline")
        # The branch sits right under its parent, indented, with the step it forked at in
        # the 'from' column (the name column keeps its width for the name at 80 columns).
        assert names[i + 1] == "└ baseline-b200", names
        want = fmt.number(_parent_val_at(ids["parent"], 200), 4)
        assert rows[i + 1][-1] == f"{want} @200", rows[i + 1]
        assert rows[i][-1] == "", "a root run has no fork"
        assert "tree view" in str(app.screen.query_one("#runs-status", Static).render())
        # Keys still act on rows in the tree view: the cursor row is the branch.
        table.move_cursor(row=i + 1)
        await pilot.pause()
        assert app.screen.current_run().id == ids["child"]
        await pilot.press("t")
        await pilot.pause()
        assert not app.screen.tree_view
        rows = _rows(app)
        assert [str(c.label) for c in table.columns.values()][-1] == "started"
        assert [r[1] for r in rows][i + 1] == "└ baseline-b200"
        assert app.screen.current_run().id == ids["child"], "the cursor stays on its run"


@aio
async def test_tree_view_survives_a_filter_and_a_new_run(runs):
    _lineage(runs)
    app = make_app(settings=FAST)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("t", "slash")
        await pilot.press(*"baseline")
        await pilot.press("enter")
        await pilot.pause()
        names = [r[1] for r in _rows(app)]
        assert names == ["baseline", "└ baseline-b200"], names
        assert app.screen.query_one("#runs-filter", Input).display is False
        with Store("runs") as s:
            s.create_run({}, {"total_steps": 10}, name="baseline-new")
        await settle(pilot)
        names = [r[1] for r in _rows(app)]
        assert names[0] == "baseline-new" and "└ baseline-b200" in names, names


@aio
async def test_a_long_list_opens_with_a_first_page_then_lists_every_run(runs):
    """The first read lists only FIRST_PAGE runs; the rest follow, in the store's order."""
    with Store("runs") as s:
        for i in range(FIRST_PAGE + 25):
            s.create_run({}, {"total_steps": 10}, name=f"many-{i:03d}")
        want = [r.id for r in s.list_runs()]
    seen: list[int] = []
    orig = RunsScreen.on_runs_changed

    def spy(self, msg):
        seen.append(len(msg.changed))
        orig(self, msg)

    RunsScreen.on_runs_changed = spy
    try:
        app = make_app(settings=FAST)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            table = app.screen.query_one("#runs-table", DataTable)
            got = [str(k.value) for k in table.rows]
            assert got == want
            assert seen[0] == FIRST_PAGE and sum(seen) >= len(want), seen
    finally:
        RunsScreen.on_runs_changed = orig


def test_redraw_cap_is_slower_over_ssh_and_settable():
    s = Settings()
    assert redraw_hz(s, {}) == s.local_redraw_hz
    assert redraw_hz(s, {"SSH_CONNECTION": "10.0.0.1 5000 10.0.0.2 22"}) == s.remote_redraw_hz
    assert s.remote_redraw_hz < s.local_redraw_hz
    slow = Settings(remote_redraw_hz=0.25)
    assert redraw_hz(slow, {"SSH_CONNECTION": "a b c d"}) == 0.25
    assert redraw_hz(s, {"SSH_CONNECTION": "a", "TUITRAIN_MAX_REDRAW_HZ": "3"}) == 3.0
    assert Settings(max_redraw_hz=5.0).max_redraw_hz == 5.0  # explicit wins over the env
    for bad in ("fast", "0", "-1"):
        with pytest.raises(InvalidValue, match="TUITRAIN_MAX_REDRAW_HZ"):
            redraw_hz(s, {"TUITRAIN_MAX_REDRAW_HZ": bad})


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_runs_list_tree_view(snap_compare, runs, size):
    """Tree view: baseline-b200 under baseline with '@200' and baseline's val_loss there."""
    _lineage(runs)

    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)

    app = make_app()
    assert snap_compare(app, terminal_size=size, run_before=run_before)
    assert app.return_code == 0


def test_no_color_status_keeps_bold_and_drops_the_colour(monkeypatch):
    """NO_COLOR: Textual greys colours by luminance ('bold red' came out grey on grey), so the
    status cell carries only bold/italic/underline/reverse."""
    from rich.style import Style

    from tuitrain.tui.screens.runs_cells import status_text

    class R:
        status, stalled = "crashed", False

    assert Style.parse(str(status_text(R()).style)).color is not None
    monkeypatch.setenv("NO_COLOR", "1")
    style = Style.parse(str(status_text(R()).style))
    assert style.color is None and style.bold
