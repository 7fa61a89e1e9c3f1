"""Pilot tests of the samples screen: `a` opens it from the monitor (one run) and from compare (the
compared runs), left/right scroll its columns, s cycles which steps, g picks one, enter shows a
prompt's answers in full, escape goes back; a new evaluation's samples appear while the screen is
open (and a poll with nothing new builds nothing)."""

from __future__ import annotations

import time
from pathlib import Path

from textual.pilot import Pilot

from tests.tui.conftest import aio, make_app, polled, settle, until
from tests.tui.fixture_db import add_samples, sample_rows
from tuitrain.store import Store
from tuitrain.tui.app import Settings
from tuitrain.tui.dialogs.prompt import PromptDialog
from tuitrain.tui.dialogs.text import TextDialog
from tuitrain.tui.screens.compare import CompareScreen
from tuitrain.tui.screens.monitor import MonitorScreen
from tuitrain.tui.screens.samples import SamplesScreen

FAST = Settings(poll_s=0.2, list_poll_s=0.3, chart_cpu_budget=1.0)


async def open_samples(pilot: Pilot) -> SamplesScreen:
    """`a` on the current screen; returns the samples screen once its grid is shown."""
    await settle(pilot, rounds=1)
    await pilot.press("a")
    app = pilot.app
    await until(
        pilot,
        lambda: isinstance(app.screen, SamplesScreen) and app.screen.grid is not None,
        "the samples screen's grid",
        timeout=30,
    )
    return app.screen


def labels(screen: SamplesScreen) -> list[str]:
    return [c.label for c in screen.grid.columns]


def shown_text(screen: SamplesScreen, selector: str) -> str:
    """A widget's text as the terminal shows it (each line of its region)."""
    widget = screen.query_one(selector)
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))


def head(screen: SamplesScreen) -> str:
    return shown_text(screen, "#samples-head")


def answers(screen: SamplesScreen) -> str:
    return shown_text(screen, "#samples-answers")


async def wait_grid(pilot: Pilot, cond, what: str) -> None:
    """Wait (poll after poll) until the screen's grid satisfies cond."""
    deadline = time.monotonic() + 30
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await polled(pilot)


@aio
async def test_a_opens_one_runs_evals_from_the_monitor_and_escape_goes_back(runs):
    add_samples(Path("runs"), runs)
    app = make_app(start="watch", run=runs["completed"], settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        monitor = app.screen
        assert isinstance(monitor, MonitorScreen)
        screen = await open_samples(pilot)
        assert screen.which == "all"
        assert [c.step for c in screen.grid.columns] == [50, 100, 150, 200, 250, 300, 350, 400]
        assert [r.prompt for r in screen.grid.rows][:2] == [
            "Complete: def add(a, b):",
            "What does json.dumps do?",
        ]
        await pilot.press("down")  # json.dumps
        await settle(pilot, rounds=1)
        text = answers(screen)
        assert "step 50" in text and "step 100" in text and "step 150" not in text
        assert "It returns the the" in text and "✗ exact" in text
        prompt = shown_text(screen, "#samples-prompt")
        assert "reference: It serialises a Python object to a JSON" in prompt
        assert "columns 1-2 of 8" in head(screen)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is monitor, "back on the monitor")


@aio
async def test_a_opens_compared_runs_side_by_side_at_their_best_steps(runs):
    add_samples(Path("runs"), runs)
    app = make_app(start="compare", compare=[runs["early"], runs["completed"]], settings=FAST)
    async with app.run_test(size=(120, 40)) as pilot:
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        screen = await open_samples(pilot)
        assert screen.which == "best"
        assert labels(screen) == ["low-lr@150", "baseline@400"]
        await pilot.press("down")
        await settle(pilot, rounds=1)
        text = answers(screen)
        # Wide: the reference is a column beside both answers.
        assert "reference" in text and "low-lr@150 best" in text and "baseline@400 best" in text
        assert "✓ exact sim 100%" in text and "Return turn a a a a the" in text
        assert "columns 1-2 of 2" in head(screen) and "←/→" not in head(screen)
        await pilot.press("q")
        await until(pilot, lambda: app.screen is compare, "back on compare")


@aio
async def test_left_right_scroll_the_columns_and_say_which_are_shown(runs):
    add_samples(Path("runs"), runs)
    app = make_app(start="watch", run=runs["completed"], settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_samples(pilot)
        await pilot.press("down")
        await settle(pilot, rounds=1)
        assert screen.shown == (1, 2, 8)
        await pilot.press("right")
        assert screen.shown == (2, 3, 8) and "columns 2-3 of 8" in head(screen)
        assert "step 100" in answers(screen) and "step 50" not in answers(screen)
        await pilot.press("shift+right")
        assert screen.shown == (7, 8, 8)
        await pilot.press("right")  # at the end: stays
        assert screen.shown == (7, 8, 8)
        assert "step 400 best" in answers(screen) and "rep 37%" in answers(screen)
        await pilot.press("left", "shift+left")
        assert screen.shown == (1, 2, 8)
        await pilot.resize_terminal(160, 40)
        await until(pilot, lambda: screen.shown[1] > 2, "more columns on a wide terminal", 20)
        assert screen.shown == (1, 3, 8)  # the reference beside three answers


@aio
async def test_s_cycles_best_last_all_and_g_picks_a_step(runs):
    add_samples(Path("runs"), runs)
    app = make_app(start="watch", run=runs["early"], settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_samples(pilot)
        assert [c.step for c in screen.grid.columns] == [50, 100, 150, 200, 250]
        await pilot.press("down", "shift+right")  # at the last columns
        assert screen.shown == (4, 5, 5)
        await pilot.press("s")
        await wait_grid(pilot, lambda: screen.which == "best" and len(screen.grid.columns) == 1, "best")  # fmt: skip
        assert labels(screen) == ["low-lr@150"] and "best step" in head(screen)
        await pilot.press("s")
        await wait_grid(pilot, lambda: labels(screen) == ["low-lr@250"], "last")
        await pilot.press("s")
        await wait_grid(pilot, lambda: len(screen.grid.columns) == 5, "all again")
        assert screen.shown == (1, 2, 5)  # a new choice starts at its first columns
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, PromptDialog), "the step dialog")
        await pilot.press(*"soon", "enter")
        await pilot.pause()
        error = str(app.screen.query_one("#prompt-error").render())
        assert "not a step" in error and isinstance(app.screen, PromptDialog)
        app.screen.query_one("#prompt-input").value = ""
        await pilot.press(*"200", "enter")
        await wait_grid(pilot, lambda: labels(screen) == ["low-lr@200"], "step 200")
        assert "step 200" in head(screen)
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, PromptDialog), "the step dialog")
        await pilot.press(*"999", "enter")
        await wait_grid(pilot, lambda: not screen.grid.columns, "no column at 999")
        prompt = shown_text(screen, "#samples-prompt")
        assert "No samples at step 999: low-lr: no samples at 999" in prompt


@aio
async def test_enter_shows_the_prompts_answers_in_full(runs):
    add_samples(Path("runs"), runs)
    app = make_app(start="watch", run=runs["early"], settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_samples(pilot)
        await pilot.press("down", "down", "enter")  # os.path.join
        await until(pilot, lambda: isinstance(app.screen, TextDialog), "the full text")
        text = app.screen.text
        assert "Join two or more path components, inserting a separator as needed." in text
        assert text.count("low-lr @ step") == 5 and "do_sample=False" in text
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen, "back on the samples")


@aio
async def test_new_evaluation_appears_live_and_idle_polls_build_nothing(runs):
    add_samples(Path("runs"), runs)
    rid = runs["running"]
    app = make_app(start="watch", run=rid, settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_samples(pilot)
        assert "(running)" in head(screen)
        await pilot.press("down", "shift+right")
        await settle(pilot, rounds=1)
        assert screen.shown == (2, 3, 3)
        reads = screen.reader.reads
        await polled(pilot)
        await polled(pilot)
        assert screen.reader.reads == reads  # nothing new: no grid read
        with Store("runs") as store:  # the trainer's next evaluation
            outs = (
                "It serialises a Python object to a JSON string.",
                "Join paths.",
                "  return a+b",
            )
            store.samples.add(rid, sample_rows(200, outs))
        await wait_grid(pilot, lambda: len(screen.grid.columns) == 4, "the step-200 column")
        await settle(pilot, rounds=1)
        assert screen.reader.reads == reads + 1
        assert screen.shown == (3, 4, 4)  # the last evaluation was shown: it follows the new one
        assert "step 200" in answers(screen) and "✓ exact" in answers(screen)


@aio
async def test_empty_state_says_how_to_get_samples(runs):
    app = make_app(start="watch", run=runs["completed"], settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_samples(pilot)
        await settle(pilot, rounds=1)
        text = shown_text(screen, "#samples-prompt")
        assert "No samples yet for baseline." in text
        assert "generation.enabled" in text and "generation.val_prompts" in text
        assert not screen.query_one("#samples-prompts").display
        await pilot.press("right", "d")  # nothing to scroll or mark: no error
        assert app.return_code is None and isinstance(app.screen, SamplesScreen)


def test_best_is_marked_only_where_the_run_knows_one(tmp_path):
    """A run with neither a best step nor val_loss marks no column `best` (pick_steps would give
    its last); its lowest val_loss marks one once it logs it."""
    from tuitrain.tui.pollers.samples import marked_best

    with Store(tmp_path) as store:
        rid = store.create_run({"run": {"name": "plain"}}, {}, name="plain").id
        for step in (50, 100, 150):
            store.samples.add(rid, sample_rows(step, ("a", "b", "c")))
        assert marked_best(store, store.get_run(rid)) is None
        store.log_metrics(rid, [(50, "val_loss", 2.0, 1.0), (100, "val_loss", 1.5, 2.0),
                                (150, "val_loss", 1.7, 3.0)])  # fmt: skip
        assert marked_best(store, store.get_run(rid)) == 100


def test_a_run_of_blank_lines_shows_as_one_marked_line():
    from tuitrain.tui.widgets.samples import shown_output

    assert shown_output("\n\n\n\n\n\n e") == "⏎×6\n e"
    assert shown_output("a\n\nb\n\n\n\nc\n\n\n") == "a\n\nb\n⏎×3\nc"
    assert shown_output(" \n ") == "(empty answer)"
