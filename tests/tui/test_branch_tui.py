"""TUI side of branching (issue 12): lineage in the runs list, B opens the branch editor with a
checkpoint picker, refusals match the CLI's, launching opens the child's monitor, the child's
charts start with the parent's prefix; snapshots at 80x24 and 120x40."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Select

from tests.tui.conftest import kill_runs, make_app, settle, until
from tests.tui.fixture_db import NOW, _curve, pin_times
from tuitrain.config import load_config, save_yaml
from tuitrain.store import Store
from tuitrain.tui.lineage_view import PARENT_KEY, PREFIX_COLOR, name_prefix, tree_order
from tuitrain.tui.screens.branch import BranchEditorScreen
from tuitrain.tui.widgets.chart import MetricChart
from tuitrain.tui.widgets.ckpt_picker import CheckpointPicker

REPO = Path(__file__).resolve().parents[2]
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


def _lineage(runs: dict[str, str]) -> dict[str, str]:
    """Give 'baseline' a real config and checkpoints (100, 200, 300 complete; 350 half-written)
    and add its child 'baseline-b200' (fork step 200, logged 201..300)."""
    parent = runs["completed"]
    rdir = Path("runs") / parent
    rdir.mkdir(parents=True, exist_ok=True)
    cfg = load_config(REPO / "configs" / "demo.yaml", sets=["training.max_steps=400"])
    save_yaml(cfg.config, rdir / "config.yaml", header=f"run {parent}")
    for s in (100, 200, 300, 350):
        d = rdir / "checkpoints" / f"step-{s}"
        d.mkdir(parents=True)
        if s != 350:
            (d / "complete.json").write_text(json.dumps({"step": s}))
    store = Store(Path("runs"))
    base = store.get_run(parent)
    child = store.create_run(
        base.config, base.derived, name="baseline-b200", parent=parent, fork_step=200
    )
    rows = [
        (s, k, v * 0.97, NOW - 3000 + s)
        for s in range(201, 301)
        for k, v in _curve(s, 400, 5e-4, 3.0).items()
    ]
    store.log_metrics(child.id, rows)
    store.mark_started(child.id, 999_999_999, "fixture-host")
    store.set_status(child.id, "completed", "finished")
    pin_times(store, child.id, NOW - 2500, NOW - 2490, NOW - 2390)
    store.close()
    return {"parent": parent, "child": child.id}


def _row_names(screen) -> list[str]:
    table = screen.query_one("#runs-table", DataTable)
    return [table.get_row_at(i)[1].plain for i in range(table.row_count)]


async def _cursor_to(pilot, name: str) -> None:
    screen = pilot.app.screen
    names = _row_names(screen)
    idx = next(i for i, n in enumerate(names) if n.strip("└ ").split(" ")[0] == name)
    screen.query_one("#runs-table", DataTable).move_cursor(row=idx)
    await pilot.pause()


def test_tree_order_children_follow_parent() -> None:
    """Pure order: a child right after its parent, grandchildren deeper, orphans top-level."""

    class R:
        def __init__(self, parent=None):
            self.parent = parent

    runs = {"c": R("p"), "p": R(), "x": R(), "g": R("c"), "o": R("gone")}
    assert tree_order(["c", "x", "g", "p", "o"], runs) == [
        ("x", 0),
        ("p", 0),
        ("c", 1),
        ("g", 2),
        ("o", 0),
    ]
    assert name_prefix(0) == "" and name_prefix(1) == "└ " and name_prefix(2) == "  └ "


def test_runs_list_shows_child_under_parent(runs) -> None:
    """The child row comes right after its parent, with '└ ' before its name."""
    import asyncio

    _lineage(runs)

    async def go() -> None:
        app = make_app()
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            names = _row_names(app.screen)
            i = names.index("baseline")
            assert names[i + 1] == "└ baseline-b200", names
            await _cursor_to(pilot, "baseline-b200")
            assert "branched at step 200" in str(app.screen.query_one("#runs-detail").render())

    asyncio.run(go())


def test_B_opens_branch_editor_with_checkpoints_nearest_first(runs) -> None:
    """B on the runs list: the editor holds the parent's config; the picker lists the complete
    checkpoints newest first (the half-written step-350 is not offered)."""
    import asyncio

    ids = _lineage(runs)

    async def go() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await _cursor_to(pilot, "baseline")
            await pilot.press("B")
            await until(pilot, lambda: isinstance(app.screen, BranchEditorScreen), "editor")
            screen = app.screen
            assert screen.parent_run.id == ids["parent"]
            picker = screen.query_one("#ckpt-picker", CheckpointPicker)
            assert picker.steps == [300, 200, 100]
            assert picker.step == 300
            assert screen.doc.data["training"]["max_steps"] == 400
            assert screen.doc.data["model"]["arch"]["hidden_size"] == 128

    asyncio.run(go())


def test_B_on_run_without_config_says_why(runs) -> None:
    """A run with no config.yaml (fixture 'low-lr') cannot be branched: the CLI's message."""
    import asyncio

    async def go() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await _cursor_to(pilot, "low-lr")
            shown = len(app._notifications)
            await pilot.press("B")
            await until(pilot, lambda: len(app._notifications) > shown, "the notification")
            assert not isinstance(app.screen, BranchEditorScreen)
            texts = [str(n.message) for n in app._notifications]
            assert any(f"run {runs['early']} has no tuitrain config" in t for t in texts), texts

    asyncio.run(go())


def test_incompatible_edit_refused_with_the_cli_message(runs) -> None:
    """batch.size edited: the editor shows exactly the lines `tuitrain branch --set` prints, and
    no child run is created."""
    import asyncio

    ids = _lineage(runs)
    cli = subprocess.run(
        [sys.executable, "-m", "tuitrain", "branch", ids["parent"], "--set", "batch.size=32"]
        + ["--runs-dir", "runs"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert cli.returncode == 2, cli.stderr
    cli_lines = [x for x in cli.stderr.splitlines() if x.startswith(("error:", "fix:"))]
    assert any("batch.size" in x for x in cli_lines), cli.stderr

    async def go() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await _cursor_to(pilot, "baseline")
            await pilot.press("B")
            await until(pilot, lambda: isinstance(app.screen, BranchEditorScreen), "editor")
            screen = app.screen
            await settle(pilot, rounds=1)
            await screen.jump_to("batch.size")
            await pilot.pause()
            app.focused.value = "32"
            from tuitrain.tui.widgets.fields import get_path

            await until(pilot, lambda: get_path(screen.doc.data, "batch.size") == 32, "the edit")
            await pilot.press("ctrl+g")
            await until(pilot, lambda: bool(screen.last_error), "the refusal")
            assert screen.last_error.splitlines() == cli_lines
            assert screen.query_one("#branch-error").display
            assert isinstance(app.screen, BranchEditorScreen)  # still open, edits kept
        with Store(Path("runs")) as store:
            assert [r.name for r in store.list_runs() if r.parent == ids["parent"]] == [
                "baseline-b200"
            ]

    asyncio.run(go())


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_launch_from_branch_editor_starts_child_and_opens_its_monitor(runs) -> None:
    """Pick step 100, launch: a real child run (parent, fork_step 100, branch.json naming the
    step-100 checkpoint) is started through tuitrain.runs.branching, and its monitor opens."""
    import asyncio

    ids = _lineage(runs)

    async def go() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await _cursor_to(pilot, "baseline")
            await pilot.press("B")
            await until(pilot, lambda: isinstance(app.screen, BranchEditorScreen), "editor")
            app.screen.query_one("#ckpt-select", Select).value = 100
            await pilot.pause()
            await pilot.press("ctrl+g")
            await until(
                pilot, lambda: type(app.screen).__name__ == "MonitorScreen", "child monitor"
            )
            ref = app.screen.run_ref
        with Store(Path("runs")) as store:
            child = store.get_run(ref)
        assert child.parent == ids["parent"] and child.fork_step == 100
        assert child.name == "baseline-b100"
        plan = json.loads((Path("runs") / child.id / "branch.json").read_text())
        assert plan["fork_step"] == 100 and plan["checkpoint"].endswith("step-100")

    try:
        asyncio.run(go())
    finally:
        kill_runs(Path("runs"))


def test_child_monitor_draws_parent_prefix_dimmer(runs) -> None:
    """The child's monitor reads the parent's series up to the fork step and draws it first, in
    the prefix colour; the child's own line starts after it."""
    import asyncio

    ids = _lineage(runs)

    async def go() -> None:
        app = make_app(start="watch", run=ids["child"])
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            screen = app.screen
            await until(pilot, lambda: PARENT_KEY + "loss" in screen.series, "parent series")
            prefix = screen.series[PARENT_KEY + "loss"]
            assert prefix[0][0] <= 5 and max(p[0] for p in prefix) <= 200
            chart = screen.query_one("#chart-loss", MetricChart)
            await until(pilot, lambda: len(chart.lines) >= 2, "the loss chart's lines")
            lines = chart.lines
            assert lines[0].color == PREFIX_COLOR and lines[0].label == "parent"
            assert min(lines[1].xs) > 200
            # B on the monitor: the branch editor of this run (the child has no config.yaml).
            shown = len(app._notifications)
            await pilot.press("B")
            await until(pilot, lambda: len(app._notifications) > shown, "the notification")
            texts = [str(n.message) for n in app._notifications]
            assert any("has no tuitrain config" in t for t in texts), texts

    asyncio.run(go())


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_B_on_monitor_opens_branch_editor_and_the_child_monitor_over_the_parents(runs) -> None:
    """B on the parent's monitor opens the branch editor of that run; launching opens the
    child's monitor on top of the parent's (two monitors on the stack at once)."""
    import asyncio

    ids = _lineage(runs)

    async def go() -> None:
        app = make_app(start="watch", run=ids["parent"])
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await pilot.press("B")
            await until(pilot, lambda: isinstance(app.screen, BranchEditorScreen), "editor")
            assert app.screen.parent_run.id == ids["parent"]
            app.screen.query_one("#ckpt-select", Select).value = 100
            await pilot.pause()
            await pilot.press("ctrl+g")
            await until(
                pilot,
                lambda: (
                    type(app.screen).__name__ == "MonitorScreen"
                    and app.screen.run_ref != ids["parent"]
                ),
                "child monitor",
            )
            monitors = [s for s in app.screen_stack if type(s).__name__ == "MonitorScreen"]
            assert [m.run_ref for m in monitors][0] == ids["parent"] and len(monitors) == 2
            await pilot.press("escape")
            await until(pilot, lambda: app.screen is monitors[0], "back to the parent's monitor")

    try:
        asyncio.run(go())
    finally:
        kill_runs(Path("runs"))


def test_compare_overlays_parent_and_child_on_one_axis(runs) -> None:
    """Parent and child compared: both on the step axis, the child's line after the fork; the
    child compared without its parent: the parent's prefix drawn dim before the child's line."""
    import asyncio

    ids = _lineage(runs)

    async def lines_of(run_ids: list[str]) -> list:
        app = make_app(start="compare", compare=run_ids)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            chart = app.screen.query_one("#compare-chart", MetricChart)
            await until(pilot, lambda: len(chart.lines) >= 2, "the compare chart's lines")
            return list(chart.lines)

    both = asyncio.run(lines_of([ids["parent"], ids["child"]]))
    assert [ln.label for ln in both] == ["baseline", "baseline-b200"]
    assert min(both[0].xs) <= 5 and max(both[0].xs) >= 399
    assert min(both[1].xs) > 200 and max(both[1].xs) >= 299
    alone = asyncio.run(lines_of([ids["child"], runs["early"]]))
    assert alone[0].color == PREFIX_COLOR and max(alone[0].xs) <= 200
    assert alone[1].label == "baseline-b200" and min(alone[1].xs) > 200
    assert PREFIX_COLOR not in [ln.color for ln in alone[1:]]


# -- snapshots ---------------------------------------------------------------------------------


async def _settle_snap(pilot) -> None:
    await settle(pilot)
    for inp in pilot.app.screen.query(Input):
        inp.cursor_blink = False


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_runs_list_with_lineage(snap_compare, runs, size):
    """baseline-b200 indented under baseline."""
    _lineage(runs)
    app = make_app()
    assert snap_compare(app, terminal_size=size, run_before=_settle_snap)
    assert app.return_code == 0


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_branch_editor_with_picker(snap_compare, runs, size):
    """The editor in branch mode: parent's config, checkpoint picker at step 300."""
    _lineage(runs)
    app = make_app()

    async def run_before(pilot) -> None:
        await settle(pilot)
        await _cursor_to(pilot, "baseline")
        await pilot.press("B")
        await until(pilot, lambda: isinstance(pilot.app.screen, BranchEditorScreen), "editor")
        await _settle_snap(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
    assert app.return_code == 0


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_branch_picker_open_and_weights_only(snap_compare, runs, size):
    """The checkpoint list open over the editor (drawn on its own background, nothing showing
    through) and weights only switched on: its state written as text."""
    _lineage(runs)
    app = make_app()

    async def run_before(pilot) -> None:
        await settle(pilot)
        await _cursor_to(pilot, "baseline")
        await pilot.press("B")
        await until(pilot, lambda: isinstance(pilot.app.screen, BranchEditorScreen), "editor")
        await _settle_snap(pilot)
        box = pilot.app.screen.query_one("#weights-only")
        box.value = True
        await pilot.pause()
        assert "weights only: on" in str(box.label)
        pilot.app.screen.query_one("#ckpt-select").action_show_overlay()
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)
    assert app.return_code == 0


async def _to_rewarm_prompt(pilot) -> None:
    """Open baseline's branch editor, raise optimizer.lr 10x (the LR at the fork would jump),
    launch: the re-warm question opens."""
    from tuitrain.tui.dialogs.prompt import PromptDialog

    await settle(pilot)
    await _cursor_to(pilot, "baseline")
    await pilot.press("B")
    await until(pilot, lambda: isinstance(pilot.app.screen, BranchEditorScreen), "editor")
    pilot.app.screen.set_lr(1e-2)
    await settle(pilot)  # the derived panel (behind the dialog in the snapshot) shows the new LR
    await pilot.press("ctrl+g")
    await until(pilot, lambda: isinstance(pilot.app.screen, PromptDialog), "re-warm question")


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_branch_rewarm_question(snap_compare, runs, size):
    """A branch whose LR would jump at the fork: the parent's and the new LR, and the re-warm
    steps (default 10: 5% of the 100 remaining steps, at least 10) to accept or change."""
    _lineage(runs)
    app = make_app()

    async def run_before(pilot) -> None:
        await _to_rewarm_prompt(pilot)
        await _settle_snap(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
    assert app.return_code == 0


def test_rewarm_question_escape_starts_nothing(runs) -> None:
    import asyncio

    _lineage(runs)

    async def go() -> None:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await _to_rewarm_prompt(pilot)
            dialog = app.screen
            assert dialog.initial == "10" and "(x9.56)" in dialog.title_text, dialog.title_text
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, BranchEditorScreen), "editor")
            await pilot.pause()
        with Store(Path("runs")) as store:
            assert not [r for r in store.list_runs() if r.name.startswith("baseline-b")][1:]

    asyncio.run(go())


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_rewarm_steps_chosen_in_the_dialog_reach_the_branch_plan(runs) -> None:
    """Type 25 in the re-warm question: the child starts with rewarm_steps 25 in branch.json."""
    import asyncio

    ids = _lineage(runs)

    async def go() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await _to_rewarm_prompt(pilot)
            app.screen.query_one("#prompt-input", Input).value = "25"
            await pilot.press("enter")
            await until(
                pilot, lambda: type(app.screen).__name__ == "MonitorScreen", "child monitor"
            )
            ref = app.screen.run_ref
        with Store(Path("runs")) as store:
            child = store.get_run(ref)
        assert child.parent == ids["parent"] and child.fork_step == 300
        plan = json.loads((Path("runs") / child.id / "branch.json").read_text())
        assert plan["rewarm_steps"] == 25 and plan["child_lr"] > 2 * plan["parent_lr"]

    try:
        asyncio.run(go())
    finally:
        kill_runs(Path("runs"))
