"""Every key findable: `?` on every screen lists all of its keys by group; footers show the most
used keys first, whole (shorter labels when narrow, never cut mid-word), ending with `? keys`;
`q` leaves every screen and quits from the runs list."""

from __future__ import annotations

import pytest
from textual.binding import Binding
from textual.widgets._footer import FooterKey

from tests.tui.conftest import aio, make_app, settle, until
from tuitrain.tui.dialogs.help import KeysDialog, key_text
from tuitrain.tui.widgets.keybar import short


async def _open(pilot, where: str, runs: dict) -> None:
    if where == "monitor":
        await pilot.press("enter")  # the first row
    elif where == "compare":
        await pilot.press("space", "space", "c")
    elif where == "sweeps":
        await pilot.press("w")
    elif where == "doctor":
        await pilot.press("enter")
        await settle(pilot, rounds=1)
        await pilot.press("h")
    elif where == "samples":
        await pilot.press("enter")
        await settle(pilot, rounds=1)
        await pilot.press("a")
    await settle(pilot, rounds=1)


SCREENS = ["runs", "monitor", "compare", "sweeps", "doctor", "samples"]


@pytest.mark.parametrize("where", SCREENS)
@aio
async def test_question_mark_lists_every_key_of_the_screen(runs, where):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, rounds=1)
        await _open(pilot, where, runs)
        screen = app.screen
        assert where == "runs" or type(screen).__name__ != "RunsScreen"
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, KeysDialog)
        text = str(app.screen.query_one("#keys-text").render())
        for b in screen.BINDINGS:
            if isinstance(b, Binding) and b.description:
                assert f"{key_text(b)}  " in text and b.description in text, b
        assert "Everywhere" in text and "ctrl+p" in text
        await pilot.press("question_mark")  # ? again closes it
        await pilot.pause()
        assert app.screen is screen


@pytest.mark.parametrize("where", SCREENS)
@aio
async def test_q_leaves_every_screen(runs, where):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, rounds=1)
        await _open(pilot, where, runs)
        depth = len(app.screen_stack)
        await pilot.press("q")
        await pilot.pause()
        if where == "runs":
            await until(pilot, lambda: not app.is_running, "quit from the runs list")
        else:
            assert len(app.screen_stack) == depth - 1


@pytest.mark.parametrize("width", [60, 80, 120])
@pytest.mark.parametrize("where", ["runs", "monitor"])
@aio
async def test_footer_shows_whole_keys_in_priority_order(runs, where, width):
    app = make_app()
    async with app.run_test(size=(width, 24)) as pilot:
        await settle(pilot, rounds=1)
        await _open(pilot, where, runs)
        await settle(pilot, rounds=1)
        keys = list(app.screen.query(FooterKey))
        shown = [b for b in app.screen.BINDINGS if isinstance(b, Binding) and b.show]
        # The first keys of the screen's priority order, each whole, then `? keys` last.
        assert keys[-1].description == "keys" and keys[-1].key_display == "?"
        labels = [k.description for k in keys[:-1]]
        assert len(labels) >= 5
        for b, label in zip(shown, labels, strict=False):
            assert label in (b.description, short(b.description)), (label, b)
        assert sum(k.region.width for k in keys) <= width
        assert all(k.region.right <= width for k in keys)  # none cut at the right edge
        if width >= 120:
            assert labels == [b.description for b in shown]  # room for all, full labels
