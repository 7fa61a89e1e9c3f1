"""Provides LRFindScreen: a range test's loss against LR (log x) live, its suggestion marked, and keys to use or discard it (the monitor's LR race is tuitrain.tui.screens.lrrace)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static

from tuitrain.lrfind.curve import Suggestion, suggest
from tuitrain.runs import liveness
from tuitrain.tui.context import app_of
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
