"""Provides TuitrainApp: screen navigation, settings (refresh rate, clock) and palette commands."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen


@dataclass
class Settings:
    """Knobs of the TUI (all have defaults that suit SSH sessions)."""

    # Charts redraw at most this often; None: local_redraw_hz, or remote_redraw_hz when the
    # terminal is at the far end of an SSH link (SSH_CONNECTION set), where every repaint
    # costs bytes on the link. The environment variable TUITRAIN_MAX_REDRAW_HZ overrides both.
    # The run header stays live either way (it is not a chart redraw).
    max_redraw_hz: float | None = None
    local_redraw_hz: float = 2.0
    remote_redraw_hz: float = 1.0
    # Charts may use at most this share of one core: plotext needs ~20-60 ms per chart, so
    # on a slow or busy machine redraws space out instead of eating the CPU (SSH boxes train).
    chart_cpu_budget: float = 0.02
    poll_s: float = 0.5  # DB poll interval of the monitor (the trainer flushes every 0.5 s)
    list_poll_s: float = 2.0  # DB poll interval of the runs list
    lr_factor: float = 2.0  # LR up / down multiplies / divides by this
    smoothing: float = 0.2  # EMA weight of the newest point when smoothing is on

    def __post_init__(self) -> None:
        if self.max_redraw_hz is None:
            self.max_redraw_hz = redraw_hz(self, os.environ)


def redraw_hz(settings: Settings, env: dict | os._Environ) -> float:
    """The chart redraw cap for this environment (see Settings.max_redraw_hz)."""
    raw = env.get("TUITRAIN_MAX_REDRAW_HZ")
    if raw:
        try:
            hz = float(raw)
        except ValueError:
            hz = 0.0
        if hz > 0:
            return hz
        from tuitrain.store.models import InvalidValue  # the CLI prints it, exit 2

        raise InvalidValue(
            f"TUITRAIN_MAX_REDRAW_HZ={raw!r} is not a positive number of redraws per second; "
            "set e.g. TUITRAIN_MAX_REDRAW_HZ=1 or unset it"
        )
    return settings.remote_redraw_hz if env.get("SSH_CONNECTION") else settings.local_redraw_hz


class TuitrainApp(App):
    """The tuitrain TUI: runs list at the bottom of the stack, other screens pushed on top."""

    CSS_PATH = "app.tcss"
    TITLE = "tuitrain"
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        # Every screen's footer ends with `? keys`: the overlay lists all of that screen's keys.
        Binding("question_mark,f1", "help", "Keys", key_display="?"),
    ]

    def __init__(
        self,
        runs_dir: str | Path = "runs",
        start: str = "runs",
        config: str | None = None,
        env: str | None = None,
        sets: tuple[str, ...] | list[str] = (),
        run: str | None = None,
        compare: list[str] | None = None,
        settings: Settings | None = None,
        now: Callable[[], float] | None = None,
    ) -> None:
        super().__init__()
        self.runs_dir = Path(runs_dir)
        self.start = start
        self.start_args = {
            "config": config,
            "env": env,
            "sets": tuple(sets),
            "run": run,
            "compare": compare or [],
        }
        self.settings = settings or Settings()
        # Injectable clock so snapshot tests show stable elapsed times.
        self.now: Callable[[], float] = now or time.time

    def on_mount(self) -> None:
        from tuitrain.tui.screens.runs import RunsScreen

        self.push_screen(RunsScreen())
        from tuitrain.tui.notify_terminal import TerminalNotifier  # toasts + desktop notifications

        self.terminal_notifier = TerminalNotifier(self, self.runs_dir).start()
        a = self.start_args
        if self.start == "edit":
            self.open_editor(a["config"], a["env"], a["sets"])
        elif self.start == "watch" and a["run"]:
            self.open_monitor(a["run"])
        elif self.start == "compare" and a["compare"]:
            self.open_compare(a["compare"])

    def open_editor(
        self, config: str | None = None, env: str | None = None, sets: tuple[str, ...] = ()
    ) -> None:
        """Open the config editor on a file; without one, on a fresh copy of the bundled demo
        config written beside the runs directory (the package's own file is never edited)."""
        from tuitrain.tui.screens.editor import EditorScreen

        if config is None:
            from tuitrain.tui.configdoc import DEMO_CONFIG

            self.new_config(
                lambda path: self.push_screen(EditorScreen(str(path), env, sets, DEMO_CONFIG))
            )
            return
        self.push_screen(EditorScreen(config, env, sets))

    def new_config(self, then: Callable[[Path], None]) -> None:
        """Copy the demo config to new-config.yaml beside the runs directory (or, when that
        folder cannot be written, to a path the user types) and pass the copy on."""
        from tuitrain.tui.configdoc import DEMO_CONFIG
        from tuitrain.tui.configsave import new_config_copy
        from tuitrain.tui.dialogs.prompt import PromptDialog

        try:
            path = new_config_copy(self.runs_dir, DEMO_CONFIG)
        except OSError as exc:

            def parse(text: str) -> Path:
                p = Path(text.strip()).expanduser()
                if not text.strip() or p.is_dir() or p.exists():
                    raise ValueError("type the path of a new file, e.g. ~/my-run.yaml")
                try:
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_bytes(DEMO_CONFIG.read_bytes())
                except OSError as err:
                    raise ValueError(f"cannot write {p}: {err}") from None
                return p

            self.push_screen(
                PromptDialog(f"Cannot write beside the runs dir ({exc}).\nNew config file:", parse),
                lambda p: p is not None and then(p),
            )
            return
        self.notify(f"new config: {path} (a copy of the demo)")
        then(path)

    def open_monitor(self, run_ref: str, replace: bool = False) -> None:
        """Open the live monitor of a run (id or unique name)."""
        from tuitrain.tui.screens.monitor import MonitorScreen

        if replace and len(self.screen_stack) > 2:
            self.pop_screen()
        self.push_screen(MonitorScreen(run_ref))

    async def open_instead(self, run_id: str) -> None:
        """A run's monitor in place of the top screen and the monitor under it (the doctor's
        rollback: the old run stops, its child goes on). Awaited pops: a monitor's screen name
        is reused, so the old one must be gone first."""
        from tuitrain.tui.screens.monitor import MonitorScreen

        await self.pop_screen()
        if isinstance(self.screen, MonitorScreen) and len(self.screen_stack) > 2:
            await self.pop_screen()
        self.open_monitor(run_id)

    def open_compare(self, run_ids: list[str]) -> None:
        """Open the comparison of 2-4 runs."""
        from tuitrain.tui.screens.compare import CompareScreen

        self.push_screen(CompareScreen(run_ids))

    def open_samples(self, run_refs: list[str]) -> None:
        """Open what one run (or 2-4 compared runs) answered at each evaluation."""
        from tuitrain.tui.screens.samples import SamplesScreen

        self.push_screen(SamplesScreen(run_refs))

    def action_help(self) -> None:
        """The keys of the current screen, grouped (`?` / F1)."""
        from tuitrain.tui.dialogs.help import KeysDialog

        if not isinstance(self.screen, KeysDialog):
            self.push_screen(KeysDialog(self.screen))

    async def action_quit(self) -> None:
        """Quit, after asking when an editor holds unsaved edits or an LR race is running here
        (it pauses the run and resumes it afterwards: quitting mid-race leaves the run paused)."""
        from tuitrain.tui.dialogs.confirm import ConfirmDialog
        from tuitrain.tui.screens.editor import EditorScreen

        reasons = []
        for screen in self.screen_stack:
            if isinstance(screen, EditorScreen) and screen.unsaved:
                n = len(screen.unsaved)
                name = Path(screen.doc.source or "config").name
                reasons.append(f"{n} unsaved edit{'s' if n != 1 else ''} to {name} will be lost")
        if any(w.group == "lr-race" and not w.is_finished for w in self.workers):
            reasons.append("the LR race stops half-way (a run it paused stays paused)")
        if not reasons:
            self.exit()
            return
        question = "Quit tuitrain?\n" + "\n".join(f"- {r}" for r in reasons)
        self.push_screen(ConfirmDialog(question, "Quit", "Stay"), lambda yes: yes and self.exit())

    def action_back(self) -> None:
        """Go back one screen; the runs list is the last one."""
        if len(self.screen_stack) > 2:
            self.pop_screen()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette lists the current screen's key actions too (keyboard discoverability)."""
        yield from super().get_system_commands(screen)
        for b in screen.BINDINGS:
            if isinstance(b, Binding) and b.description:
                key = b.key_display or b.key.split(",")[0]
                yield SystemCommand(
                    b.description, f"key: {key}", lambda a=b.action, s=screen: s.run_action(a)
                )
