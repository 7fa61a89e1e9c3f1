"""Provides LRFindScreen: a range test's loss against LR (log x) live, its suggestion marked, and keys to use or discard it."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Static

from tuitrain.lrfind.curve import Suggestion, suggest
from tuitrain.runs import liveness
from tuitrain.tui.context import app_of
from tuitrain.tui.messages import RaceDone
from tuitrain.tui.widgets.chart import Line, MetricChart
from tuitrain.tui.widgets.keybar import KeyBar

POLL_S = 0.5


@dataclass
class ProbeRead(Message):
    """One poll of the range test: its record and its (lr, loss) points."""

    run: Any  # RunInfo, or None with error
    points: list[tuple[float, float]]
    error: str | None = None


class LRFindScreen(Screen):
    """Watch (or start) a range test; `a` writes the suggestion into optimizer.lr, `x` discards it."""

    BINDINGS = [
        Binding("a", "apply", "Use suggestion"),
        Binding("x", "discard", "Discard"),
        Binding("q,escape", "discard", "Back", key_display="q"),
    ]

    def __init__(
        self,
        run_ref: str | None = None,
        config: Any = None,
        source: str | None = None,
        on_apply: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__()
        self.run_ref, self.config, self.source, self.on_apply = run_ref, config, source, on_apply
        self.run: Any = None
        self.points: list[tuple[float, float]] = []
        self.sug: Suggestion | None = None
        self.polls = 0
        self.timer = None

    def compose(self) -> ComposeResult:
        yield Static("range test: starting…", id="lrfind-head")
        yield MetricChart("loss vs LR (x: log10 lr)", id="lrfind-chart")
        yield Static("", id="lrfind-answer")
        yield KeyBar()

    def on_mount(self) -> None:
        if self.run_ref is None and self.config is not None:
            self.start_probe()
        else:
            self.poll()
        self.timer = self.set_interval(POLL_S, self.tick)

    # -- data ------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="lrfind-start")
    def start_probe(self) -> None:
        """Launch the range test of the edited config (off the main thread: it spawns a process)."""
        from tuitrain.config import resolve
        from tuitrain.lrfind.probe import launch_probe

        try:
            info = launch_probe(resolve(self.config, self.source), app_of(self).runs_dir)
        except Exception as exc:  # a config or launcher problem: show it, keep the editor
            self.post_message(ProbeRead(None, [], f"{type(exc).__name__}: {exc}"))
            return
        self.run_ref = info.id
        self.poll()

    def tick(self) -> None:
        """The timer: read again while the range test runs (an ended one was read for good)."""
        if self.run is None or not self.run.terminal:
            self.poll()

    def poll(self) -> None:
        """Read the range test now."""
        if self.run_ref is not None:
            self.read()

    @work(thread=True, exclusive=True, exit_on_error=False, group="lrfind-poll-once")
    def read(self) -> None:
        """One read of the store, with its own connection."""
        from tuitrain.lrfind.probe import read_points
        from tuitrain.store import RunNotFound, Store

        try:
            with Store(app_of(self).runs_dir) as store:
                run = liveness.view_run(store, self.run_ref)
                pts = read_points(store, run.id)
        except RunNotFound as exc:
            self.post_message(ProbeRead(None, [], str(exc)))
            return
        self.post_message(ProbeRead(run, pts))

    def on_probe_read(self, msg: ProbeRead) -> None:
        self.polls += 1
        head = self.query_one("#lrfind-head", Static)
        if msg.error:
            head.update(f"[red]range test: {escape(msg.error)}[/red]")
            return
        self.run, self.points = msg.run, msg.points
        run = msg.run
        pretrained = bool((run.config.get("model") or {}).get("name_or_path"))
        self.sug = suggest(self.points, pretrained=pretrained)
        # The ramp's length (lr_find.steps), not the full run's total_steps the config derives.
        total = (run.config.get("lr_find") or {}).get("steps") or run.derived.get("total_steps")
        head.update(
            f"[b]range test[/b] {escape(run.name)} [dim]{run.id}[/dim]  "
            f"step {len(self.points)}/{total}  {escape(run.status)}"
        )
        self.draw()

    # -- view ------------------------------------------------------------------------------

    def draw(self) -> None:
        """Raw and smoothed loss over log10(lr); the suggestion as a vertical mark."""
        sug = self.sug
        chart = self.query_one("#lrfind-chart", MetricChart)
        ok = [
            (math.log10(lr), loss, s)
            for (lr, loss), s in zip(self.points, sug.smoothed if sug else [], strict=False)
            if lr > 0
        ]
        if ok:
            # The blow-up at the end would squash the valley into one row: like fastai, show
            # the curve up to the stop threshold (4x the smoothed minimum).
            low = min((v for _, _, v in ok if math.isfinite(v)), default=math.inf)
            cap = 4 * low if math.isfinite(low) and low > 0 else math.inf
            ok = [(x, y, v) for x, y, v in ok if y <= cap and v <= cap]
        if ok:
            xs = tuple(x for x, _, _ in ok)
            lines = [
                Line("loss", xs, tuple(y for _, y, _ in ok), "gray"),
                Line("smoothed", xs, tuple(s for _, _, s in ok), "cyan"),
            ]
        else:
            lines = []
        # While the test runs the value is provisional: marked grey, never the green answer.
        colour = "green" if self.finished else "gray"
        chart.marks = [(math.log10(sug.suggested_lr), colour)] if sug and sug.suggested_lr else []
        chart.set_lines(lines)
        self.query_one("#lrfind-answer", Static).update(self.answer_text())

    @property
    def finished(self) -> bool:
        """The range test has ended: only then is its suggestion an answer (and `a` may use it)."""
        return self.run is not None and self.run.terminal

    def answer_text(self) -> str:
        """The suggestion, both methods, the warnings, and what `a` would write."""
        sug = self.sug
        if sug is None or (not self.points and not self.finished):
            return "waiting for the first steps…"
        if not self.finished:
            return self.running_text(sug)
        if sug.suggested_lr is None:
            return "[yellow]no suggestion:[/yellow] " + escape("; ".join(sug.warnings))
        parts = [
            f"[b]suggested lr {sug.suggested_lr:.3g}[/b] (method: {sug.method})   "
            f"steepest {_g(sug.steepest_lr)}   minimum/10 {_g(sug.min10_lr)} "
            f"(lowest at {_g(sug.min_loss_lr)})"
        ]
        write = self.write_value()
        if write is not None:
            value, scale, cfg_lr = write
            how = f" = {sug.suggested_lr:.3g} / lr_scaling x{scale:.3g}" if scale != 1 else ""
            parts.append(f"a: optimizer.lr {_g(cfg_lr)} -> {value:.3g}{how}   x: discard")
        if self.run is not None and self.run.terminal and self.run.exit_reason:
            parts.append(f"[dim]{escape(self.run.exit_reason)}[/dim]")
        if sug.clear:
            parts.append("[green]the curve gives a clear answer[/green]")
        for w in sug.warnings:
            parts.append(f"[yellow]warning:[/yellow] {escape(w)}")
        return "\n".join(parts)

    def running_text(self, sug: Suggestion) -> str:
        """While the test runs: at most a dim provisional value, never one `a` would write."""
        head = f"[dim]range test running: {len(self.points)} steps so far"
        if sug.suggested_lr is None:
            return head + "; the suggestion shows when it finishes[/dim]"
        return (
            head + f"; provisional lr {sug.suggested_lr:.3g} (method: {sug.method}) may still "
            "change: `a` uses the suggestion once the test has finished[/dim]"
        )

    def write_value(self) -> tuple[float, float, float] | None:
        """(value for optimizer.lr, lr_scaling factor, configured lr), through the config model."""
        if not self.finished or self.sug is None or self.sug.suggested_lr is None:
            return None
        from tuitrain.config import parse
        from tuitrain.lrfind.probe import with_lr

        cfg = self.config
        if cfg is None and self.run is not None:
            try:
                cfg = parse(self.run.config)
            except Exception:  # an old record the model no longer reads: nothing to write
                return None
        if cfg is None:
            return None
        new, scale = with_lr(cfg, self.sug.suggested_lr)
        return new.optimizer.lr, scale, cfg.optimizer.lr

    # -- keys ------------------------------------------------------------------------------

    def action_apply(self) -> None:
        """Write the suggestion into the editor's optimizer.lr and go back."""
        if not self.finished:
            self.notify(
                "the range test is still running: its suggestion can be used when it finishes",
                severity="warning",
            )
            return
        write = self.write_value()
        if write is None:
            self.notify("the range test gave no suggestion to use", severity="warning")
            return
        if self.on_apply is None:
            self.notify(f"suggested optimizer.lr {write[0]:.3g} (open the editor to use it)")
            return
        self.on_apply(write[0])
        self.app.pop_screen()

    def action_discard(self) -> None:
        """Leave without changing the config (the range test's run stays in the runs list)."""
        self.app.pop_screen()


def _g(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


# ---- the monitor's LR race: R starts it (keep running / pause), W applies the winner, G branches ----
RACE_FACTORS = (0.3, 1.0, 3.0)
RACE_STEPS = 200
RACE_EXTEND = 2  # as `tuitrain lr-race --extend`


class RaceDialog(ModalScreen[str | None]):
    """R's question: race while the run keeps going, or pause it meanwhile; None cancels."""

    BINDINGS = [
        Binding("k", "answer('keep')", "Keep running"),
        Binding("p", "answer('pause')", "Pause"),
        Binding("escape,c", "answer(None)", "Cancel"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="dialog-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Keep running (k)", variant="primary", id="keep", compact=True)
                yield Button("Pause (p)", id="pause", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#keep", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "cancel" else event.button.id)

    def action_answer(self, choice: str | None) -> None:
        self.dismiss(choice)


def start_race(screen: Any, run: Any) -> None:
    """Ask keep running / pause, then race the run's latest checkpoint at RACE_FACTORS x its LR."""
    if run is None or run.terminal:
        screen.notify("a race starts from a live run's latest checkpoint", severity="warning")
        return
    question = (
        f"LR race from the latest checkpoint of {run.name}: x"
        + ", x".join(f"{f:g}" for f in RACE_FACTORS)
        + f" of its LR, {RACE_STEPS} steps each (more past a winning edge). "
        "Keep the run going meanwhile, or pause it (it stops at a checkpoint, the race starts "
        "there, and it resumes after)?"
    )
    screen.app.push_screen(
        RaceDialog(question), lambda choice: choice and _race(screen, run, choice == "pause")
    )


def _race(screen: Any, run: Any, pause: bool) -> None:
    runs_dir = screen.app.runs_dir
    say = screen.app.call_from_thread

    def race() -> None:
        from tuitrain.lrfind.sequence import race as run_sequence
        from tuitrain.runs.lineage import BranchError
        from tuitrain.store import CommandRefused, RunNotFound

        def pausing(_run: Any) -> None:
            say(screen.notify, f"LR race: pausing {run.name} at a checkpoint…")

        def started(start: Any, _rec: dict) -> None:
            say(
                screen.notify,
                f"LR race from step {start.fork_step}: "
                f"x{', x'.join(f'{f:g}' for f in RACE_FACTORS)}"
                f" of lr {start.current_lr:.3g}, {RACE_STEPS} steps each",
            )

        try:
            result = run_sequence(
                run.id, runs_dir, RACE_FACTORS, RACE_STEPS, pause=pause, extend=RACE_EXTEND,
                on_pause=pausing, on_start=started,
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
        lr = rec["winning_lr"]
        # The worker thread never sets screen attributes: the screen takes the result itself.
        screen.post_message(RaceDone(start, verdict, rec, lr))
        close = " (too close to call)" if verdict.too_close else ""
        margin = verdict.margin if verdict.margin is not None else float("nan")
        say(
            screen.notify,
            f"LR race {rid}: x{verdict.winner.factor:g} wins{close}, margin {margin:.3g}; "
            f"W sets lr {lr:.3g}, G branches a full run from the winner",
            timeout=30,
        )

    screen.run_worker(race, thread=True, group="lr-race", exclusive=True, exit_on_error=False)


def apply_race(screen: Any) -> None:
    """Send the live run a set_lr with the last race's winning LR."""
    lr = getattr(screen, "race_lr", None)
    if lr is None:
        screen.notify("no finished LR race yet (R starts one)", severity="warning")
        return
    start, _, rec = screen.race
    rec["applied"] = {"run": start.parent.id, "lr": lr, "status": "sent"}
    screen.send("set_lr", {"lr": lr})


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
