"""Provides RunsScreen: every run in the runs directory, live, with marking for comparison.

To add a screen reachable from here (e.g. sweeps), add a Binding to BINDINGS and an
`action_<name>` method that pushes it; the footer and the command palette pick it up.
"""

from __future__ import annotations

import threading
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from tuitrain.tui import fmt
from tuitrain.tui.messages import RunsLoaded

# (key, label, width): fixed widths, so rows never jump as values grow; name takes the rest.
COLUMNS = (
    ("mark", " ", 1),
    ("name", "name", 0),
    ("status", "status", 13),
    ("progress", "progress", 12),
    ("best", "best", 7),
    ("elapsed", "elapsed", 7),
    ("started", "started", 11),
)
MAX_COMPARE = 4


def best_text(run) -> str:
    """The run's best monitored value, e.g. '1.234' (the metric name is in the status line)."""
    s = run.summary or {}
    return fmt.number(s.get("best_value"), 4)


def total_steps(run) -> int | None:
    """Planned optimizer steps from the run's derived values (or its summary)."""
    return (run.derived or {}).get("total_steps") or (run.summary or {}).get("total_steps")


class RunsScreen(Screen):
    """The runs list: open, mark for comparison, start a new run."""

    BINDINGS = [
        Binding("enter", "open", "Open", show=True),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare"),
        Binding("w", "sweeps", "Sweeps"),
        Binding("n", "new", "New run"),
        Binding("e", "edit", "Edit config"),
        Binding("r", "refresh", "Refresh", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__(id="runs")
        self.runs: list = []
        self.marked: list[str] = []  # run ids, in marking order (= colour order in Compare)
        self._store: Any = None  # opened lazily by the first worker; reused by later polls
        self._store_lock = threading.Lock()

    def compose(self) -> ComposeResult:
        yield Static("", id="runs-status")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        fixed = sum(w for _, _, w in COLUMNS) + 2 * len(COLUMNS)  # cell padding: 1 each side
        for key, label, width in COLUMNS:
            table.add_column(
                label, key=key, width=width or max(12, min(48, self.app.size.width - fixed - 2))
            )
        self.update_status()
        self.action_refresh()
        self.set_interval(self.app.settings.list_poll_s, self.action_refresh)  # type: ignore[attr-defined]

    def on_screen_resume(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        """Re-read the runs (in a worker thread)."""
        self.load_runs()

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs")
    def load_runs(self) -> None:
        """List runs with this screen's own Store, opened in a worker (the Store serialises threads)."""
        from tuitrain.store import Store

        with self._store_lock:
            if self._store is None:
                self._store = Store(self.app.runs_dir)  # type: ignore[attr-defined]
        self.post_message(RunsLoaded(self._store.list_runs()))

    def on_unmount(self) -> None:
        if self._store is not None:
            self._store.close()

    def on_runs_loaded(self, msg: RunsLoaded) -> None:
        self.runs = msg.runs
        ids = {r.id for r in self.runs}
        self.marked = [m for m in self.marked if m in ids]
        self.fill_table()
        self.update_status()

    def row_cells(self, run) -> list:
        """The table cells of one run."""
        now = self.app.now()  # type: ignore[attr-defined]
        return [
            Text("*", style="bold yellow") if run.id in self.marked else Text(" "),
            Text(run.name or run.id, overflow="ellipsis", no_wrap=True),
            Text.from_markup(fmt.status(run.status)),
            fmt.progress(run.last_step, total_steps(run)),
            best_text(run),
            fmt.duration(fmt.elapsed(run, now)),
            fmt.clock(run.started or run.created),
        ]

    def fill_table(self) -> None:
        """Update rows in place when the set of runs is unchanged, else rebuild keeping the cursor."""
        table = self.query_one("#runs-table", DataTable)
        keys = [str(k.value) for k in table.rows]
        ids = [r.id for r in self.runs]
        if keys == ids:
            for run in self.runs:
                for (col, _, _), cell in zip(COLUMNS, self.row_cells(run), strict=True):
                    table.update_cell(run.id, col, cell)
            return
        current = keys[table.cursor_row] if keys and 0 <= table.cursor_row < len(keys) else None
        table.clear()
        for run in self.runs:
            table.add_row(*self.row_cells(run), key=run.id)
        if current in ids:
            table.move_cursor(row=ids.index(current))

    def update_status(self) -> None:
        """One line: where, how many, how many marked."""
        n = len(self.runs)
        running = sum(r.status == "running" for r in self.runs)
        marked = f" · {len(self.marked)} marked (c: compare)" if self.marked else ""
        empty = " · no runs yet: n starts one" if not n else ""
        self.query_one("#runs-status", Static).update(
            f"[b]{self.app.runs_dir}[/b] · {n} runs, {running} running{marked}{empty}"
        )  # type: ignore[attr-defined]

    def current_run(self):
        """The run under the cursor, or None."""
        table = self.query_one("#runs-table", DataTable)
        if not self.runs or table.cursor_row < 0:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return next((r for r in self.runs if r.id == key), None)

    @on(DataTable.RowSelected, "#runs-table")
    def row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row opens its monitor."""
        self.action_open()

    def action_open(self) -> None:
        """Open the monitor of the run under the cursor."""
        run = self.current_run()
        if run is not None:
            self.app.open_monitor(run.id)  # type: ignore[attr-defined]

    def action_mark(self) -> None:
        """Mark / unmark the run under the cursor for comparison."""
        run = self.current_run()
        if run is None:
            return
        if run.id in self.marked:
            self.marked.remove(run.id)
        elif len(self.marked) >= MAX_COMPARE:
            self.notify(
                f"at most {MAX_COMPARE} runs can be compared; unmark one first", severity="warning"
            )
            return
        else:
            self.marked.append(run.id)
        table = self.query_one("#runs-table", DataTable)
        table.update_cell(run.id, "mark", self.row_cells(run)[0])
        self.update_status()
        if table.cursor_row < len(self.runs) - 1:
            table.move_cursor(row=table.cursor_row + 1)

    def action_compare(self) -> None:
        """Compare the marked runs (2 to 4)."""
        if len(self.marked) < 2:
            self.notify("mark 2 to 4 runs with space first", severity="warning")
            return
        self.app.open_compare(list(self.marked))  # type: ignore[attr-defined]

    def action_sweeps(self) -> None:
        """The sweep of the run under the cursor, else the list of sweeps."""
        from tuitrain.tui.screens.sweep import SweepScreen, SweepsScreen

        run = self.current_run()
        self.app.push_screen(
            SweepScreen(run.sweep_id) if run is not None and run.sweep_id else SweepsScreen()
        )

    def action_new(self) -> None:
        """Open the editor on the bundled demo config."""
        self.app.open_editor()  # type: ignore[attr-defined]

    def action_edit(self) -> None:
        """Open the editor on the config of the run under the cursor (to tweak and relaunch)."""
        run = self.current_run()
        if run is None:
            return
        path = run.run_dir / "config.yaml"
        if not path.is_file():
            self.notify(f"{path} is missing", severity="error")
            return
        self.app.open_editor(str(path))  # type: ignore[attr-defined]
