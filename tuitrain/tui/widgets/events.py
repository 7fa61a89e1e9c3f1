"""Provides EventsPane: the run's timeline, one line per event, filterable by kind; Enter opens one."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from tuitrain.tui import fmt

EVENT_STYLE = {
    "error": "red",
    "diverged": "bold red",
    "warning": "yellow",
    "command": "cyan",
    "lr": "cyan",
    "eval": "green",
    "checkpoint": "blue",
    "early_stop": "bold yellow",
    "finished": "bold cyan",
    "generation": "dim",
}

# Filters the `f` key cycles through: None shows everything; a leading "-" hides that kind.
HIDE_GENERATIONS = "-generation"


def one_line(text: str) -> str:
    """The text on one line: newlines, tabs and other control characters shown as escapes.

    A generation sample holds newlines; printed raw it would fill the pane and push the
    events that matter (LR changes, checkpoints, evals) out of sight."""
    out = []
    for ch in text:
        if ch == "\n":
            out.append("⏎")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def full_text(event) -> str:
    """Everything an event holds, for the detail view (message, then generation prompt/text)."""
    step = "-" if event.step is None else str(event.step)
    parts = [f"step {step} · {event.kind}", "", event.message or ""]
    data = event.data
    if isinstance(data, dict) and ("prompt" in data or "text" in data):
        parts += ["", f"prompt: {data.get('prompt', '')}", "", str(data.get("text", ""))]
    elif data is not None:
        parts += ["", f"data: {data}"]
    return "\n".join(parts)


def matches(kind: str, flt: str | None) -> bool:
    """Whether an event of this kind shows under the filter (None: all; -k: all but k; k: only k)."""
    if flt is None:
        return True
    if flt.startswith("-"):
        return kind != flt[1:]
    return kind == flt


def filter_choices(events: list) -> list[tuple[str, str | None]]:
    """The filter picker's lines: all, no generations, then only each kind present, with counts."""
    counts: dict[str, int] = {}
    for e in events:
        counts[e.kind] = counts.get(e.kind, 0) + 1
    gens = counts.get(HIDE_GENERATIONS[1:], 0)
    out: list[tuple[str, str | None]] = [
        (f"all events ({len(events)})", None),
        (f"no generations ({len(events) - gens})", HIDE_GENERATIONS),
    ]
    width = max((len(k) for k in counts), default=0)
    out += [(f"only {k:<{width}} ({n})", k) for k, n in sorted(counts.items())]
    return out


def filter_label(flt: str | None) -> str:
    """How the pane's title names the filter."""
    if flt is None:
        return "all"
    return f"no {flt[1:]}s" if flt.startswith("-") else f"only {flt}"


class EventsPane(OptionList):
    """One line per event (cut to the width, never wrapped), newest at the bottom; follows the end."""

    MAX_EVENTS = 500

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.events: list = []  # every kept event, oldest first
        self.shown: list = []  # the events that pass the filter, in the list's order
        self.filter: str | None = None
        self.border_title = "events"

    def line(self, e) -> Text:
        """One event as a single styled line; the ellipsis marks what the width cut."""
        style = fmt.no_color(EVENT_STYLE.get(e.kind, ""))
        step = f"{e.step:>5}" if e.step is not None else "    -"
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        text.append(step, style="dim")
        text.append(" ")
        text.append(e.kind, style=style)
        text.append(" ")
        text.append(one_line(e.message or ""))
        return text

    def add(self, events: list) -> None:
        """Append new events; stay at the end if the cursor was there (or nowhere)."""
        follow = self.highlighted is None or self.highlighted >= self.option_count - 1
        self.events += events
        dropped = len(self.events) - self.MAX_EVENTS
        if dropped > 0:
            del self.events[:dropped]
            self._rebuild()
        else:
            new = [e for e in events if matches(e.kind, self.filter)]
            self.shown += new
            self.add_options([Option(self.line(e)) for e in new])
        if follow and self.option_count:
            self.highlighted = self.option_count - 1

    def set_filter(self, flt: str | None) -> None:
        """Show only the kinds the filter lets through (the cursor goes to the newest)."""
        self.filter = flt
        self._rebuild()
        if self.option_count:
            self.highlighted = self.option_count - 1
        self.border_title = f"events: {filter_label(flt)}" if flt else "events"

    def selected_event(self):
        """The event under the cursor, or None."""
        i = self.highlighted
        return self.shown[i] if i is not None and 0 <= i < len(self.shown) else None

    def _rebuild(self) -> None:
        self.shown = [e for e in self.events if matches(e.kind, self.filter)]
        self.clear_options()
        self.add_options([Option(self.line(e)) for e in self.shown])
