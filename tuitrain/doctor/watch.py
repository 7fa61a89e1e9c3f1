"""Provides DoctorWatch: the trainer's rank 0 diagnoses its own run every `doctor.interval_s`, writes
one `doctor` event per diagnosis that opens, changes severity or closes (so the history exists
with no TUI open), and applies the opted-in `doctor.auto` remedies as commands with who: doctor."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tuitrain.doctor.diagnose import diagnose
from tuitrain.doctor.diagnosis import Diagnosis
from tuitrain.doctor.history import EVENT_KIND
from tuitrain.doctor.rundata import read_run
from tuitrain.doctor.thresholds import Thresholds

PIN_ON = ("loss_spike", "exploding_gradients")  # diagnoses whose remedy may be a rollback
STATES = ("open", "update", "closed")  # of a diagnosis; "auto" events record actions taken
WHO = "doctor"
# A spike or an explosion explains these while it is open (or recovering, i.e. still in its
# hold-off): they are attached to it as consequences, not opened as problems of their own.
CAUSES = ("loss_spike", "exploding_gradients")
CONSEQUENCES = ("oscillation", "slow_convergence", "underfitting", "throughput_drop")
# doctor.auto entry -> the diagnoses it answers. Spikes count only while not recovered.
AUTO_RULES: dict[str, tuple[str, ...]] = {
    "scale_lr_on_spike": ("exploding_gradients", "loss_spike"),
    "scale_lr_on_oscillation": ("oscillation",),
    "decay_lr_on_stall": ("late_stall",),
    "stop_on_overfit": ("overfitting",),
}

Emit = Callable[[str, str, "int | None", "dict | None"], None]


@dataclass(frozen=True)
class Transition:
    """A change in the set of open diagnoses: opened, changed (severity) or closed."""

    state: str  # open | update | closed
    diagnosis: Diagnosis
    reason: str | None = None  # why it closed: recovered | superseded (history.CLOSED_REASONS)
    peak: Diagnosis | None = None  # an opening's worst evidence while it was pending, if worse


def event_data(t: Transition) -> dict[str, Any]:
    """The `doctor` event's data: the diagnosis as JSON plus its state (and why it closed)."""
    out = {"state": t.state, **t.diagnosis.to_dict()}
    if t.reason is not None:
        out["reason"] = t.reason
    if t.peak is not None:
        out["peak"] = {
            "severity": t.peak.severity,
            "evidence": t.peak.evidence,
            "values": t.peak.values,
        }
    return out


def event_message(t: Transition) -> str:
    """One line for the timeline and train.log."""
    d = t.diagnosis
    if t.state == "closed":
        return f"{d.id} closed (was {d.severity}): {t.reason or 'recovered'}"
    verb = "opened" if t.state == "open" else "now"
    start = f" from step {d.step}" if d.step is not None else ""
    return f"{d.id} {verb} {d.severity}{start}: {d.evidence}"


def open_from_events(events: list[Any]) -> dict[str, Diagnosis]:
    """The diagnoses a run's `doctor` events leave open (a resumed trainer carries on from them)."""
    from tuitrain.doctor.diagnosis import Action

    out: dict[str, Diagnosis] = {}
    for ev in events:
        data = ev.data or {}
        if ev.kind != EVENT_KIND or "id" not in data or data.get("state") not in STATES:
            continue
        if data["state"] == "closed":
            out.pop(data["id"], None)
            continue
        act = data.get("action")
        action = Action(**act) if isinstance(act, dict) else None
        out[data["id"]] = Diagnosis(
            data["id"],
            data.get("severity", "info"),
            data.get("step"),
            data.get("evidence", ""),
            data.get("remedy", ""),
            action,
            data.get("values") or {},
        )
    return out


def transitions(before: dict[str, Diagnosis], now: list[Diagnosis]) -> list[Transition]:
    """What changed between the open set `before` and the diagnoses found `now`."""
    out = []
    current = {d.id: d for d in now}
    for d in now:
        old = before.get(d.id)
        if old is None:
            out.append(Transition("open", d))
        elif old.severity != d.severity:
            out.append(Transition("update", d))
    out += [Transition("closed", d) for i, d in before.items() if i not in current]
    return out


class DoctorWatch:
    """Diagnoses one run from inside its training process (rank 0 only) at a bounded rate."""

    def __init__(
        self,
        store: Any,
        run_id: str,
        group: Any,
        emit: Emit,
        clock: Callable[[], float] = time.monotonic,
        sync: Callable[[], Any] | None = None,
        on_command: Callable[[], Any] | None = None,
    ) -> None:
        self.store, self.run_id, self.group, self.emit, self.clock = (
            store,
            run_id,
            group,
            emit,
            clock,
        )
        self.th = Thresholds.from_group(group)
        self.open = open_from_events(store.events(run_id))
        self.auto_sent = sum(
            1 for c in store.commands(run_id) if (c.payload or {}).get("who") == WHO
        )
        self.last = -float("inf")
        self.failed = False
        self.pending: dict[str, int] = {}  # id -> step first found, until it persists and opens
        self.pending_worst: dict[str, Diagnosis] = {}  # id -> its worst while pending (the peak)
        self.absent: dict[str, int] = {}  # open id -> step since it was last found (hold-off)
        self.attached: dict[str, str] = {}  # consequence id -> the cause it is attached to
        self.sync = sync  # makes buffered metrics visible before the final diagnosis
        self.on_command = on_command  # the poller's wake: a sent command applies next step

    def final(self, step: int | None) -> list[Transition]:
        """The last diagnosis, after the buffered metrics are written; then release the store."""
        try:
            if self.sync is not None:
                self.sync()
            return self.check(step, act=False, final=True)  # the run is over: nothing applies
        finally:
            self.store.close()

    def tick(self, step: int) -> list[Transition]:
        """Diagnose if `interval_s` has passed since the last time (call it at each flush)."""
        if self.clock() - self.last < self.group.interval_s:
            return []
        return self.check(step)

    def check(
        self, step: int | None = None, act: bool = True, final: bool = False
    ) -> list[Transition]:
        """Diagnose now; emit one event per transition; apply automatic actions (when `act`).

        Episodes, not flickers: a warning (or info) opens only once found at every check over
        `persist_steps` steps (critical evidence opens at once), an open diagnosis closes only
        after `hold_steps` steps without it (returning meanwhile continues the same episode), and
        while a spike or explosion is open its symptoms are attached to it as consequences. The
        `final` check (the run is over) opens what it finds and closes what is gone."""
        self.last = self.clock()
        try:
            run = self.store.get_run(self.run_id)
            data = read_run(self.store, run, self.th.window)
            found = diagnose(data, self.th)
        except Exception as exc:  # the doctor must never end a training run
            if not self.failed:
                self.failed = True
                self.emit(
                    "warning", f"doctor: diagnosis failed ({type(exc).__name__}: {exc})", step, None
                )
            return []
        at = step if step is not None else (data.last_step or 0)
        changes = self._episodes({d.id: d for d in found}, at, final)
        for t in changes:
            self.emit(EVENT_KIND, event_message(t), step, event_data(t))
            if t.state == "closed":
                self.open.pop(t.diagnosis.id, None)
                self.absent.pop(t.diagnosis.id, None)
            else:
                self.open[t.diagnosis.id] = t.diagnosis
        for t in changes:
            if t.state != "closed":
                self._pin(t.diagnosis, step)
                if act:
                    self._auto(t.diagnosis, step)
        return changes

    def _episodes(self, found: dict[str, Diagnosis], at: int, final: bool) -> list[Transition]:
        """The transitions of this check (see `check`); attaches consequences as it goes."""
        out: list[Transition] = []
        causes = [c for c in CAUSES if c in self.open or c in found]
        seen = set(found)
        for sid in [i for i in found if i in CONSEQUENCES]:
            cause = self.attached.get(sid) or (causes[0] if causes else None)
            if cause is None:
                continue
            d = found.pop(sid)
            if sid in self.open:  # it was open on its own: the cause explains it now
                out.append(Transition("closed", self.open[sid], "superseded"))
            if sid not in self.attached:
                self.attached[sid] = cause
                self.emit(
                    EVENT_KIND,
                    f"{sid} attached to {cause} as a consequence: {d.evidence}",
                    at,
                    {"state": "consequence", "cause": cause, **d.to_dict()},
                )
        for sid in [i for i in self.attached if i not in seen]:
            self.attached.pop(sid)  # gone (or its cause is over and it went with it)
        for d in found.values():
            old = self.open.get(d.id)
            if old is not None:
                self.absent.pop(d.id, None)
                if old.severity != d.severity:
                    out.append(Transition("update", d))
                continue
            first = self.pending.setdefault(d.id, at)
            worst = self.pending_worst.get(d.id)
            if worst is None or d.rank > worst.rank:
                self.pending_worst[d.id] = worst = d
            if final or d.severity == "critical" or at - first >= self.group.persist_steps:
                self.pending.pop(d.id, None)
                self.pending_worst.pop(d.id, None)
                out.append(Transition("open", d, peak=worst if worst.rank > d.rank else None))
        for pid in [i for i in self.pending if i not in found]:
            self.pending.pop(pid)  # it did not persist: no episode
            self.pending_worst.pop(pid, None)
        closing = {t.diagnosis.id for t in out if t.state == "closed"}
        for oid, d in list(self.open.items()):
            if oid in found or oid in closing:
                continue
            since = self.absent.setdefault(oid, at)
            if final or at - since >= self.group.hold_steps:
                out.append(Transition("closed", d, "recovered"))
        return out

    def _pin(self, d: Diagnosis, step: int | None) -> None:
        """A spike opened: keep the last checkpoint before it past save_total_limit, so the
        rollback (branch from there, LR scaled) is still possible after later saves rotate."""
        if d.id not in PIN_ON or d.severity == "info" or not d.step:
            return
        from tuitrain.runs.lineage import pin_before

        why = f"the last checkpoint before {d.id} at step {d.step} (for a rollback)"
        try:
            at = pin_before(self.store.run_dir(self.run_id), d.step, why)
        except OSError as exc:  # a full disk must cost the pin, never the run
            self.emit("warning", f"doctor: could not pin a checkpoint: {exc}", step, None)
            return
        if at is not None:
            self.emit(
                "checkpoint",
                f"kept step-{at} past save_total_limit: {why}",
                step,
                {"pinned": at, "diagnosis": d.id},
            )

    def _auto(self, d: Diagnosis, step: int | None) -> None:
        """Send the diagnosis's action as a command when doctor.auto allows it (capped per run)."""
        rule = next((r for r in self.group.auto if d.id in AUTO_RULES[r]), None)
        if rule is None or d.action is None or not d.action.steerable or d.severity == "info":
            return
        if self.auto_sent >= self.group.auto_max:
            return
        payload = {**d.action.payload, "who": WHO, "diagnosis": d.id, "rule": rule}
        try:
            cid = self.store.send_command(self.run_id, d.action.kind, payload)
        except Exception as exc:  # refused (e.g. the run is ending): say so once, go on
            self.emit(EVENT_KIND, f"auto {d.action.label} for {d.id} refused: {exc}", step, None)
            return
        self.auto_sent += 1
        if self.on_command is not None:
            self.on_command()
        self.emit(
            EVENT_KIND,
            f"auto ({rule}): {d.action.label} for {d.id}, command {cid}"
            f" ({self.auto_sent}/{self.group.auto_max} this run)",
            step,
            {
                "state": "auto",
                "id": d.id,
                "command_id": cid,
                "rule": rule,
                "action": d.action.label,
            },
        )


def trainer_watch(
    run_dir: Any, cfg: Any, report: Any, on_command: Callable[[], Any] | None = None
) -> DoctorWatch | None:
    """The watch for the trainer's rank 0 (None on other ranks or with doctor.enabled false)."""
    if not getattr(report, "active", False) or not cfg.doctor.enabled:
        return None
    from tuitrain.store import Store

    writer = getattr(report, "writer", None)
    return DoctorWatch(
        Store(run_dir.parent),
        run_dir.name,
        cfg.doctor,
        report.event,
        sync=getattr(writer, "flush", None),
        on_command=on_command,
    )
