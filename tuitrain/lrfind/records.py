"""Provides LR race records: one row per race in the run store's `races` table (the same SQLite
database as the runs and sweeps): branches, LRs, scores, winner, and what was done with it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tuitrain.store.db import DB_NAME, RACES_DIR

# Under the runs directory: the checkpoint copies a race of a live run starts from, and the lane
# drivers' queues and logs (race records were JSON files here before the database held them).
RECORD_DIR = RACES_DIR
# done: a winner; incomplete: fewer than two branches finished (no winner, nothing applied);
# stopped: stopped on request; interrupted: the racing process ended; running: not over yet.
STATUSES = ("running", "done", "incomplete", "stopped", "interrupted")


def new_race_id() -> str:
    """A race id that sorts by time."""
    return time.strftime("%Y%m%d-%H%M%S") + f"-{int(time.time() * 1000) % 1000:03d}"


def new_record(start: Any, race_id: str, factors: list[float], steps: int, **extra: Any) -> dict:
    """The record as a race starts (status running, no verdict yet); `start` is a race.Start."""
    return {
        "race_id": race_id,
        "status": "running",
        "created": time.time(),
        "ended": None,
        "source": start.label,
        "config": str(start.base.source) if start.base.source else None,
        "parent": None if start.parent is None else start.parent.id,
        "fork_step": start.fork_step,
        "checkpoint": None if start.checkpoint is None else str(start.checkpoint),
        "base_lr": start.base_lr,
        "current_lr": start.current_lr,
        "factors": list(factors),
        "steps": steps,
        "branches": [],
        "verdict": None,
        "winning_lr": None,
        **extra,
    }


def write_record(runs_dir: str | Path, record: dict) -> None:
    """Replace the race's record (one transaction: a reader never sees half of it)."""
    from tuitrain.store import Store

    with Store(runs_dir) as store:
        store.races.put(record)


def _nothing_here(runs_dir: str | Path) -> bool:
    """No database and no race records of an older version to move into one: nothing to read
    (and no database created just to say so)."""
    folder = Path(runs_dir) / RECORD_DIR
    old = folder.is_dir() and any(folder.glob("*.json"))
    return not (Path(runs_dir) / DB_NAME).is_file() and not old


def read_record(runs_dir: str | Path, race_id: str) -> dict:
    """One race record; a unique prefix of the id is enough. KeyError names the fix."""
    from tuitrain.store import Store

    if _nothing_here(runs_dir):
        hits, known = [], "none yet"
    else:
        with Store(runs_dir) as store:
            exact = store.races.get(race_id)
            if exact is not None:
                return exact
            hits = store.races.with_prefix(race_id) if race_id else []
            if len(hits) == 1:
                return hits[0]
            known = ", ".join(r["race_id"] for r in store.races.all()[-5:]) or "none yet"
    why = "matches several races" if hits else "is no race"
    raise KeyError(
        f"{race_id!r} {why} in {runs_dir} (recent: {known}; `tuitrain lr-race show` lists them)"
    )


def list_records(runs_dir: str | Path) -> list[dict]:
    """Every race record of the runs directory, oldest first."""
    from tuitrain.store import Store

    if _nothing_here(runs_dir):
        return []
    with Store(runs_dir) as store:
        return store.races.all()


def finish_record(
    runs_dir: str | Path, rec: dict, verdict: Any, current_lr: float, status: str
) -> None:
    """The verdict into the record: lanes with their LRs and scores, winner, margin, noise."""
    rec["status"] = status
    rec["ended"] = time.time()
    rec["verdict"] = verdict.as_json()
    rec["winning_lr"] = None if verdict.winner is None else current_lr * verdict.winner.factor
    write_record(runs_dir, rec)


def race_progress(store: Any, run_id: str) -> str:
    """One line on the newest race raced from `run_id` ('' when none): its id, branches done /
    raced, whether the run is paused for it; once over, the winner and what was applied."""
    recs = [r for r in store.races.all() if r.get("parent") == run_id]
    if not recs:
        return ""
    rec = max(recs, key=lambda r: r.get("created") or 0)
    rid, branches = rec["race_id"], rec.get("branches") or []
    if rec["status"] == "running":
        done = 0
        for b in branches:
            try:
                done += bool(store.get_run(b["run_id"]).terminal)
            except LookupError:
                pass  # deleted meanwhile
        total = max(len(branches), len(rec.get("factors") or []))
        paused = "; the run is paused for it" if rec.get("paused") else ""
        return f"LR race {rid}: {done}/{total} branches done, {rec['steps']} steps each{paused}"
    win = (rec.get("verdict") or {}).get("winner")
    if rec["status"] != "done" or not win:
        return f"LR race {rid}: {rec['status']}, no winner ({len(branches)} branches)"
    close = " (too close)" if rec["verdict"].get("too_close") else ""
    out = f"LR race {rid}: x{win['factor']:g} won{close}"
    a = rec.get("applied")
    if a:
        kind, value = a.get("kind", "set_lr"), a.get("value", a.get("lr"))
        what = f"x{value:.3g}" if kind == "scale_lr" else f"{value:.3g}"
        at = f" @{a['step']}" if a.get("step") is not None else ""
        return f"{out}; {kind} {what} {a['status']}{at}"
    if rec.get("not_applied"):
        return f"{out}; not applied"
    return f"{out}; W applies it, G branches from it"
