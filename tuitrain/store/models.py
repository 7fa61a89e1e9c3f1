"""Provides the store's record types (RunInfo, MetricPoint, Event, Command), statuses and errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuitrain.steering.kinds import KINDS

STATUSES = (
    "queued",
    "running",
    "completed",
    "early_stopped",
    "stopped",
    "failed",
    "diverged",
    "crashed",
    "pruned",
)
ACTIVE_STATUSES = frozenset({"queued", "running"})
TERMINAL_STATUSES = frozenset(STATUSES) - ACTIVE_STATUSES

COMMAND_KINDS = KINDS  # the one table: tuitrain.steering.kinds (a leaf)
COMMAND_STATUSES = ("pending", "applied", "rejected")


class StoreError(Exception):
    """A store operation that cannot be done as asked; the message says why and what to do."""


class RunNotFound(StoreError, LookupError):
    """No run matches the given id or name (or the name matches several runs)."""


class CommandRefused(StoreError):
    """A steering command that cannot be sent (bad kind or value, or the run has ended)."""


class InvalidValue(StoreError, ValueError):
    """An argument with a value the store cannot accept (names the argument and the fix)."""


@dataclass(frozen=True)
class MetricPoint:
    """One metric value at one optimizer step (NaN is kept as float('nan'))."""

    step: int
    name: str
    value: float
    time: float


@dataclass(frozen=True)
class Event:
    """One entry of a run's timeline."""

    id: int
    run_id: str
    time: float
    step: int | None
    kind: str
    message: str
    data: dict[str, Any] | None = None


SAMPLE_SOURCES = ("prompt", "val", "ask")  # generation.prompts, held-out validation, asked later


@dataclass(frozen=True)
class Sample:
    """One answer the model gave to one prompt at one step (an evaluation, or a checkpoint asked
    afterwards). `prompt` is the prompt as shown (its last user turn); `messages` the whole chat
    (list of {role, content}) when the run is chat/instruction; `reference` the held-out answer
    (None where none exists); scores are None where they do not apply."""

    id: int
    run_id: str
    step: int | None
    prompt_id: str
    source: str
    prompt: str
    output: str
    messages: list[dict[str, str]] | None = None
    reference: str | None = None
    tokens: int | None = None
    seconds: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    exact_match: float | None = None
    similarity: float | None = None
    repetition: float | None = None
    created: float = 0.0


@dataclass(frozen=True)
class Command:
    """A steering command: pending until the trainer applies it (at applied_step) or rejects it."""

    id: int
    run_id: str
    kind: str
    payload: dict[str, Any]
    created: float
    status: str
    claimed: float | None = None
    finished: float | None = None
    applied_step: int | None = None
    reason: str = ""

    @property
    def done(self) -> bool:
        """True once applied or rejected."""
        return self.status != "pending"


@dataclass
class RunInfo:
    """A run record as stored (config, derived and summary are plain dicts)."""

    id: str
    name: str
    status: str
    config: dict[str, Any]
    derived: dict[str, Any]
    created: float
    started: float | None = None
    ended: float | None = None
    pid: int | None = None
    host: str | None = None
    heartbeat: float | None = None
    exit_reason: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    sweep_id: str | None = None
    last_step: int | None = None
    run_dir: Path = Path()
    pid_start: int | None = None  # start time of `pid` (/proc/PID/stat field 22), when recorded
    step_advanced: float | None = None  # wall time the step last advanced (written by RunWriter)
    step_time_s: float | None = None  # median seconds per optimizer step so far (RunWriter)
    parent: str | None = None  # lineage: the run this one was branched from (tuitrain branch)
    fork_step: int | None = None  # ...and the parent's step it continues from
    phase: str | None = None  # the trainer's phase between steps: eval | save (None: stepping)
    phase_since: float | None = None  # wall time the phase began
    # Computed when read (tuitrain.runs.liveness.observe), never stored: a running run whose
    # step has not advanced (or whose heartbeat fell silent) for longer than the stall threshold.
    stalled: bool = False
    last_step_age_s: float | None = None

    @property
    def terminal(self) -> bool:
        """True when the run has ended (any status but queued/running)."""
        return self.status in TERMINAL_STATUSES
