"""Provides KeysDialog: every key of the screen underneath, grouped (`?` or F1 on any screen)."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

OTHER = "Other"
# Keys that every screen has (the app's own bindings).
EVERYWHERE = [
    ("? / F1", "this list of keys"),
    ("q", "leave this screen (quit on the runs list; asks first if edits or a run are affected)"),
    ("escape", "back to where you came from"),
    ("ctrl+p", "command palette: every action by name"),
    ("ctrl+q", "quit tuitrain (asks first if edits or a run are affected)"),
]


_NAMES = {"question_mark": "?", "slash": "/", "plus": "+", "minus": "-"}


def key_text(binding: Binding) -> str:
    """Every key of a binding as the user types it: `u / +`, `q / escape / b`, `ctrl+s`."""
    keys = [k.strip() for k in binding.key.split(",") if k.strip()]
    return " / ".join(_NAMES.get(k, k) for k in keys)


def key_groups(screen: Screen) -> dict[str, list[tuple[str, str]]]:
    """The screen's keys, grouped by their Binding.group, in binding (priority) order; the
    screen's EXTRA_KEYS (keys its widgets handle: arrows, enter) and the app's keys after."""
    groups: dict[str, list[tuple[str, str]]] = {}
    seen: set[tuple[str, str]] = set()
    for b in screen.BINDINGS:
        if not isinstance(b, Binding) or not b.description:
            continue
        group = b.group.description if b.group else OTHER
        item = (key_text(b), b.description)
        if item not in seen:
            seen.add(item)
            groups.setdefault(group, []).append(item)
    for group, items in getattr(screen, "EXTRA_KEYS", {}).items():
        groups.setdefault(group, []).extend(items)
    groups["Everywhere"] = EVERYWHERE
    return groups


def help_text(screen: Screen) -> str:
    """The overlay's text (markup)."""
    lines: list[str] = []
    for group, items in key_groups(screen).items():
        if lines:
            lines.append("")
        lines.append(f"[b]{escape(group)}[/b]")
        width = max(len(k) for k, _ in items)
        lines += [f"  [b]{escape(k):<{width}}[/b]  {escape(d)}" for k, d in items]
    return "\n".join(lines)


class KeysDialog(ModalScreen[None]):
    """The keys of one screen; escape, q, ? or enter closes it."""

    BINDINGS = [Binding("escape,q,question_mark,f1,enter", "close", "Close")]

    def __init__(self, screen: Screen) -> None:
        super().__init__(id="keys-dialog")
        self.of = screen

    def compose(self) -> ComposeResult:
        title = getattr(self.of, "HELP_TITLE", None) or type(self.of).__name__.removesuffix(
            "Screen"
        )
        with Vertical(classes="dialog keys-dialog"):
            yield Static(f"[b]Keys: {escape(title)}[/b]", classes="dialog-text")
            with VerticalScroll(id="keys-body"):
                yield Static(help_text(self.of), id="keys-text")
            yield Static("escape / q / ?: close   up/down: scroll", classes="dim")

    def on_mount(self) -> None:
        self.query_one("#keys-body", VerticalScroll).focus()

    def action_close(self) -> None:
        """Close the list."""
        self.dismiss(None)
