"""Provides SweepsScreen (every sweep of the runs directory) and SweepScreen (one sweep: trials
sorted by objective, best parameters, parameter importance; open a trial, compare the best, or
promote one to a full-length run)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static

from tuitrain.runs import liveness
from tuitrain.tui import fmt
from tuitrain.tui.context import app_of
from tuitrain.tui.messages import Launched
from tuitrain.tui.widgets.keybar import KeyBar

POLL_S = 2.0
COMPARE_BEST = 3
# Run statuses whose reason the detail line shows (why the trial ended before its budget).
ENDED_EARLY = ("pruned", "failed", "diverged", "crashed", "stopped", "early_stopped")
STATE_STYLE = {
    "complete": "green",
    "pruned": "yellow",
    "failed": "red",
    "stopped": "magenta",
    "running": "cyan",
}


@dataclass
class SweepsLoaded(Message):
    """A fresh listing of sweeps (records)."""

    sweeps: list[Any]

    def can_replace(self, message: Message) -> bool:
        """A newer listing supersedes an older one still queued."""
        return isinstance(message, SweepsLoaded)


@dataclass
class SweepLoaded(Message):
    """One sweep's record, plus the live status and last step of its trials' runs."""

    sweep: Any  # SweepRecord, or None when not found
    runs: dict[str, Any]  # run id -> RunInfo
    error: str | None = None

    def can_replace(self, message: Message) -> bool:
        """A newer poll supersedes an older one still queued."""
        return isinstance(message, SweepLoaded)


@dataclass
class PromotePlanned(Message):
    """P's check finished: the Promotion to confirm, or why the trial cannot be promoted."""

    promotion: Any  # tuitrain.sweep.promote.Promotion, or None
    error: str | None = None


def _value(v: Any) -> str:
    return fmt.number(v, 4) if isinstance(v, float) else str(v)


class SweepsScreen(Screen):
    """All sweeps, newest first; enter opens one."""

    BINDINGS = [
        Binding("enter", "open", "Open", show=True),
        Binding("q,escape", "app.back", "Back", key_display="q"),
        Binding("r", "refresh", "Refresh", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(id="sweeps")
        self.sweeps: list[Any] = []

    def compose(self) -> ComposeResult:
        yield Static("", id="sweeps-status")
        yield DataTable(id="sweeps-table", cursor_type="row", zebra_stripes=True)
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one("#sweeps-table", DataTable)
        for key in ("name", "method", "status", "trials", "best", "created"):
            table.add_column(key, key=key)
        self.action_refresh()
        self.set_interval(POLL_S, self.action_refresh)

    def action_refresh(self) -> None:
        """Re-read the sweep records (in a worker thread)."""
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="sweeps")
    def load(self) -> None:
        """Read the records: plain JSON files, no Optuna needed."""
        from tuitrain.sweep.records import list_sweeps

        self.post_message(SweepsLoaded(list_sweeps(app_of(self).runs_dir)))

    def on_sweeps_loaded(self, msg: SweepsLoaded) -> None:
        self.sweeps = msg.sweeps
        table = self.query_one("#sweeps-table", DataTable)
        row = table.cursor_row
        table.clear()
        for r in self.sweeps:
            best = r.best()
            best_text = f"{r.metric} {fmt.number(best.value, 4)}" if best else "-"
            table.add_row(
                r.name,
                r.method,
                Text.from_markup(fmt.status(r.status)),
                f"{len(r.trials)}/{r.n_trials}",
                best_text,
                fmt.clock(r.created),
                key=r.id,
            )
        if self.sweeps:
            table.move_cursor(row=min(max(row, 0), len(self.sweeps) - 1))
        empty = " · none yet: tuitrain sweep configs/sweep-demo.yaml" if not self.sweeps else ""
        n = len(self.sweeps)
        self.query_one("#sweeps-status", Static).update(
            f"[b]{app_of(self).runs_dir}[/b] · {n} sweep{'s' if n != 1 else ''}{empty}"
        )

    @on(DataTable.RowSelected, "#sweeps-table")
    def row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        """Open the sweep under the cursor."""
        table = self.query_one("#sweeps-table", DataTable)
        if self.sweeps and 0 <= table.cursor_row < len(self.sweeps):
            self.app.push_screen(SweepScreen(self.sweeps[table.cursor_row].id))


class SweepScreen(Screen):
    """One sweep, live: trials ranked by objective; open a trial's monitor, compare the best, or
    promote a trial (P) to a full-length run branched from its last checkpoint."""

    # A screen of its own rules (as the branch editor's): the detail line under the table.
    DEFAULT_CSS = """
    #sweep-detail { height: auto; max-height: 2; padding: 0 1; background: $boost; }
    """

    BINDINGS = [
        Binding("enter", "open", "Open trial", show=True),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare marked"),
        Binding("b", "compare_best", f"Compare best {COMPARE_BEST}"),
        Binding("P", "promote", "Promote"),
        Binding("q,escape", "app.back", "Back", key_display="q"),
        Binding("r", "refresh", "Refresh", show=False),
    ]

    def __init__(self, sweep_ref: str) -> None:
        super().__init__(id="sweep")
        self.sweep_ref = sweep_ref
        self.sweep: Any = None
        self.rows: list[Any] = []  # TrialRecords in table order
        self.marked: list[str] = []  # run ids
        self.runs: dict[str, Any] = {}  # run id -> RunInfo of the last poll

    def compose(self) -> ComposeResult:
        yield Static("loading sweep…", id="sweep-head")
        yield DataTable(id="sweep-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="sweep-detail")
        yield KeyBar()

    def on_mount(self) -> None:
        self.action_refresh()
        self.set_interval(POLL_S, self.action_refresh)

    def action_refresh(self) -> None:
        """Re-read the sweep and its runs (in a worker thread)."""
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="sweep")
    def load(self) -> None:
        """The record, and each trial run's live status from a Store of this thread."""
        from tuitrain.store import Store
        from tuitrain.sweep.records import SweepNotFound, get_sweep

        runs_dir = app_of(self).runs_dir
        try:
            rec = get_sweep(runs_dir, self.sweep_ref)
        except SweepNotFound as exc:
            self.post_message(SweepLoaded(None, {}, str(exc)))
            return
        with Store(runs_dir) as store:
            runs = {r.id: r for r in liveness.view_runs(store, sweep_id=rec.id)}
        self.post_message(SweepLoaded(rec, runs))

    def on_sweep_loaded(self, msg: SweepLoaded) -> None:
        head = self.query_one("#sweep-head", Static)
        if msg.sweep is None:
            head.update(f"[red]{msg.error}[/red]")
            return
        self.sweep, r = msg.sweep, msg.sweep
        goal = "min" if r.direction == "minimize" else "max"
        counts = ", ".join(f"{n} {k}" for k, n in sorted(r.counts().items())) or "no trials yet"
        lines = [
            f"[b]{r.name}[/b] · {r.method} · {fmt.status(r.status)} · objective {goal} {r.metric} · {len(r.trials)}/{r.n_trials} trials ({counts})"
        ]
        best = r.best()
        if best is not None:
            params = "  ".join(f"{k}={_value(v)}" for k, v in best.params.items())
            lines.append(
                f"best: trial {best.number} · {r.metric} {fmt.number(best.value, 5)} · {params}"
            )
        if r.importance:
            lines.append(
                "importance: " + "  ".join(f"{k} {v:.2f}" for k, v in r.importance.items())
            )
        head.update("\n".join(lines))
        self.fill_table(r, msg.runs)

    def fill_table(self, r: Any, runs: dict[str, Any]) -> None:
        """Rebuild the trials table (a sweep has tens of trials, not thousands)."""
        table = self.query_one("#sweep-table", DataTable)
        names = list((r.spec or {}).get("space", {}))
        if not table.columns:
            for key in (
                "mark",
                "#",
                "state",
                r.metric,
                "step",
                *(n.rsplit(".", 1)[-1] for n in names),
                "note",
            ):
                table.add_column(key, key=key)
        row = table.cursor_row
        table.clear()
        self.rows = r.ranked()
        for t in self.rows:
            run = runs.get(t.run_id) if t.run_id else None
            state = t.state if t.state != "running" or run is None else run.status
            note = t.error or (f"pruned at step {t.pruned_step}" if t.state == "pruned" else "")
            table.add_row(
                Text("*", style="bold yellow") if t.run_id in self.marked else Text(" "),
                str(t.number),
                Text(state, style=fmt.no_color(STATE_STYLE.get(t.state, ""))),
                fmt.number(t.value, 4) if t.value is not None else "-",
                str(run.last_step) if run is not None and run.last_step is not None else "-",
                *(_value(t.params.get(n, "-")) for n in names),
                Text(note[:60], overflow="ellipsis", no_wrap=True),
                key=str(t.number),
            )
        if self.rows:
            table.move_cursor(row=min(max(row, 0), len(self.rows) - 1))
        self.runs = runs
        self.show_detail()

    @on(DataTable.RowHighlighted, "#sweep-table")
    def row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    def show_detail(self) -> None:
        """The line under the table: the selected trial's run and, when it was pruned or failed,
        the run's status reason from the store (the sweep's pruner, the doctor, the crash)."""
        t = self.current()
        box = self.query_one("#sweep-detail", Static)
        if t is None:
            box.update("")
            return
        run = self.runs.get(t.run_id) if t.run_id else None
        if run is None:
            why = t.error or ("no run yet" if t.run_id is None else "run not in the store")
            box.update(f"trial {t.number}: [b]{escape(t.state)}[/b] · {escape(why)}")
            return
        text = f"trial {t.number} · run {escape(run.name)} · {fmt.status(run.status)}"
        if t.state in ("pruned", "failed") or run.status in ENDED_EARLY:
            reason = " ".join((run.exit_reason or t.error or "no reason recorded").split())
            text += f": {escape(reason)}"
        else:
            text += " · enter opens its monitor, P promotes it to a full-length run"
        box.update(text)

    def current(self) -> Any:
        """The trial under the cursor, or None."""
        table = self.query_one("#sweep-table", DataTable)
        if not self.rows or not 0 <= table.cursor_row < len(self.rows):
            return None
        return self.rows[table.cursor_row]

    @on(DataTable.RowSelected, "#sweep-table")
    def row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        """Open the monitor of the trial under the cursor."""
        t = self.current()
        if t is None:
            return
        if t.run_id is None:
            self.notify(f"trial {t.number} never ran: {t.error}", severity="warning")
            return
        app_of(self).open_monitor(t.run_id)

    def action_mark(self) -> None:
        """Mark / unmark the trial under the cursor for comparison."""
        t = self.current()
        if t is None or t.run_id is None:
            return
        if t.run_id in self.marked:
            self.marked.remove(t.run_id)
        elif len(self.marked) < 4:
            self.marked.append(t.run_id)
        else:
            self.notify("at most 4 runs can be compared", severity="warning")
        self.action_refresh()

    def action_compare(self) -> None:
        """Compare the marked trials (2 to 4)."""
        if len(self.marked) < 2:
            self.notify("mark 2 to 4 trials with space first (or b: best few)", severity="warning")
            return
        app_of(self).open_compare(list(self.marked))

    def action_compare_best(self) -> None:
        """Compare the best few scored trials."""
        best = [t.run_id for t in (self.rows or []) if t.value is not None and t.run_id][
            :COMPARE_BEST
        ]
        if len(best) < 2:
            self.notify("fewer than 2 trials have a value yet", severity="warning")
            return
        app_of(self).open_compare(best)

    def action_promote(self) -> None:
        """Check the trial under the cursor for promotion (in a worker), then ask to confirm."""
        t = self.current()
        if t is None or self.sweep is None:
            return
        self.plan_promotion(self.sweep.id, t.number)

    @work(thread=True, exclusive=True, exit_on_error=False, group="promote")
    def plan_promotion(self, sweep_id: str, number: int) -> None:
        """tuitrain.sweep.promote's checks (record, run, checkpoint, full config), off the main thread."""
        from tuitrain.sweep.promote import plan_promote

        try:
            p = plan_promote(app_of(self).runs_dir, sweep_id, number)
        except Exception as exc:  # every refusal, as text: the screen stays usable
            self.post_message(PromotePlanned(None, _refusal(exc)))
            return
        self.post_message(PromotePlanned(p))

    def on_promote_planned(self, msg: PromotePlanned) -> None:
        from tuitrain.tui.dialogs.promote import PromoteDialog

        if msg.error:
            # Plain text: messages quote config values and commands (brackets are not markup).
            self.notify(
                msg.error, title="cannot promote", severity="error", timeout=12, markup=False
            )
            return
        p = msg.promotion
        self.app.push_screen(PromoteDialog(p), lambda ok: ok and self._launch(p))

    def _launch(self, p: Any) -> None:
        self.notify(f"promoting trial {p.trial.number} as {p.name}…", timeout=3, markup=False)
        self.launch_promotion(p)

    @work(thread=True, exclusive=True, exit_on_error=False, group="promote")
    def launch_promotion(self, p: Any) -> None:
        """Start the promoted run (tuitrain.sweep.promote, as the CLI), off the main thread."""
        from tuitrain.sweep.promote import launch_promotion

        try:
            info = launch_promotion(p, app_of(self).runs_dir)
        except Exception as exc:  # a taken name, a launcher that failed: say so, keep the view
            self.post_message(Launched(None, _refusal(exc)))
            return
        self.post_message(Launched(info.id))

    def on_launched(self, msg: Launched) -> None:
        if msg.error:
            self.notify(
                msg.error, title="promote failed", severity="error", timeout=12, markup=False
            )
            return
        app_of(self).open_monitor(msg.run_id)


def _refusal(exc: Exception) -> str:
    """An exception from planning or launching a promotion as the CLI words it."""
    from tuitrain.config import ConfigError
    from tuitrain.runs.branching import BranchRefused
    from tuitrain.runs.lineage import BranchError
    from tuitrain.store import InvalidValue, RunNotFound
    from tuitrain.sweep.records import SweepNotFound

    if isinstance(exc, BranchRefused):
        return "\n".join([*exc.lines, *([f"fix: {exc.fix}"] if exc.fix else [])])
    if isinstance(exc, BranchError | ConfigError | SweepNotFound | RunNotFound | InvalidValue):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
