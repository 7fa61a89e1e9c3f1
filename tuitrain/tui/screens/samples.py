"""Provides SamplesScreen: what the model answered, prompts down the side; one run's evaluations
across (or compared runs side by side at one step), the reference beside them, scores under each
answer, changed words marked on request; live while a run trains; a checkpoint asked on demand."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from tuitrain.samples.select import WHICH, parse_which
from tuitrain.tui.context import app_of
from tuitrain.tui.dialogs.prompt import PromptDialog
from tuitrain.tui.dialogs.text import TextDialog
from tuitrain.tui.messages import AskDone, SamplesLoaded
from tuitrain.tui.pollers.samples import SamplesReader
from tuitrain.tui.screens.compare import unique_names
from tuitrain.tui.screens.samples_ask import AskActions
from tuitrain.tui.widgets import samples as view
from tuitrain.tui.widgets.keybar import KeyBar

BROWSE = Binding.Group("Read")
ASK = Binding.Group("Ask a checkpoint")
NAV = Binding.Group("Leave")
# The prompt list's width: the answers get the rest.
LIST_WIDTH = 24
LIST_WIDTH_WIDE = 32  # from WIDE columns
WIDE = 120


class SamplesScreen(AskActions, Screen):
    """The samples of one run (its evaluations across) or of 2-4 compared runs (side by side)."""

    HELP_TITLE = "Samples"
    BINDINGS = [
        Binding("left", "columns(-1)", "Prev column", key_display="←", group=BROWSE),
        Binding("right", "columns(1)", "Next column", key_display="→", group=BROWSE),
        Binding("s", "cycle_steps", "Steps (all, best, last)", group=BROWSE),
        Binding("d", "diff", "Diff vs left", group=BROWSE),
        Binding("p", "ask", "Ask a checkpoint", group=ASK),
        Binding("q,escape,b", "back", "Back", key_display="q", group=NAV),
        Binding("g", "go_step", "Go to step", show=False, group=BROWSE),
        Binding("shift+left", "columns_edge(-1)", "First columns", show=False, group=BROWSE),
        Binding("shift+right", "columns_edge(1)", "Last columns", show=False, group=BROWSE),
    ]
    EXTRA_KEYS = {
        "Read": [
            ("up / down", "pick a prompt"),
            ("enter", "the prompt's answers in full (chat turns, settings)"),
            ("tab", "focus the answers (up/down scroll them)"),
        ]
    }

    def __init__(self, run_refs: list[str], spawn: Any = None) -> None:
        super().__init__(name="samples")
        self.run_refs = run_refs
        self.single = len(run_refs) == 1
        # One run: every evaluation across; compared runs: each one's best step side by side.
        self.which: str | int = "all" if self.single else "best"
        self.reader = SamplesReader(run_refs)
        self.runs: list = []
        self.names: dict[str, str] = {}  # run id -> unique display name
        self.grid: Any = None
        self.best: dict[str, int | None] = {}
        self.first_col = 0  # the first answer column shown
        self.diff = False
        self.shown: tuple[int, int, int] = (0, 0, 0)  # first, last (1-based) and total columns
        self.polls = 0  # reads done (tests wait on it)
        self._reading = False
        self._again = False
        self._last_read = -float("inf")
        self._active = True
        self._keep_prompt: str | None = None  # the prompt id (or asked text) to select on load
        self.init_ask(spawn)

    def compose(self) -> ComposeResult:
        yield Static("loading samples…", id="samples-head")
        yield Static("", id="samples-status")
        with Horizontal(id="samples-main"):
            yield OptionList(id="samples-prompts")
            with VerticalScroll(id="samples-body"):
                yield Static("", id="samples-prompt")
                yield Static("", id="samples-answers")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#samples-status", Static).display = False
        self.query_one("#samples-prompts", OptionList).focus()
        self.set_interval(app_of(self).settings.poll_s, self._tick)
        self.poll()

    def on_screen_suspend(self) -> None:
        self._active = False

    def on_screen_resume(self) -> None:
        self._active = True
        self.poll()

    def on_resize(self) -> None:
        wide = (self.size.width or 80) >= WIDE
        prompts = self.query_one("#samples-prompts", OptionList)
        width = LIST_WIDTH_WIDE if wide else LIST_WIDTH
        if prompts.styles.width is None or prompts.styles.width.value != width:
            prompts.styles.width = width
            if self.grid is not None:
                self.fill_prompts(self.selected_id())  # the prompts cut to the new width
        self.call_after_refresh(self.show)

    # -- reading (one thread worker at a time; a Store per read: ~1 ms) ------------------------

    def _tick(self) -> None:
        settings = app_of(self).settings
        self.show_asking()
        every = settings.poll_s if (self.reader.live or self.asking) else settings.list_poll_s
        if self._active and time.monotonic() - self._last_read >= every - 0.05:
            self.poll()

    def poll(self, force: bool = False) -> None:
        """Read now (or right after the read in flight)."""
        self.reader.force = self.reader.force or force
        if self._reading:
            self._again = True
            return
        self._reading = True
        self._last_read = time.monotonic()
        self.read()

    @work(thread=True, exit_on_error=False, group="samples-read")
    def read(self) -> None:
        """One poll: the newest sample id, and the grid when it (or the step choice) changed."""
        from tuitrain.store import Store

        try:
            with Store(app_of(self).runs_dir) as store:
                msg = self.reader.read(store, self.which)
            if msg is not None:
                self.post_message(msg)
        except Exception as exc:  # a DB error must not end the screen's updates
            self.post_message(SamplesLoaded(self.runs, None, self.which, error=str(exc)))
        finally:
            self.polls += 1
            self.app.call_from_thread(self._read_done)

    def _read_done(self) -> None:
        self._reading = False
        if self._again:
            self._again = False
            self.poll()

    def on_samples_loaded(self, msg: SamplesLoaded) -> None:
        if msg.grid is None:
            self.set_status(
                f"[red]cannot read the samples: {escape(msg.error)}[/]" if msg.error else ""
            )
            return
        self.runs, self.grid, self.best = msg.runs, msg.grid, msg.best
        self.names = dict(zip([r.id for r in self.runs], unique_names(self.runs), strict=True))
        keep = self._keep_prompt or self.selected_id()
        at_end = self.shown[1] == self.shown[2]  # following the newest evaluation
        index = self.fill_prompts(keep)
        if index is not None:
            self._keep_prompt = None  # found (an asked prompt is kept until its answer shows)
        if self.find_asked(index is not None):
            return  # the grid at every eval is on its way
        n = len(self.grid.columns)
        if at_end and self.shown[2] and n > self.shown[2]:
            self.first_col = n  # a new evaluation came while the last one was shown: follow it
        self.show()

    def fill_prompts(self, keep: str | None) -> int | None:
        """The prompt list for the grid (cut to the list's width), `keep` (a prompt id, or an
        asked prompt's text) highlighted; returns its index (None: not there, the first is)."""
        prompts = self.query_one("#samples-prompts", OptionList)
        rows = self.grid.rows
        width = prompts.styles.width.value if prompts.styles.width else LIST_WIDTH
        prompts.clear_options()
        prompts.add_options(
            [Option(view.prompt_line(r, int(width) - 2), id=r.prompt_id) for r in rows]
        )
        index = next(
            (i for i, r in enumerate(rows) if keep is not None and keep in (r.prompt_id, r.prompt)),
            None,
        )
        if rows:
            prompts.highlighted = index or 0
        prompts.display = bool(rows)
        return index

    # -- showing (main thread) -----------------------------------------------------------------

    def selected_id(self) -> str | None:
        """The prompt id of the highlighted prompt."""
        prompts = self.query_one("#samples-prompts", OptionList)
        if prompts.highlighted is None or not prompts.option_count:
            return None
        return prompts.get_option_at_index(prompts.highlighted).id

    def selected_row(self) -> Any:
        """The highlighted prompt's row of the grid."""
        pid = self.selected_id()
        rows = self.grid.rows if self.grid else []
        return next((r for r in rows if r.prompt_id == pid), rows[0] if rows else None)

    @on(OptionList.OptionHighlighted, "#samples-prompts")
    def _highlighted(self) -> None:
        self.show()

    @on(OptionList.OptionSelected, "#samples-prompts")
    def _selected(self) -> None:
        """Enter: the prompt's answers in full."""
        row = self.selected_row()
        if row is not None:
            text = view.full_text(row, self.grid.columns, self.names)
            self.app.push_screen(TextDialog(f"answers to: {row.prompt[:60]}", text))

    def show(self) -> None:
        """The head line, the selected prompt and the answer columns that fit."""
        if self.grid is None:
            return
        head = self.query_one("#samples-head", Static)
        prompt = self.query_one("#samples-prompt", Static)
        answers = self.query_one("#samples-answers", Static)
        columns, row = self.grid.columns, self.selected_row()
        if row is None:
            self.shown = (0, 0, 0)
            head.update(self.head_text())
            prompt.update(Text(view.empty_message(self.runs, self.which, self.grid.missing)))
            answers.update("")
            return
        body = self.query_one("#samples-body")
        width = (body.size.width or max(20, (self.size.width or 80) - LIST_WIDTH)) - 1
        count, ref_column = view.fit(width, len(columns), row.reference is not None)
        self.first_col = max(0, min(self.first_col, len(columns) - count))
        first, last = self.first_col, min(len(columns), self.first_col + count)
        self.shown = (first + 1, last, len(columns))
        headers, cells = [], []
        if ref_column:
            headers.append(Text("reference", style="bold"))
            cells.append(Text(row.reference or ""))
        for i in range(first, last):
            # The answer to its left; the first answer's neighbour is the reference.
            before = row.cells[i - 1].output if i > 0 and row.cells[i - 1] else None
            before = row.reference if i == 0 else before
            headers.append(view.column_header(columns[i], self.single, self.best.get(columns[i].run_id)))  # fmt: skip
            cells.append(
                view.answer_text(
                    row.cells[i],
                    before,
                    self.diff,
                    "(not asked here)" if row.source == "ask" else "(no answer at this step)",
                )
            )
        head.update(self.head_text())
        prompt.update(view.prompt_block(row, reference_above=not ref_column))
        missing = (
            Text("\n" + "; ".join(self.grid.missing), style="dim") if self.grid.missing else ""
        )
        answers.update(Group(view.answers_table(headers, cells), missing))

    def head_text(self) -> Text:
        """`Samples · baseline · every eval · columns 1-2 of 8 ←/→ · diff`; a live run's status."""
        runs = [
            self.names.get(r.id, r.name) + ("" if r.terminal else f" ({r.status})")
            for r in self.runs
        ]
        text = Text("Samples", style="bold")
        text.append(" · " + (" vs ".join(runs) or ", ".join(self.run_refs)))
        which = {"all": "every eval", "best": "best step", "last": "last step"}.get(
            str(self.which), f"step {self.which}"
        )
        text.append(f" · {which}")
        first, last, total = self.shown
        if total:
            text.append(f" · columns {first}-{last} of {total}" if last > first else f" · column {first} of {total}", style="dim")  # fmt: skip
            if last - first + 1 < total:
                text.append(" ←/→", style="dim")
        if self.diff:
            text.append(" · diff: changed words marked", style="bold")
        text.no_wrap = True
        return text

    def set_status(self, markup: str) -> None:
        """The line under the head (asking, an ask's error, a read error); empty: hidden."""
        status = self.query_one("#samples-status", Static)
        status.update(markup)
        status.display = bool(markup)

    # -- keys ------------------------------------------------------------------------------------

    def action_columns(self, step: int) -> None:
        """Scroll the answer columns by one (earlier / later evaluations or runs)."""
        self.first_col = max(0, self.first_col + step)
        self.show()

    def action_columns_edge(self, end: int) -> None:
        """The first (or last) answer columns."""
        self.first_col = 0 if end < 0 else len(self.grid.columns) if self.grid else 0
        self.show()

    def action_cycle_steps(self) -> None:
        """Which steps: all evaluations, each run's best step, its last (then all again)."""
        i = WHICH.index(self.which) if self.which in WHICH else -1
        self.set_which(WHICH[(i + 1) % len(WHICH)])

    def action_go_step(self) -> None:
        """Show one step (a number), or best, last or all."""
        self.app.push_screen(
            PromptDialog("Show which step? (a step number, best, last or all)", parse_which),
            lambda which: which is not None and self.set_which(which),
        )

    def set_which(self, which: str | int) -> None:
        """Show other steps: read the grid again."""
        self.which, self.first_col = which, 0
        self.shown = (0, 0, 0)  # a new choice starts at its first columns (no following)
        self.notify(f"steps: {which}", timeout=1.5)
        self.poll(force=True)

    def action_diff(self) -> None:
        """Mark the words of each answer that differ from the answer to its left."""
        self.diff = not self.diff
        self.show()

    def action_back(self) -> None:
        """Back to where the screen was opened from."""
        app_of(self).action_back()

    def on_ask_done(self, msg: AskDone) -> None:
        self.ask_done(msg)
