"""Provides TextDialog: a scrollable, read-only view of a long text (an event's full message)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class TextDialog(ModalScreen[None]):
    """Show a text as it is (newlines kept, no markup); escape, enter or q closes."""

    BINDINGS = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text = title
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog text-dialog"):
            yield Static(Text(self.title_text, style="bold"), classes="dialog-text")
            with VerticalScroll(id="text-body"):
                yield Static(Text(self.text))
            yield Static("escape / enter: close   up/down: scroll", classes="dim")

    def on_mount(self) -> None:
        self.query_one("#text-body", VerticalScroll).focus()

    def action_close(self) -> None:
        """Close the view."""
        self.dismiss(None)
