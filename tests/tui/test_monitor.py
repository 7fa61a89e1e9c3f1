"""Pilot tests of the monitor, runs list and compare against a real SQLite store."""

from __future__ import annotations

import time

from textual.widgets import Input, Static

from tests.tui.conftest import aio, make_app, settle
from tests.tui.fixture_db import add_run
from tuitrain.store import Store
from tuitrain.tui.app import Settings
from tuitrain.tui.dialogs.confirm import ConfirmDialog
from tuitrain.tui.dialogs.prompt import PromptDialog, parse_lr
from tuitrain.tui.screens.compare import CompareScreen, config_diff
from tuitrain.tui.screens.monitor import MonitorScreen

FAST = Settings(poll_s=0.2, list_poll_s=0.3, chart_cpu_budget=1.0)  # pacing is not under test here


def _text(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def _events_text(app) -> str:
    """The events pane as shown: one line per option."""
    pane = app.screen.query_one("#events")
    return "\n".join(str(pane.get_option_at_index(i).prompt) for i in range(pane.option_count))


def _commands(run_id: str):
    with Store("runs") as s:
        return s.commands(run_id)


@aio
async def test_lr_up_writes_a_command_that_shows_pending_then_applied(runs):
    rid = runs["running"]
    app = make_app(start="watch", run=rid, settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "step 160/400" in _text(app, "#run-header")
        await pilot.press("u")
        await settle(pilot)
        (cmd,) = _commands(rid)
        assert (cmd.kind, cmd.payload, cmd.status) == ("scale_lr", {"factor": 2.0}, "pending")
        assert "pending" in _text(app, "#commands")
        with Store("runs") as s:  # the trainer's side: claim and acknowledge at step 170
            s.claim_commands(rid)
            s.ack_command(cmd.id, 170, "LR x2")
        await settle(pilot)
        assert "applied @170" in _text(app, "#commands")
        await pilot.press("d")
        await settle(pilot)
        assert [c.payload for c in _commands(rid)][-1] == {"factor": 0.5}


@aio
async def test_set_lr_prompt_rejects_text_and_accepts_scientific_notation(runs):
    rid = runs["running"]
    app = make_app(start="watch", run=rid, settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("l")
        await pilot.pause()
        assert isinstance(app.screen, PromptDialog)
        app.screen.query_one(Input).value = "fast please"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, PromptDialog)  # still open, text kept
        assert "not a number" in str(app.screen.query_one("#prompt-error", Static).render())
        assert app.screen.query_one(Input).value == "fast please"
        app.screen.query_one(Input).value = "5e-5"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, MonitorScreen)
        (cmd,) = _commands(rid)
        assert (cmd.kind, cmd.payload) == ("set_lr", {"lr": 5e-5})


def test_parse_lr_forms():
    assert {parse_lr(t) for t in ("5e-5", "5E-5", "5.0e-05", "0.00005")} == {5e-5}
    for bad in ("", "x", "-1e-3", "0", "nan"):
        try:
            parse_lr(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


@aio
async def test_stop_needs_confirmation_and_other_keys_queue_commands(runs):
    rid = runs["running"]
    app = make_app(start="watch", run=rid, settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        await settle(pilot)
        assert _commands(rid) == []
        await pilot.press("s")
        await pilot.pause()
        await pilot.press("y")
        await pilot.press("k", "v")
        await settle(pilot)
        assert sorted(c.kind for c in _commands(rid)) == ["checkpoint", "eval", "stop"]


@aio
async def test_new_points_and_status_changes_show_without_reopening(runs):
    rid = runs["running"]
    app = make_app(start="watch", run=rid, settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        chart = app.screen.query_one("#chart-loss")
        before = chart.lines[0].xs[-1]
        with Store("runs") as s:
            s.log_metrics(rid, [(st, "loss", 1.5, time.time()) for st in range(161, 181)])
            s.add_event(rid, "warning", "loss spike", 175)
        await settle(pilot)
        assert "step 180/400" in _text(app, "#run-header")
        assert chart.lines[0].xs[-1] == 180 > before
        assert "loss spike" in _events_text(app)
        with Store("runs") as s:
            s.set_status(rid, "completed", "finished")
        await settle(pilot)
        assert "completed" in _text(app, "#run-header")
        await pilot.press("u")  # a finished run cannot be steered: nothing is written
        await settle(pilot)
        assert _commands(rid) == []


@aio
async def test_runs_list_shows_new_runs_and_compares_marked_ones(runs):
    app = make_app(settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#runs-table")
        assert table.row_count == 4
        with Store("runs") as s:  # a run started elsewhere (CLI, script) appears
            rid = add_run(s, "from-cli", 1e-3, 100, 10)
            s.mark_started(rid, __import__("os").getpid())
        await settle(pilot)
        assert table.row_count == 5
        await pilot.press("space", "space", "space")
        await pilot.press("c")
        await settle(pilot)
        assert isinstance(app.screen, CompareScreen)
        assert len(app.screen.runs) == 3
        assert "Comparing 3 runs" in _text(app, "#compare-legend")
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, MonitorScreen)


def test_config_diff_keeps_only_differing_keys():
    a = {"optimizer": {"lr": 1e-3, "name": "adamw"}, "batch": {"size": 8}}
    b = {"optimizer": {"lr": 5e-4, "name": "adamw"}, "batch": {"size": 8}, "run": {"tags": ["x"]}}
    # Tags are labels, not settings: left out of the diff (issue 23).
    assert config_diff([a, b]) == [("optimizer.lr", [1e-3, 5e-4])]


@aio
async def test_palette_lists_the_screens_key_actions(runs):
    app = make_app(start="watch", run=runs["running"], settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)  # the run record is read by the first poll; keys act on it
        assert app.screen.run is not None
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        assert {
            "LR up",
            "LR down",
            "Set LR",
            "Stop",
            "Ckpt",
            "Eval",
            "Log y",
            "Smooth",
            "Back",
        } <= set(commands)
        await commands["Eval"].callback()  # what the palette runs when the entry is chosen
        await settle(pilot)
        assert [c.kind for c in _commands(runs["running"])] == ["eval"]


@aio
async def test_log_y_and_smoothing_toggles_change_the_charts(runs):
    app = make_app(start="watch", run=runs["running"], settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        loss = app.screen.query_one("#chart-loss")
        raw = loss.lines[0].ys
        await pilot.press("y")
        await pilot.pause()
        assert loss.log_y and "log y" in loss.title
        await pilot.press("m")
        await pilot.pause()
        smoothed = loss.lines[0].ys
        assert "smoothed" in loss.title and smoothed != raw and smoothed[0] == raw[0]
        # smoothing damps the step-to-step wiggle of the fixture's loss
        wiggle = lambda ys: sum(abs(b - a) for a, b in zip(ys, ys[1:], strict=False))  # noqa: E731
        assert wiggle(smoothed) < wiggle(raw)
        await pilot.press("m", "y")
        await pilot.pause()
        assert loss.lines[0].ys == raw and not loss.log_y
