"""Provides RangeTest: the hook that makes the training loop an LR range test (run.kind lr_find);
the curve, the stop rule and the suggestion are tuitrain.lrfind.curve's (torch-free)."""

from __future__ import annotations

from typing import Any

from tuitrain.config.schema import TrainConfig
from tuitrain.lrfind.curve import Smoother, ramp_lr, suggest
from tuitrain.steering.kinds import LR_KINDS
from tuitrain.train.hooks import RunHook


class RangeTest(RunHook):
    """The training loop as an LR range test: the LR ramps exponentially from lr_find.min_lr to
    max_lr over lr_find.steps, every step's loss is read (its stop rule: one host sync per step),
    the run ends completed when the smoothed loss blows up, and the summary gets the suggestion.
    No evaluation, checkpoint or export, and LR commands are refused."""

    log_every = 1
    evals_and_saves = False
    node_sampling = False
    diverges = False  # a non-finite loss is the blow-up the test looks for

    def __init__(self, cfg: TrainConfig) -> None:
        self.lf = cfg.lr_find
        self.pretrained = bool(cfg.model.name_or_path)
        self.smoother = Smoother(stop_factor=self.lf.stop_factor)
        self.points: list[tuple[float, float]] = []

    def plan(self, total: int, derived: dict) -> int:
        """lr_find.steps steps; the derived values keep the full run's total for reference."""
        derived.update(full_total_steps=total, total_steps=self.lf.steps)
        return self.lf.steps

    def install(self, lrc: Any) -> None:
        """The ramp replaces the schedule."""
        lf = self.lf
        lrc.ramp = lambda step: ramp_lr(step, lf.min_lr, lf.max_lr, lf.steps)

    def rejects(self, cmd: Any) -> str | None:
        """LR commands: the test ramps the LR itself."""
        return "a range test ramps the LR itself" if cmd.kind in LR_KINDS else None

    def observe(self, rows: list) -> str | None:
        """Record (lr, loss) of each step; the stop rule's reason once the loss blows up. Every
        rank sees the same reduced losses, so every rank stops at the same step."""
        for r in rows:
            self.points.append((r.lr, r.loss))
            self.smoother.add(r.lr, r.loss)
            if self.smoother.stop_reason:
                return f"range test ended: {self.smoother.stop_reason}"
        return None

    def finish(self, total: int, outcome: tuple[str, str | None] | None) -> tuple[dict, tuple]:
        """The suggestion for the summary, and the run's end."""
        sug = suggest(self.points, pretrained=self.pretrained)
        summary = {"lr_find": {k: v for k, v in sug.as_json().items() if k != "points"}}
        return summary, outcome or ("completed", f"range test ran its {total} steps")
