"""Provides Steering: what the trainer does with the commands due after an optimizer step (the
store's, the config's steering.schedule, and rank 0's SIGTERM), the same on every rank.

LR commands change the LR control's multiplier (the schedule keeps its shape); stop, eval and
checkpoint become a Decision the loop acts on. Acks and rejections go to the store on rank 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuitrain.steering.protocol import LR_KINDS, SIGTERM_KIND, SteerCommand


@dataclass
class Decision:
    """What the commands of one step ask of the loop."""

    eval: bool = False
    save: bool = False
    end: tuple[str, str] | None = None  # (status, reason)
    restore_best: bool = False  # the doctor's stop: end on the best weights


def scheduled_commands(cfg) -> dict[int, list[SteerCommand]]:
    """steering.schedule by step: every rank knows it, so each applies it at the same step with
    no collective."""
    out: dict[int, list[SteerCommand]] = {}
    for entry in cfg.steering.schedule:
        kind, value = entry.action
        out.setdefault(entry.step, []).append(
            SteerCommand(None, kind, value, {"source": "schedule"})
        )
    return out


class Steering:
    """Applies the commands due after each step (see the module docstring)."""

    def __init__(self, poller, scheduled: dict[int, list[SteerCommand]], lrc, report, hook, rank):
        self.poller, self.scheduled, self.lrc = poller, scheduled, lrc
        self.report, self.hook, self.rank = report, hook, rank

    def after(self, step: int, sigterm: bool) -> Decision:
        """Poll (with N ranks: a broadcast every `sync_every` steps, ~0.25 s apart, a host sync
        on every rank) and apply what is due after `step`."""
        d = Decision()
        for cmd in self.scheduled.get(step, []) + self.poller.poll(step, sigterm):
            reason = self.hook.rejects(cmd)
            if reason is not None:
                self.poller.reject(cmd, reason, step)
                continue
            if cmd.kind in LR_KINDS:
                if not self._lr(cmd, step):
                    continue
            elif cmd.kind == "stop":
                by = _by(cmd)
                d.end = (
                    "early_stopped",
                    "user" if cmd.id is not None else f"{by}: stop at step {step}",
                )
                d.restore_best = bool(cmd.payload.get("restore_best"))  # the doctor's stop
                d.eval = d.save = True
                self.poller.ack(cmd, step, "stopping: evaluate, save, end as early_stopped")
            elif cmd.kind == SIGTERM_KIND:
                d.end, d.save = ("stopped", "SIGTERM"), True
            elif cmd.kind == "eval":
                d.eval = True
                self.poller.ack(cmd, step, "evaluating now")
            elif cmd.kind == "checkpoint":
                d.save = True
                self.poller.ack(cmd, step, "checkpointing now")
            print(
                f"[rank {self.rank}] step {step}: applied {cmd.kind}"
                + (f" {cmd.value:g}" if cmd.value is not None else ""),
                flush=True,
            )
        return d

    def _lr(self, cmd: SteerCommand, step: int) -> bool:
        """Apply set_lr / scale_lr; False when rejected (e.g. the schedule is at 0 here)."""
        old = self.lrc.lr(step)
        try:
            if cmd.kind == "set_lr":
                self.lrc.set_lr(cmd.value, step)
            else:
                self.lrc.scale_lr(cmd.value)
        except ValueError as exc:
            self.poller.reject(cmd, str(exc), step)
            return False
        new = self.lrc.lr(step)
        mult = f"multiplier {self.lrc.multiplier:.4g}"
        if cmd.kind == "set_lr" and self.lrc.in_warmup(step):
            # During the warmup the set LR is its target (LRControl.set_lr): say so.
            warm = self.lrc.warmup_end()
            what, pct = self.lrc.warmup_progress(step)
            msg = (
                f"{cmd.value:.3g} is the target (reached at step {warm}); {what} "
                f"{pct:.0f}%: {new:.3g} now ({mult})"
            )
        else:
            msg = f"lr {old:.3g} -> {new:.3g} from step {step + 1} ({mult})"
        self.poller.ack(cmd, step, msg)
        self.report.event(
            "lr",
            f"{cmd.kind} by {_by(cmd)}: {msg}",
            step,
            {"command_id": cmd.id, "lr": new, "multiplier": self.lrc.multiplier},
        )
        return True


def _by(cmd: SteerCommand) -> str:
    return "schedule" if cmd.payload.get("source") == "schedule" else f"command {cmd.id}"
