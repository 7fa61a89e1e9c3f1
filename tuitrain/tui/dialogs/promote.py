"""Provides PromoteDialog: what promoting a sweep trial will start (its run, the checkpoint step,
the full length, the params, the new run's name), launched with enter / y, cancelled with
escape / n."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def describe(p: Any) -> str:
    """The dialog's text for a Promotion (tuitrain.sweep.promote), as markup."""
    parent = p.branch.parent
    trial_len = (parent.derived or {}).get("total_steps")
    params = "  ".join(f"{k}={_value(v)}" for k, v in p.trial.params.items()) or "-"
    length = f"{p.max_steps} steps" if p.max_steps is not None else "the base config's length"
    if trial_len is not None:
        length += f" (the trial ran {trial_len})"
    rows = [
        ("trial", f"{p.trial.number} of sweep {p.sweep.name} ({p.trial.state})"),
        ("run", parent.name),
        ("from step", f"{p.fork_step} (its last complete checkpoint)"),
        ("max_steps", length),
        ("params", params),
        ("new run", p.name),
    ]
    lines = [f"[b]Promote trial {p.trial.number} to a full-length run[/b]", ""]
    lines += [f"[dim]{k:<10}[/dim] {escape(v)}" for k, v in rows]
    lines += ["", "It continues the trial's run from that checkpoint, and its monitor opens."]
    return "\n".join(lines)


class PromoteDialog(ModalScreen[bool]):
    """Confirm a promotion; dismisses with True (launch) or False (cancel)."""

    BINDINGS = [
        Binding("enter,y", "answer(True)", "Launch"),
        Binding("escape,n", "answer(False)", "Cancel"),
    ]

    def __init__(self, promotion: Any) -> None:
        super().__init__(id="promote-dialog")
        self.promotion = promotion

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(describe(self.promotion), classes="dialog-text", id="promote-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Launch (enter/y)", variant="primary", id="launch", compact=True)
                yield Button("Cancel (esc/n)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#launch", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "launch")

    def action_answer(self, value: bool) -> None:
        """Close with the answer."""
        self.dismiss(value)
