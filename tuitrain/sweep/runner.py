"""Provides SweepRunner: asks Optuna for trials, launches each as an ordinary run (one per slot),
reports its live objective metric for median pruning, optionally prunes trials the doctor finds
diverging (pruning.doctor), and survives failed trials and Ctrl-C."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuitrain.config import ConfigError, parse, resolve
from tuitrain.runs import liveness
from tuitrain.sweep import records
from tuitrain.sweep.records import SweepRecord, TrialRecord
from tuitrain.sweep.slots import Slot, make_slots, slot_overrides, visible_gpus
from tuitrain.sweep.space import base_data, check_space, describe_params, trial_config
from tuitrain.sweep.spec import SweepSpec
from tuitrain.sweep.study import (
    create_study,
    distributions,
    importance,
    optuna_module,
    redact,
    storage_url,
)

DONE_OK = ("completed", "early_stopped")


@dataclass
class Active:
    """A trial whose run is in flight."""

    trial: Any
    rec: TrialRecord
    slot: Slot
    last_step: int = -1
    values: list[tuple[int, float]] = field(default_factory=list)
    stop_sent: float | None = None  # when we asked it to stop (pruned, or sweep interrupted)
    killed: bool = False
    stop_cmd: int | None = None  # id of our stop command, to tell "stopped by us" from "finished"
    doctor_step: int | None = None  # the run's step at the doctor's last look (pruning.doctor)
    doctor_failed: bool = False  # a diagnosis raised: no more doctor checks for this trial
    prune_reason: str | None = None


class SweepRunner:
    """Runs one sweep to the end (n_trials done, or stopped)."""

    def __init__(
        self,
        spec: SweepSpec,
        spec_file: str | Path | None,
        runs_dir: str | Path,
        say: Callable[[str], None] = print,
        poll_s: float = 0.5,
        stop_grace_s: float = 30.0,
    ) -> None:
        self.spec = spec
        self.spec_file = str(spec_file) if spec_file else None
        self.runs_dir = Path(runs_dir)
        self.say = say
        self.poll_s = poll_s
        self.stop_grace_s = stop_grace_s
        self.stopping = False
        self.hard = False
        self.active: list[Active] = []
        self.asked = 0
        self.notice = ""  # set by the signal handler, printed by the loop
        self._prepare()

    def _prepare(self) -> None:
        # Everything that can be wrong with the spec or the base config fails here, before any run.
        spec = self.spec
        self.base = base_data(spec, self.spec_file)
        resolve(parse(self.base, file=self.spec_file), self.spec_file)
        check_space(spec, self.base, self.spec_file)
        optuna_module()
        if spec.method == "grid":
            try:
                size = spec.grid_size()
            except ValueError as exc:
                raise ConfigError([records_issue("space", str(exc), self.spec_file)]) from None
            self.n_trials = min(spec.n_trials or size, size)
        else:
            self.n_trials = spec.n_trials or 10
        try:
            self.slots = make_slots(spec.parallel, spec.gpus_per_trial, visible_gpus())
        except ValueError as exc:
            raise ConfigError([records_issue("gpus_per_trial", str(exc), self.spec_file)]) from None
        self.free = list(self.slots)
        name = spec.name or (Path(self.spec_file).stem if self.spec_file else "sweep")
        sid = records.new_sweep_id(name)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        try:
            storage = storage_url(spec.storage, self.runs_dir)
        except ValueError as exc:
            raise ConfigError([records_issue("storage", str(exc), self.spec_file)]) from None
        self.rec = SweepRecord(
            id=sid, name=name, method=spec.method, metric=spec.objective.metric,
            direction=spec.objective.direction(), n_trials=self.n_trials, parallel=len(self.slots),
            study_name=spec.study_name or sid, storage=redact(storage), spec=spec.model_dump(mode="json"),
            spec_file=str(Path(self.spec_file).resolve()) if self.spec_file else None,  # promote may run elsewhere
            pid=os.getpid(),
        )  # fmt: skip
        self.study = create_study(spec, storage, self.rec.study_name)
        self.dists = distributions(spec)
        self.tags = list((self.base.get("run") or {}).get("tags") or [])

    # -- public -----------------------------------------------------------------------------

    def request_stop(self, hard: bool = False) -> None:
        """Stop launching; ask running trials to stop (hard: kill them now)."""
        self.stopping = True
        self.hard = self.hard or hard

    def run(self, handle_signals: bool = True) -> SweepRecord:
        """Run trials until n_trials are done or a stop is requested; returns the record."""
        from tuitrain.store import Store

        self.store = Store(self.runs_dir)
        records.save(self.rec, self.store)
        restore = self._install_signals() if handle_signals else None
        gpus = ",".join(g for s in self.slots for g in s.gpus) or "cpu"
        self.say(
            f"sweep {self.rec.id}: {self.spec.method}, {self.n_trials} trials, {len(self.slots)} at a time ({gpus}), objective {self.rec.direction} {self.rec.metric}"
        )
        try:
            while True:
                if self.notice:
                    self.say(self.notice)
                    self.notice = ""
                while not self.stopping and self.free and self.asked < self.n_trials:
                    self._start(self.free.pop(0))
                for a in list(self.active):
                    self._poll(a)
                if not self.active and (self.stopping or self.asked >= self.n_trials):
                    break
                time.sleep(self.poll_s)
        except BaseException as exc:
            # An unexpected error must not leave trainers running unattended.
            self.rec.error = f"{type(exc).__name__}: {exc}"
            self.request_stop(hard=True)
            for a in list(self.active):
                self._stop_run(a, hard=True)
                self._fail(a.trial, a.rec, f"sweep failed: {self.rec.error}")
            self._end("failed")
            raise
        finally:
            if restore:
                restore()
        self._end("stopped" if self.stopping else "completed")
        return self.rec

    # -- internals --------------------------------------------------------------------------

    def _install_signals(self) -> Callable[[], None] | None:
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_signal(signum: int, _frame: object) -> None:
            # Only flags here: printing or touching SQLite inside a handler can re-enter them.
            hard = self.stopping  # a second Ctrl-C means: now
            self.request_stop(hard=hard)
            self.notice = (
                "stopping sweep: killing running trials"
                if hard
                else "stopping sweep: asking running trials to stop (Ctrl-C again to kill)"
            )

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        return lambda: [signal.signal(s, h) for s, h in old.items()] and None

    def _start(self, slot: Slot) -> None:
        from tuitrain.runs.launch import LaunchError, launch

        trial = self.study.ask(self.dists)
        self.asked += 1
        params = dict(trial.params)
        rec = TrialRecord(number=trial.number, params=params)
        self.rec.trials.append(rec)
        run_name = f"{self.rec.name}-t{trial.number:03d}"
        extra = {
            **slot_overrides(slot, self._base_port()),
            "run.name": run_name,
            "run.tags": [*self.tags, f"sweep:{self.rec.id}", f"trial:{trial.number}"],
        }
        label = f"trial {trial.number} ({describe_params(params)})"
        try:
            resolved = trial_config(self.base, params, extra, self.spec_file)
            info = launch(
                resolved, self.runs_dir, name=run_name, sweep_id=self.rec.id, extra_env=slot.env
            )
        except (ConfigError, LaunchError, OSError, ValueError) as exc:
            # A bad sampled combination (or a launch error) fails this trial, not the sweep.
            self._fail(trial, rec, str(exc))
            self.say(f"{label}: failed before launch: {exc}")
            self.free.append(slot)
            records.save(self.rec, self.store)
            return
        rec.run_id, rec.run_name = info.id, info.name
        self.active.append(Active(trial, rec, slot))
        self.say(f"{label}: started run {info.id}")
        records.save(self.rec, self.store)

    def _base_port(self) -> int:
        port = (self.base.get("launch") or {}).get("main_process_port", 29500)
        return int(port) if isinstance(port, int) else 29500

    def _poll(self, a: Active) -> None:
        run_id = a.rec.run_id
        assert run_id is not None
        points = self.store.tail(run_id, names=[self.rec.metric], after_step=a.last_step)
        for p in points:
            a.last_step = max(a.last_step, p.step)
            if p.value is None or not math.isfinite(p.value):
                continue
            a.values.append((p.step, p.value))
            if a.stop_sent is None and self.spec.prune_enabled():
                a.trial.report(p.value, p.step)
                if a.trial.should_prune():
                    a.rec.pruned_step = p.step
                    a.prune_reason = (
                        f"pruned by sweep {self.rec.id} at step {p.step}: {self.rec.metric} "
                        "worse than the median of earlier trials"
                    )
                    self.say(
                        f"trial {a.rec.number}: pruning at step {p.step} ({self.rec.metric}={p.value:.4g} is worse than the median)"
                    )
                    self._stop_run(a)
        # The store's liveness model turns a trainer that died before starting into `failed`
        # and a dead or silent one into `crashed`: both end the trial here.
        run = liveness.get_run(self.store, run_id)
        if run.status not in ("queued", "running"):
            self._finish(a, run)
            return
        if self.spec.pruning.doctor and a.stop_sent is None and not self.stopping:
            self._doctor(a, run)
        if self.stopping and a.stop_sent is None:
            self._stop_run(a, hard=self.hard)
        elif a.stop_sent is not None and not a.killed:
            grace = (
                self.spec.pruning.grace_s if a.rec.pruned_step is not None else self.stop_grace_s
            )
            if self.hard or time.time() - a.stop_sent > grace:
                self._stop_run(a, hard=True)

    def _doctor(self, a: Active, run: Any) -> None:
        """pruning.doctor: diagnose the running trial once per new step; stop it (as pruned) on
        a critical divergence. The doctor must never end the sweep: an error turns it off for
        this trial, once said."""
        from tuitrain.doctor.prune import check_run, prune_reason

        step = run.last_step
        if step is None or step == a.doctor_step or a.doctor_failed:
            return
        a.doctor_step = step
        try:
            d = check_run(self.store, run)
        except Exception as exc:  # noqa: BLE001
            a.doctor_failed = True
            self.say(f"trial {a.rec.number}: doctor check failed ({type(exc).__name__}: {exc})")
            return
        if d is None:
            return
        a.rec.pruned_step = step
        a.prune_reason = prune_reason(d, step)
        self.say(f"trial {a.rec.number}: {a.prune_reason}")
        self._stop_run(a)

    def _stop_run(self, a: Active, hard: bool = False) -> None:
        from tuitrain.runs.launch import stop

        if a.stop_sent is None:
            a.stop_sent = time.time()
            try:
                # Graceful: the trainer evaluates, saves and ends (as early_stopped) at its next step.
                a.stop_cmd = self.store.send_command(a.rec.run_id, "stop")
            except Exception as exc:  # noqa: BLE001 -- a run that already ended refuses commands
                self.say(f"trial {a.rec.number}: stop command not sent ({exc})")
        if hard and not a.killed:
            a.killed = True
            stop(liveness.get_run(self.store, a.rec.run_id), grace_s=5.0, runs_dir=self.runs_dir)

    def _finish(self, a: Active, run: Any) -> None:
        optuna = optuna_module()
        TS = optuna.trial.TrialState
        self._poll_tail(a)
        rec = a.rec
        rec.run_status, rec.ended = run.status, time.time()
        ours = self._stopped_by_us(a, run)
        if ours and rec.pruned_step is not None:
            reason = a.prune_reason or f"pruned by sweep {self.rec.id} at step {rec.pruned_step}"
            self.store.set_status(run.id, "pruned", reason=reason)
            rec.run_status, rec.state, rec.prune_reason = "pruned", "pruned", reason
            rec.value = a.values[-1][1] if a.values else None
            self.study.tell(a.trial, state=TS.PRUNED)
            self.say(f"trial {rec.number}: pruned (run {run.id})")
        elif ours:
            # Interrupted by the sweep's own stop: its value is partial, so Optuna learns nothing.
            self._fail(
                a.trial, rec, f"stopped by the sweep at step {a.last_step} (run {run.status})"
            )
            rec.state = "stopped"
            self.say(f"trial {rec.number}: stopped (run {run.id})")
        elif run.status in DONE_OK and a.values:
            vals = [v for _, v in a.values]
            if self.spec.objective.reduce == "last":
                value = vals[-1]
            else:
                value = min(vals) if self.rec.direction == "minimize" else max(vals)
            rec.state, rec.value = "complete", value
            self.study.tell(a.trial, value)
            self._refresh_importance()
            best = self.rec.best()
            tag = " (best so far)" if best is rec else ""
            self.say(f"trial {rec.number}: {run.status}, {self.rec.metric}={value:.5g}{tag}")
        else:
            if run.status in DONE_OK:
                names = ", ".join(self.store.metric_names(run.id)) or "none"
                why = f"run {run.status} but never logged {self.rec.metric} (logged: {names}); set objective.metric to one of them"
            else:
                why = f"run {run.status}" + (f": {run.exit_reason}" if run.exit_reason else "")
            self._fail(a.trial, rec, why)
            self.say(f"trial {rec.number}: {rec.state} ({why}); see {run.run_dir / 'train.log'}")
        self.active.remove(a)
        self.free.append(a.slot)
        records.save(self.rec, self.store)

    def _refresh_importance(self) -> None:
        # Live importance for the sweep view; fANOVA's cost grows with trials, so later only
        # every 10th completion (the final value is computed at the end regardless).
        n = self.rec.counts().get("complete", 0)
        if n >= 3 and (n < 30 or n % 10 == 0):
            try:
                self.rec.importance = importance(self.study)
            except Exception:  # noqa: BLE001 -- a nicety; never stop a sweep over it
                pass

    def _stopped_by_us(self, a: Active, run: Any) -> bool:
        # A run that failed on its own, or finished before our stop reached it, keeps its outcome.
        if run.status in ("failed", "diverged") or a.stop_sent is None:
            return False
        if a.killed:
            return True
        if a.stop_cmd is not None and self.store.get_command(a.stop_cmd).status == "applied":
            return True
        return run.status == "stopped"

    def _poll_tail(self, a: Active) -> None:
        # Metrics flushed just before the process ended still count toward the objective.
        for p in self.store.tail(a.rec.run_id, names=[self.rec.metric], after_step=a.last_step):
            a.last_step = max(a.last_step, p.step)
            if p.value is not None and math.isfinite(p.value):
                a.values.append((p.step, p.value))

    def _fail(self, trial: Any, rec: TrialRecord, why: str) -> None:
        optuna = optuna_module()
        rec.state, rec.error, rec.ended = "failed", why, time.time()
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def _wait_gone(self, deadline_s: float = 30.0) -> None:
        # A stopped trainer sets its final status a moment before its processes exit; the sweep
        # ends only once they are gone (killed after the deadline), so nothing outlives it.
        from tuitrain.runs.launch import stop
        from tuitrain.runs.process import processes_alive

        ids = [t.run_id for t in self.rec.trials if t.run_id and t.state in ("stopped", "pruned")]
        runs = [liveness.get_run(self.store, i) for i in ids]
        end = time.monotonic() + deadline_s
        while runs and time.monotonic() < end:
            runs = [r for r in runs if processes_alive(r)]
            if runs:
                time.sleep(0.2)
        for r in runs:
            stop(r, grace_s=5.0, runs_dir=self.runs_dir, after_end=True)

    def _end(self, status: str) -> None:
        if status != "completed":
            self._wait_gone()
        self.rec.status, self.rec.ended = status, time.time()
        try:
            self.rec.importance = importance(self.study)
        except Exception:  # noqa: BLE001 -- importance is a nicety; never lose the record over it
            self.rec.importance = {}
        records.save(self.rec, self.store)
        c = self.rec.counts()
        summary = ", ".join(f"{n} {k}" for k, n in sorted(c.items())) or "no trials"
        self.say(f"sweep {self.rec.id} {status}: {summary}")
        best = self.rec.best()
        if best is not None:
            self.say(
                f"best: trial {best.number} run {best.run_id} {self.rec.metric}={best.value:.5g} {describe_params(best.params)}"
            )


def records_issue(path: str, msg: str, file: str | None) -> Any:
    """A ConfigIssue for a sweep-level problem."""
    from tuitrain.config import ConfigIssue

    return ConfigIssue(path, msg, "", file=file)
