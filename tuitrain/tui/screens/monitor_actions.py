"""Provides SteeringActions: the monitor's keys that steer its run (LR up/down/set, stop,
checkpoint, eval) and act on an LR race (start, apply the winner, branch it), each a command row
written off the main thread and acknowledged with the step it took effect at."""

from __future__ import annotations

from textual import work

from tuitrain.tui.context import app_of
from tuitrain.tui.dialogs.confirm import ConfirmDialog
from tuitrain.tui.dialogs.prompt import PromptDialog, parse_lr
from tuitrain.tui.messages import RaceDone


class SteeringActions:
    """Mixed into MonitorScreen, which holds `run`, `latest`, `race`, `race_lr` and `poll`."""

    @work(thread=True, exit_on_error=False, group="monitor-send")
    def send(self, kind: str, payload: dict | None = None) -> None:
        """Queue a command row for the trainer (a DB write: never on the main thread)."""
        from tuitrain.store import Store

        with Store(app_of(self).runs_dir) as store:
            try:
                cid = store.send_command(self.run.id, kind, payload)
            except Exception as exc:  # refused (run ended) or invalid: say why
                self.app.call_from_thread(self.notify, str(exc), severity="error")
                return
        self.app.call_from_thread(
            self.notify, f"command #{cid} {kind} sent; pending until the trainer applies it"
        )
        self.app.call_from_thread(self.poll)

    def _steerable(self) -> bool:
        if self.run is None:
            self.notify(
                "the run is still loading; press the key again in a moment", severity="warning"
            )
            return False
        if self.run.terminal:
            self.notify(f"run is {self.run.status}: nothing to steer", severity="warning")
            return False
        return True

    def action_lr_up(self) -> None:
        """Multiply the LR (the remaining schedule keeps its shape)."""
        if self._steerable():
            self.send("scale_lr", {"factor": app_of(self).settings.lr_factor})

    def action_lr_down(self) -> None:
        """Divide the LR."""
        if self._steerable():
            self.send("scale_lr", {"factor": 1.0 / app_of(self).settings.lr_factor})

    def action_set_lr(self) -> None:
        """Ask for an LR (5e-5 style) and set it."""
        if not self._steerable():
            return
        current = self.latest.get("lr")
        value = f"{current:.3g}" if current else ""
        self.app.push_screen(
            PromptDialog("Set the learning rate to (e.g. 5e-5):", parse_lr, value),
            lambda lr: lr and self.send("set_lr", {"lr": lr}),
        )

    def action_stop(self) -> None:
        """Stop the run early (after confirmation); the trainer saves and ends cleanly."""
        if not self._steerable():
            return
        question = f"Stop run {self.run.name} now? It finishes the current step, saves a checkpoint and ends."
        self.app.push_screen(
            ConfirmDialog(question, yes="Stop"), lambda ok: ok and self.send("stop")
        )

    def action_checkpoint(self) -> None:
        """Save a checkpoint at the next step."""
        if self._steerable():
            self.send("checkpoint")

    def action_eval(self) -> None:
        """Evaluate at the next step."""
        if self._steerable():
            self.send("eval")

    def action_lr_race(self) -> None:
        """Race LR factors from the latest checkpoint (a dialog asks: keep running or pause); W applies the winner, G branches from it."""
        from tuitrain.tui.screens.lrrace import start_race

        start_race(self, self.run)

    def on_race_done(self, msg: RaceDone) -> None:
        """The race's winner, for W (apply it: tuitrain.lrfind.apply) and G (branch from it)."""
        self.race, self.race_lr = (msg.start, msg.verdict, msg.record), msg.lr

    def action_apply_race(self) -> None:
        """Apply the last race's winner: x its factor on the run's schedule (tuitrain.lrfind.apply)."""
        from tuitrain.tui.screens.lrrace import apply_race

        if self._steerable():
            apply_race(self)

    def action_branch_race(self) -> None:
        """Continue the last race's winner as a full-length run (a branch of the winning branch)."""
        from tuitrain.tui.screens.lrrace import branch_race

        branch_race(self)
