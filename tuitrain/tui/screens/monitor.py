"""Provides MonitorScreen: live charts, header, events and steering keys for one run."""

from __future__ import annotations

import time
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer

from tuitrain.tui.dialogs.confirm import ConfirmDialog
from tuitrain.tui.dialogs.prompt import PromptDialog, parse_lr
from tuitrain.tui.messages import NewEvents, RunSnapshot
from tuitrain.tui.screens.runs import total_steps
from tuitrain.tui.widgets.chart import Line, MetricChart, ema
from tuitrain.tui.widgets.run_panes import CommandsPane, EventsPane, RunHeader

CHART_METRICS = ("loss", "val_loss", "lr", "grad_norm", "val_accuracy")  # accuracy: header only
HEADER_METRICS = ("loss", "val_loss", "lr", "grad_norm", "epoch", "tokens_per_s", "gpu_mem_gb")


class MonitorScreen(Screen):
    """Watch and steer one run; DB reads happen in a worker thread, charts redraw at a bounded rate."""

    BINDINGS = [
        Binding("u,plus", "lr_up", "LR up"),
        Binding("d,minus", "lr_down", "LR down"),
        Binding("l", "set_lr", "Set LR"),
        Binding("s", "stop", "Stop"),
        Binding("k", "checkpoint", "Ckpt"),
        Binding("v", "eval", "Eval"),
        Binding("y", "log_y", "Log y"),
        Binding("m", "smooth", "Smooth"),
        Binding("escape,b", "back", "Back"),
    ]

    def __init__(self, run_ref: str) -> None:
        super().__init__(id="monitor")
        self.run_ref = run_ref
        self.run: Any = None
        self.latest: dict[str, float] = {}
        self.series: dict[str, list[tuple[int, float, float, float]]] = {}
        self.log_y = False
        self.smooth = False
        self._store: Any = None  # owned by the poll worker (one at a time; see poll())
        self._after_event = 0
        self._seen_step: int | None = -1
        self._seen_buckets = 0
        self._last_draw = 0.0
        self._last_poll = 0.0
        self._draw_timer: Any = None

    def compose(self) -> ComposeResult:
        yield RunHeader("loading…", id="run-header")
        with Horizontal(id="charts-top"):
            yield MetricChart("loss (train, val)", id="chart-loss")
        with Horizontal(id="charts-bottom"):
            yield MetricChart("learning rate", id="chart-lr")
            yield MetricChart("grad norm (pre-clip)", id="chart-grad")
        with Horizontal(id="monitor-bottom"):
            yield EventsPane(id="events")
            yield CommandsPane("", id="commands")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        # First read after layout, so the series are fetched at the charts' real width.
        self.call_after_refresh(self.poll)
        self.set_interval(self.app.settings.poll_s, self.poll)  # type: ignore[attr-defined]

    def on_unmount(self) -> None:
        if self._store is not None:
            self._store.close()

    # -- reading --------------------------------------------------------------------------

    def buckets(self) -> int:
        """Points per series: about two per chart cell (braille resolution), so cost is flat."""
        width = self.query_one("#chart-loss", MetricChart).size.width or 80
        return max(20, min(400, width * 2))

    def poll(self) -> None:
        """Start one poll unless one is still running (no pile-up when the DB is slow)."""
        if not self.is_current and self.run is not None:
            return
        if any(w.group == "monitor-poll" and w.is_running for w in self.workers):
            return
        settings = self.app.settings  # type: ignore[attr-defined]
        if (
            self.run is not None
            and self.run.terminal
            and time.monotonic() - self._last_poll < settings.list_poll_s
        ):
            return  # an ended run changes rarely: poll it at the runs-list pace
        self._last_poll = time.monotonic()
        self.read_run(self.buckets())

    @work(thread=True, exclusive=False, exit_on_error=False, group="monitor-poll")
    def read_run(self, buckets: int) -> None:
        """Read what changed since the last poll and post it (incremental events; series only on new steps)."""
        from tuitrain.store import Store

        if self._store is None:
            self._store = Store(self.app.runs_dir)  # type: ignore[attr-defined]
        store = self._store
        try:
            run = store.get_run(self.run_ref)  # also turns a dead 'running' run into crashed
        except LookupError as exc:  # RunNotFound: deleted meanwhile, or a typo
            self.app.call_from_thread(
                self.query_one("#run-header", RunHeader).update, f"[red]{exc}[/]"
            )
            return
        events = store.events(run.id, self._after_event)
        if events:
            self._after_event = events[-1].id
            self.post_message(NewEvents(run.id, events))
        series = None
        if run.last_step != self._seen_step or buckets != self._seen_buckets:
            names = set(store.metric_names(run.id))
            series = {n: store.series(run.id, n, buckets) for n in CHART_METRICS if n in names}
            # Header values: the newest point of each metric (one indexed read near the end).
            latest = {
                p.name: p.value
                for p in store.tail(run.id, HEADER_METRICS, after_step=(run.last_step or 0) - 1)
            }
            for n in CHART_METRICS:  # val_loss comes only at evals: take the series' newest
                if n not in latest and series.get(n):
                    latest[n] = series[n][-1][3]
            self._seen_step, self._seen_buckets = run.last_step, buckets
        else:
            latest = None
        self.post_message(
            RunSnapshot(run.id, run, latest or {}, run.last_step, store.commands(run.id), series)
        )

    def on_run_snapshot(self, msg: RunSnapshot) -> None:
        if self.run is not None and self.run.status != msg.run.status:
            bad = msg.run.status in ("failed", "diverged", "crashed")
            why = f": {msg.run.exit_reason}" if msg.run.exit_reason else ""
            self.notify(
                f"run {msg.run.status}{why}", severity="error" if bad else "information", timeout=8
            )
        self.run = msg.run
        if msg.series is not None:
            self.series = msg.series
            self.latest = msg.latest
        self.query_one("#run-header", RunHeader).show(
            msg.run, self.latest, total_steps(msg.run), self.app.now()
        )  # type: ignore[attr-defined]
        self.query_one("#commands", CommandsPane).show(msg.commands)
        if msg.series is not None:
            self.request_redraw()

    def on_new_events(self, msg: NewEvents) -> None:
        self.query_one("#events", EventsPane).add(msg.events)

    # -- drawing --------------------------------------------------------------------------

    def request_redraw(self) -> None:
        """Redraw now, or at the next allowed moment (at most max_redraw_hz)."""
        settings = self.app.settings  # type: ignore[attr-defined]
        cost = sum(c.build_s for c in self.query(MetricChart))  # of the previous draw
        gap = max(
            1.0 / max(0.1, settings.max_redraw_hz), cost / max(1e-3, settings.chart_cpu_budget)
        )
        wait = self._last_draw + gap - time.monotonic()
        if wait <= 0:
            self.redraw()
        elif self._draw_timer is None:
            self._draw_timer = self.set_timer(wait, self.redraw)

    def line(self, name: str, label: str, color: str, smooth: bool = False) -> Line | None:
        """A chart line from a cached series (last value per bucket)."""
        pts = self.series.get(name)
        if not pts:
            return None
        ys = [p[3] for p in pts]
        if smooth and self.smooth:
            ys = ema(ys, self.app.settings.smoothing)  # type: ignore[attr-defined]
        return Line(label, tuple(p[0] for p in pts), tuple(ys), color)

    def redraw(self) -> None:
        """Push cached, downsampled lines into the charts (plotext builds on the main thread)."""
        self._draw_timer = None
        self._last_draw = time.monotonic()
        loss = [
            x
            for x in (
                self.line("loss", "train", "cyan", True),
                self.line("val_loss", "val", "orange"),
            )
            if x
        ]
        logy = ", log y" if self.log_y else ""
        smooth = ", smoothed" if self.smooth else ""  # the LR curve is never smoothed
        titles = {
            "#chart-loss": f"loss (train, val){logy}{smooth}",
            "#chart-lr": f"learning rate{logy}",
            "#chart-grad": f"grad norm (pre-clip){logy}{smooth}",
        }
        for cid, title in titles.items():
            self.query_one(cid, MetricChart).title = title
        self.query_one("#chart-loss", MetricChart).set_lines(loss, self.log_y)
        lr = [x for x in (self.line("lr", "", "green"),) if x]
        self.query_one("#chart-lr", MetricChart).set_lines(lr, self.log_y)
        grad = [x for x in (self.line("grad_norm", "", "magenta", True),) if x]
        self.query_one("#chart-grad", MetricChart).set_lines(grad, self.log_y)

    # -- steering -------------------------------------------------------------------------

    @work(thread=True, exit_on_error=False, group="monitor-send")
    def send(self, kind: str, payload: dict | None = None) -> None:
        """Queue a command row for the trainer (a DB write: never on the main thread)."""
        from tuitrain.store import Store

        with Store(self.app.runs_dir) as store:  # type: ignore[attr-defined]
            try:
                cid = store.send_command(self.run.id, kind, payload)
            except Exception as exc:  # refused (run ended) or invalid: say why
                self.app.call_from_thread(self.notify, str(exc), severity="error")
                return
        self.app.call_from_thread(
            self.notify, f"command #{cid} {kind} sent; pending until the trainer applies it"
        )
        self.app.call_from_thread(self.poll)

    def _steerable(self) -> bool:
        if self.run is None:
            return False
        if self.run.terminal:
            self.notify(f"run is {self.run.status}: nothing to steer", severity="warning")
            return False
        return True

    def action_lr_up(self) -> None:
        """Multiply the LR (the remaining schedule keeps its shape)."""
        if self._steerable():
            self.send("scale_lr", {"factor": self.app.settings.lr_factor})  # type: ignore[attr-defined]

    def action_lr_down(self) -> None:
        """Divide the LR."""
        if self._steerable():
            self.send("scale_lr", {"factor": 1.0 / self.app.settings.lr_factor})  # type: ignore[attr-defined]

    def action_set_lr(self) -> None:
        """Ask for an LR (5e-5 style) and set it."""
        if not self._steerable():
            return
        current = self.latest.get("lr")
        value = f"{current:.3g}" if current else ""
        self.app.push_screen(
            PromptDialog("Set the learning rate to (e.g. 5e-5):", parse_lr, value),
            lambda lr: lr and self.send("set_lr", {"lr": lr}),
        )

    def action_stop(self) -> None:
        """Stop the run early (after confirmation); the trainer saves and ends cleanly."""
        if not self._steerable():
            return
        question = f"Stop run {self.run.name} now? It finishes the current step, saves a checkpoint and ends."
        self.app.push_screen(
            ConfirmDialog(question, yes="Stop"), lambda ok: ok and self.send("stop")
        )

    def action_checkpoint(self) -> None:
        """Save a checkpoint at the next step."""
        if self._steerable():
            self.send("checkpoint")

    def action_eval(self) -> None:
        """Evaluate at the next step."""
        if self._steerable():
            self.send("eval")

    def action_log_y(self) -> None:
        """Toggle a logarithmic y axis."""
        self.log_y = not self.log_y
        self.notify(f"log y {'on' if self.log_y else 'off'}", timeout=1.5)
        self.redraw()

    def action_smooth(self) -> None:
        """Toggle EMA smoothing of train loss and grad norm."""
        self.smooth = not self.smooth
        self.notify(f"smoothing {'on' if self.smooth else 'off'}", timeout=1.5)
        self.redraw()

    def action_back(self) -> None:
        """Back to the previous screen (the run keeps going)."""
        self.app.action_back()  # type: ignore[attr-defined]
