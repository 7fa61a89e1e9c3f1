"""Provides EarlyStop: the patience rule on the monitored metric. Pure: the memory it updates
(best value, best step, evaluations without improvement) lives in the loop's TrainState, so a
checkpoint keeps it and a resumed run stops where the uninterrupted one would."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol


class Memory(Protocol):
    """What the rule remembers between evaluations."""

    best_value: float
    best_step: int
    bad_evals: int


@dataclass(frozen=True)
class EarlyStop:
    """Stop after `patience` evaluations without an improvement larger than `min_delta`."""

    monitor: str
    mode: str  # "min" or "max"
    min_delta: float
    patience: int
    enabled: bool

    def better(self, value: float, best: float) -> bool:
        """Whether `value` improves on `best` by more than min_delta (anything beats no best)."""
        if math.isnan(best):
            return True
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta

    def judge(self, memory: Memory, value: float, step: int) -> str:
        """Record an evaluation: "improved", "stop" (patience ran out) or "worse"."""
        if self.better(value, memory.best_value):
            memory.best_value, memory.best_step, memory.bad_evals = value, step, 0
            return "improved"
        memory.bad_evals += 1
        return "stop" if self.enabled and memory.bad_evals >= self.patience else "worse"

    def reason(self) -> str:
        """The run's end reason when the rule stops it."""
        return f"patience: no {self.monitor} improvement > {self.min_delta:g} in {self.patience} evaluations"
