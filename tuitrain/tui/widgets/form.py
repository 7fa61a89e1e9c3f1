"""Provides the config editor's form: one row per field (widget chosen by type) and section pages."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static, Switch

from tuitrain.tui.widgets.fields import FieldSpec, from_text, section_help, to_text


def section_id(section: str) -> str:
    """DOM id of a section's page."""
    return "sec-" + section.replace(".", "--")


def _on_off(value: Any) -> str:
    """The text beside a boolean field's switch."""
    return "on" if value else "off"


# up/down move between fields as tab / shift+tab do (a page would scroll, a choice would open).
FIELD_MOVES = [
    Binding("down", "app.focus_next", "Next field", show=False),
    Binding("up", "app.focus_previous", "Previous field", show=False),
]


class FieldSelect(Select, inherit_bindings=False):
    """A choice field: enter or space opens its list; up/down move to the next field."""

    BINDINGS = [Binding("enter,space", "show_overlay", "Show menu", show=False), *FIELD_MOVES]


class FieldRow(Horizontal):
    """Label + editing widget for one field; an error line appears under it when invalid."""

    class Changed(Message):
        """The user changed a field's value."""

        def __init__(self, spec: FieldSpec, value: Any) -> None:
            super().__init__()
            self.spec = spec
            self.value = value

    class Focused(Message):
        """A field's widget got focus (the help bar shows its description)."""

        def __init__(self, spec: FieldSpec) -> None:
            super().__init__()
            self.spec = spec

    def __init__(self, spec: FieldSpec, value: Any) -> None:
        super().__init__(classes="field-row", id="row-" + spec.widget_id)
        self.spec = spec
        self.initial = value

    def compose(self) -> ComposeResult:
        spec = self.spec
        yield Label(spec.name, classes="field-label")
        yield self._make_widget(self.initial)
        if spec.kind == "bool":
            # A Switch shows on/off only by colour: under NO_COLOR or 16 colours the two looked
            # alike, so the state is also written beside it.
            yield Label(_on_off(self.initial), id="state-" + spec.widget_id, classes="switch-state")

    def _make_widget(self, value: Any) -> Widget:
        spec = self.spec
        wid = spec.widget_id
        if spec.kind == "bool":
            return Switch(bool(value), id=wid, tooltip=spec.help, animate=False)
        if spec.kind == "choice":
            options = [(str(c), c) for c in spec.choices]
            current = value if value in spec.choices else Select.NULL
            return FieldSelect(
                options,
                allow_blank=spec.optional or current is Select.NULL,
                value=current,
                prompt="(none)",
                id=wid,
                tooltip=spec.help,
                compact=True,
            )
        placeholder = "(empty)" if spec.optional else ""
        if spec.kind == "list":
            placeholder = "comma-separated" + (", empty: none" if spec.optional else "")
        return Input(
            to_text(spec, value),
            placeholder=placeholder,
            id=wid,
            tooltip=spec.help,
            compact=True,
            select_on_focus=False,
        )

    @property
    def widget(self) -> Widget:
        """The editing widget."""
        return self.query_one("#" + self.spec.widget_id)

    def set_value(self, value: Any) -> None:
        """Show a value (a resulting Changed carries the same value, so it is harmless)."""
        w = self.widget
        if isinstance(w, Switch):
            w.value = bool(value)
        elif isinstance(w, Select):
            w.value = value if value in self.spec.choices else Select.NULL
        else:
            w.value = to_text(self.spec, value)  # type: ignore[attr-defined]

    def _emit(self, value: Any) -> None:
        self.post_message(self.Changed(self.spec, value))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._emit(from_text(self.spec, event.value))

    def on_switch_changed(self, event: Switch.Changed) -> None:
        event.stop()
        self.query_one("#state-" + self.spec.widget_id, Label).update(_on_off(event.value))
        self._emit(event.value)

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self._emit(None if event.value is Select.NULL else event.value)

    def on_descendant_focus(self) -> None:
        self.post_message(self.Focused(self.spec))


class SectionPage(VerticalScroll, can_focus=False):
    """One config section: its description, a section-level error line, and its field rows
    (focus moving through the fields scrolls the page)."""

    BINDINGS = FIELD_MOVES

    def __init__(self, section: str, specs: list[FieldSpec], values: dict[str, Any]) -> None:
        super().__init__(id=section_id(section), classes="section-page")
        self.section = section
        self.specs = specs
        self.values = values

    def compose(self) -> ComposeResult:
        yield Static(
            escape(f"{self.section}: {section_help(self.section)}"), classes="section-help"
        )
        yield Static("", classes="section-error error-text")
        for spec in self.specs:
            yield FieldRow(spec, self.values.get(spec.path))
            yield Static("", id="err-" + spec.widget_id, classes="field-error error-text")

    def show_section_error(self, text: str) -> None:
        """Show (or clear) an error about the section as a whole (e.g. model.arch)."""
        err = self.query_one(".section-error", Static)
        err.update(escape(text))
        err.display = bool(text)
