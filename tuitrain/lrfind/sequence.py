"""Provides the LR race sequence, the one both `tuitrain lr-race` and the monitor's R key run:
pause the raced run (optional), find the start, record the race, race the branches (N slots at a
time, more past a winning edge), judge, resume the paused run."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuitrain.lrfind.apply import clamp_steps
from tuitrain.lrfind.race import (
    Start,
    Verdict,
    judge,
    lanes_of,
    launch_branch,
    next_factor,
    start_from,
)
from tuitrain.lrfind.records import (
    RECORD_DIR,
    finish_record,
    new_race_id,
    new_record,
    write_record,
)
from tuitrain.runs import lane_queue, liveness


@dataclass
class RaceResult:
    """A finished race: where it started, its verdict and its record (status done / incomplete /
    stopped); `resumed`: the paused run's RunInfo after its resume (None: nothing was paused)."""

    race_id: str
    start: Start
    verdict: Verdict
    record: dict
    resumed: Any = None


def is_config(source: str) -> bool:
    """Whether a race source names a config file (else a run id / name)."""
    return Path(source).is_file() or source.startswith("pkg:")


def race(
    source: str,
    runs_dir: str | Path,
    factors: Sequence[float],
    steps: int,
    *,
    pause: bool = False,
    parallel: int = 1,
    extend: int = 0,
    env: str | None = None,
    sets: Sequence[str] = (),
    on_pause: Callable[[Any], None] | None = None,
    on_start: Callable[[Start, dict], None] | None = None,
    on_launch: Callable[[float, Any], None] | None = None,
) -> RaceResult:
    """The whole race: pause the run (with `pause`; it saves a checkpoint and stops), start from
    `source`'s newest complete checkpoint (or a config's initial weights), record the race, race
    the branches and judge them, then resume the paused run whatever the outcome -- except on
    KeyboardInterrupt, which stops the running branches and leaves the run paused.

    RuntimeError / BranchError / RunNotFound / CommandRefused before the race starts (nothing
    raced, nothing recorded). `on_pause(run)`, `on_start(start, record)` and
    `on_launch(factor, RunInfo)` report progress."""
    paused = None
    if pause:
        if is_config(source):
            raise RuntimeError("pausing needs a live run to race from (not a config)")
        from tuitrain.store import Store

        with Store(runs_dir) as store:
            run = liveness.get_run(store, source)
        if on_pause is not None:
            on_pause(run)
        paused = pause_run(run.id, runs_dir)
    start = start_from(source, runs_dir, env, sets)
    asked, note = steps, ""
    if start.parent is not None:
        # A branch never trains past the run's own end (its max step).
        steps, note = clamp_steps(steps, start.parent.derived.get("total_steps"), start.fork_step)
        if steps < 1:
            if paused is not None:
                resume_run(paused.id, runs_dir)
            raise RuntimeError(
                f"the race would start at step {start.fork_step}, where the run ends "
                f"(its max step): nothing left to race"
            )
    race_id = new_race_id()
    rec = new_record(start, race_id, list(factors), steps, paused=paused is not None)
    if note:
        rec.update(steps_asked=asked, steps_note=note)
    if on_start is not None:
        on_start(start, rec)
    resumed, resume = None, paused is not None
    try:
        _, verdict = run_race(
            start, list(factors), steps, runs_dir, parallel, on_launch, race_id,
            extend=extend, record=rec,
        )  # fmt: skip
    except KeyboardInterrupt:
        resume = False  # the user interrupted: the run stays paused (`tuitrain resume` it)
        stop_branches(runs_dir, race_id)
        raise
    finally:
        if resume:
            resumed = resume_run(paused.id, runs_dir)
            rec["resumed"] = True
            write_record(runs_dir, rec)
    return RaceResult(race_id, start, verdict, rec, resumed)


def stop_branches(runs_dir: str | Path, race_id: str) -> None:
    """Send a stop to every branch of the race that still runs."""
    from tuitrain.store import CommandRefused, Store

    with Store(runs_dir) as store:
        for lane in lanes_of(store, race_id):
            try:
                store.send_command(lane.run_id, "stop")
            except CommandRefused:
                pass  # that branch had already ended


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
    is kept in the store's races table throughout (tuitrain.lrfind.records); it ends `done`
    with a winner, `incomplete` when fewer than two branches finished, `stopped` on request.
    """
    race_id = race_id or (record or {}).get("race_id") or new_race_id()
    rec = record if record is not None else new_record(start, race_id, factors, steps)
    rec["race_id"] = race_id
    write_record(runs_dir, rec)
    raced = list(factors)
    stopped = False
    drivers: dict[int, Any] | None = {} if lane_queue.one_process(start.base.config) else None
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
    # Fewer than two finished branches judge nothing: no winner, so nothing can be applied.
    status = "stopped" if stopped else "done" if verdict.winner is not None else "incomplete"
    finish_record(runs_dir, rec, verdict, start.current_lr, status)
    return race_id, verdict


def _judge_race(runs_dir: str | Path, race_id: str) -> Verdict:
    from tuitrain.store import Store

    with Store(runs_dir) as store:
        return judge(lanes_of(store, race_id))


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
                            lane_queue.LaneDriver(
                                Path(runs_dir) / RECORD_DIR / lane_queue.LANES_DIR,
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
