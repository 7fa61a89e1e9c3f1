"""Provides the LR race: short branches that differ only in LR from one start, and the verdict (winner, margin, noise)."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuitrain.config import load_config
from tuitrain.config.loader import Resolved
from tuitrain.lrfind import lanes
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

        copy = Path(runs_dir) / "races" / f"{run.id}-step-{step}-{time.time_ns()}"
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
    `driver` (tuitrain.lrfind.lanes.LaneDriver) the branch is queued in that slot's one training
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


def new_race_id() -> str:
    """A race id that sorts by time."""
    return time.strftime("%Y%m%d-%H%M%S") + f"-{int(time.time() * 1000) % 1000:03d}"


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


def judge(lanes: list[Lane]) -> Verdict:
    """Winner: lowest final val loss; within the noise, the steeper-falling train loss wins."""
    ok = [lane for lane in lanes if math.isfinite(lane.val_loss)]
    notes = [
        f"{lane.name} (x{lane.factor:g}) has no val loss ({lane.status})"
        for lane in lanes
        if lane not in ok
    ]
    if not ok:
        return Verdict(lanes, None, None, None, True, [*notes, "no branch produced a val loss"])
    ranked = sorted(ok, key=lambda lane: lane.val_loss)
    noises = [lane.noise for lane in ok if math.isfinite(lane.noise)]
    noise = statistics.median(noises) if noises else None
    if len(ranked) == 1:
        return Verdict(lanes, ranked[0], None, noise, True, [*notes, "only one branch finished"])
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
            )
        )
    return sorted(out, key=lambda lane: lane.factor)


RECORD_DIR = "races"  # under the runs directory; also holds the checkpoint copies of live runs


def record_path(runs_dir: str | Path, race_id: str) -> Path:
    """RUNS_DIR/races/<race_id>.json: the race's own record (branches, LRs, scores, winner)."""
    return Path(runs_dir) / RECORD_DIR / f"{race_id}.json"


def write_record(runs_dir: str | Path, record: dict) -> None:
    """Replace the race record atomically (a reader never sees half a file)."""
    import json
    import os

    path = record_path(runs_dir, record["race_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2, default=_json_default))
    os.replace(tmp, path)


def _json_default(v: Any) -> Any:
    return str(v) if isinstance(v, Path) else None


def read_record(runs_dir: str | Path, race_id: str) -> dict:
    """One race record; a unique prefix of the id is enough. KeyError names the fix."""
    import json

    d = Path(runs_dir) / RECORD_DIR
    exact = record_path(runs_dir, race_id)
    if exact.is_file():
        return json.loads(exact.read_text())
    hits = sorted(d.glob(f"{race_id}*.json")) if d.is_dir() else []
    if len(hits) == 1:
        return json.loads(hits[0].read_text())
    known = ", ".join(r["race_id"] for r in list_records(runs_dir)[-5:]) or "none yet"
    why = "matches several races" if hits else "is no race"
    raise KeyError(
        f"{race_id!r} {why} in {d} (recent: {known}; `tuitrain lr-race show` lists them)"
    )


def list_records(runs_dir: str | Path) -> list[dict]:
    """Every race record under the runs directory, oldest first."""
    import json

    d = Path(runs_dir) / RECORD_DIR
    out = []
    for f in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            out.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            continue  # being replaced right now, or not ours
    return out


def new_record(start: Start, race_id: str, factors: list[float], steps: int, **extra: Any) -> dict:
    """The record as a race starts (status running, no verdict yet)."""
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


def next_factor(factors: list[float], verdict: Verdict) -> float | None:
    """Where to extend the race: past the lowest or highest factor when that edge has the lowest
    val loss (the best LR may lie beyond what was raced), one more step of the same ratio."""
    ok = [lane for lane in verdict.lanes if math.isfinite(lane.val_loss)]
    if len(ok) < 2:
        return None
    best = min(ok, key=lambda lane: lane.val_loss)
    fs = sorted(factors)
    if best.factor == fs[-1]:
        return fs[-1] * (fs[-1] / fs[-2])
    if best.factor == fs[0]:
        return fs[0] / (fs[1] / fs[0])
    return None


def run_race(
    start: Start,
    factors: list[float],
    steps: int,
    runs_dir: str | Path,
    parallel: int = 1,
    on_launch: Any = None,
    race_id: str | None = None,
    should_stop: Any = None,
    extend: int = 0,
    on_round: Any = None,
    record: dict | None = None,
) -> tuple[str, Verdict]:
    """Run the branches (N at a time, one slot each: a GPU set, or a share of the CPU cores) and judge them.

    `extend` more branches may follow, one at a time, while the best val loss sits at an edge of
    the factors raced (`next_factor`). `on_launch(factor, RunInfo)` is told of each start,
    `on_round(verdict, factors)` of each judgement; `should_stop()` True sends every running
    branch a stop and returns what finished so far. The race record (`record`, or a new one)
    is kept in RUNS_DIR/races/<race_id>.json throughout.
    """
    race_id = race_id or (record or {}).get("race_id") or new_race_id()
    rec = record if record is not None else new_record(start, race_id, factors, steps)
    rec["race_id"] = race_id
    write_record(runs_dir, rec)
    raced = list(factors)
    stopped = False
    drivers: dict[int, Any] | None = {} if lanes.one_process(start.base.config) else None
    try:
        stopped = _run_lanes(
            start, raced, steps, runs_dir, parallel, race_id, should_stop, rec, on_launch, drivers
        )
        verdict = _judge_race(runs_dir, race_id)
        if on_round is not None:
            on_round(verdict, list(raced))
        while not stopped and extend > 0:
            f = next_factor(raced, verdict)
            if f is None:
                break
            extend -= 1
            raced.append(f)
            rec["factors"] = sorted(raced)
            stopped = _run_lanes(
                start, [f], steps, runs_dir, parallel, race_id, should_stop, rec, on_launch, drivers
            )
            verdict = _judge_race(runs_dir, race_id)
            if on_round is not None:
                on_round(verdict, list(raced))
    except BaseException:
        rec.update(status="interrupted", ended=time.time())
        write_record(runs_dir, rec)
        raise
    finally:
        for d in (drivers or {}).values():
            d.close()  # each slot's process exits after its queued branches
    if drivers:
        rec["processes"] = sum(d.started for d in drivers.values())
    finish_record(runs_dir, rec, verdict, start, "stopped" if stopped else "done")
    return race_id, verdict


def _judge_race(runs_dir: str | Path, race_id: str) -> Verdict:
    from tuitrain.store import Store

    with Store(runs_dir) as store:
        return judge(lanes_of(store, race_id))


def finish_record(runs_dir, rec: dict, verdict: Verdict, start: Start, status: str) -> None:
    """The verdict into the record: lanes with their LRs and scores, winner, margin, noise."""
    rec["status"] = status
    rec["ended"] = time.time()
    rec["verdict"] = verdict.as_json()
    rec["winning_lr"] = None if verdict.winner is None else start.current_lr * verdict.winner.factor
    write_record(runs_dir, rec)


def _run_lanes(
    start, factors, steps, runs_dir, parallel, race_id, should_stop, rec, on_launch, drivers=None
) -> bool:
    """Run `factors` as branches, `parallel` at a time; True when should_stop() ended them early.
    `drivers` (slot index -> LaneDriver, kept across rounds): each slot trains its branches in
    one process (None: a process per branch)."""
    from tuitrain.store import CommandRefused, Store
    from tuitrain.sweep.slots import make_slots, visible_gpus

    slots = make_slots(parallel, 1, visible_gpus())
    queue, busy = list(factors), {}  # slot index -> run id
    with Store(runs_dir) as store:
        while queue or busy:
            if should_stop is not None and should_stop():
                for rid in busy.values():
                    if liveness.get_run(store, rid).status == "queued" and drivers is not None:
                        # Waiting for its slot's process: it must not start (the driver skips it).
                        store.set_status(rid, "stopped", "the race was stopped before it started")
                        continue
                    try:
                        store.send_command(rid, "stop")
                    except CommandRefused:
                        pass  # that branch ended meanwhile
                return True
            for i, rid in list(busy.items()):
                if liveness.get_run(store, rid).terminal:
                    del busy[i]
            for slot in slots:
                if queue and slot.index not in busy:
                    f = queue.pop(0)
                    driver = None
                    if drivers is not None:
                        driver = drivers.setdefault(
                            slot.index,
                            lanes.LaneDriver(
                                Path(runs_dir) / "races" / lanes.LANES_DIR,
                                f"{race_id}-slot{slot.index}",
                                slot.env,
                            ),
                        )
                    info = launch_branch(start, f, steps, race_id, runs_dir, slot.env, driver)
                    busy[slot.index] = info.id
                    rec["branches"].append(
                        {
                            "factor": f,
                            "lr": start.current_lr * f,
                            "run_id": info.id,
                            "name": info.name,
                        }
                    )
                    write_record(runs_dir, rec)
                    if on_launch is not None:
                        on_launch(f, info)
            time.sleep(0.5)
    return False


def pause_run(run_id: str, runs_dir: str | Path, grace_s: float = 300.0) -> Any:
    """Pause a live run for a race: SIGTERM (tuitrain.runs.launch.stop: it saves a checkpoint and ends
    as stopped, freeing its device); `resume_run` continues it in the same run afterwards.
    Returns the stopped RunInfo; RuntimeError when it was not running or had to be killed."""
    from tuitrain.runs.launch import stop
    from tuitrain.store import Store

    with Store(runs_dir) as store:
        run = liveness.get_run(store, run_id)
    if run.terminal:
        raise RuntimeError(f"run {run.id} is {run.status}: nothing to pause")
    how = stop(run, grace_s=grace_s, runs_dir=runs_dir)
    if how != "stopped":
        raise RuntimeError(f"run {run.id} could not be paused ({how})")
    with Store(runs_dir) as store:
        return liveness.get_run(store, run_id)


def resume_run(run_id: str, runs_dir: str | Path) -> Any:
    """Continue a paused run from its pause checkpoint (tuitrain.runs.launch.resume)."""
    from tuitrain.runs.launch import resume

    return resume(run_id, runs_dir)


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
