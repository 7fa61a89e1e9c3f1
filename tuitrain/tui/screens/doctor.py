"""Provides DoctorScreen: a run's open diagnoses with evidence, remedy and action, and under them
its closed episodes (tuitrain.doctor.history.combined: steps, peak, why closed, consequences), so
a finished run still says what went wrong; Enter applies
the selected action through the normal steering path after a confirmation, or for a rollback
branches the run from the checkpoint before the spike (tuitrain.doctor.rollback) and opens the
child's monitor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from tuitrain.tui.context import app_of
from tuitrain.tui.dialogs.confirm import ConfirmDialog
from tuitrain.tui.widgets.doctor import STYLE, closed_of, episode_text, steps_text
from tuitrain.tui.widgets.keybar import KeyBar

ROLLBACK = "rollback"


@dataclass
class RolledBack(Message):
    """A rollback finished: the child run's id, or why it did not start."""

    child_id: str | None
    error: str | None = None
    stopped: bool = False  # the parent got a stop command


def option_text(d: Any, live: bool, entry: dict | None = None) -> str:
    """One diagnosis as a list entry: headline, evidence, remedy, action; with its history
    `entry`, the episode's steps, its peak and its consequences."""
    at = f" from step {d.step}" if d.step is not None else ""
    if entry is not None and steps_text(entry):
        at = f" {steps_text(entry)}"
    style = STYLE.get(d.severity, "")
    lines = [
        f"[{style}]{d.severity.upper()}[/] [b]{d.id}[/b]{at}",
        f"  evidence: {escape(d.evidence)}",
        f"  remedy:   {escape(d.remedy)}",
    ]
    peak = str(((entry or {}).get("peak") or {}).get("evidence", ""))
    if peak and peak != d.evidence:
        lines.append(f"  peak:     {escape(peak)}")
    if (entry or {}).get("consequences"):
        also = ", ".join(entry["consequences"])  # type: ignore[index]
        lines.append(f"  also:     {escape(also)} [dim](consequences, not opened separately)[/]")
    if d.action is not None:
        how = "Enter: apply" if d.action.steerable and live else "advice"
        if d.action.kind == ROLLBACK:
            how = "Enter: branch from there"
        lines.append(f"  action:   [b]{escape(d.action.label)}[/b] [dim]({how})[/]")
    return "\n".join(lines)


class DoctorScreen(Screen):
    """The doctor's findings for one run; selecting one offers its action."""

    BINDINGS = [Binding("q,escape,b,h", "back", "Back", key_display="q")]
    EXTRA_KEYS = {"Findings": [("up / down", "move"), ("enter", "apply the finding's action")]}
    DEFAULT_CSS = """
    DoctorScreen #doctor-title { height: 1; padding: 0 1; background: $panel; }
    DoctorScreen #doctor-list { height: 1fr; }
    """

    def __init__(
        self,
        run: Any,
        diagnoses: list[Any],
        send: Callable[[str, dict], Any] | None = None,
        history: list[dict] | None = None,
    ) -> None:
        super().__init__(id="doctor")
        self.run, self.diagnoses, self.send = run, diagnoses, send
        self.history = history or []  # tuitrain.doctor.history.combined of the run

    @property
    def live(self) -> bool:
        """The run can still be steered."""
        return self.run is not None and not self.run.terminal and self.send is not None

    def compose(self) -> ComposeResult:
        name = escape(self.run.name if self.run is not None else "?")
        n = len(self.diagnoses)
        closed = closed_of(self.history)
        past = f", {len(closed)} closed episode{'' if len(closed) == 1 else 's'}" if closed else ""
        yield Static(
            f"[b]doctor[/b]: run {name}: {n} open diagnos{'is' if n == 1 else 'es'}{past}"
            + ("" if self.live else " [dim](run ended: advice only)[/]"),
            id="doctor-title",
        )
        entries = {e["id"]: e for e in self.history if e.get("state") == "open"}
        opts: list[Option | None] = [
            Option(option_text(d, self.live, entries.get(d.id)), id=str(i))
            for i, d in enumerate(self.diagnoses)
        ]
        if not opts:
            none = "nothing open now" if closed else "nothing to report"
            opts = [Option(f"{none}: no symptom of the doctor's table is open", disabled=True)]
        if closed:
            opts.append(None)  # a separator: the history under the open ones, newest first
            opts += [
                Option(episode_text(e), id=f"closed-{k}", disabled=True)
                for k, e in enumerate(closed)
            ]
        yield OptionList(*opts, id="doctor-list")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#doctor-list", OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Enter: confirm, then send the diagnosis's action as a steering command."""
        if not (event.option.id or "0").isdigit():
            return  # a closed episode: history, nothing to apply
        d = self.diagnoses[int(event.option.id or 0)]
        a = d.action
        if a is None:
            self.notify(f"{d.id}: no action to apply; see the remedy", timeout=4)
            return
        if a.kind == ROLLBACK:
            self.confirm_rollback(d)
            return
        if not a.steerable:
            self.notify(f"{a.label}: change the config for the next run", timeout=5)
            return
        if not self.live:
            self.notify(f"run is {self.run.status}: nothing to steer", severity="warning")
            return
        payload = {**a.payload, "diagnosis": d.id}
        question = f"Apply {a.label} to run {self.run.name} (doctor: {d.id})?"
        self.app.push_screen(
            ConfirmDialog(question, yes="Apply"),
            lambda ok: ok and self._apply(a.kind, payload),
        )

    def confirm_rollback(self, d: Any) -> None:
        """Ask first: what the branch starts from, the LR change, and that the run stops."""
        from tuitrain.doctor.rollback import preview

        what = preview(self.run, d.action)
        question = f"Roll back run {self.run.name} (doctor: {d.id}): {what}?"
        self.app.push_screen(
            ConfirmDialog(question, yes="Roll back"),
            lambda ok: ok and self.rollback(d),
        )

    @work(thread=True, exclusive=True, exit_on_error=False, group="doctor-rollback")
    def rollback(self, d: Any) -> None:
        """The CLI's rollback (plan, branch, stop the parent), off the main thread."""
        from tuitrain.doctor.rollback import apply_rollback, plan_rollback

        try:
            rb = plan_rollback(self.run, [d])
            done = apply_rollback(rb, app_of(self).runs_dir, who="user")
        except Exception as exc:  # refused, no config, launcher failed: say why, stay here
            lines = getattr(exc, "lines", None)
            self.post_message(RolledBack(None, "; ".join(lines) if lines else str(exc)))
            return
        self.post_message(RolledBack(done.child.id, stopped=done.stop_command is not None))

    def on_rolled_back(self, msg: RolledBack) -> None:
        """Open the child's monitor (in place of this screen), or show why it did not start."""
        if msg.error or msg.child_id is None:
            self.notify(f"rollback refused: {msg.error}", severity="error", timeout=8)
            return
        stop = f"; run {self.run.name} stops at its next step" if msg.stopped else ""
        self.app.notify(f"rollback: child run {msg.child_id} started{stop}", timeout=6)
        app_of(self).call_next(app_of(self).open_instead, msg.child_id)

    def _apply(self, kind: str, payload: dict) -> None:
        assert self.send is not None
        self.send(kind, payload)
        self.app.pop_screen()  # back to the monitor, where the command shows as pending

    def action_back(self) -> None:
        """Back to the monitor."""
        self.app.pop_screen()
