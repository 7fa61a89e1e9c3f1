"""Provides BranchEditorScreen: the config editor pre-filled with a parent run's config, with a
checkpoint picker; launching starts the child through tuitrain.runs.branching (as `tuitrain branch`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.message import Message
from textual.widgets import Static

from tuitrain.config import ConfigError, resolve
from tuitrain.tui.configdoc import validate
from tuitrain.tui.context import app_of
from tuitrain.tui.dialogs.prompt import PromptDialog
from tuitrain.tui.messages import Launched
from tuitrain.tui.screens.editor import EditorScreen
from tuitrain.tui.widgets.ckpt_picker import CheckpointPicker


@dataclass
class BranchPlanned(Message):
    """A checked branch whose LR would jump at the fork: the screen asks for its re-warm."""

    branch: Any  # tuitrain.runs.branching.Branch


def parse_steps(text: str) -> int:
    """A re-warm length typed by a person: a whole number of steps, 0 for none."""
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{text.strip() or 'empty'!r} is not a whole number of steps (e.g. 20; 0: none)") from None  # fmt: skip
    if value < 0:
        raise ValueError(f"{value} steps: type 0 (no re-warm) or more")
    return value


class BranchEditorScreen(EditorScreen):
    """The editor in branch mode: edits of the parent's config, launched from a checkpoint."""

    DEFAULT_CSS = """
    #branch-error { height: auto; max-height: 4; padding: 0 1; color: $error; }
    """

    SCREEN_ID = "branch-editor"

    def __init__(self, parent_run: Any) -> None:
        from tuitrain.runs.branching import checkpoint_steps

        self.parent_run = parent_run
        self.steps = checkpoint_steps(parent_run.run_dir)
        super().__init__(Path(parent_run.run_dir) / "config.yaml")
        self.last_error = ""  # the refusal shown under the bar (tests read it)

    def compose(self) -> ComposeResult:
        label = self.parent_run.name or self.parent_run.id
        yield CheckpointPicker(label, self.steps, id="ckpt-picker")
        yield Static("", id="branch-error")
        yield from super().compose()

    def on_mount(self) -> None:
        # No super() call: Textual runs EditorScreen.on_mount after this one by itself.
        self.query_one("#branch-error", Static).display = False

    def update_status(self, other: list | None = None) -> None:
        """The top line: whose config, and whether it is valid (the path holds a run id)."""
        n = len(self.issues)
        state = "[green]valid[/]" if not n else f"[red]{n} problem{'s' if n != 1 else ''}[/]"
        extra = "".join(
            f"  [red]{escape(i.path or 'file')}: {escape(i.message)}[/]" for i in (other or [])
        )
        name = escape(self.parent_run.name or self.parent_run.id)
        edits = len(self.unsaved)
        mark = f"[reverse]* {edits} edited[/] " if edits else ""
        self.query_one("#editor-status", Static).update(
            f"{mark}config of run {name}  {state}{extra}"
        )

    def show_error(self, text: str) -> None:
        """Show why the branch cannot start, in the editor (it stays open with the edits)."""
        self.last_error = text
        box = self.query_one("#branch-error", Static)
        box.update(escape(text))
        box.display = bool(text)

    def action_launch(self) -> None:
        """Check the edits against the picked checkpoint, start the child, open its monitor."""
        cfg, issues = validate(self.doc.data)
        if cfg is None:
            self.notify(f"fix {len(issues)} problem(s) before launching", severity="error")
            return
        picker = self.query_one("#ckpt-picker", CheckpointPicker)
        self.show_error("")
        self.notify("branching…")
        self.launch_branch(copy.deepcopy(cfg), picker.step, picker.weights_only)

    @work(thread=True, exclusive=True, exit_on_error=False, group="launch")
    def launch_branch(
        self, cfg: Any, step: int | None, weights_only: bool, planned: Any = None
    ) -> None:
        """The CLI's checks and launch (tuitrain.runs.branching), off the main thread. A branch
        whose LR would jump at the fork goes back to the screen first (BranchPlanned): the user
        picks its re-warm, and it comes back here as `planned`."""
        from tuitrain.runs.branching import BranchRefused, plan_branch, start_branch
        from tuitrain.runs.lineage import BranchError

        try:
            branch = planned
            if branch is None:
                child = resolve(cfg, self.doc.source)
                branch = plan_branch(self.parent_run, child, step, weights_only)
                if branch.rewarm is not None and branch.rewarm.default > 0:
                    self.post_message(BranchPlanned(branch))
                    return
            info = start_branch(branch, app_of(self).runs_dir)
        except BranchRefused as exc:
            # The CLI's lines: 'error: ...' per refused field, then the fix.
            text = "\n".join([*(f"error: {m}" for m in exc.lines), *([f"fix: {exc.fix}"] if exc.fix else [])])  # fmt: skip
            self.post_message(Launched(None, text))
            return
        except (BranchError, ConfigError) as exc:
            self.post_message(Launched(None, f"error: {exc}"))
            return
        except Exception as exc:  # launcher missing or failed: tell the user, keep the edits
            self.post_message(Launched(None, f"error: {type(exc).__name__}: {exc}"))
            return
        self.post_message(Launched(info.id))

    def on_branch_planned(self, msg: BranchPlanned) -> None:
        """Show how the LR continues at the fork and ask for the re-warm steps (0: none)."""
        rw = msg.branch.rewarm
        question = (
            f"LR at the fork (step {msg.branch.step}): the parent's {rw.parent_lr:.3g}, this "
            f"config's {rw.child_lr:.3g} (x{rw.jump:.3g}). Re-warm from the parent's LR to the "
            "new schedule over how many steps? (0: jump at once)"
        )

        def chosen(steps: int | None) -> None:
            if steps is None:
                self.notify("branch not started")
                return
            self.notify("branching…")
            self.launch_branch(None, None, False, msg.branch.with_rewarm(steps))

        self.app.push_screen(PromptDialog(question, parse_steps, str(rw.default)), chosen)

    def on_launched(self, msg: Launched) -> None:
        msg.prevent_default()  # EditorScreen.on_launched must not run too (it would notify/open)
        if msg.error:
            self.show_error(msg.error)
            self.notify("branch refused (see the top of the editor)", severity="error", timeout=6)
            return
        app_of(self).open_monitor(msg.run_id, replace=True)


def open_branch(app: Any, run: Any) -> None:
    """B on the runs list or the monitor: the branch editor of `run`, or why it cannot open."""
    from tuitrain.runs.branching import parent_config
    from tuitrain.runs.lineage import BranchError

    if run is None:
        return
    try:
        parent_config(run)
    except BranchError as exc:
        app.notify(f"error: {exc}", severity="error")
        return
    app.push_screen(BranchEditorScreen(run))
