"""Provides sweep records: one JSON file per sweep under <runs_dir>/sweeps/, written only by the
sweep process (atomically), read by the CLI and the TUI; trials themselves are ordinary runs."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuitrain.store.store import pid_alive

SWEEPS_DIR = "sweeps"
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
    """Folder holding the sweep records of a runs directory."""
    return Path(runs_dir) / SWEEPS_DIR


def new_sweep_id(name: str) -> str:
    """A path-safe, sortable sweep id: sw-<name>-<yymmdd-HHMMSS>-<hex>."""
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", name).strip("-").lower()[:24] or "sweep"
    return f"sw-{slug}-{time.strftime('%y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def save(rec: SweepRecord, runs_dir: str | Path) -> Path:
    """Write the record atomically (readers never see half a file)."""
    folder = sweeps_dir(runs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{rec.id}.json"
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(rec.as_dict(), indent=1, default=str), encoding="utf-8")
    tmp.replace(path)
    return path


def _from_dict(d: dict[str, Any]) -> SweepRecord:
    trials = [TrialRecord(**t) for t in d.get("trials", [])]
    known = {k: v for k, v in d.items() if k in SweepRecord.__dataclass_fields__ and k != "trials"}
    return SweepRecord(**known, trials=trials)


def load(path: str | Path) -> SweepRecord:
    """Read one record; a running sweep whose process is gone (on this host) reads as crashed."""
    rec = _from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    if (
        rec.status in ACTIVE
        and rec.host == socket.gethostname()
        and not (rec.pid and pid_alive(rec.pid))
    ):
        rec.status = "crashed"
    return rec


def list_sweeps(runs_dir: str | Path) -> list[SweepRecord]:
    """All sweeps of a runs directory, newest first."""
    folder = sweeps_dir(runs_dir)
    if not folder.is_dir():
        return []
    out = []
    for p in folder.glob("*.json"):
        try:
            out.append(load(p))
        except (OSError, ValueError, TypeError):
            continue  # a foreign or damaged file must not hide the other sweeps
    out.sort(key=lambda r: r.created, reverse=True)
    return out


def get_sweep(runs_dir: str | Path, ref: str) -> SweepRecord:
    """A sweep by id, unique id prefix or unique name."""
    # Only a plain file name may become a path: "../x" or "a/b" must not leave the sweeps folder.
    if ref and Path(ref).name == ref and not ref.startswith("."):
        path = sweeps_dir(runs_dir) / f"{ref}.json"
        if path.is_file():
            return load(path)
    sweeps = list_sweeps(runs_dir)
    for pick in (lambda r: r.name == ref, lambda r: r.id.startswith(ref)):
        hits = [r for r in sweeps if pick(r)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            ids = ", ".join(r.id for r in hits)
            raise SweepNotFound(f"{ref!r} matches several sweeps ({ids}); give the id")
    raise SweepNotFound(f"no sweep {ref!r} in {runs_dir} (see `tuitrain sweeps`)")


def is_sweep(runs_dir: str | Path, ref: str) -> bool:
    """Whether ref names a sweep (used by `tuitrain show` to pick between run and sweep)."""
    try:
        get_sweep(runs_dir, ref)
    except SweepNotFound:
        return False
    return True
