"""Provides the monitor's text panes: run header (step, ETA, speed, memory), commands, events."""

from __future__ import annotations

from rich.markup import escape
from textual.containers import VerticalScroll
from textual.widgets import Static

from tuitrain.tui import fmt

EVENT_STYLE = {
    "error": "red",
    "diverged": "bold red",
    "warning": "yellow",
    "command": "cyan",
    "eval": "green",
    "early_stop": "bold yellow",
    "finished": "bold cyan",
}


def eta_seconds(run, step: int | None, total: int | None, now: float) -> float | None:
    """Remaining time from the average step rate so far (None before the first step)."""
    if not run.started or not step or not total or run.status != "running":
        return None
    rate = (now - run.started) / step
    return max(0.0, (total - step) * rate)


def short(text: str, width: int) -> str:
    """Cut text to width with an ellipsis (long run names must not push the step count off an 80-column header)."""
    return text if len(text) <= width else text[: width - 1] + "…"


def thousands(value: float | None) -> str:
    """12.3k style for throughputs."""
    if value is None:
        return "-"
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


class RunHeader(Static):
    """Two lines: identity, status, progress, ETA; then the latest metric values."""

    def show(self, run, latest: dict[str, float], total: int | None, now: float) -> None:
        """Render the header for a run snapshot."""
        step = run.last_step
        eta = eta_seconds(run, step, total, now)
        epoch = latest.get("epoch")
        line1 = (
            f"[b]{escape(short(run.name or run.id, 20))}[/b] {fmt.status(run.status)}  "
            f"step {fmt.progress(step, total)}  epoch {fmt.number(epoch, 3)}  "
            f"ETA {fmt.duration(eta)}  elapsed {fmt.duration(fmt.elapsed(run, now))}"
        )
        mem = latest.get("gpu_mem_gb")
        line2 = (
            f"loss {fmt.number(latest.get('loss'))}  val {fmt.number(latest.get('val_loss'))}  "
            + (f"acc {fmt.number(latest['val_accuracy'], 3)}  " if "val_accuracy" in latest else "")
            + f"lr {fmt.lr(latest.get('lr'))}  grad {fmt.number(latest.get('grad_norm'), 3)}  "
            f"tok/s {thousands(latest.get('tokens_per_s'))}  "
            f"mem {'-' if mem is None else f'{mem:.1f}G'}"
        )
        if run.terminal and run.exit_reason:
            line2 = f"[dim]{escape(run.exit_reason)}[/]  " + line2
        text = line1 + "\n" + line2
        if text != getattr(self, "_shown", None):
            self._shown = text
            self.update(text, layout=False)  # fixed size: a relayout per poll would be wasted CPU


def command_text(cmd, pending_local: bool = False) -> str:
    """One command with its state: pending, applied at step N, or rejected with the reason."""
    p = cmd.payload or {}
    what = {
        "set_lr": lambda: f"set LR {fmt.lr(p.get('lr'))}",
        "scale_lr": lambda: f"LR x{p.get('factor', 0):.3g}",
    }.get(cmd.kind, lambda: cmd.kind)()
    if cmd.status == "applied":
        state = f"[green]applied @{cmd.applied_step}[/]"
    elif cmd.status == "rejected":
        state = f"[red]rejected: {escape(cmd.reason or '')}[/]"
    else:
        state = "[yellow]pending…[/]"
    return f"#{cmd.id} {escape(what)} {state}"


class CommandsPane(Static):
    """The run's latest steering commands and their states."""

    def show(self, commands: list) -> None:
        """Show the newest few commands (newest last)."""
        if not commands:
            text = "[b]Commands[/b]\n[dim]none yet (u/d: LR, l: set LR)[/]"
        else:
            text = "[b]Commands[/b]\n" + "\n".join(command_text(c) for c in commands[-5:])
        if text != getattr(self, "_shown", None):  # polled twice a second: skip no-op relayouts
            self._shown = text
            self.update(text, layout=False)


class EventsPane(VerticalScroll):
    """The run's timeline (evals, command acks, warnings), newest at the bottom.

    A Static re-wrapped at render time (not a RichLog, which wraps at write time and so
    depends on whether layout happened yet): the same events always look the same.
    """

    MAX_EVENTS = 200

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lines: list[str] = []

    def compose(self):
        yield Static("", classes="events-text")

    def add(self, events: list) -> None:
        """Append new events and follow the end."""
        for e in events:
            style = EVENT_STYLE.get(e.kind, "")
            step = f"{e.step:>5}" if e.step is not None else "    -"
            kind = f"[{style}]{e.kind}[/]" if style else e.kind
            self.lines.append(f"[dim]{step}[/] {kind} {escape(e.message)}")
        del self.lines[: -self.MAX_EVENTS]
        self.query_one(".events-text", Static).update("\n".join(self.lines))
        self.call_after_refresh(self.scroll_end, animate=False)
