"""Provides PickDialog: choose one of a few labelled options (enter picks, escape cancels)."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class PickDialog(ModalScreen[Any]):
    """A list of (label, value); dismisses with the picked value, or the sentinel CANCEL."""

    CANCEL = object()
    BINDINGS = [Binding("escape,q", "cancel", "Cancel")]

    def __init__(self, title: str, choices: list[tuple[str, Any]], current: Any = None) -> None:
        super().__init__(id="pick-dialog")
        self.title_text = title
        self.choices = choices
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(escape(self.title_text), classes="dialog-text")
            yield OptionList(
                *[Option(label, id=str(i)) for i, (label, _) in enumerate(self.choices)],
                id="pick-list",
            )
            yield Static("up/down: move   enter: pick   escape: cancel", classes="dim")

    def on_mount(self) -> None:
        olist = self.query_one("#pick-list", OptionList)
        values = [v for _, v in self.choices]
        olist.highlighted = values.index(self.current) if self.current in values else 0
        olist.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.choices[int(event.option.id or 0)][1])

    def action_cancel(self) -> None:
        """Close without a pick."""
        self.dismiss(self.CANCEL)
