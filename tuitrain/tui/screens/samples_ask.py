"""Provides AskActions: the samples screen's `p` key, which asks finished runs' best checkpoints a
prompt typed by the user. The answer comes from a short-lived process (tuitrain.runs.ask, which
loads the model; this process never imports torch) that stores it as a sample of source "ask";
the screen's next read shows it. A failure shows the process's one-line error."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

from rich.markup import escape
from textual import work
from textual.worker import get_current_worker

from tuitrain.runs.ask import AskError, check_prompt, error_line, parse_answers, spawn_ask
from tuitrain.tui.context import app_of
from tuitrain.tui.dialogs.prompt import PromptDialog
from tuitrain.tui.messages import AskDone

# Loading a model and answering one prompt takes seconds to a few minutes; past this the
# asking process is stopped and the screen says so.
ASK_TIMEOUT_S = 900.0
CHECKPOINT = "best"


def parse_prompt(text: str) -> str:
    """A prompt typed by a person: anything but blank (tuitrain.runs.ask's rule)."""
    try:
        return check_prompt(text).strip()
    except AskError as exc:
        raise ValueError(str(exc)) from None


def wait_answer(
    proc: subprocess.Popen, cancelled: Callable[[], bool], timeout: float = ASK_TIMEOUT_S
) -> tuple[str | None, list[dict]]:
    """Wait for the asking process: (None, its answers) when it exited 0 (the answers are stored;
    it prints them as a JSON list on stdout), else (its one-line error, []). Bounded by
    `timeout` (then killed); a cancelled wait leaves the process to finish on its own (its
    answer is still stored)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            out, err = proc.communicate(timeout=0.25)
            break
        except subprocess.TimeoutExpired:
            if cancelled():
                return "the screen was closed while asking (the answer is stored when it comes)", []
            if time.monotonic() > deadline:
                proc.kill()
                proc.communicate()
                return f"no answer after {timeout:.0f} s: the asking process was stopped", []
    if proc.returncode != 0:
        return error_line(_text(err), proc.returncode), []
    try:
        answers = parse_answers(_text(out))
    except ValueError:
        answers = []  # stored all the same: the screen's next read shows it
    return None, [a for a in answers if isinstance(a, dict)] if isinstance(answers, list) else []


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


class AskActions:
    """Mixed into SamplesScreen, which holds `runs`, `names`, `which`, `set_status`, `set_which`,
    `poll` and `_keep_prompt`."""

    def init_ask(self, spawn: Any = None) -> None:
        """`spawn`: spawn_ask's signature (tuitrain.runs.ask), None for the real one."""
        self.spawn = spawn
        self.asking: str | None = None  # what is being asked (shown in the status line)
        self._ask_started = 0.0
        self._find_asked = False  # the next grid should show the asked prompt's row

    def action_ask(self) -> None:
        """Ask a finished run's best checkpoint (compared runs: each one's) a new prompt."""
        if self.asking:
            self.notify(f"{self.asking}: wait for its answer", severity="warning")
            return
        if not self.runs:
            self.notify("the runs are still loading; press p again in a moment")
            return
        ready = [r for r in self.runs if r.terminal]
        busy = [self.names.get(r.id, r.name) for r in self.runs if not r.terminal]
        if not ready:
            self.notify(
                f"{', '.join(busy)} is still training: ask its checkpoints once it has ended",
                severity="warning",
            )
            return
        names = ", ".join(self.names.get(r.id, r.name) for r in ready)
        title = f"Ask {names} @ {CHECKPOINT} checkpoint (the answer is stored as a sample):"
        if busy:
            title += f"\n{', '.join(busy)}: still training, not asked"
        self.app.push_screen(
            PromptDialog(title, parse_prompt, placeholder="e.g. What does json.loads do?"),
            lambda text: text is not None and self.start_ask([r.id for r in ready], names, text),
        )

    def start_ask(self, run_ids: list[str], names: str, prompt: str) -> None:
        """Start the asking process off the main thread and say so."""
        self.asking = f"asking {names} @ {CHECKPOINT} checkpoint…"
        self._ask_started = time.monotonic()
        self.show_asking()
        self.ask_worker(run_ids, names, prompt)

    def show_asking(self) -> None:
        """The status line while asking, with the seconds so far."""
        if self.asking:
            secs = time.monotonic() - self._ask_started
            self.set_status(f"[b]{escape(self.asking)}[/b] [dim]{secs:.0f} s[/]")

    @work(thread=True, exit_on_error=False, group="samples-ask")
    def ask_worker(self, run_ids: list[str], names: str, prompt: str) -> None:
        """Spawn the asking process and wait for it (this thread only)."""
        worker = get_current_worker()
        spawn = self.spawn or spawn_ask
        error: str | None
        answers: list[dict] = []
        try:
            proc = spawn(app_of(self).runs_dir, run_ids, prompt, checkpoint=CHECKPOINT)
            error, answers = wait_answer(proc, lambda: worker.is_cancelled)
        except Exception as exc:  # refused before it started (no such run, bad input)
            error = str(exc) or type(exc).__name__
        notes = [f"{a.get('run_name', '')}: {a['note']}" for a in answers if a.get("note")]
        self.post_message(AskDone(prompt, names, error, notes))

    def find_asked(self, found: bool) -> bool:
        """After an answer: False when its row is shown (or cannot be); True when another
        step choice is being read to show it (the checkpoint's step is not among these)."""
        if not self._find_asked:
            return False
        self._find_asked = False
        if found or self.which == "all":
            return False
        self.notify("the answer's checkpoint step is not shown here: showing every eval")
        self.set_which("all")
        return True

    def ask_done(self, msg: AskDone) -> None:
        """The answer is stored (show its row), or say why not."""
        self.asking = None
        if msg.error:
            self.set_status(f"[red]asking {escape(msg.runs)} failed: {escape(msg.error)}[/]")
            self.notify(msg.error, title="ask failed", severity="error", timeout=10)
            return
        # A note (best weights not kept: the newest checkpoint answered) stays in view.
        self.set_status(escape("; ".join(msg.notes)))
        self.notify("\n".join([f"{msg.runs} answered (the 'ask' row)", *msg.notes]), timeout=6)
        self._keep_prompt = msg.prompt
        self._find_asked = True  # not in the grid at these steps: every eval is shown instead
        self.poll(force=True)
