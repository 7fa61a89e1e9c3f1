"""Provides the grid of samples to show: prompts down the side, one column per (run, step), with
the reference answer beside them. One rule for `--step N|best|last|all` serves the CLI and the TUI."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tuitrain.store import RunInfo, Sample, Store

WHICH = ("all", "best", "last")  # or a step number


@dataclass(frozen=True)
class Column:
    """One (run, step) column of the grid."""

    run_id: str
    run_name: str
    step: int

    @property
    def label(self) -> str:
        """`name@step`."""
        return f"{self.run_name}@{self.step}"


@dataclass
class PromptRow:
    """One prompt across the grid's columns (None where that column has no answer to it)."""

    prompt_id: str
    prompt: str
    source: str
    reference: str | None
    cells: list[Sample | None] = field(default_factory=list)


@dataclass
class Grid:
    """Prompts down the side, columns across; `missing` says which asked steps have no samples."""

    columns: list[Column]
    rows: list[PromptRow]
    missing: list[str] = field(default_factory=list)


def parse_which(text: str) -> str | int:
    """`all`, `best`, `last` or a step number; raises ValueError naming the choices."""
    t = str(text).strip().lower()
    if t in WHICH:
        return t
    try:
        n = int(t)
    except ValueError:
        raise ValueError(
            f"--step {text!r} is not a step: give a step number, best, last or all"
        ) from None
    if n < 0:
        raise ValueError(f"--step {n} is negative: give a step number >= 0, best, last or all")
    return n


def best_step(run: RunInfo, steps: list[int]) -> int | None:
    """The sample step of the run's summary best_step (the early-stop monitor's best), snapped to
    the newest sample step at or before it; None without samples or without a best_step."""
    if not steps:
        return None
    best = run.summary.get("best_step") if run.summary else None
    if best is None:
        return None
    at_or_before = [s for s in steps if s <= int(best)]
    return at_or_before[-1] if at_or_before else steps[0]


def known_best(store: Store, run: RunInfo, steps: list[int]) -> int | None:
    """The sample step of the run's best evaluation when the run knows one: its summary's
    best_step (best_step), else the sample step with the lowest val_loss; None otherwise."""
    b = best_step(run, steps)
    return b if b is not None else _lowest_val_loss(store, run, steps)


def pick_steps(store: Store, run: RunInfo, which: str | int) -> list[int]:
    """The run's sample steps that `which` selects (empty when it has none there); `best` is
    known_best, else the last step."""
    steps = store.samples.steps(run.id)
    if not steps:
        return []
    if which == "all":
        return steps
    if which == "last":
        return steps[-1:]
    if which == "best":
        b = known_best(store, run, steps)
        return [b] if b is not None else steps[-1:]
    return [which] if which in steps else []


def _lowest_val_loss(store: Store, run: RunInfo, steps: list[int]) -> int | None:
    at = set(steps)
    pts = {p.step: p.value for p in store.tail(run.id, ["val_loss"]) if p.step in at}
    finite = {s: v for s, v in pts.items() if math.isfinite(v)}
    return min(finite, key=lambda s: (finite[s], s)) if finite else None


def grid(store: Store, runs: list[RunInfo], which: str | int = "all") -> Grid:
    """The samples of these runs at the selected steps, prompts matched by prompt_id (prompts
    asked of a checkpoint later come after the evaluation prompts)."""
    columns: list[Column] = []
    missing: list[str] = []
    for run in runs:
        steps = pick_steps(store, run, which)
        if not steps:
            missing.append(f"{run.name}: no samples" + ("" if which == "all" else f" at {which}"))
        columns += [Column(run.id, run.name, s) for s in steps]
    by_col = {(c.run_id, c.step): i for i, c in enumerate(columns)}
    rows: dict[str, PromptRow] = {}
    wanted = {c.step for c in columns}
    for s in store.samples.for_runs([r.id for r in runs], steps=sorted(wanted)):
        i = by_col.get((s.run_id, s.step))
        if i is None:
            continue
        row = rows.get(s.prompt_id)
        if row is None:
            row = rows[s.prompt_id] = PromptRow(
                s.prompt_id, s.prompt, s.source, s.reference, [None] * len(columns)
            )
        if row.reference is None and s.reference is not None:
            row.reference = s.reference
        row.cells[i] = s  # a later answer at the same step (asked again) replaces the earlier
    order = {"prompt": 0, "val": 1, "ask": 2}
    ordered = sorted(rows.values(), key=lambda r: order.get(r.source, 3))  # stable: first seen
    return Grid(columns, ordered, missing)
