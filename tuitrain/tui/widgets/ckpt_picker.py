"""Provides CheckpointPicker: the branch editor's bar (parent, checkpoint step, weights-only)."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Checkbox, Select, Static


class CheckpointPicker(Horizontal):
    """'branch of NAME from [step N v] [ ] weights only'; steps nearest the parent's end first."""

    DEFAULT_CSS = """
    CheckpointPicker { height: 1; background: $boost; }
    CheckpointPicker #branch-label { width: auto; padding: 0 1; }
    CheckpointPicker Select { width: 20; }
    CheckpointPicker Checkbox { width: auto; border: none; padding: 0 1; height: 1; }
    /* The open list is a framed box on its own background: without a frame its lines ran into
       the help text under the bar ("run: Rstep 200  oducibility."). */
    CheckpointPicker SelectOverlay.-textual-compact { border: round $accent !important; background: $surface; width: 24; }
    """

    def __init__(self, parent_label: str, steps: list[int], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.parent_label = parent_label
        self.steps = steps

    def compose(self) -> ComposeResult:
        yield Static(f"[b]branch of {escape(self.parent_label)}[/b] from", id="branch-label")
        yield Select(
            [(f"step {s}", s) for s in self.steps],
            value=self.steps[0] if self.steps else Select.BLANK,
            allow_blank=not self.steps,
            prompt="no complete checkpoint",
            id="ckpt-select",
            compact=True,
        )
        # The box alone looks the same on and off without colour (NO_COLOR): the label says it.
        yield Checkbox("weights only: off", id="weights-only", compact=True)

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.checkbox.label = f"weights only: {'on' if event.value else 'off'}"

    @property
    def step(self) -> int | None:
        """The picked checkpoint step (None: none to pick)."""
        value = self.query_one("#ckpt-select", Select).value
        return value if isinstance(value, int) else None

    @property
    def weights_only(self) -> bool:
        """Start a fresh optimizer, schedule and data order from the parent's weights."""
        return self.query_one("#weights-only", Checkbox).value
