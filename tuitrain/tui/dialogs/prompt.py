"""Provides PromptDialog: a one-line input whose text is checked before the dialog closes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

# parse(text) returns the value or raises ValueError with a message that says what to type.
Parser = Callable[[str], Any]


class PromptDialog(ModalScreen[Any]):
    """Ask for one value; a bad entry shows the parser's error and keeps the text."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, parse: Parser, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.parse = parse
        self.initial = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.title_text, classes="dialog-text")
            yield Input(self.initial, placeholder=self.placeholder, id="prompt-input")
            yield Static("", id="prompt-error", classes="error-text")
            yield Static("enter: ok   escape: cancel", classes="dim")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            value = self.parse(event.value)
        except ValueError as exc:
            # Keep the dialog and the text: the user fixes the typo instead of retyping.
            self.query_one("#prompt-error", Static).update(str(exc))
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        """Close without a value."""
        self.dismiss(None)


def parse_lr(text: str) -> float:
    """A learning rate typed by a person: 5e-5, 5E-5, 5.0e-05 and 0.00005 all work."""
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(
            f"{text.strip() or 'empty'!r} is not a number; type e.g. 5e-5 or 0.0003"
        ) from None
    if not value > 0 or value > 10 or value != value:
        raise ValueError(f"the LR must be > 0 and <= 10 (got {value:g}); type e.g. 5e-5")
    return value
