"""Provides MonitorScreen: live charts, header, notes, events and steering keys for one run."""

from __future__ import annotations

import threading
import time
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import OptionList
from textual.worker import get_current_worker

from tuitrain.tui.context import app_of
from tuitrain.tui.dialogs.pick import PickDialog
from tuitrain.tui.dialogs.prompt import PromptDialog
from tuitrain.tui.dialogs.text import TextDialog
from tuitrain.tui.lineage_view import PARENT_KEY, prefix_line
from tuitrain.tui.messages import Diagnosed, NewEvents, RunMissing, RunSnapshot
from tuitrain.tui.pollers.run import RunReader
from tuitrain.tui.screens.lrrace import RaceLine
from tuitrain.tui.screens.monitor_actions import SteeringActions
from tuitrain.tui.screens.runs_cells import total_steps
from tuitrain.tui.widgets.chart import Line, MetricChart, ema
from tuitrain.tui.widgets.doctor import DoctorLine, spike_lines
from tuitrain.tui.widgets.events import EventsPane, filter_choices, full_text
from tuitrain.tui.widgets.keybar import KeyBar
from tuitrain.tui.widgets.run_panes import CommandsPane, NotesLine, RunHeader
from tuitrain.tui.widgets.system import SystemStrip, system_chart, wanted

CHARTS = ("#chart-loss", "#chart-lr", "#chart-grad")
# Below this many rows per chart (title, axes and ~3 plot rows) a chart cannot be read:
# show one chart at a time instead (n switches).
MIN_CHART_ROWS = 7
BOTTOM_ROWS = 7  # events + commands
# From this height the system strip takes two lines (hardware, then step times) when it has both.
STRIP_TWO_ROWS_FROM = 32


STEER = Binding.Group("Steer the run")
VIEW = Binding.Group("View")
RUN = Binding.Group("The run")
RACE = Binding.Group("LR race")
NAV = Binding.Group("Leave")


class MonitorScreen(SteeringActions, Screen):
    """Watch and steer one run; DB reads happen in a worker thread, charts redraw at a bounded rate."""

    # Footer order is priority order (most used first); `?` lists every key by group.
    BINDINGS = [
        Binding("u,plus", "lr_up", "LR up", group=STEER),
        Binding("d,minus", "lr_down", "LR down", group=STEER),
        Binding("l", "set_lr", "Set LR", group=STEER),
        Binding("s", "stop", "Stop", group=STEER),
        Binding("h", "doctor", "Doctor", group=RUN),
        Binding("f", "filter_events", "Filter", group=VIEW),
        Binding("z", "zoom", "Zoom", group=VIEW),
        Binding("k", "checkpoint", "Ckpt", group=STEER),
        Binding("v", "eval", "Eval", group=STEER),
        Binding("B", "branch", "Branch", group=RUN),
        Binding("e", "edit_notes", "Notes", group=RUN),
        Binding("a", "samples", "Samples", group=RUN),  # the answers at each eval
        Binding("q,escape,b", "back", "Back", key_display="q", group=NAV),
        Binding("n", "next_chart(1)", "Next chart", show=False, group=VIEW),
        Binding("N", "next_chart(-1)", "Prev chart", show=False, group=VIEW),
        # The grad-norm chart <-> GPU util/mem (CPU/RAM).
        Binding("g", "system_chart", "System", show=False, group=VIEW),
        Binding("y", "log_y", "Log y", show=False, group=VIEW),
        Binding("m", "smooth", "Smooth", show=False, group=VIEW),
        Binding("R", "lr_race", "LR race", show=False, group=RACE),  # tuitrain.tui.screens.lrrace
        Binding("W", "apply_race", "Apply race LR", show=False, group=RACE),
        Binding("G", "branch_race", "Branch race winner", show=False, group=RACE),
    ]
    EXTRA_KEYS = {"View": [("tab", "focus the events list"), ("enter", "an event's full text")]}

    def __init__(self, run_ref: str) -> None:
        # A name, not an id: a branch opens the child's monitor over its parent's (ids must be unique).
        super().__init__(name="monitor")
        self.run_ref = run_ref
        self.run: Any = None
        self.latest: dict[str, float] = {}
        self.series: dict[str, list[tuple[int, float, float, float]]] = {}
        self.log_y = False
        self.smooth = False
        self.zoomed = False  # one chart at full height (z)
        self.single = False  # the terminal is too short for three charts: one at a time
        self.current = 0  # index in CHARTS of the chart shown when zoomed or single
        self.sys_chart = False  # g: the grad-norm chart shows the system (GPU or CPU/RAM) instead
        self._strip_rows = 0  # rows the system strip takes (0: the run has no sys/ or time/ values)
        # The poll loop's reads and their state (tuitrain.tui.pollers.run): its thread's alone.
        self.reader: RunReader | None = None
        # Set by the main thread, read by the loop (plain values: no lock needed).
        self._wake = threading.Event()
        self._active = True
        self._closed = False
        self._buckets = 160
        self.polls = 0  # reads done by the loop (tests wait on it)
        self.loop_done = False  # the loop's thread has ended and closed its Store
        self.loop_error: Exception | None = None  # the last read that failed
        self._last_draw = 0.0
        self._draw_timer: Any = None

    def compose(self) -> ComposeResult:
        yield RunHeader("loading…", id="run-header")
        yield SystemStrip("", id="sys-strip")
        yield DoctorLine(id="doctor-line")
        yield NotesLine("", id="run-notes")
        yield RaceLine("", id="race-line")
        with Horizontal(id="charts-top"):
            yield MetricChart("loss (train, val)", live=True, id="chart-loss")
        with Horizontal(id="charts-bottom"):
            yield MetricChart("learning rate", live=True, id="chart-lr")
            yield MetricChart("grad norm (pre-clip)", live=True, id="chart-grad")
        with Horizontal(id="monitor-bottom"):
            yield EventsPane(id="events")
            yield CommandsPane("", id="commands")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#run-notes", NotesLine).display = False
        self.query_one("#race-line", RaceLine).display = False
        self.query_one("#sys-strip", SystemStrip).display = False
        self.query_one("#events", EventsPane).focus()
        # First read after layout, so the series are fetched at the charts' real width.
        self.call_after_refresh(self._start)

    def _start(self) -> None:
        self._buckets = self.buckets()
        self.poll_loop()

    def on_unmount(self) -> None:
        self._closed = True  # the loop ends after its current read and closes its Store
        self._wake.set()

    # -- layout ---------------------------------------------------------------------------

    def on_resize(self) -> None:
        self.show_strip()  # its detail depends on the width, its rows on the height
        self.apply_layout()
        if self.buckets() != self._buckets:
            self.poll()  # re-read the series at the new width

    def apply_layout(self) -> None:
        """Three charts, or one (zoomed, or when each of three would be too short to read)."""
        height = self.size.height or 24
        notes = 1 if self.query_one("#run-notes", NotesLine).display else 0
        notes += 1 if self.query_one("#doctor-line", DoctorLine).display else 0
        notes += 1 if self.query_one("#race-line", RaceLine).display else 0
        bottom = BOTTOM_ROWS
        top = 2 + notes + self._strip_rows
        rows = (height - top - 1 - bottom) // 2
        if self._strip_rows and rows < MIN_CHART_ROWS <= (height - top - bottom) // 2:
            bottom -= 1  # the strip's row comes from the events pane, so three charts still fit
            rows = MIN_CHART_ROWS
        self.query_one("#monitor-bottom").styles.height = bottom
        single = rows < MIN_CHART_ROWS
        if single != self.single:
            self.single = single
        one = self.zoomed or self.single
        for i, cid in enumerate(CHARTS):
            chart = self.query_one(cid, MetricChart)
            chart.display = not one or i == self.current
            chart.envelope = self.zoomed
        self.query_one("#charts-top").display = self.query_one("#chart-loss").display
        self.query_one("#charts-bottom").display = any(
            self.query_one(c).display for c in CHARTS[1:]
        )
        self.query_one("#monitor-bottom").display = not self.zoomed
        commands = self.query_one("#commands", CommandsPane)
        commands.styles.width = 36 if (self.size.width or 80) >= 80 else 26
        self.redraw()

    def action_zoom(self) -> None:
        """Show the current chart alone at full height (again: back to all charts)."""
        self.zoomed = not self.zoomed
        self.apply_layout()

    def action_next_chart(self, step: int) -> None:
        """Switch the chart shown when zoomed or when only one fits."""
        self.current = (self.current + step) % len(CHARTS)
        if not (self.zoomed or self.single):
            self.zoomed = True  # picking a chart with all three shown zooms into it
        self.apply_layout()

    # -- reading --------------------------------------------------------------------------

    def buckets(self) -> int:
        """Points per series: about two per chart cell (braille resolution), so cost is flat."""
        width = self.size.width or 80
        return max(20, min(400, width * 2))

    def on_screen_suspend(self) -> None:
        self._active = False  # another screen is on top: no reads until it is back

    def on_screen_resume(self) -> None:
        self._active = True
        self.poll()

    def poll(self) -> None:
        """Ask the poll loop for a read now (after a command, a resize, a resume)."""
        self._buckets = self.buckets()
        self._wake.set()

    @work(thread=True, exit_on_error=False, group="monitor-poll")
    def poll_loop(self) -> None:
        """Read what changed, post it as messages, sleep; until the screen goes away.

        One long-lived thread with one Store: its connection's data_version tells whether
        anything was committed since the last read. The worker never touches widgets, and it
        alone closes the Store, after its last read."""
        from tuitrain.store import Store

        worker = get_current_worker()
        settings = app_of(self).settings
        store = Store(app_of(self).runs_dir)
        reader = self.reader = RunReader(self.run_ref, app_of(self).now)
        try:
            while not (worker.is_cancelled or self._closed):
                if self._active:
                    try:
                        messages = reader.read(store, self._buckets, self.sys_chart)
                    except Exception as exc:  # a DB error must not end the monitor's updates
                        self.loop_error = exc
                        messages = [RunMissing(self.run_ref, f"cannot read the run: {exc}")]
                    for msg in messages:
                        self.post_message(msg)
                    self.polls += 1
                ended = reader.terminal
                self._wake.wait(settings.list_poll_s if ended else settings.poll_s)
                self._wake.clear()
        finally:
            store.close()
            self.loop_done = True

    def on_diagnosed(self, msg: Diagnosed) -> None:
        self.query_one("#doctor-line", DoctorLine).show(msg.diagnoses, msg.history)

    def on_run_missing(self, msg: RunMissing) -> None:
        self.query_one("#run-header", RunHeader).update(f"[red]{msg.error}[/]")

    def on_run_snapshot(self, msg: RunSnapshot) -> None:
        if self.run is not None and self.run.status != msg.run.status:
            bad = msg.run.status in ("failed", "diverged", "crashed")
            why = f": {msg.run.exit_reason}" if msg.run.exit_reason else ""
            name = msg.run.name or msg.run.id
            state = "is running" if msg.run.status == "running" else msg.run.status
            self.notify(
                f"{name} {state}{why}", severity="error" if bad else "information", timeout=8
            )
        self.run = msg.run
        if msg.series is not None:
            self.series = msg.series
        if msg.latest is not None:
            self.latest = msg.latest
        self.query_one("#run-header", RunHeader).show(
            msg.run, self.latest, total_steps(msg.run), app_of(self).now()
        )
        self.show_strip()
        notes_line = self.query_one("#run-notes", NotesLine)
        shown = notes_line.display
        notes_line.show(self.notes())
        race_line = self.query_one("#race-line", RaceLine)
        shown = (shown, race_line.display)
        race_line.show(msg.race)
        if (notes_line.display, race_line.display) != shown:
            self.apply_layout()
        warmup = (msg.run.derived or {}).get("warmup_steps") or 0
        self.query_one("#commands", CommandsPane).show(msg.commands, warmup)
        if msg.series is not None:
            self.request_redraw()

    def show_strip(self) -> None:
        """The system strip for the latest values; a change of its height re-lays the charts."""
        height, width = self.size.height or 24, self.size.width or 80
        rows = 2 if height >= STRIP_TWO_ROWS_FROM else 1
        shown = self.query_one("#sys-strip", SystemStrip).show(self.latest, width, rows)
        if shown != self._strip_rows:
            self._strip_rows = shown
            self.apply_layout()

    def notes(self) -> str:
        """The run's notes (config run.notes; '' for runs without a tuitrain config)."""
        cfg = self.run.config if self.run is not None else None
        run = cfg.get("run") if isinstance(cfg, dict) else None
        notes = run.get("notes") if isinstance(run, dict) else None
        return notes if isinstance(notes, str) else ""

    def on_new_events(self, msg: NewEvents) -> None:
        self.query_one("#events", EventsPane).add(msg.events)

    @on(OptionList.OptionSelected, "#events")
    def open_event(self, event: OptionList.OptionSelected) -> None:
        """Enter on an event shows its whole text (a generation sample with its newlines)."""
        e = self.query_one("#events", EventsPane).selected_event()
        if e is not None:
            self.app.push_screen(TextDialog(f"event #{e.id}", full_text(e)))

    def action_filter_events(self) -> None:
        """Pick the events filter from a list: all, no generations, or only one kind (with counts)."""
        pane = self.query_one("#events", EventsPane)

        def picked(flt: Any) -> None:
            if flt is not PickDialog.CANCEL:
                pane.set_filter(flt)

        self.app.push_screen(
            PickDialog("Show which events?", filter_choices(pane.events), pane.filter), picked
        )

    # -- drawing --------------------------------------------------------------------------

    def request_redraw(self) -> None:
        """Redraw now, or at the next allowed moment (at most max_redraw_hz)."""
        settings = app_of(self).settings
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
        """A chart line from a cached series (last value per bucket, with the bucket's min/max)."""
        pts = self.series.get(name)
        if not pts:
            return None
        ys = [p[3] for p in pts]
        if smooth and self.smooth:
            ys = ema(ys, app_of(self).settings.smoothing)
        return Line(
            label,
            tuple(p[0] for p in pts),
            tuple(ys),
            color,
            lo=tuple(p[1] for p in pts),
            hi=tuple(p[2] for p in pts),
        )

    def redraw(self) -> None:
        """Push cached, downsampled lines into the charts (plotext builds on the main thread)."""
        self._draw_timer = None
        self._last_draw = time.monotonic()
        loss = [
            x
            for x in (
                prefix_line(self.series.get(PARENT_KEY + "loss"), "parent"),
                self.line("loss", "train", "cyan", True),
                self.line("val_loss", "val", "orange"),
            )
            if x
        ]
        logy = ", log y" if self.log_y else ""
        smooth = ", smoothed" if self.smooth else ""  # the LR curve is never smoothed
        one = self.zoomed or self.single
        sys_title, sys_lines = (
            system_chart(self.series, self.latest) if self.sys_chart else ("", [])
        )
        titles = {
            "#chart-loss": f"loss (train, val){logy}{smooth}",
            "#chart-lr": f"learning rate{logy}",
            "#chart-grad": f"{sys_title}  g: grad"
            if self.sys_chart
            else f"grad norm (pre-clip){logy}{smooth}",
        }
        for i, (cid, title) in enumerate(titles.items()):
            hint = f"  [{i + 1}/{len(CHARTS)} n: next, z: {'all' if self.zoomed else 'zoom'}]"
            self.query_one(cid, MetricChart).title = title + (hint if one else "")
        self.query_one("#chart-loss", MetricChart).set_lines(loss, self.log_y)
        lr = [x for x in (prefix_line(self.series.get(PARENT_KEY + "lr")), self.line("lr", "", "green")) if x]  # fmt: skip
        self.query_one("#chart-lr", MetricChart).set_lines(lr, self.log_y)
        grad = [x for x in (prefix_line(self.series.get(PARENT_KEY + "grad_norm")), self.line("grad_norm", "", "magenta", True)) if x]  # fmt: skip
        spikes = self.query_one("#doctor-line", DoctorLine).diagnoses  # red dots at the spikes
        loss += spike_lines(spikes, "loss") if loss else []
        grad += spike_lines(spikes, "grad_norm") if grad else []
        if self.sys_chart:  # percentages: a log axis would only hide an idle GPU's zeros
            self.query_one("#chart-grad", MetricChart).set_lines(sys_lines, False)
        else:
            self.query_one("#chart-grad", MetricChart).set_lines(grad, self.log_y)

    # -- other keys (steering: monitor_actions.SteeringActions) ------------------------------

    def action_doctor(self) -> None:
        """Open the doctor's findings; Enter on one applies its action (after a confirmation)."""
        from tuitrain.tui.screens.doctor import DoctorScreen

        line = self.query_one("#doctor-line", DoctorLine)
        self.app.push_screen(DoctorScreen(self.run, line.diagnoses, self.send, line.history))

    def action_samples(self) -> None:
        """What the model answered at each evaluation (tuitrain.tui.screens.samples)."""
        app_of(self).open_samples([self.run.id if self.run else self.run_ref])

    def action_edit_notes(self) -> None:
        """Edit the run's notes (what you were trying); saved in the run record."""
        if self.run is None:
            return
        self.app.push_screen(
            PromptDialog(f"Notes for run {self.run.name}:", str, self.notes()),
            lambda text: text is not None and self.save_notes(text),
        )

    @work(thread=True, exit_on_error=False, group="monitor-send")
    def save_notes(self, text: str) -> None:
        """Write the notes (a DB write: never on the main thread), then re-read the run."""
        from tuitrain.store import Store

        with Store(app_of(self).runs_dir) as store:
            try:
                store.set_notes(self.run.id, text)
            except Exception as exc:  # the run was deleted meanwhile
                self.app.call_from_thread(self.notify, str(exc), severity="error")
                return
        self.app.call_from_thread(self.poll)

    def action_system_chart(self) -> None:
        """Swap the grad-norm chart for the system chart (GPU util/mem %, or CPU/RAM % of the host)."""
        self.sys_chart = not self.sys_chart
        if self.sys_chart and not any(wanted(n) and n.startswith("sys/") for n in self.latest):
            self.notify("no system metrics in this run yet (sampled every 5 s)", timeout=3)
        self.redraw()
        self.poll()  # read the system series (or stop reading them)

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

    def action_branch(self) -> None:
        """Branch this run: the editor on its config with a checkpoint picker."""
        from tuitrain.tui.screens.branch import open_branch

        open_branch(self.app, self.run)

    def action_back(self) -> None:
        """Back to the previous screen (the run keeps going)."""
        app_of(self).action_back()
