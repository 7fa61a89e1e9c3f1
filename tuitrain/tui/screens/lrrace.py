"""Provides the monitor's LR race: R's dialog (factors, steps per branch, keep running / pause)
and the race it starts, W that applies the winner (tuitrain.lrfind.apply: a factor on the run's
schedule as it is now; a race too close to call asks twice), G that branches from the winner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from tuitrain.runs import liveness
from tuitrain.tui.messages import RaceDone

RACE_FACTORS = (0.3, 1.0, 3.0)
RACE_STEPS = None  # None: tuitrain.lrfind.apply.default_steps (<= ~10% of the remaining steps)
RACE_EXTEND = 2  # as `tuitrain lr-race --extend`


@dataclass
class RacePlan:
    """The race dialog's answer: pause the run or not, the factors, the steps per branch."""

    pause: bool
    factors: list[float]
    steps: int
    note: str = ""  # the steps were clamped to the run's end


class RaceDialog(ModalScreen[RacePlan | None]):
    """R's dialog: the factors and the steps per branch (default <= ~10% of the run's remaining
    steps, never past its end), then race while the run keeps going, or pause it; None cancels."""

    BINDINGS = [
        Binding("k", "answer('keep')", "Keep running"),
        Binding("p", "answer('pause')", "Pause"),
        Binding("escape", "answer(None)", "Cancel"),
    ]

    def __init__(self, name: str, total: int | None, step: int, factors, steps: int) -> None:
        super().__init__()
        self.run_name, self.total, self.step = name, total, step
        self.factors, self.steps = factors, steps

    def compose(self) -> ComposeResult:
        left = ""
        if self.total:
            left = f"; {max(0, self.total - self.step)} steps left, it ends at step {self.total}"
        with Vertical(classes="dialog"):
            yield Static(
                f"LR race from the latest checkpoint of {escape(self.run_name)} (step "
                f"{self.step}{left}): branches x factor of its LR (more past a winning edge).",
                classes="dialog-text",
            )
            with Horizontal(classes="field-row"):
                yield Label("factors ")
                yield Input(
                    ",".join(f"{f:g}" for f in self.factors), id="race-factors", compact=True
                )
            with Horizontal(classes="field-row"):
                yield Label("steps   ")
                yield Input(str(self.steps), id="race-steps", compact=True)
            yield Static("", id="race-error")  # the fields' error, when one is wrong
            yield Static(
                "Keep the run going meanwhile, or pause it (it stops at a checkpoint, the race "
                "starts there, and it resumes after)?",
                classes="dialog-text",
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Keep running (k)", variant="primary", id="keep", compact=True)
                yield Button("Pause (p)", id="pause", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#keep", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_answer(None if event.button.id == "cancel" else event.button.id)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_answer("keep")

    def plan(self, pause: bool) -> RacePlan:
        """The answer from the fields; ValueError names the field and the fix."""
        from tuitrain.lrfind.apply import parse_factors

        factors = parse_factors(self.query_one("#race-factors", Input).value, "factors")
        raw = self.query_one("#race-steps", Input).value.strip()
        try:
            steps = int(raw)
        except ValueError:
            raise ValueError(
                f"steps {raw!r}: a whole number of steps per branch, e.g. 20"
            ) from None
        if steps < 1:
            raise ValueError(f"steps {steps}: at least 1 step per branch")
        note = ""
        if self.total and self.step + steps > self.total:
            left = max(1, self.total - self.step)
            note = (
                f"{steps} steps per branch would train past the run's end "
                f"(step {self.total}): clamped to {left}"
            )
            steps = left
        return RacePlan(pause, factors, steps, note)

    def action_answer(self, choice: str | None) -> None:
        """Cancel (None), or race with the fields' values (an error shows under them)."""
        if choice is None:
            self.dismiss(None)
            return
        try:
            plan = self.plan(choice == "pause")
        except ValueError as exc:
            self.query_one("#race-error", Static).update(f"[red]{escape(str(exc))}[/]")
            return
        self.dismiss(plan)


def start_race(screen: Any, run: Any) -> None:
    """Ask the factors, the steps and keep running / pause; then race the latest checkpoint."""
    from tuitrain.lrfind.apply import default_steps

    if run is None or run.terminal:
        screen.notify("a race starts from a live run's latest checkpoint", severity="warning")
        return
    total = run.derived.get("total_steps")
    step = run.last_step or 0
    steps = RACE_STEPS or default_steps(total, step)

    def go(plan: RacePlan | None) -> None:
        if plan is None:
            return
        if plan.note:
            screen.notify(f"LR race: {plan.note}", severity="warning", timeout=10)
        _race(screen, run, plan)

    dialog = RaceDialog(run.name or run.id, total, step, list(RACE_FACTORS), steps)
    screen.app.push_screen(dialog, go)


def _race(screen: Any, run: Any, plan: RacePlan) -> None:
    runs_dir = screen.app.runs_dir
    say = screen.app.call_from_thread

    def race() -> None:
        from tuitrain.lrfind.sequence import race as run_sequence
        from tuitrain.runs.lineage import BranchError
        from tuitrain.store import CommandRefused, RunNotFound

        def pausing(_run: Any) -> None:
            say(screen.notify, f"LR race: pausing {run.name} at a checkpoint…")

        def started(start: Any, rec: dict) -> None:
            note = f" ({rec['steps_note']})" if rec.get("steps_note") else ""
            say(
                screen.notify,
                f"LR race {rec['race_id']} from step {start.fork_step}: "
                f"x{', x'.join(f'{f:g}' for f in plan.factors)}"
                f" of lr {start.current_lr:.3g}, {rec['steps']} steps each{note}",
            )

        try:
            result = run_sequence(
                run.id, runs_dir, plan.factors, plan.steps, pause=plan.pause,
                extend=RACE_EXTEND, on_pause=pausing, on_start=started,
            )  # fmt: skip
        except (BranchError, CommandRefused, RunNotFound, RuntimeError) as exc:
            say(screen.notify, f"LR race: {exc}", severity="error")
            return
        start, verdict, rec, rid = result.start, result.verdict, result.record, result.race_id
        if verdict.winner is None:
            say(
                screen.notify,
                "LR race: no winner (" + "; ".join(verdict.notes) + ")",
                severity="error",
            )
            return
        # The worker thread never sets screen attributes: the screen takes the result itself.
        screen.post_message(RaceDone(start, verdict, rec, rec["winning_lr"]))
        close = " (too close to call: W asks twice)" if verdict.too_close else ""
        margin = verdict.margin if verdict.margin is not None else float("nan")
        f = verdict.winner.factor
        say(
            screen.notify,
            f"LR race {rid}: x{f:g} wins{close}, margin {margin:.3g}; W applies x{f:g} "
            "to the run's LR, G branches a full run from the winner",
            timeout=30,
        )

    screen.run_worker(race, thread=True, group="lr-race", exclusive=True, exit_on_error=False)


def apply_race(screen: Any) -> None:
    """Apply the last race's winner (tuitrain.lrfind.apply.decide); a race too close to call
    asks a second time first."""
    race = getattr(screen, "race", None)
    if race is None:
        screen.notify("no finished LR race yet (R starts one)", severity="warning")
        return
    _, verdict, _ = race
    if not verdict.too_close:
        _apply(screen, force=False)
        return
    from tuitrain.tui.dialogs.confirm import ConfirmDialog

    m = "n/a" if verdict.margin is None else f"{verdict.margin:.3g}"
    n = "n/a" if verdict.noise is None else f"{verdict.noise:.3g}"
    question = (
        f"The race was too close to call (margin {m} < 2 x noise {n}): "
        f"x{verdict.winner.factor:g} won on the train-loss trend only. Apply it anyway?"
    )
    screen.app.push_screen(
        ConfirmDialog(question, yes="Apply anyway"), lambda ok: ok and _apply(screen, force=True)
    )


def _apply(screen: Any, force: bool) -> None:
    start, verdict, rec = screen.race
    runs_dir = screen.app.runs_dir
    say = screen.app.call_from_thread

    def apply() -> None:
        from tuitrain.lrfind.apply import applied_entry, decide
        from tuitrain.lrfind.records import write_record
        from tuitrain.store import Store

        forced = bool(force and verdict.too_close)
        with Store(runs_dir) as store:
            last = store.last_values(start.parent.id).get("lr")
            d = decide(rec, verdict, None if last is None else last.step, force)
            if d.refused:
                say(screen.notify, f"LR race: {d.refused}", severity="warning")
                return
            try:
                cid = store.send_command(start.parent.id, d.kind, d.payload())
            except Exception as exc:  # refused (run ended) or invalid: say why
                say(screen.notify, str(exc), severity="error")
                return
            rec["applied"] = applied_entry(start.parent.id, d, "sent", None, forced)
            write_record(runs_dir, rec)
            say(screen.notify, f"LR race: {d.describe()} sent (#{cid}): {d.why}", timeout=15)
            say(screen.poll)
            # The trainer's acknowledgement, into the record (a resumed run loads first).
            cmd = liveness.wait_command(store, cid, timeout=300.0 if rec.get("paused") else 60.0)
        rec["applied"] = applied_entry(start.parent.id, d, cmd.status, cmd.applied_step, forced)
        write_record(runs_dir, rec)
        at = f" at step {cmd.applied_step}" if cmd.applied_step is not None else ""
        say(screen.notify, f"LR race: {d.describe()} {cmd.status}{at}", timeout=15)

    screen.run_worker(apply, thread=True, group="lr-race-apply", exit_on_error=False)


def branch_race(screen: Any) -> None:
    """Continue the last race's winner as a full-length run (tuitrain.runs.branching)."""
    race = getattr(screen, "race", None)
    if race is None:
        screen.notify("no finished LR race yet (R starts one)", severity="warning")
        return
    start, verdict, rec = race
    runs_dir = screen.app.runs_dir
    say = screen.app.call_from_thread

    def branch() -> None:
        from tuitrain.lrfind.race import branch_winner
        from tuitrain.lrfind.records import write_record
        from tuitrain.runs.lineage import BranchError

        try:
            child = branch_winner(runs_dir, start, verdict)
        except BranchError as exc:
            say(screen.notify, f"cannot branch from the winner: {exc}", severity="error")
            return
        rec["branched"] = child.id
        write_record(runs_dir, rec)
        say(
            screen.notify,
            f"branched {child.name} ({child.id}) from the winner at lr {rec['winning_lr']:.3g}",
            timeout=15,
        )

    screen.run_worker(branch, thread=True, group="lr-race-branch", exit_on_error=False)


class RaceLine(Static):
    """The monitor's line on the newest LR race from its run (progress, then the result);
    hidden when the run was never raced."""

    DEFAULT_CSS = """
    RaceLine { height: 1; padding: 0 1; background: $boost; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def show(self, text: str) -> None:
        """Show the race's line, or hide it."""
        if text == getattr(self, "_shown", None):
            return
        self._shown = text
        self.display = bool(text)
        self.update(f"[b]{escape(text)}[/]")
