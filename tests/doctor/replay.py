"""Provides the doctor's fixture helpers: load a fixture of metric rows, write it into a real
Store (whole or up to a step) and replay it as a live run, diagnosing as the rows arrive."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tuitrain.doctor import Diagnosis, diagnose, read_run, thresholds_for
from tuitrain.store import Store

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LABELS = FIXTURES / "labels.json"
T0 = 1_767_268_800.0  # fixture times are relative; pinned to this clock when written


def load(name: str) -> dict[str, Any]:
    """fixtures/<name>.json as a dict."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def labels() -> dict[str, dict[str, Any]]:
    """The hand-made labels: {fixture: {"symptoms": {id: onset step}, "note": ...}}."""
    return json.loads(LABELS.read_text())["fixtures"]


def fixture_names() -> list[str]:
    """Every fixture with a label, sorted."""
    return sorted(labels())


def rows_of(fx: dict[str, Any], upto: int | None = None) -> list[tuple[int, str, float, float]]:
    """The fixture's (step, name, value, time) rows, optionally only steps <= upto."""
    out = []
    for name, pts in fx["metrics"].items():
        for step, value, t in pts:
            if upto is None or step <= upto:
                out.append((step, name, float("nan") if value is None else value, T0 + t))
    return out


def create(store: Store, fx: dict[str, Any], status: str = "running") -> str:
    """A run record for the fixture (its config and derived values); returns the run id."""
    run = store.create_run(fx["config"], fx["derived"], name=fx["case"], status=status)
    return run.id


def steps_of(fx: dict[str, Any]) -> list[int]:
    """The logged loss steps of the fixture, in order."""
    return [p[0] for p in fx["metrics"]["loss"]]


def replay(
    store: Store, fx: dict[str, Any], every: int = 5, ended_status: str | None = None
) -> list[tuple[int, list[Diagnosis]]]:
    """Feed the fixture into a fresh run step by step and diagnose every `every` logged steps
    (and at the end), as the trainer's doctor would; returns [(step, diagnoses)]."""
    rid = create(store, fx)
    rows = sorted(rows_of(fx), key=lambda r: r[0])
    th = thresholds_for(fx["config"])
    steps = sorted({r[0] for r in rows})
    out = []
    i = 0
    for k, step in enumerate(steps):
        batch = []
        while i < len(rows) and rows[i][0] <= step:
            batch.append(rows[i])
            i += 1
        store.log_metrics(rid, batch)
        last = k == len(steps) - 1
        if k % every and not last:
            continue
        run = store.get_run(rid)
        # A replayed run has no process: say it is running (or how it ended) at the time of
        # its last row, so liveness reads the fixture's clock, not this machine's.
        status = (ended_status or fx["status"]) if last else "running"
        run = dataclasses.replace(run, status=status, started=T0, heartbeat=batch[-1][3])
        data = read_run(store, run, th.window, now=batch[-1][3])
        out.append((step, diagnose(data, th)))
    return out
