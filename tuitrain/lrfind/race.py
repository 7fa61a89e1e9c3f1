"""Provides the LR race: short branches that differ only in LR from one start, and the verdict
(winner, margin, noise); the sequence that runs it is tuitrain.lrfind.sequence."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuitrain.config import load_config
from tuitrain.config.loader import Resolved
from tuitrain.lrfind.records import RECORD_DIR
from tuitrain.runs import liveness

RACE_TAG = "race:"
FACTOR_TAG = "race-factor:"


@dataclass
class Start:
    """Where the branches start: a config's initial weights, or a run's newest complete checkpoint."""

    base: Resolved
    base_lr: float  # optimizer.lr of the base config (factors multiply it)
    current_lr: float  # the LR at the start (a run's last logged lr; the configured one otherwise)
    parent: Any = None  # RunInfo of the run raced from, or None
    fork_step: int = 0
    checkpoint: Path | None = None
    label: str = ""


def start_from(source: str, runs_dir: str | Path, env: str | None = None, sets=()) -> Start:
    """A config file, or a run (id / name) with a complete checkpoint."""
    p = Path(source)
    if p.is_file() or source.startswith("pkg:"):
        r = load_config(source, env=env, sets=sets)
        lr = r.derived.scaled_lr or r.config.optimizer.lr
        return Start(r, r.config.optimizer.lr, lr, label=p.stem)
    from tuitrain.runs.lineage import pick_checkpoint
    from tuitrain.store import Store

    with Store(runs_dir) as store:
        run = liveness.get_run(store, source)
        last = store.last_values(run.id).get("lr")
    pdir = Path(run.run_dir)
    step, ckpt = pick_checkpoint(pdir)  # BranchError: no complete checkpoint yet
    if not run.terminal:
        # A live run rotates its checkpoints (save_total_limit): race from a copy of this one.
        import shutil

        copy = Path(runs_dir) / RECORD_DIR / f"{run.id}-step-{step}-{time.time_ns()}"
        shutil.copytree(ckpt, copy)
        ckpt = copy
    r = load_config(pdir / "config.yaml", env=env, sets=sets)
    cur = last.value if last is not None and math.isfinite(last.value) else r.config.optimizer.lr
    return Start(r, r.config.optimizer.lr, cur, run, step, ckpt, run.name)


def branch_config(start: Start, factor: float, steps: int, race_id: str) -> Resolved:
    """One branch's config: the base with optimizer.lr x factor, `steps` more steps, an eval at the end."""
    from tuitrain.config import parse, resolve, to_dict

    data = to_dict(start.base.config)
    data["optimizer"]["lr"] = start.base_lr * factor
    t = data["training"]
    t["max_steps"] = start.fork_step + steps
    t["eval_every"] = steps  # the verdict needs a val loss at the end (finish evaluates too)
    t["save_every"] = None
    es = data["early_stopping"]
    es["enabled"] = False  # a branch stopped early would end its race at another step
    tags = [x for x in data["run"].get("tags", []) if not x.startswith((RACE_TAG, FACTOR_TAG))]
    data["run"]["tags"] = [*tags, f"{RACE_TAG}{race_id}", f"{FACTOR_TAG}{factor:g}"]
    data["run"]["name"] = None
    return resolve(parse(data), source=start.base.source)


def launch_branch(
    start: Start, factor: float, steps: int, race_id: str, runs_dir, extra_env=None, driver=None
):
    """Start one branch; a run start goes through the branching machinery (branch.json). With a
    `driver` (tuitrain.runs.lane_queue.LaneDriver) the branch is queued in that slot's one training
    process instead of getting a process of its own."""
    from tuitrain.runs.launch import launch, launch_lane

    resolved = branch_config(start, factor, steps, race_id)
    kw: dict[str, Any] = {"name": f"{start.label}-race-x{factor:g}"}
    if start.parent is not None:
        from tuitrain.runs.lineage import BRANCH_FILE, BranchPlan

        plan = BranchPlan(
            start.parent.id,
            str(Path(start.parent.run_dir).resolve()),
            str(start.checkpoint.resolve()),
            start.fork_step,
        )
        kw.update(
            parent=start.parent.id,
            fork_step=start.fork_step,
            files={BRANCH_FILE: plan.to_json()},
        )
    if driver is not None:
        return driver.add(
            resolved, runs_dir, lambda info: launch_lane(resolved, runs_dir, info, **kw)
        )
    return launch(resolved, runs_dir, extra_env=extra_env, **kw)


@dataclass
class Lane:
    """One branch's result."""

    run_id: str
    name: str
    factor: float
    lr: float
    status: str
    val_loss: float
    trend: float  # slope of the train loss over the last part (per step; negative: still falling)
    noise: float  # standard error of the train loss level over the last part
    reason: str = ""  # why it ended, when it did not finish (its log with the error)


@dataclass
class Verdict:
    """The race's answer."""

    lanes: list[Lane]
    winner: Lane | None
    margin: float | None
    noise: float | None
    too_close: bool
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        """The `--format json` object."""
        return {
            "winner": None if self.winner is None else vars(self.winner),
            "winning_lr": None if self.winner is None else self.winner.lr,
            "winning_factor": None if self.winner is None else self.winner.factor,
            "margin": self.margin,
            "noise": self.noise,
            "too_close": self.too_close,
            "notes": self.notes,
            "lanes": [vars(lane) for lane in self.lanes],
        }


def lane_stats(losses: list[float]) -> tuple[float, float]:
    """(trend, noise) of the last third of a train loss curve: least-squares slope, and the
    standard error of its level (residual spread / sqrt(n))."""
    tail = [v for v in losses[-max(3, len(losses) // 3) :] if math.isfinite(v)]
    n = len(tail)
    if n < 3:
        return math.nan, math.nan
    xs = range(n)
    mx, my = (n - 1) / 2, sum(tail) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, tail, strict=True)) / sxx
    resid = [y - (my + slope * (x - mx)) for x, y in zip(xs, tail, strict=True)]
    return slope, statistics.pstdev(resid) / math.sqrt(n)


FINISHED = "completed"  # a branch's status when it trained all its steps (no early stopping)


def finished(lane: Lane) -> bool:
    """Whether the branch trained all its steps and has a final val loss (it can be judged)."""
    return lane.status == FINISHED and math.isfinite(lane.val_loss)


def judge(lanes: list[Lane]) -> Verdict:
    """Winner: lowest final val loss; within the noise, the steeper-falling train loss wins.
    Fewer than two finished branches: no winner (nothing to compare it with)."""
    ok = [lane for lane in lanes if finished(lane)]
    notes = [_unfinished(lane) for lane in lanes if lane not in ok]
    if not ok:
        return Verdict(lanes, None, None, None, True, [*notes, "no branch finished"])
    ranked = sorted(ok, key=lambda lane: lane.val_loss)
    noises = [lane.noise for lane in ok if math.isfinite(lane.noise)]
    noise = statistics.median(noises) if noises else None
    if len(ranked) == 1:
        why = f"only one branch finished ({ranked[0].name}): no winner, a race needs two"
        return Verdict(lanes, None, None, noise, True, [*notes, why])
    margin = ranked[1].val_loss - ranked[0].val_loss
    too_close = noise is not None and margin < 2 * noise
    winner = ranked[0]
    if too_close:
        # Within the noise the val losses do not decide: the train loss still falling fastest does.
        close = [lane for lane in ranked if lane.val_loss - ranked[0].val_loss < 2 * (noise or 0)]
        trend = [lane for lane in close if math.isfinite(lane.trend)]
        if trend:
            winner = min(trend, key=lambda lane: lane.trend)
        notes.append(
            f"too close to call: margin {margin:.3g} < 2 x noise {noise:.3g}; "
            "tie broken by the train-loss trend (race longer for a firmer answer)"
        )
    return Verdict(lanes, winner, margin, noise, too_close, notes)


def _unfinished(lane: Lane) -> str:
    what = "has no val loss" if not math.isfinite(lane.val_loss) else "did not finish"
    why = f": {lane.reason.strip()}" if lane.reason and lane.reason.strip() else ""
    return f"{lane.name} (x{lane.factor:g}) {what} ({lane.status}{why})"


def lanes_of(store: Any, race_id: str) -> list[Lane]:
    """The race's branches as they stand in the store."""
    out = []
    for run in liveness.list_runs(store):
        tags = (run.config.get("run") or {}).get("tags") or []
        if f"{RACE_TAG}{race_id}" not in tags:
            continue
        factor = next(
            (float(t[len(FACTOR_TAG) :]) for t in tags if t.startswith(FACTOR_TAG)), math.nan
        )
        losses = [p.value for p in store.tail(run.id, names=["loss"])]
        last_lr = store.last_values(run.id).get("lr")
        val = run.summary.get("final_val_loss", math.nan)
        trend, noise = lane_stats(losses)
        lr = run.derived.get("scaled_lr") or run.config["optimizer"]["lr"]
        out.append(
            Lane(
                run.id,
                run.name,
                factor,
                float(last_lr.value if last_lr is not None else lr),
                run.status,
                float(val if val is not None else math.nan),
                trend,
                noise,
                "" if run.status == FINISHED else run.exit_reason or "",
            )
        )
    return sorted(out, key=lambda lane: lane.factor)


def next_factor(factors: list[float], verdict: Verdict) -> float | None:
    """Where to extend the race: past the lowest or highest factor when that edge has the lowest
    val loss (the best LR may lie beyond what was raced), one more step of the same ratio."""
    ok = [lane for lane in verdict.lanes if finished(lane)]
    if len(ok) < 2:
        return None
    best = min(ok, key=lambda lane: lane.val_loss)
    fs = sorted(factors)
    if best.factor == fs[-1]:
        return fs[-1] * (fs[-1] / fs[-2])
    if best.factor == fs[0]:
        return fs[0] / (fs[1] / fs[0])
    return None


def winner_config(start: Start, winner_run: Any) -> Resolved:
    """The winner continued as a full run: its config (so its LR) with the base's length,
    eval/save cadence, early stopping and name back, and without the race tags."""
    from tuitrain.config import parse, resolve, to_dict

    base = to_dict(start.base.config)
    data = dict(winner_run.config)
    for group in ("training", "early_stopping"):
        data[group] = base[group]
    data["run"] = {
        **base["run"],
        "tags": [
            t for t in base["run"].get("tags", []) if not t.startswith((RACE_TAG, FACTOR_TAG))
        ],
        "name": None,
    }
    return resolve(parse(data), source=start.base.source)


def branch_winner(
    runs_dir: str | Path, start: Start, verdict: Verdict, name: str | None = None
) -> Any:
    """Branch from the winning branch's final checkpoint into a full-length run at its LR, through
    tuitrain.runs.branching (the same checks as `tuitrain branch`); returns the new RunInfo."""
    from tuitrain.runs.branching import plan_branch, start_branch
    from tuitrain.runs.lineage import BranchError
    from tuitrain.store import Store

    if verdict.winner is None:
        raise BranchError("the race has no winner to branch from")
    with Store(runs_dir) as store:
        winner = liveness.get_run(store, verdict.winner.run_id)
    branch = plan_branch(winner, winner_config(start, winner))
    return start_branch(branch, runs_dir, name or f"{start.label}-lr-x{verdict.winner.factor:g}")


def verdict_of_record(rec: dict) -> Verdict | None:
    """The record's verdict as a Verdict (None while the race runs)."""
    v = rec.get("verdict")
    if not v:
        return None
    lanes = [Lane(**lane) for lane in v["lanes"]]
    win = v.get("winner")
    winner = next((lane for lane in lanes if win and lane.run_id == win["run_id"]), None)
    return Verdict(lanes, winner, v["margin"], v["noise"], v["too_close"], v.get("notes", []))
