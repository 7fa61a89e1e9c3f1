"""Provides SavingMixin: the editor's saves and its guard on unsaved edits (a ruamel.yaml round
trip of the user's own file through tui/configsave.py; questions before overwriting a file or
dropping edits)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.markup import escape

from tuitrain.config import save_yaml
from tuitrain.tui import configsave
from tuitrain.tui.configdoc import DEMO_CONFIG, Document, validate
from tuitrain.tui.configsave import changed_paths
from tuitrain.tui.context import app_of
from tuitrain.tui.dialogs.confirm import ConfirmDialog
from tuitrain.tui.dialogs.prompt import PromptDialog


class SavingMixin:
    """Mixed into EditorScreen (which provides doc, specs, confirmed_own, notify, update_status)."""

    app: Any
    doc: Document
    specs: dict
    confirmed_own: bool
    notify: Any
    update_status: Any

    def _paths(self) -> list[str]:
        return list(self.specs)

    @property
    def unsaved(self) -> list[str]:
        """The fields edited since the file was loaded or last saved."""
        return changed_paths(self.doc.data, self.doc.baseline, self._paths())

    def _own_file(self) -> bool:
        """Whether the source is the user's own config (not the package's, not a run's)."""
        src = Path(self.doc.source or "").resolve()
        runs = Path(app_of(self).runs_dir).resolve()
        return bool(self.doc.source) and not (
            src.is_relative_to(DEMO_CONFIG.parent) or src.is_relative_to(runs)
        )

    def default_save_path(self) -> Path:
        """Where ctrl+s offers to save: the opened file when it is the user's own, else a new
        file beside the runs directory (a run's config.yaml or the package's demo stay as they are)."""
        src = Path(self.doc.source or "config.yaml")
        if self._own_file():
            return src
        runs = Path(app_of(self).runs_dir).resolve()
        stem = src.parent.name if src.resolve().is_relative_to(runs) else src.stem
        return runs.parent / f"{stem}.yaml"

    def action_save(self) -> None:
        """Save the edits into the file they came from (or a new one); ask before overwriting."""
        cfg, issues = validate(self.doc.data)
        if cfg is None:
            self.notify(f"fix {len(issues)} problem(s) before saving", severity="error")
            return

        def parse(text: str) -> Path:
            p = Path(text.strip()).expanduser()
            if not text.strip() or p.is_dir():
                raise ValueError("type a file path, e.g. configs/my-run.yaml")
            return p

        def chosen(path: Path | None) -> None:
            if path is None:
                return
            own = self._own_file() and path.resolve() == Path(self.doc.source or "").resolve()
            if not path.exists() or (own and self.confirmed_own):
                self.save_to(path)
                return
            n = len(self.unsaved)
            question = (
                f"Save {n} edited value{'s' if n != 1 else ''} into {escape(str(path))}?\n"
                "Its comments, order, extends and envs stay as they are."
                if own
                else f"{escape(str(path))} exists. Replace it with this config?"
            )

            def answered(yes: bool | None) -> None:
                if yes:
                    self.confirmed_own = self.confirmed_own or own
                    self.save_to(path)

            self.app.push_screen(ConfirmDialog(question, "Save", "Cancel"), answered)

        self.app.push_screen(
            PromptDialog("Save config as:", parse, str(self.default_save_path())), chosen
        )

    def save_to(self, path: Path) -> None:
        """Write the opened file with only the edited values changed; the editor then edits it."""
        try:
            if self.doc.load_issues:  # a file that did not load cannot be round-tripped
                cfg, _ = validate(self.doc.data)
                save_yaml(cfg, path, header=f"Saved by tuitrain edit from {self.doc.source}")
            else:
                text = configsave.render(
                    self.doc.source or DEMO_CONFIG,
                    path,
                    self.doc.env,
                    self.doc.data,
                    self.doc.baseline,
                    self._paths(),
                )
                configsave.write(path, text)
        except (OSError, configsave.SaveError) as exc:
            self.notify(f"cannot save {path}: {exc}", severity="error", timeout=10)
            return
        if not self.doc.load_issues:
            self.doc.source = str(path)
            self.doc.baseline = copy.deepcopy(self.doc.data)
            self.confirmed_own = True  # the user chose this file: later saves go there quietly
        self.update_status()
        self.notify(f"saved {path}")

    def confirm_drop(self, then: Callable[[], Any], doing: str) -> None:
        """Run `then` now when nothing is unsaved, else after the user agrees to drop the edits."""
        n = len(self.unsaved)
        if not n:
            then()
            return
        src = escape(Path(self.doc.source or "config").name)
        question = (
            f"{n} unsaved edit{'s' if n != 1 else ''} to {src}.\n"
            f"Drop them and {doing}? (ctrl+s saves them)"
        )
        self.app.push_screen(
            ConfirmDialog(question, "Drop edits", "Keep editing"), lambda yes: yes and then()
        )
