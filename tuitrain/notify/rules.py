"""Provides Watcher: which events notify. It polls a runs directory's store (runs, their doctor and
eval events, sweeps, LR races) and turns what changed into Notifications: one per episode (a run's
end, a stall until the step advances again, a doctor diagnosis until it closes), rate-limited per
run (a run's end always goes out), honouring the user's settings and each run's `notify:` group."""

from __future__ import annotations

import collections
import math
import time
from typing import Any

from tuitrain.notify import message as msg
from tuitrain.notify.liveness import run_state
from tuitrain.notify.settings import SEVERITIES, Settings

ACTIVE = ("queued", "running")
END_EVENTS = ("completed", "failed", "diverged", "crashed", "early_stopped", "stopped")
GRACE_S = 120.0  # a run that ended this long before the notifier started is still news
ROLLBACK_ON = ("loss_spike", "exploding_gradients")  # the doctor's rollback remedies these
# Runs that are part of a sweep or an LR race (or an LR range test) report through their sweep or
# race; on their own they notify only what needs a person.
MEMBER_EVENTS = ("crashed", "stalled")


def member(run: Any) -> bool:
    """Whether the run is a sweep trial, a race branch or an LR range test."""
    cfg = run.config.get("run") or {}
    tags = cfg.get("tags") or []
    return (
        bool(run.sweep_id)
        or cfg.get("kind") == "lr_find"
        or any(str(t).startswith("race:") for t in tags)
    )


def run_wants(run: Any, event: str) -> bool:
    """The run's own `notify:` group: enabled, and its events list (None: the user's choice)."""
    group = run.config.get("notify") or {}
    if group.get("enabled") is False:
        return False
    events = group.get("events")
    if events is not None and event not in events:
        return False
    return not member(run) or event in MEMBER_EVENTS


class Watcher:
    """Turns a runs directory's changes into notifications; call poll() every few seconds."""

    def __init__(self, store: Any, settings: Settings, sent: set[str] | None = None,
                 now: float | None = None, on_suppress: Any = None,
                 baseline: bool = False, record: bool = True) -> None:  # fmt: skip
        self.store, self.settings = store, settings
        self.sent = set(sent or ())  # keys already handled (from the notify log)
        self.start = time.time() if now is None else now
        self.on_suppress = on_suppress  # called with each notification the rate limit holds back
        self.baseline = baseline  # the first poll only learns the state (a TUI that just opened)
        self.record = record  # write a dead run's crashed status (the daemon) or only read (a TUI)
        self.fps: dict[str, tuple] = {}
        self.status: dict[str, str] = {}
        self.after: dict[str, int] = {}  # last event id read per run
        self.stall_ep: dict[str, int] = {}  # stall episodes so far per run
        self.stalled: set[str] = set()
        self.diag_open: dict[str, set[str]] = {}  # diagnoses notified in their current episode
        self.best: dict[str, float] = {}
        self.times: dict[str, collections.deque[float]] = {}
        self.held: dict[str, int] = {}  # notifications the rate limit held back, per run
        self.sweeps: dict[str, str] = {}
        self.races: dict[str, str] = {}  # race id -> status at the last poll
        self.live = False  # whether a run, sweep or race was live at the last poll
        self.first = True

    # ---- the poll ----------------------------------------------------------------------------

    def poll(self, now: float | None = None) -> list[msg.Notification]:
        """What to send now (already filtered and rate-limited)."""
        now = time.time() if now is None else now
        out: list[msg.Notification] = []
        live = self._runs(now, out)
        live |= self._sweeps(out)
        live |= self._races(out)
        if self.first and self.baseline:
            out = []
        self.live, self.first = live, False
        return [n for n in out if self._admit(n, now)]

    def _runs(self, now: float, out: list[msg.Notification]) -> bool:
        live = False
        for rid, fp in self.store.run_fingerprints():
            status, ended = fp[1], fp[3]
            old = self.fps.get(rid)
            self.fps[rid] = fp
            if status not in ACTIVE and old == fp:
                continue
            if status not in ACTIVE and old is None and (ended or 0) < self.start - GRACE_S:
                self.status[rid] = status  # ended long before we started: not news
                continue
            try:
                run, state, age, limit = run_state(self.store, rid, now, self.record)
            except LookupError:
                continue  # deleted meanwhile
            live |= run.status in ACTIVE
            self._events(run, out)
            if state == "stalled":
                if rid not in self.stalled:
                    self.stalled.add(rid)
                    self.stall_ep[rid] = self.stall_ep.get(rid, 0) + 1
                    if self._wants(run, "stalled"):
                        out.append(msg.stalled(run, age or 0.0, limit, self._stall_key(run)))
            else:
                self.stalled.discard(rid)
            if run.terminal and self.status.get(rid) != run.status:
                if run.status in END_EVENTS and self._wants(run, run.status):
                    out.append(msg.run_ended(run))
                self.diag_open.pop(rid, None)
            self.status[rid] = run.status
        return live

    def _stall_key(self, run: Any) -> int:
        # Episodes are numbered per (re)start, so a resumed run's stall is a new episode.
        return int((run.started or 0) * 1000) * 1000 + self.stall_ep[run.id]

    def _events(self, run: Any, out: list[msg.Notification]) -> None:
        evs = self.store.events(run.id, self.after.get(run.id, 0))
        if evs:
            self.after[run.id] = evs[-1].id
        opened = self.diag_open.setdefault(run.id, set())
        floor = SEVERITIES.index(self.settings.min_severity)
        for ev in evs:
            data = ev.data or {}
            old = ev.time < self.start - GRACE_S
            if ev.kind == "doctor" and data.get("id"):
                state, did = data.get("state"), data["id"]
                if state == "closed":
                    opened.discard(did)
                elif state in ("open", "update") and did not in opened:
                    sev = data.get("severity", "info")
                    rank = SEVERITIES.index(sev) if sev in SEVERITIES else 0
                    if rank >= floor:
                        opened.add(did)
                        if not old and self._wants(run, "doctor"):
                            out.append(msg.doctor_opened(run, ev, self._rollback(run, data)))
                elif state == "auto" and not old and self._wants(run, "doctor_action"):
                    out.append(msg.doctor_action(run, ev))
            elif ev.kind == "eval" and isinstance(data.get("val_loss"), (int, float)):
                v = float(data["val_loss"])
                prev = self.best.get(run.id)
                if math.isfinite(v) and (prev is None or v < prev):
                    self.best[run.id] = v
                    if prev is not None and not old and self._wants(run, "new_best"):
                        out.append(msg.new_best(run, ev, v, prev))

    def _rollback(self, run: Any, data: dict[str, Any]) -> bool:
        """Whether `tuitrain doctor RUN --rollback` has a checkpoint before this spike to use."""
        if data.get("id") not in ROLLBACK_ON or not data.get("step"):
            return False
        from tuitrain.doctor.rollback import checkpoint_before
        from tuitrain.runs.branching import checkpoint_steps

        try:
            return checkpoint_before(checkpoint_steps(run.run_dir), data["step"]) is not None
        except OSError:
            return False

    def _wants(self, run: Any, event: str) -> bool:
        return self.settings.enabled(event) and run_wants(run, event)

    # ---- sweeps and races --------------------------------------------------------------------

    def _sweeps(self, out: list[msg.Notification]) -> bool:
        from tuitrain.sweep.records import list_sweeps

        live = False
        for rec in list_sweeps(self.store):
            old = self.sweeps.get(rec.id)
            self.sweeps[rec.id] = rec.status
            if rec.status == "running":
                live = True
                continue
            fresh = old == "running" or (old is None and (rec.ended or 0) >= self.start - GRACE_S)
            if fresh and self.settings.enabled("sweep_finished"):
                out.append(msg.sweep_finished(rec))
        return live

    def _races(self, out: list[msg.Notification]) -> bool:
        """LR races from the store's races table: a race that ends notifies once."""
        live = False
        for rec in self.store.races.all():
            rid, status = rec.get("race_id"), rec.get("status", "")
            if not rid:
                continue
            old = self.races.get(rid)
            self.races[rid] = status
            if status == "running":
                live = True
                continue
            if old == status:
                continue
            fresh = old == "running" or (
                old is None and (rec.get("ended") or 0) >= self.start - GRACE_S
            )
            if fresh and self.settings.enabled("race_finished"):
                out.append(msg.race_finished(rec))
        return live

    # ---- once per key, rate limit ------------------------------------------------------------

    def _admit(self, n: msg.Notification, now: float) -> bool:
        if n.key in self.sent:
            return False
        self.sent.add(n.key)
        if n.run_id is None:
            return True
        q = self.times.setdefault(n.run_id, collections.deque())
        while q and now - q[0] > self.settings.rate_window_s:
            q.popleft()
        if len(q) >= self.settings.rate_per_run and n.event not in END_EVENTS:
            self.held[n.run_id] = self.held.get(n.run_id, 0) + 1
            if self.on_suppress is not None:
                self.on_suppress(n)
            return False
        q.append(now)
        held = self.held.pop(n.run_id, 0)
        if held:
            n.body = msg._cut(
                f"{n.body}\n({held} earlier notification(s) of this run held back by the rate "
                "limit: tuitrain notify log)",
                msg.BODY_MAX,
            )
        return True
