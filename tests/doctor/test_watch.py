"""Tests of the doctor over a real store: read_run/diagnose on stored rows, the trainer-side
DoctorWatch (events once per open/change/close, resume, automatic actions with their cap) and
`tuitrain doctor` (table and JSON)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tuitrain.config.schema import DoctorGroup
from tuitrain.doctor import diagnose_run
from tuitrain.doctor.watch import DoctorWatch, open_from_events
from tuitrain.store import Store

from . import curves, replay


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "runs") as s:
        yield s


def _upto(store: Store, fx: dict, upto: int) -> str:
    rid = replay.create(store, fx)
    store.log_metrics(rid, replay.rows_of(fx, upto))
    return rid


class Clock:
    """A settable clock for the watch's interval."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _watch(store: Store, rid: str, clock: Clock, **group) -> DoctorWatch:
    """A watch that opens and closes at once unless the test sets persist_steps / hold_steps
    (the episode rules have their own tests in test_episodes.py)."""
    emit = lambda kind, msg, step, data: store.add_event(rid, kind, msg, step, data)  # noqa: E731
    group = {"persist_steps": 0, "hold_steps": 0, **group}
    return DoctorWatch(store, rid, DoctorGroup(**group), emit, clock=clock)


def test_diagnose_run_reads_the_store(store):
    fx = curves.make("exploding_gradients")
    rid = _upto(store, fx, 612)
    found = {d.id: d for d in diagnose_run(store, rid, now=replay.T0 + 60)}
    assert found["exploding_gradients"].severity == "critical"
    assert found["exploding_gradients"].step == 604
    assert "loss_spike" in found
    rid2 = _upto(store, curves.make("healthy"), 1000)
    assert diagnose_run(store, rid2, now=replay.T0 + 60) == []


def test_watch_events_once_and_closes(store):
    fx = curves.make("loss_spike")
    rid = replay.create(store, fx)
    clock = Clock()
    w = _watch(store, rid, clock, interval_s=5.0)
    store.log_metrics(rid, replay.rows_of(fx, 499))
    assert w.tick(499) == []
    store.log_metrics(rid, [r for r in replay.rows_of(fx, 502) if r[0] > 499])
    assert w.tick(502) == []  # within interval_s of the last check: nothing read
    clock.t = 10.0
    (t,) = w.tick(502)
    assert (t.state, t.diagnosis.id, t.diagnosis.severity) == ("open", "loss_spike", "warning")
    clock.t = 20.0
    assert w.tick(502) == []  # still open, same severity: no second event
    store.log_metrics(rid, [r for r in replay.rows_of(fx, 520) if r[0] > 502])
    clock.t = 30.0
    (t,) = w.tick(520)
    assert (t.state, t.diagnosis.severity) == ("update", "info")  # recovered
    store.log_metrics(rid, [r for r in replay.rows_of(fx, 640) if r[0] > 520])
    clock.t = 40.0
    (t,) = w.tick(640)
    assert t.state == "closed"  # the spike left the window
    evs = [e for e in store.events(rid) if e.kind == "doctor"]
    assert [e.data["state"] for e in evs] == ["open", "update", "closed"]
    assert evs[0].data["id"] == "loss_spike" and evs[0].data["evidence"].startswith("loss ")
    assert open_from_events(store.events(rid)) == {}


def test_watch_resumes_open_set_and_auto_actions_are_capped(store):
    fx = curves.make("exploding_gradients")
    rid = _upto(store, fx, 606)
    clock = Clock()
    w = _watch(store, rid, clock, auto=["scale_lr_on_spike"], auto_max=1)
    changes = w.check(606)
    assert [t.diagnosis.id for t in changes] == ["exploding_gradients"]
    (cmd,) = store.commands(rid)
    assert cmd.kind == "scale_lr" and cmd.payload["factor"] == 0.5
    assert cmd.payload["who"] == "doctor" and cmd.payload["diagnosis"] == "exploding_gradients"
    auto = [e for e in store.events(rid) if e.data and e.data.get("state") == "auto"]
    assert len(auto) == 1 and auto[0].data["command_id"] == cmd.id
    # A restarted trainer (resume) knows what is open and what was already done.
    store.log_metrics(rid, [r for r in replay.rows_of(fx, 615) if r[0] > 606])
    w2 = _watch(store, rid, clock, auto=["scale_lr_on_spike"], auto_max=1)
    assert set(w2.open) == {"exploding_gradients"} and w2.auto_sent == 1
    changes = w2.check(615)
    assert [t.diagnosis.id for t in changes] == ["loss_spike"]  # newly opened only
    assert len(store.commands(rid)) == 1  # the cap: no second automatic command


def test_watch_off_by_default_sends_nothing(store):
    fx = curves.make("overfitting")
    rid = _upto(store, fx, 800)
    w = _watch(store, rid, Clock())
    assert [t.diagnosis.id for t in w.check(800)] == ["overfitting"]
    assert store.commands(rid) == []
    w2 = _watch(store, replay.create(store, fx), Clock(), auto=["stop_on_overfit"])
    store.log_metrics(w2.run_id, replay.rows_of(fx, 800))
    w2.check(800)
    (cmd,) = store.commands(w2.run_id)
    assert cmd.kind == "stop" and cmd.payload["restore_best"] is True


def test_cli_doctor_table_and_json(store, tmp_path):
    rid = _upto(store, curves.make("clipping_saturated"), 300)
    runs = str(tmp_path / "runs")
    base = [sys.executable, "-m", "tuitrain", "doctor", "--runs-dir", runs]
    out = subprocess.run(
        [*base, rid, "--format", "json"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    (d,) = json.loads(out.stdout)
    assert set(d) >= {"id", "severity", "step", "evidence", "remedy", "action"}
    assert d["id"] == "clipping_saturated" and d["severity"] == "warning"
    assert d["action"]["label"].startswith("raise training.max_grad_norm")
    table = subprocess.run([*base, rid], capture_output=True, text=True, timeout=60)
    assert "WARNING  clipping_saturated from step" in table.stdout
    assert "remedy:   clipping is doing the LR's job" in table.stdout
    missing = subprocess.run([*base, "nope"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 4 and "no run" in missing.stderr


def test_follower_lines_once_per_warning(store):
    from tuitrain.doctor.follow import DoctorLines

    fx = curves.make("loss_spike")
    rid = replay.create(store, fx)
    clock = Clock()
    w = _watch(store, rid, clock)
    lines = DoctorLines()
    printed = []
    for upto in (499, 502, 503, 520, 640):
        store.log_metrics(rid, replay.rows_of(fx, upto))
        clock.t += 10
        w.tick(upto)
    for ev in store.events(rid):
        if ev.kind == "doctor" and (line := lines.line(ev)):
            printed.append(line)
    # open (warning) printed; recovered (info) and closed are not.
    assert len(printed) == 1 and printed[0].startswith("doctor: WARNING loss_spike from step 500")
    assert f"tuitrain doctor {rid}" in printed[0]


def test_cli_offers_rollback_to_the_checkpoint_before_the_spike(store, tmp_path):
    """No checkpoint before the spike: the rollback line says so; with one (step-600 complete,
    step-602 half-written), the `tuitrain doctor RUN --rollback` command and what it does."""
    fx = curves.make("exploding_gradients")
    fx["config"]["optimizer"]["lr"] = 1e-3
    rid = _upto(store, fx, 612)
    cmd = [sys.executable, "-m", "tuitrain", "doctor", rid, "--runs-dir", str(tmp_path / "runs")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert (
        "rollback: none: exploding_gradients from step 604: no checkpoint before step 604"
        in out.stdout
    )
    ckpts = store.get_run(rid).run_dir / "checkpoints"
    for s in (600, 602):
        (ckpts / f"step-{s}").mkdir(parents=True)
    (ckpts / "step-600" / "complete.json").write_text("{}")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert "action:   rollback to step 600, LR x0.5" in out.stdout
    assert (
        f"rollback: tuitrain doctor {rid} --rollback   (branch from step 600 with lr 0.001 -> 0.0005"
        in out.stdout
    )


def test_watch_pins_the_checkpoint_before_a_spike_out_of_the_rotation(store):
    """A spike opens: the newest complete checkpoint before it gets a pin (and an event), so
    save_total_limit's rotation keeps it for a rollback; once only."""
    from tuitrain.runs.lineage import PIN_MARK, complete_checkpoints, rotated

    fx = curves.make("exploding_gradients")
    rid = replay.create(store, fx)
    ckpts = store.get_run(rid).run_dir / "checkpoints"
    for s in (500, 600, 610):  # 610 is after the spike (604)
        (ckpts / f"step-{s}").mkdir(parents=True)
        (ckpts / f"step-{s}" / "complete.json").write_text("{}")
    clock = Clock()
    w = _watch(store, rid, clock, interval_s=1.0)
    store.log_metrics(rid, replay.rows_of(fx, 612))
    clock.t = 10.0
    opened = {t.diagnosis.id: t.diagnosis.step for t in w.tick(612)}
    assert opened["exploding_gradients"] == 604
    pinned = [s for s, d in complete_checkpoints(ckpts.parent) if (d / PIN_MARK).exists()]
    # Each spike diagnosis pins the newest checkpoint before its own start (one per checkpoint).
    want = {max(c for c in (500, 600, 610) if c < at) for at in opened.values() if at}
    assert 600 in pinned and set(pinned) == want, (opened, pinned)
    pins = [e for e in store.events(rid) if e.kind == "checkpoint"]
    assert len(pins) == len(pinned)
    assert any(e.message.startswith("kept step-600 past save_total_limit") for e in pins)
    # Rotation to the newest 1 never deletes a pinned checkpoint (nor the newest).
    assert rotated(ckpts.parent, 1) == [ckpts / "step-500"]
    clock.t = 20.0
    w.check(612)  # still open: nothing pinned twice
    assert len([e for e in store.events(rid) if e.kind == "checkpoint"]) == len(pinned)


def test_final_check_records_but_sends_no_command_and_a_sent_one_wakes_the_poller(store):
    """The last diagnosis (the run is over) sends nothing: no command could apply. A live one
    calls on_command, which the trainer sets to its poller's wake (claim at the next step)."""
    fx = curves.make("exploding_gradients")
    rid = _upto(store, fx, 606)
    w = _watch(store, rid, Clock(), auto=["scale_lr_on_spike"], auto_max=2)
    woken = []
    w.on_command = lambda: woken.append(1)
    w.store = Store(store.runs_dir)  # final() closes its store
    assert [t.diagnosis.id for t in w.final(606)] == ["exploding_gradients"]
    assert store.commands(rid) == [] and woken == []
    w2 = _watch(store, rid, Clock(), auto=["scale_lr_on_spike"], auto_max=2)
    w2.open = {}  # as if the first watch had not run
    w2.on_command = lambda: woken.append(1)
    w2.check(606)
    assert len(store.commands(rid)) == 1 and woken == [1]


def test_poller_wake_claims_at_the_next_poll(store):
    from tuitrain.steering import SteeringPoller, StoreSource

    rid = replay.create(store, curves.make("healthy"))
    t = [0.0]
    p = SteeringPoller(StoreSource(store.runs_dir, rid), interval=5.0, clock=lambda: t[0])
    assert p.poll(1) == []  # the first claim at t=0 is 5 s old only at t=5
    cid = store.send_command(rid, "scale_lr", {"factor": 0.5})
    t[0] = 1.0
    assert p.poll(2) == []  # within the interval: not claimed yet
    p.wake()
    (cmd,) = p.poll(3)
    assert (cmd.id, cmd.kind, cmd.value) == (cid, "scale_lr", 0.5)
