"""Provides EditorScreen: the config editor generated from TrainConfig, with live derived values."""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.command import CommandPalette, Hit, Hits, Provider
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import ContentSwitcher, OptionList, Select, Static
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from tuitrain.config import ConfigError, ConfigIssue, resolve
from tuitrain.config.rules import clear_partner
from tuitrain.tui.configdoc import Document, load_document, validate
from tuitrain.tui.context import app_of
from tuitrain.tui.dialogs.confirm import ConfirmDialog
from tuitrain.tui.dialogs.prompt import PromptDialog
from tuitrain.tui.messages import DerivedReady, Launched
from tuitrain.tui.screens.editor_save import SavingMixin
from tuitrain.tui.widgets.derived import DerivedPanel, DerivedScroll, SchedulePreview
from tuitrain.tui.widgets.fields import FieldSpec, get_path, sections, set_path
from tuitrain.tui.widgets.form import FieldRow, SectionPage, section_id
from tuitrain.tui.widgets.keybar import KeyBar

NO_ENV = "(no env)"
# Estimating the dataset size reads files: wait for typing to pause before recomputing.
DERIVE_DELAY_S = 0.3


FILE = Binding.Group("File")
RUN = Binding.Group("Run")
MOVE = Binding.Group("Move")
LEAVE = Binding.Group("Leave")


class FieldsProvider(Provider):
    """Command-palette entries that jump to a config field by its dotted name or help text."""

    def _editor(self) -> EditorScreen:
        screen = self.screen
        assert isinstance(screen, EditorScreen), screen  # the provider is the editor's
        return screen

    def _fields(self) -> list[FieldSpec]:
        return [s for specs in sections().values() for s in specs]

    async def discover(self) -> Hits:
        """Every field, for browsing with an empty query."""
        screen = self._editor()
        for spec in self._fields():
            yield Hit(0, spec.path, partial(screen.jump_to, spec.path), help=spec.help)

    async def search(self, query: str) -> Hits:
        """Fields whose dotted path matches the query."""
        matcher = self.matcher(query)
        screen = self._editor()
        for spec in self._fields():
            score = matcher.match(spec.path)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(spec.path),
                    partial(screen.jump_to, spec.path),
                    help=spec.help,
                )


class EditorScreen(SavingMixin, Screen):
    """Edit a config: one page per section, inline errors, derived values and the LR schedule."""

    COMMANDS = Screen.COMMANDS | {FieldsProvider}
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", group=FILE),
        Binding("ctrl+g", "launch", "Launch", group=RUN),
        Binding("ctrl+f", "find", "Find field", group=MOVE),
        Binding("ctrl+o", "open", "Open", group=FILE),
        Binding("ctrl+l", "lr_find", "LR find", group=RUN),
        Binding("ctrl+n", "pick_env", "Env", group=FILE),  # ctrl+e is Input's end-of-line
        Binding("escape", "back", "Back", group=LEAVE),
        Binding("q", "back", "Back", show=False, group=LEAVE),  # typed into a field, q is a letter
    ]
    EXTRA_KEYS = {
        "Move": [
            ("down / up", "next / previous field (tab / shift+tab too)"),
            ("enter", "on a section: into its fields"),
            ("enter / space", "on a choice: open its list"),
        ]
    }

    SCREEN_ID = "editor"  # subclasses (the branch editor) own one: both can be on the stack

    def __init__(
        self,
        path: str | Path | None = None,
        env: str | None = None,
        sets: tuple[str, ...] | list[str] = (),
        template: Path | None = None,
    ) -> None:
        super().__init__(id=self.SCREEN_ID)
        # `n`: the file is a fresh copy of this template; left unchanged, it is removed on leaving.
        self.template = template
        self.doc: Document = load_document(path, env, sets)
        self.sections = sections()
        self.specs = {s.path: s for specs in self.sections.values() for s in specs}
        self.issues: list[ConfigIssue] = []
        self.resolved = None
        self.generation = 0  # bumps on every edit; stale derived results are dropped
        self._derive_timer = None
        # Saving over the opened file asks once; after a yes (or a save) it saves quietly.
        self.confirmed_own = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="editor-top"):
            yield Static("", id="editor-status")
            yield Select(
                [(NO_ENV, NO_ENV)] + [(e, e) for e in self.doc.envs],
                value=self.doc.env or NO_ENV,
                allow_blank=False,
                id="env-select",
                compact=True,
            )
        with Horizontal(id="editor-main"):
            yield OptionList(*[Option(s, id=s) for s in self.sections], id="sections", compact=True)
            with ContentSwitcher(initial=section_id(next(iter(self.sections))), id="forms"):
                # Pages are built when first shown: mounting ~100 fields up front costs seconds.
                yield self.make_page(next(iter(self.sections)))
        yield Static("", id="field-help")
        with Horizontal(id="editor-bottom"):
            with DerivedScroll(id="derived-box"):
                yield DerivedPanel("", id="derived")
            with Vertical(id="schedule-box"):
                yield SchedulePreview(id="schedule")
        yield KeyBar()

    def make_page(self, section: str) -> SectionPage:
        """A section's page with the document's current values."""
        specs = self.sections[section]
        return SectionPage(section, specs, {s.path: get_path(self.doc.data, s.path) for s in specs})

    async def show_section(self, section: str) -> SectionPage:
        """Switch to a section's page, building it on first use."""
        switcher = self.query_one("#forms", ContentSwitcher)
        found = switcher.query("#" + section_id(section))
        if found:
            page = found.first(SectionPage)
        else:
            page = self.make_page(section)
            await switcher.mount(page)
            self.mark_page(page)
        switcher.current = page.id
        return page

    def on_unmount(self) -> None:
        src = Path(self.doc.source or "")
        try:
            if self.template and src.is_file() and src.read_bytes() == self.template.read_bytes():
                src.unlink()  # an untouched `n` copy: no stray new-config-N.yaml files
        except OSError:
            pass

    def on_mount(self) -> None:
        self.query_one("#env-select").display = bool(self.doc.envs)
        self.query_one("#sections", OptionList).highlighted = 0
        self.query_one("#sections", OptionList).focus()
        self.revalidate(immediate=True)

    # -- editing ---------------------------------------------------------------------------

    @on(FieldRow.Changed)
    def field_changed(self, event: FieldRow.Changed) -> None:
        """Store the edit and revalidate."""
        if get_path(self.doc.data, event.spec.path) == event.value:
            return
        set_path(self.doc.data, event.spec.path, event.value)
        # The edit is the latest layer: setting one of an exclusive pair clears the other.
        for path in clear_partner(self.doc.data, event.spec.path):
            for row in self.query(FieldRow):
                if row.spec.path == path:
                    row.set_value(get_path(self.doc.data, path))
        self.revalidate()

    @on(FieldRow.Focused)
    def field_focused(self, event: FieldRow.Focused) -> None:
        """Show the focused field's help text."""
        spec = event.spec
        self.query_one("#field-help", Static).update(f"[b]{spec.path}[/b]: {escape(spec.help)}")

    @on(OptionList.OptionHighlighted, "#sections")
    async def section_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        """Show the highlighted section's page."""
        await self.show_section(str(event.option.id))

    @on(OptionList.OptionSelected, "#sections")
    async def section_selected(self, event: OptionList.OptionSelected) -> None:
        """Enter on a section moves into its form."""
        page = await self.show_section(str(event.option.id))
        rows = page.query(FieldRow)
        if rows:
            rows.first().widget.focus()

    def revalidate(self, immediate: bool = False) -> None:
        """Check the document now (cheap) and recompute derived values after a pause."""
        self.generation += 1
        cfg, issues = validate(self.doc.data)
        self.show_issues(self.doc.load_issues + issues)
        panel = self.query_one("#derived", DerivedPanel)
        if cfg is None:
            self.resolved = None
            panel.show_invalid(len(issues))
            self.query_one("#schedule", SchedulePreview).set_lines([])
            return
        panel.show_pending()
        if self._derive_timer is not None:
            self._derive_timer.stop()
        if immediate:
            self.derive(cfg, self.generation)
        else:
            self._derive_timer = self.set_timer(
                DERIVE_DELAY_S, partial(self.derive, cfg, self.generation)
            )

    @work(thread=True, exclusive=True, exit_on_error=False, group="derive")
    def derive(self, cfg, generation: int) -> None:
        """Resolve the config with the data estimate (reads the data files) off the main thread."""
        from tuitrain.data.estimate import with_data

        try:
            msg = DerivedReady(generation, resolved=with_data(resolve(cfg, self.doc.source)))
        except ConfigError as exc:
            msg = DerivedReady(generation, error=exc)
        except Exception as exc:  # unreadable data etc.: shown, never fatal
            msg = DerivedReady(
                generation,
                error=ConfigError([ConfigIssue("data", str(exc), "check the data settings")]),
            )
        if not get_current_worker().is_cancelled:
            self.post_message(msg)

    def on_derived_ready(self, msg: DerivedReady) -> None:
        if msg.generation != self.generation:
            return  # an edit happened since; a newer computation is on its way
        panel = self.query_one("#derived", DerivedPanel)
        if msg.error is not None:
            self.resolved = None
            self.show_issues(self.doc.load_issues + msg.error.issues)
            panel.show_invalid(len(msg.error.issues))
            self.query_one("#schedule", SchedulePreview).set_lines([])
            return
        self.resolved = msg.resolved
        panel.show(msg.resolved)
        self.query_one("#schedule", SchedulePreview).show(msg.resolved)

    def show_issues(self, issues: list[ConfigIssue]) -> None:
        """Mark each invalid field (or its section) and summarise in the status line."""
        self.issues = issues
        for page in self.query(SectionPage):
            self.mark_page(page)
        bad = {i.path.rsplit(".", 1)[0] for i in issues if i.path in self.specs}
        bad |= {i.path for i in issues if i.path in self.sections}
        olist = self.query_one("#sections", OptionList)
        for idx, section in enumerate(self.sections):
            olist.replace_option_prompt_at_index(
                idx, f"[red]! {section}[/]" if section in bad else section
            )
        other = [i for i in issues if i.path not in self.specs and i.path not in self.sections]
        self.update_status(other)

    def mark_page(self, page: SectionPage) -> None:
        """Show the current issues on one page's fields (pages built later are marked on mount)."""

        def text(found: list[ConfigIssue]) -> str:
            return "; ".join(i.message + (f" (fix: {i.fix})" if i.fix else "") for i in found)

        page.show_section_error(text([i for i in self.issues if i.path == page.section]))
        for spec in page.specs:
            errs = [i for i in self.issues if i.path == spec.path]
            for err in page.query("#err-" + spec.widget_id).results(Static):
                err.update(escape(text(errs)))
                err.display = bool(errs)
            for row in page.query("#row-" + spec.widget_id):
                row.set_class(bool(errs), "-invalid")

    def update_status(self, other: list[ConfigIssue] | None = None) -> None:
        """The top line: file, env and whether the config is valid."""
        src = self.doc.source or "(new config)"
        try:
            src = str(Path(src).resolve().relative_to(Path.cwd()))
        except ValueError:
            pass
        env = f" [{self.doc.env}]" if self.doc.env else ""
        edits = len(self.unsaved)
        mark = f"[reverse]* {edits} unsaved[/] " if edits else ""
        n = len(self.issues)
        state = "[green]valid[/]" if not n else f"[red]{n} problem{'s' if n != 1 else ''}[/]"
        extra = "".join(
            f"  [red]{escape(i.path or 'file')}: {escape(i.message)}[/]" for i in (other or [])
        )
        self.query_one("#editor-status", Static).update(
            f"{mark}{escape(src)}{escape(env)}  {state}{extra}"
        )

    async def jump_to(self, path: str) -> None:
        """Show a field's section and focus its widget."""
        spec = self.specs[path]
        page = await self.show_section(spec.section)
        olist = self.query_one("#sections", OptionList)
        with olist.prevent(OptionList.OptionHighlighted):
            olist.highlighted = list(self.sections).index(spec.section)
        row = page.query_one("#row-" + spec.widget_id, FieldRow)
        row.widget.focus()

    def load(self, path: str | None, env: str | None) -> None:
        """Replace the document with a file (or a different env of it)."""
        self.doc = load_document(path, env)
        self.confirmed_own = False
        for row in self.query(FieldRow):
            row.set_value(get_path(self.doc.data, row.spec.path))
        select = self.query_one("#env-select", Select)
        with self.prevent(Select.Changed):
            select.set_options([(NO_ENV, NO_ENV)] + [(e, e) for e in self.doc.envs])
            select.value = self.doc.env or NO_ENV
        select.display = bool(self.doc.envs)
        self.revalidate(immediate=True)

    # -- actions ---------------------------------------------------------------------------

    def action_find(self) -> None:
        """Jump to a field by name."""
        self.app.push_screen(
            CommandPalette(
                providers=[FieldsProvider], placeholder="Jump to field (e.g. optimizer.lr)…"
            )
        )

    def action_back(self) -> None:
        """Leave the editor (asks first when edits are unsaved)."""
        self.confirm_drop(app_of(self).action_back, "leave the editor")

    @on(Select.Changed, "#env-select")
    def env_changed(self, event: Select.Changed) -> None:
        """Reload the file with the chosen env overlay."""
        env = None if event.value in (NO_ENV, Select.NULL) else str(event.value)
        if env == self.doc.env or not self.doc.source:
            return

        def undo() -> None:  # kept editing: the picker shows the env still in use
            with self.prevent(Select.Changed):
                event.select.value = self.doc.env or NO_ENV

        if not self.unsaved:
            self.load(self.doc.source, env)
            return
        self.app.push_screen(
            ConfirmDialog(
                f"{len(self.unsaved)} unsaved edit(s). Drop them and load env {escape(env or NO_ENV)}?",
                "Drop edits",
                "Keep editing",
            ),
            lambda yes: self.load(self.doc.source, env) if yes else undo(),
        )

    def action_pick_env(self) -> None:
        """Focus the env overlay picker (when the file defines envs)."""
        select = self.query_one("#env-select", Select)
        if not self.doc.envs:
            self.notify("this config defines no envs: overlays", severity="warning")
            return
        select.focus()
        select.action_show_overlay()

    def action_open(self) -> None:
        """Open another config file."""

        def parse(text: str) -> str:
            p = Path(text.strip()).expanduser()
            if not p.is_file():
                raise ValueError(
                    f"no such file: {text.strip()!r}; type the path of a .yaml or .json config"
                )
            return str(p)

        def ask() -> None:
            self.app.push_screen(
                PromptDialog("Open config file:", parse, self.doc.source or ""),
                lambda p: p and self.load(p, None),
            )

        self.confirm_drop(ask, "open another file")

    def action_lr_find(self) -> None:
        """Run an LR range test of the edited config; its screen can write the answer back here."""
        from tuitrain.tui.screens.lrfind import LRFindScreen

        cfg, issues = validate(self.doc.data)
        if cfg is None:
            self.notify(f"fix {len(issues)} problem(s) before a range test", severity="error")
            return
        self.app.push_screen(LRFindScreen(None, copy.deepcopy(cfg), self.doc.source, self.set_lr))

    def set_lr(self, value: float) -> None:
        """Write optimizer.lr (the range test's answer) into the form and revalidate."""
        set_path(self.doc.data, "optimizer.lr", value)
        for row in self.query(FieldRow):
            if row.spec.path == "optimizer.lr":
                row.set_value(value)
        self.revalidate()
        self.notify(f"optimizer.lr = {value:.3g} (ctrl+s saves)")

    def action_launch(self) -> None:
        """Validate, start the run as a detached Accelerate process and open its monitor."""
        cfg, issues = validate(self.doc.data)
        if cfg is None:
            self.notify(f"fix {len(issues)} problem(s) before launching", severity="error")
            return
        self.notify("launching…")
        self.launch(copy.deepcopy(cfg))

    @work(thread=True, exclusive=True, exit_on_error=False, group="launch")
    def launch(self, cfg: Any) -> None:
        """Resolve and launch off the main thread (writes files, spawns the process)."""
        try:
            from tuitrain.data.estimate import with_data
            from tuitrain.runs.launch import launch

            resolved = with_data(resolve(cfg, self.doc.source))
            info = launch(resolved, app_of(self).runs_dir)
        except ConfigError as exc:
            self.post_message(Launched(None, str(exc)))
            return
        except Exception as exc:  # launcher missing or failed: tell the user, keep the edits
            self.post_message(Launched(None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(Launched(info.id))

    def on_launched(self, msg: Launched) -> None:
        if msg.error:
            self.notify(msg.error, title="launch failed", severity="error", timeout=10)
            return
        # Pushed over the editor: escape in the monitor comes back here, edits intact.
        app_of(self).open_monitor(msg.run_id)
