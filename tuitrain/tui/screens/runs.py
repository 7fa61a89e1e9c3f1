"""Provides RunsScreen: every run in the runs directory, live, with marking for comparison.

To add a screen reachable from here (e.g. sweeps), add a Binding to BINDINGS and an
`action_<name>` method that pushes it; the footer and the command palette pick it up.
"""

from __future__ import annotations

import threading
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Input, Static
from textual.worker import get_current_worker

from tuitrain.store import Store  # on the main thread, not first in the poll thread
from tuitrain.tui.context import app_of
from tuitrain.tui.lineage_view import name_prefix, tree_order
from tuitrain.tui.messages import RunsChanged
from tuitrain.tui.pollers.runs import RunsReader
from tuitrain.tui.screens.runs_cells import (
    COLUMNS,
    TREE_COLUMNS,
    detail_text,
    fit_columns,
    matches,
    row_cells,
)
from tuitrain.tui.widgets.keybar import KeyBar

MAX_COMPARE = 4
# Rows added at once when the table is rebuilt (more than any screen shows), then per frame.
FIRST_ROWS = 80
ROWS_PER_FRAME = 250


RUNS = Binding.Group("Runs")
NEW = Binding.Group("Start")
LIST = Binding.Group("The list")
LEAVE = Binding.Group("Leave")


class RunsScreen(Screen):
    """The runs list: open, mark for comparison, filter, start a new run."""

    # Footer order is priority order (most used first); `?` lists every key by group.
    BINDINGS = [
        Binding("enter", "open", "Open", show=True, group=RUNS),
        Binding("n", "new", "New config", group=NEW),
        Binding("slash", "filter", "Filter", key_display="/", group=LIST),
        Binding("space", "mark", "Mark", group=RUNS),
        Binding("c", "compare", "Compare", group=RUNS),
        Binding("e", "edit", "Edit config", group=NEW),
        Binding("B", "branch", "Branch", group=NEW),
        Binding("w", "sweeps", "Sweeps", group=RUNS),
        Binding("t", "tree", "Tree view", group=LIST),
        Binding("q", "app.quit", "Quit", group=LEAVE),
        Binding("r", "refresh", "Refresh", show=False, group=LIST),
        Binding("escape", "clear_filter", "Clear filter", show=False, group=LIST),
    ]
    EXTRA_KEYS = {"The list": [("up / down", "move the cursor")]}

    def __init__(self) -> None:
        super().__init__(id="runs")
        self.runs: list = []  # the shown (filtered) runs, in table order
        self._name_width = 12  # set with the columns: what the other columns leave
        self._shown_cols: tuple | None = None
        self.all_runs: dict[str, Any] = {}  # run id -> RunInfo, every run
        self.order: list[str] = []  # every run id, newest first
        self.marked: list[str] = []  # run ids, in marking order (= colour order in Compare)
        self.query_text = ""
        self.tree_view = False  # t: the tree view (branches with their fork step and parent value)
        self._cells: dict[str, tuple] = {}  # run id -> the cells last written (skip no-op updates)
        self._target: list[str] | None = None  # the ids the table shows (or is adding)
        self._fill_gen = 0
        self._depth: dict[str, int] = {}  # run id -> lineage depth in the shown list (children > 0)
        # The poll loop's reads and their state (tuitrain.tui.pollers.runs).
        self.reader = RunsReader()
        # Set by the main thread, read by the loop.
        self._wake = threading.Event()
        self._active = True
        self._closed = False
        self._page_shown = False  # ...and shown (main thread): time for the full listing
        self._keep: str | None = None  # the run the cursor goes back to after a column change
        self.polls = 0  # reads done by the loop (tests wait on it)
        self.last_changed: set[str] = set()  # ids in the last RunsChanged (tests read it)

    @property
    def row_reads(self) -> int:
        """Run records read by the poll loop (the bench and tests read it)."""
        return self.reader.row_reads

    def compose(self) -> ComposeResult:
        yield Static("", id="runs-status")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Input(
            placeholder="filter by name or tag; enter: keep, escape: clear", id="runs-filter"
        )
        yield Static("", id="runs-detail")
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        self._add_columns(table)
        self.query_one("#runs-filter", Input).display = False
        table.focus()
        self.update_status()
        self.poll_loop()

    @property
    def columns(self) -> tuple:
        """The shown columns of the current view (as many as the width allows)."""
        return fit_columns(TREE_COLUMNS if self.tree_view else COLUMNS, self._width())[0]

    def _width(self) -> int:
        return self.size.width or self.app.size.width

    def _add_columns(self, table: DataTable) -> None:
        cols, self._name_width = fit_columns(
            TREE_COLUMNS if self.tree_view else COLUMNS, self._width()
        )
        self._shown_cols = (cols, self._name_width)
        for key, label, width in cols:
            table.add_column(label, key=key, width=width or self._name_width)

    def on_resize(self) -> None:
        """Another width: the name column takes what is left, narrow terminals drop columns."""
        if self._shown_cols is None:
            return
        shown = fit_columns(TREE_COLUMNS if self.tree_view else COLUMNS, self._width())
        if shown != self._shown_cols:
            self._rebuild_columns()

    def action_tree(self) -> None:
        """Toggle the tree view: each branch under its parent with the fork step and the
        parent's val_loss there (the 'from' column, in place of 'started')."""
        self.tree_view = not self.tree_view
        self._rebuild_columns()
        self.update_status()

    def _rebuild_columns(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        run = self.current_run()
        self._keep = run.id if run is not None else None  # the cursor stays on its run
        table.clear(columns=True)
        self._add_columns(table)
        self._target = None  # rebuild every row with the new cells
        self._cells = {}
        self.fill_table()

    def on_screen_resume(self) -> None:
        self._active = True
        # Back from a monitor or compare: keys go to the table again (space marks at once).
        if not self.query_one("#runs-filter", Input).display:
            self.query_one("#runs-table", DataTable).focus()
        self.poll()

    def on_screen_suspend(self) -> None:
        self._active = False

    def on_unmount(self) -> None:
        self._closed = True  # the loop ends after its current read and closes its Store
        self._wake.set()

    def poll(self) -> None:
        """Ask the poll loop for a read now."""
        self._wake.set()

    def action_refresh(self) -> None:
        """Re-read every run (the loop otherwise reads only what changed)."""
        self.reader.full = True
        self.poll()

    # -- reading (poll loop thread) ---------------------------------------------------------

    @work(thread=True, exit_on_error=False, group="runs-poll")
    def poll_loop(self) -> None:
        """Read what changed, post it, sleep; one thread and one Store for the screen's life.

        An idle list costs one PRAGMA per poll: nothing is read when no other connection
        committed (data_version) and no run is live; otherwise only the changed rows are."""
        worker = get_current_worker()
        settings = app_of(self).settings
        try:
            store = Store(app_of(self).runs_dir)
        except Exception as exc:  # the worker would end quietly and the list stay empty
            self.app.call_from_thread(self.notify, f"cannot open runs: {exc}", severity="error")
            raise
        try:
            while not (worker.is_cancelled or self._closed):
                if self._active:
                    try:
                        msg = self.reader.read(store, self._page_shown)
                    except Exception as exc:  # a DB error must not end the list's updates
                        msg = None
                        self.app.call_from_thread(
                            self.notify, f"cannot read runs: {exc}", severity="error"
                        )
                    if msg is not None:
                        self.post_message(msg)
                    self.polls += 1
                self._wake.wait(settings.list_poll_s)
                self._wake.clear()
        finally:
            store.close()

    # -- showing (main thread) ---------------------------------------------------------------

    def on_runs_changed(self, msg: RunsChanged) -> None:
        self.last_changed = set(msg.changed)
        self.all_runs.update(msg.changed)
        if msg.order is not None:
            self.order = msg.order
            keep = set(self.order)
            self.all_runs = {i: r for i, r in self.all_runs.items() if i in keep}
            self.marked = [m for m in self.marked if m in keep]
        self.fill_table(set(msg.changed))
        self.update_status()
        if not self._page_shown:
            self._page_shown = True
            self.call_after_refresh(self.poll)

    def row_cells(self, run) -> list:
        """The table cells of one run."""
        return row_cells(
            run,
            self.columns,
            now=app_of(self).now(),
            prefix=name_prefix(self._depth.get(run.id, 0)),
            name_width=self._name_width,
            tree_view=self.tree_view,
            marked=run.id in self.marked,
        )

    def fill_table(self, changed: set[str] | None = None) -> None:
        """Update the changed rows' changed cells; rebuild (keeping the cursor) only when the
        shown set of runs differs. A rebuild adds the rows a screen shows at once and the rest
        in chunks on later frames, so a list of thousands opens as fast as a short one."""
        table = self.query_one("#runs-table", DataTable)
        ids = [i for i in self.order if i in self.all_runs]
        if self.query_text:
            ids = [i for i in ids if matches(self.all_runs[i], self.query_text)]
        tree = tree_order(ids, self.all_runs)  # lineage: each child right under its parent
        ids = [i for i, _ in tree]
        self._depth = {i: d for i, d in tree if d}
        self.runs = [self.all_runs[i] for i in ids]
        if ids == self._target:  # same rows (maybe still being added): update the present ones
            present = set(self._cells)
            for i in ids if changed is None else [i for i in ids if i in changed]:
                if i in present:
                    self._update_row(table, self.all_runs[i])
            self.show_detail()
            return
        old = self._target or []
        if old and ids[: len(old)] == old and len(self._cells) == len(old):
            # More runs below the shown ones (the full listing after the first page): append.
            for i in old if changed is None else [i for i in old if i in changed]:
                self._update_row(table, self.all_runs[i])
            self._target = ids
            self._fill_gen += 1
            self._add_rows(self._fill_gen, len(old), None)
            self.show_detail()
            return
        keys = [str(k.value) for k in table.rows]
        current = keys[table.cursor_row] if keys and 0 <= table.cursor_row < len(keys) else None
        current, self._keep = current or self._keep, None
        table.clear()
        self._cells = {}
        self._target = ids
        self._fill_gen += 1
        self._add_rows(self._fill_gen, 0, current)
        self.show_detail()

    def _add_rows(self, gen: int, start: int, current: str | None) -> None:
        if gen != self._fill_gen:
            return  # a newer rebuild took over
        table = self.query_one("#runs-table", DataTable)
        ids = self._target
        chunk = FIRST_ROWS if start == 0 else ROWS_PER_FRAME
        for i in ids[start : start + chunk]:
            run = self.all_runs[i]
            cells = self.row_cells(run)
            self._cells[i] = tuple(_cell_key(c) for c in cells)
            table.add_row(*cells, key=i)
        end = start + chunk
        if current in ids and ids.index(current) < end and table.cursor_row != ids.index(current):
            table.move_cursor(row=ids.index(current))
            current = None
        if end < len(ids):
            self.set_timer(0.01, lambda: self._add_rows(gen, end, current))

    def _update_row(self, table: DataTable, run) -> None:
        cells = self.row_cells(run)
        keys = tuple(_cell_key(c) for c in cells)
        old = self._cells.get(run.id)
        for n, ((col, _, _), cell) in enumerate(zip(self.columns, cells, strict=True)):
            if old is None or old[n] != keys[n]:
                table.update_cell(run.id, col, cell)
        self._cells[run.id] = keys

    def update_status(self) -> None:
        """One line: where, how many, how many marked, the filter."""
        n = len(self.all_runs)
        running = sum(r.status == "running" for r in self.all_runs.values())
        marked = f" · {len(self.marked)} marked (c: compare)" if self.marked else ""
        marked += " · tree view (t: off)" if self.tree_view else ""
        empty = " · no runs yet: n starts one" if not n else ""
        shown = (
            f" · filter {escape(self.query_text)!s}: {len(self.runs)} shown (esc: clear)"
            if self.query_text
            else ""
        )
        self.query_one("#runs-status", Static).update(
            f"[b]{app_of(self).runs_dir}[/b] · {n} run{'' if n == 1 else 's'}, {running} running{marked}{shown}{empty}"
        )

    def show_detail(self) -> None:
        """The detail line of the run under the cursor."""
        run = self.current_run()
        text = detail_text(run) if run is not None else ""
        detail = self.query_one("#runs-detail", Static)
        if text != getattr(detail, "_shown", None):
            detail._shown = text  # type: ignore[attr-defined]
            detail.update(text)

    @on(DataTable.RowHighlighted, "#runs-table")
    def row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    # -- filter -------------------------------------------------------------------------------

    def action_filter(self) -> None:
        """Filter the list by name or tag (as you type)."""
        box = self.query_one("#runs-filter", Input)
        box.display = True
        box.value = self.query_text
        box.focus()

    @on(Input.Changed, "#runs-filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.query_text = event.value.strip()
        self.fill_table()
        self.update_status()

    @on(Input.Submitted, "#runs-filter")
    def filter_submitted(self, event: Input.Submitted) -> None:
        """Enter keeps the filter and gives the keys back to the table."""
        self.query_one("#runs-filter", Input).display = False
        self.query_one("#runs-table", DataTable).focus()

    def action_clear_filter(self) -> None:
        """Escape: no filter, every run shown."""
        box = self.query_one("#runs-filter", Input)
        box.display = False
        if self.query_text:
            self.query_text = ""
            box.value = ""
            self.fill_table()
            self.update_status()
        self.query_one("#runs-table", DataTable).focus()

    def current_run(self):
        """The run under the cursor, or None."""
        table = self.query_one("#runs-table", DataTable)
        if not self.runs or table.cursor_row < 0:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return self.all_runs.get(key)

    @on(DataTable.RowSelected, "#runs-table")
    def row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row opens its monitor."""
        self.action_open()

    def action_open(self) -> None:
        """Open the monitor of the run under the cursor."""
        run = self.current_run()
        if run is not None:
            app_of(self).open_monitor(run.id)

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
        self._update_row(table, run)
        self.update_status()
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)

    def action_compare(self) -> None:
        """Compare the marked runs (2 to 4)."""
        if len(self.marked) < 2:
            self.notify("mark 2 to 4 runs with space first", severity="warning")
            return
        app_of(self).open_compare(list(self.marked))

    def action_sweeps(self) -> None:
        """The sweep of the run under the cursor, else the list of sweeps."""
        from tuitrain.tui.screens.sweep import SweepScreen, SweepsScreen

        run = self.current_run()
        self.app.push_screen(
            SweepScreen(run.sweep_id) if run is not None and run.sweep_id else SweepsScreen()
        )

    def action_new(self) -> None:
        """Open the editor on the bundled demo config."""
        app_of(self).open_editor()

    def action_edit(self) -> None:
        """Open the editor on the config of the run under the cursor (to tweak and relaunch)."""
        run = self.current_run()
        if run is None:
            return
        path = run.run_dir / "config.yaml"
        if not path.is_file():
            self.notify(f"{path} is missing", severity="error")
            return
        app_of(self).open_editor(str(path))

    def action_branch(self) -> None:
        """Branch the run under the cursor: the editor on its config with a checkpoint picker."""
        from tuitrain.tui.screens.branch import open_branch

        open_branch(self.app, self.current_run())


def _cell_key(cell: Any) -> Any:
    """A comparable form of a cell (Text compares by text and spans)."""
    return (cell.plain, tuple(cell.spans), str(cell.style)) if isinstance(cell, Text) else cell
