"""Provides the typed messages that thread workers post to screens (bursts collapse via can_replace)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message


@dataclass
class RunsChanged(Message):
    """What changed in the runs directory since the last poll (rows are updated, not redrawn)."""

    order: list[str] | None  # every run id, newest first; None: the set of runs is unchanged
    changed: dict[str, Any]  # run id -> RunInfo of the rows that changed

    def can_replace(self, message: Message) -> bool:
        """Never collapsed: each one carries rows the next may not."""
        return False


@dataclass
class RunSnapshot(Message):
    """One poll of a run: its record, latest metric values, downsampled series, commands."""

    run_id: str
    run: Any  # RunInfo
    latest: dict[str, float] | None  # None: unchanged (sent together with series)
    last_step: int | None
    commands: list[Any]  # list[Command]
    series: dict[str, list[tuple[int, float, float, float]]] | None = None  # None: unchanged
    race: str = ""  # the newest LR race from this run (tuitrain.lrfind.records.race_progress)

    def can_replace(self, message: Message) -> bool:
        """Collapse queued snapshots of the same run, never dropping series data."""
        return (
            isinstance(message, RunSnapshot)
            and message.run_id == self.run_id
            and (self.series is not None or message.series is None)
        )


@dataclass
class RunMissing(Message):
    """The run a monitor watches is not (or no longer) in the store: say why in the header."""

    run_ref: str
    error: str


@dataclass
class NewEvents(Message):
    """Events newer than the last seen id (incremental; never collapsed)."""

    run_id: str
    events: list[Any]  # list[Event]


@dataclass
class DerivedReady(Message):
    """Derived values (or the error) for the editor's config, computed off the main thread."""

    generation: int
    resolved: Any = None  # Resolved
    error: Any = None  # ConfigError

    def can_replace(self, message: Message) -> bool:
        """Only the newest computation matters."""
        return isinstance(message, DerivedReady)


@dataclass
class CompareLoaded(Message):
    """Runs to compare with their downsampled series per metric."""

    runs: list[Any]
    series: dict[str, dict[str, list[tuple[int, float, float, float]]]] = field(
        default_factory=dict
    )
    events: dict[str, list[Any]] = field(default_factory=dict)  # run id -> its lr/stop events
    doctor: dict[str, list[dict]] = field(default_factory=dict)  # run id -> doctor history


@dataclass
class Launched(Message):
    """A launch from the editor finished: the new run's id, or why it failed."""

    run_id: str | None
    error: str | None = None


@dataclass
class RaceDone(Message):
    """The monitor's LR race has a winner (W sets its LR, G branches from it)."""

    start: Any  # tuitrain.lrfind.race's start of the race
    verdict: Any
    record: dict
    lr: float


@dataclass
class Diagnosed(Message):
    """The doctor's open findings of the monitored run (read by the monitor's poll thread)."""

    run_id: str
    diagnoses: list
    # tuitrain.doctor.history.combined: the open diagnoses, then every closed episode (dicts)
    history: list = field(default_factory=list)


@dataclass
class SamplesLoaded(Message):
    """The samples screen's grid (tuitrain.samples.select.grid) for its runs at `which` steps."""

    runs: list[Any]  # RunInfo, in the screen's order
    grid: Any  # tuitrain.samples.select.Grid
    which: str | int
    best: dict[str, int | None] = field(default_factory=dict)  # run id -> its best sample step
    error: str = ""  # a run could not be read (deleted meanwhile): said in the status line

    def can_replace(self, message: Message) -> bool:
        """Only the newest grid matters."""
        return isinstance(message, SamplesLoaded)


@dataclass
class AskDone(Message):
    """A checkpoint asked from the samples screen has answered (stored as a sample), or why not."""

    prompt: str
    runs: str  # the asked runs' names, for the message
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # e.g. best weights not kept: newest answered
