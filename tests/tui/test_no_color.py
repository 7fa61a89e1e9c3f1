"""Tests that the TUI stays readable without colour (NO_COLOR=1): status and state styles keep
bold but drop their colours, and boolean fields show their state as text."""

from __future__ import annotations

import io
import shutil
import time

import pytest
from rich.console import Console
from rich.style import Style
from rich.text import Text

from tests.tui.conftest import aio, make_app, settle
from tests.tui.test_editor import EDITOR_YAML
from tuitrain.tui import fmt
from tuitrain.tui.app import Settings
from tuitrain.tui.widgets.run_panes import RunHeader

FAST = Settings(poll_s=0.2, list_poll_s=0.3, chart_cpu_budget=1.0)


def _styles(source: str) -> list[str]:
    if source == "status":
        return list(fmt.STATUS_STYLE.values())
    if source == "doctor-severity":
        from tuitrain.tui.widgets.doctor import STYLE

        return [v for k, v in STYLE.items() if k != "info"]
    if source == "sweep-state":
        from tuitrain.tui.screens.sweep import STATE_STYLE

        return list(STATE_STYLE.values())
    from tuitrain.tui.widgets.events import EVENT_STYLE

    return list(EVENT_STYLE.values())


@pytest.mark.parametrize("source", ["status", "sweep-state", "event-kind", "doctor-severity"])
def test_no_color_styles_drop_the_colour_and_keep_bold(monkeypatch, source):
    styles = _styles(source)
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert any(Style.parse(fmt.no_color(s)).color is not None for s in styles)
    monkeypatch.setenv("NO_COLOR", "1")
    for s in styles:
        kept = Style.parse(fmt.no_color(s) or "none")
        assert kept.color is None and kept.bgcolor is None, (s, kept)
        assert bool(kept.bold) == ("bold" in s.split()), (s, kept)


def test_no_color_status_markup_keeps_bold_and_parses_when_nothing_is_left(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    crashed = Text.from_markup(fmt.status("crashed"))
    assert crashed.plain == "crashed"
    assert [Style.parse(str(s.style)) for s in crashed.spans] == [Style(bold=True)]
    # 'completed' is cyan only: no style is left, and the markup must still parse
    assert Text.from_markup(fmt.status("completed")).plain == "completed"
    assert Text.from_markup(fmt.status("no-such-status")).plain == "no-such-status"
    assert fmt.styled("red", "x") == "x"


def test_no_color_event_line_keeps_bold_kind(monkeypatch):
    from tuitrain.store.models import Event
    from tuitrain.tui.widgets.events import EventsPane

    monkeypatch.setenv("NO_COLOR", "1")
    line = EventsPane().line(Event(1, "r", 0.0, 7, "diverged", "nan"))
    (kind,) = [s for s in line.spans if line.plain[s.start : s.end] == "diverged"]
    style = Style.parse(str(kind.style))
    assert style.color is None and style.bold


def _styles_of(header: RunHeader, word: str) -> list[str]:
    """The styles on the spans of the header's content that cover `word`."""
    content = header.render()
    plain = content.plain
    at = plain.index(word)
    return [
        str(span.style) for span in content.spans if span.start <= at and span.end >= at + len(word)
    ]


@aio
async def test_monitor_header_status_is_bold_without_colour_under_no_color(runs, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(start="watch", run=runs["crashed"], settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        header = app.screen.query_one("#run-header", RunHeader)
        styles = _styles_of(header, "crashed")
        assert styles, header.render().plain
        parsed = [Style.parse(s) for s in styles]
        assert any(p.bold for p in parsed), styles
        assert all(p.color is None and p.bgcolor is None for p in parsed), styles


def _row_text(row) -> str:
    """The characters a field row shows on screen: the screen composed as export_screenshot
    does it, as plain text, cut to the row's region."""
    app = row.app
    console = Console(width=app.size.width, file=io.StringIO(), record=True, color_system=None)
    console.print(app.screen._compositor.render_update(full=True))
    lines = console.export_text().splitlines()
    r = row.region
    return lines[r.y][r.x : r.x + r.width]


@aio
async def test_boolean_field_shows_its_state_as_text_under_no_color(tmp_path, monkeypatch):
    """A Switch shows on/off only by colour; under NO_COLOR the row must say which it is."""
    from textual.widgets import Switch

    from tuitrain.tui.widgets.fields import get_path

    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.chdir(tmp_path)
    shutil.copy(EDITOR_YAML, "demo.yaml")
    app = make_app(start="edit", config="demo.yaml")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, rounds=1)
        await app.screen.jump_to("run.deterministic")
        await pilot.pause()
        switch = app.focused
        assert isinstance(switch, Switch)
        row = app.screen.query_one("#row-f-run--deterministic")
        before = switch.value
        shown = _row_text(row)
        assert ("on" if before else "off") in shown.split(), shown
        await pilot.press("space")
        deadline = time.monotonic() + 20.0
        while _row_text(row) == shown:
            if time.monotonic() > deadline:
                raise AssertionError(f"row text did not change after the toggle: {shown!r}")
            await pilot.pause(0.02)
        assert switch.value is (not before)
        assert ("off" if before else "on") in _row_text(row).split(), _row_text(row)
        assert get_path(app.screen.doc.data, "run.deterministic") is (not before)


def test_no_color_doctor_line_keeps_the_critical_bold(monkeypatch):
    from tuitrain.doctor.diagnosis import Diagnosis
    from tuitrain.tui.widgets.doctor import line_text

    d = Diagnosis("loss_spike", "critical", 12, "loss 9 at step 12", "lower the LR", None)
    monkeypatch.setenv("NO_COLOR", "1")
    text = Text.from_markup(line_text([d]))
    assert text.plain.startswith("doctor (h): CRITICAL loss_spike @12: loss 9")
    assert [Style.parse(str(s.style)) for s in text.spans] == [Style(bold=True)]
