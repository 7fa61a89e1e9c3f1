"""Provides RunHook: the few points where a kind of run changes the training loop. The default
changes nothing; an LR range test (tuitrain.train.range_test.RangeTest) ramps the LR, reads every
step's loss, and neither evaluates nor saves."""

from __future__ import annotations

from typing import Any


class RunHook:
    """A plain training run: the loop as configured."""

    log_every: int | None = None  # None: training.log_every
    evals_and_saves = True  # evaluation, checkpoints, best weights and the final export
    node_sampling = True  # multi-node runs sample each node's machine
    diverges = True  # a non-finite loss ends the run `diverged`

    def plan(self, total: int, derived: dict) -> int:
        """The number of optimizer steps to run (and the derived values to record)."""
        return total

    def install(self, lrc: Any) -> None:
        """Adjust the LR control before the first step."""

    def rejects(self, cmd: Any) -> str | None:
        """Why a steering command does not apply to this kind of run, or None."""
        return None

    def observe(self, rows: list) -> str | None:
        """See a drained window of step metrics; a reason here ends the run `completed`."""
        return None

    def finish(self, total: int, outcome: tuple[str, str | None] | None) -> tuple[dict, tuple]:
        """(summary entries, final (status, reason)) of a run that evaluates and saves nothing."""
        return {}, outcome or ("completed", None)
