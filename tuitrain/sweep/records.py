"""Provides sweep records: one row per sweep in the run store's `sweeps` table (the same SQLite
database as the runs), written only by the sweep process, read by the CLI and the TUI; trials
themselves are ordinary runs (runs.sweep_id)."""

from __future__ import annotations

import os
import re
import secrets
import socket
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuitrain.runs.liveness import observe_sweep, reconcile_sweeps
from tuitrain.runs.process import proc_start
from tuitrain.store.db import SWEEPS_DIR

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tuitrain.store import Store

ACTIVE = ("running",)


class SweepNotFound(LookupError):
    """No sweep matches the given id or name (or the name is ambiguous)."""


@dataclass
class TrialRecord:
    """One trial: its Optuna number, its run (None when its config was invalid), params, outcome."""

    number: int
    params: dict[str, Any]
    run_id: str | None = None
    run_name: str | None = None
    state: str = "running"  # running | complete | pruned | failed
    value: float | None = None
    run_status: str | None = None
    error: str | None = None
    pruned_step: int | None = None
    prune_reason: str | None = None  # why it was pruned (median, or the doctor's evidence)
    started: float = field(default_factory=time.time)
    ended: float | None = None


@dataclass
class SweepRecord:
    """A sweep: spec, study location, status, and its trials."""

    id: str
    name: str
    method: str
    metric: str
    direction: str
    n_trials: int
    parallel: int
    study_name: str
    storage: str
    spec: dict[str, Any]
    spec_file: str | None = None
    status: str = "running"  # running | completed | stopped | failed | crashed
    pid: int | None = None
    # Start time of the sweep process (/proc/PID/stat field 22): a reused pid does not look alive.
    pid_start: int | None = None
    host: str = field(default_factory=socket.gethostname)
    created: float = field(default_factory=time.time)
    ended: float | None = None
    error: str | None = None
    trials: list[TrialRecord] = field(default_factory=list)
    importance: dict[str, float] = field(default_factory=dict)

    def ranked(self) -> list[TrialRecord]:
        """Trials with a value, best first, then the rest in trial order."""
        scored = [t for t in self.trials if t.value is not None]
        scored.sort(key=lambda t: t.value if self.direction == "minimize" else -t.value)  # type: ignore[operator]
        return scored + [t for t in self.trials if t.value is None]

    def best(self) -> TrialRecord | None:
        """The completed trial with the best objective value."""
        done = [t for t in self.ranked() if t.state == "complete" and t.value is not None]
        return done[0] if done else None

    def counts(self) -> dict[str, int]:
        """Trials per state."""
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state] = out.get(t.state, 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        """Plain data (JSON)."""
        return asdict(self)


def sweeps_dir(runs_dir: str | Path) -> Path:
    """Folder for the logs of detached sweeps (and, before schema 2, the JSON sweep records)."""
    return Path(runs_dir) / SWEEPS_DIR


def new_sweep_id(name: str) -> str:
    """A path-safe, sortable sweep id: sw-<name>-<yymmdd-HHMMSS>-<hex>."""
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", name).strip("-").lower()[:24] or "sweep"
    return f"sw-{slug}-{time.strftime('%y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


@contextmanager
def _store(where: Store | str | os.PathLike[str]) -> Iterator[Store]:
    """The given Store, or one opened (and closed) on a runs directory."""
    from tuitrain.store import Store

    if isinstance(where, Store):
        yield where
        return
    with Store(where) as s:
        yield s


def save(rec: SweepRecord, where: Store | str | os.PathLike[str]) -> None:
    """Write the whole record (one transaction: readers never see half of it)."""
    if rec.pid is not None and rec.pid_start is None and rec.host == socket.gethostname():
        rec.pid_start = proc_start(rec.pid)
    with _store(where) as s:
        s.sweeps.put(rec.as_dict())


def _from_dict(d: dict[str, Any]) -> SweepRecord:
    trials = [TrialRecord(**t) for t in d.get("trials") or []]
    known = {k: v for k, v in d.items() if k in SweepRecord.__dataclass_fields__ and k != "trials"}
    known["spec"] = known.get("spec") or {}
    known["importance"] = known.get("importance") or {}
    return SweepRecord(**known, trials=trials)


def _read(row: dict[str, Any]) -> SweepRecord:
    return _from_dict(observe_sweep(row))


def list_sweeps(
    where: Store | str | os.PathLike[str], reconcile: bool = False
) -> list[SweepRecord]:
    """All sweeps of a runs directory, newest first; a dead sweep process reads crashed (and,
    with reconcile -- a writer such as a CLI command -- is stored crashed)."""
    from tuitrain.store import DB_NAME, Store

    if not isinstance(where, Store) and not (Path(where) / DB_NAME).is_file():
        return []  # nothing was ever run here: do not create a database just to say so
    with _store(where) as s:
        if reconcile:
            reconcile_sweeps(s)
        return [_read(row) for row in s.sweeps.all()]


def get_sweep(
    where: Store | str | os.PathLike[str], ref: str, reconcile: bool = False
) -> SweepRecord:
    """A sweep by id, unique name or unique id prefix; SweepNotFound otherwise (reconcile: as
    in list_sweeps)."""
    from tuitrain.store import DB_NAME, Store

    runs_dir = where.runs_dir if isinstance(where, Store) else Path(where)
    if isinstance(where, Store) or (Path(where) / DB_NAME).is_file():
        with _store(where) as s:
            if reconcile:
                reconcile_sweeps(s)
            row = s.sweeps.get(ref) if isinstance(ref, str) else None
            if row is not None:
                return _read(row)
            sweeps = [_read(r) for r in s.sweeps.all()]
        for pick in (lambda r: r.name == ref, lambda r: r.id.startswith(ref)):
            hits = [r for r in sweeps if pick(r)] if ref else []
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                ids = ", ".join(r.id for r in hits)
                raise SweepNotFound(f"{ref!r} matches several sweeps ({ids}); give the id")
    raise SweepNotFound(f"no sweep {ref!r} in {runs_dir} (see `tuitrain sweeps`)")


def is_sweep(where: Store | str | os.PathLike[str], ref: str) -> bool:
    """Whether ref names a sweep (used by `tuitrain show` to pick between run and sweep)."""
    try:
        get_sweep(where, ref)
    except SweepNotFound:
        return False
    return True
