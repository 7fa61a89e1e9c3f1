"""Provides TerminalNotifier: while the TUI is open, a run that ends, stalls or opens a doctor
episode (the notifier's own rules, tuitrain.notify.rules) raises a toast and a desktop
notification through the terminal's escape sequence (OSC 9 / 777 / 99, or the bell)."""

from __future__ import annotations

import threading
from typing import Any

from textual.app import App

POLL_S = 2.0
TOAST_S = 12.0
TOAST_SEVERITY = {"info": "information", "warning": "warning", "critical": "error"}


class TerminalNotifier:
    """Polls the app's runs directory in a thread worker; emits on the main thread."""

    def __init__(self, app: App, runs_dir: Any, poll_s: float = POLL_S) -> None:
        self.app, self.runs_dir, self.poll_s = app, runs_dir, poll_s
        self.watcher: Any = None
        self.store: Any = None
        self.mode = "bell"
        self.tmux = False
        self.sent: list[str] = []  # the sequences written, newest last
        self.lock = threading.Lock()

    def start(self) -> TerminalNotifier:
        """Begin polling (a mode of `off` still shows toasts; no sequence is written)."""
        import os

        from tuitrain.notify.terminal import detect
        from tuitrain.store.models import InvalidValue

        try:
            self.mode = detect()
        except InvalidValue as exc:
            self.app.notify(str(exc), title="desktop notifications", severity="warning")
        self.tmux = bool(os.environ.get("TMUX"))
        self.app.set_interval(self.poll_s, self._tick, name="terminal-notify")
        self._tick()
        return self

    def _tick(self) -> None:
        self.app.run_worker(
            self._poll, thread=True, exclusive=True, group="terminal-notify", exit_on_error=False
        )

    def _poll(self) -> None:
        if not self.lock.acquire(blocking=False):
            return  # the previous poll is still reading (a slow disk): skip this tick
        try:
            self._read()
        finally:
            self.lock.release()

    def _read(self) -> None:
        from pathlib import Path

        from tuitrain.store import DB_NAME, Store

        if self.watcher is None:
            if not (Path(self.runs_dir) / DB_NAME).is_file():
                return  # nothing ever ran here: do not create a database to say so
            from tuitrain.notify.rules import Watcher
            from tuitrain.notify.settings import NotifySettingsError, Settings, load

            try:
                settings = load()
            except NotifySettingsError:
                settings = Settings()  # `tuitrain notify test` says what is wrong with them
            self.store = Store(self.runs_dir)
            self.watcher = Watcher(self.store, settings, baseline=True, record=False)  # reads only
        notes = self.watcher.poll()
        if notes:
            self.app.call_from_thread(self.emit, notes)

    def emit(self, notes: list[Any]) -> None:
        """Toast each notification and write its terminal sequence (main thread)."""
        from tuitrain.notify.terminal import sequence

        for n in notes:
            lines = n.body.splitlines()
            self.app.notify(
                "\n".join(lines[1:] or lines),
                title=n.title,
                severity=TOAST_SEVERITY.get(n.severity, "information"),  # type: ignore[arg-type]
                timeout=TOAST_S,
            )
            seq = sequence(self.mode, f"tuitrain: {n.title}", "\n".join(lines[1:]), self.tmux)
            driver = getattr(self.app, "_driver", None)  # App.bell() writes the same way
            if seq and driver is not None:
                driver.write(seq)
                self.sent.append(seq)
