"""Tests of the doctor's episodes and memory over a real store: a diagnosis opens once its evidence
persists, closes after a hold-off (no flapping), symptoms of an open spike are attached to it as
consequences, a branch of a healthy run is judged with its lineage, a single grad-norm sample is
never critical, and `tuitrain doctor` lists the run's whole history after it ended."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tuitrain.config.schema import DoctorGroup
from tuitrain.doctor import diagnose_run
from tuitrain.doctor.diagnosis import Diagnosis, scale_lr
from tuitrain.doctor.history import history
from tuitrain.doctor.watch import DoctorWatch, event_data
from tuitrain.store import Store

from . import curves, replay


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "runs") as s:
        yield s


def _watch(store: Store, rid: str, **group) -> DoctorWatch:
    emit = lambda kind, msg, step, data: store.add_event(rid, kind, msg, step, data)  # noqa: E731
    return DoctorWatch(store, rid, DoctorGroup(**group), emit, clock=lambda: 0.0)


def _diag(did: str, severity: str = "warning", **values) -> Diagnosis:
    return Diagnosis(did, severity, 10, f"{did} evidence", "remedy", scale_lr(0.5), values)


def _doctor_events(store: Store, rid: str) -> list[tuple[str, str]]:
    return [(e.data["state"], e.data["id"]) for e in store.events(rid) if e.kind == "doctor"]


def _apply(w: DoctorWatch, found: list[Diagnosis], at: int, final: bool = False) -> list[str]:
    """Run the watch's episode rules on `found` at step `at`, emit as check() does."""
    out = []
    for t in w._episodes({d.id: d for d in found}, at, final):
        w.emit("doctor", t.state, at, event_data(t))
        if t.state == "closed":
            w.open.pop(t.diagnosis.id, None)
            w.absent.pop(t.diagnosis.id, None)
        else:
            w.open[t.diagnosis.id] = t.diagnosis
        out.append(f"{t.state} {t.diagnosis.id}")
    return out


def test_a_warning_opens_only_once_its_evidence_persists(store):
    rid = replay.create(store, curves.make("healthy"))
    w = _watch(store, rid, persist_steps=10, hold_steps=50)
    assert _apply(w, [_diag("oscillation")], 100) == []  # seen once: pending
    assert _apply(w, [], 105) == []  # gone before it persisted: no episode at all
    assert _apply(w, [_diag("oscillation")], 110) == []
    assert _apply(w, [_diag("oscillation")], 115) == []
    assert _apply(w, [_diag("oscillation")], 120) == ["open oscillation"]
    # critical evidence does not wait (and the spike supersedes the symptom it explains)
    found = [_diag("oscillation"), _diag("loss_spike", "critical")]
    assert sorted(_apply(w, found, 121)) == ["closed oscillation", "open loss_spike"]


def test_an_episode_does_not_flap_and_closes_after_the_hold_off(store):
    rid = replay.create(store, curves.make("healthy"))
    w = _watch(store, rid, persist_steps=0, hold_steps=50)
    assert _apply(w, [_diag("oscillation")], 100) == ["open oscillation"]
    for at in range(105, 300, 5):  # found every other check: one episode, no events
        found = [_diag("oscillation")] if at % 10 == 0 else []
        assert _apply(w, found, at) == []
    assert _apply(w, [], 320) == []
    assert _apply(w, [], 350) == ["closed oscillation"]  # absent since 305 for 45, now 45+
    states = _doctor_events(store, rid)
    assert states == [("open", "oscillation"), ("closed", "oscillation")]
    (ep,) = history(store.events(rid))
    assert (ep.state, ep.closed_reason, ep.opened) == ("closed", "recovered", 1)


def test_symptoms_of_an_open_spike_are_its_consequences(store):
    rid = replay.create(store, curves.make("healthy"))
    w = _watch(store, rid, persist_steps=0, hold_steps=20)
    assert _apply(w, [_diag("slow_convergence")], 50) == ["open slow_convergence"]
    found = [
        _diag("loss_spike", "critical", loss=139.0),
        _diag("oscillation"),
        _diag("slow_convergence"),
    ]
    out = _apply(w, found, 60)
    assert sorted(out) == ["closed slow_convergence", "open loss_spike"]  # superseded by its cause
    assert "oscillation" not in w.open and w.attached == {
        "oscillation": "loss_spike",
        "slow_convergence": "loss_spike",
    }
    # the spike recovers (info) and leaves; its consequences fade with it, none opens on its own
    assert _apply(w, [_diag("loss_spike", "info", loss=3.6), _diag("underfitting")], 70) == [
        "update loss_spike"
    ]
    assert _apply(w, [], 80) == []
    assert _apply(w, [], 100) == ["closed loss_spike"]
    eps = {e.id: e for e in history(store.events(rid))}
    assert eps["loss_spike"].consequences == ["oscillation", "slow_convergence", "underfitting"]
    assert eps["loss_spike"].peak["values"]["loss"] == 139.0  # the worst, not the last
    assert eps["loss_spike"].severity == "critical"
    assert eps["slow_convergence"].closed_reason == "superseded"


def test_the_final_check_opens_what_it_finds_and_closes_what_is_gone(store):
    rid = replay.create(store, curves.make("healthy"))
    w = _watch(store, rid, persist_steps=50, hold_steps=50)
    assert _apply(w, [_diag("overfitting")], 100) == []
    assert _apply(w, [_diag("overfitting")], 101, final=True) == ["open overfitting"]
    assert _apply(w, [], 102, final=True) == ["closed overfitting"]


def test_a_single_grad_norm_sample_is_never_critical(store):
    fx = curves.make("healthy", steps=400)
    for p in fx["metrics"]["grad_norm"]:
        if p[0] == 300:
            p[1] = p[1] * 40  # one sample, 40x its neighbours; the loss stays normal
    rid = replay.create(store, fx)
    store.log_metrics(rid, replay.rows_of(fx, 320))
    found = {d.id: d for d in diagnose_run(store, rid, now=replay.T0 + 60)}
    assert "exploding_gradients" in found  # it is seen ...
    assert found["exploding_gradients"].severity != "critical"  # ... but one sample is no crisis


def test_a_branch_of_a_healthy_run_is_judged_with_its_lineage(store):
    fx = curves.make("healthy")
    parent = replay.create(store, fx, status="completed")
    store.log_metrics(parent, replay.rows_of(fx, 600))
    child = store.create_run(
        fx["config"], fx["derived"], name="branch", status="running", parent=parent, fork_step=600
    )
    store.log_metrics(child.id, [r for r in replay.rows_of(fx) if r[0] > 600])
    found = [d.id for d in diagnose_run(store, child.id, now=replay.T0 + 60)]
    assert "slow_convergence" not in found and "underfitting" not in found, found


def test_cli_doctor_lists_a_recovered_spike_after_the_run_ended(store, tmp_path):
    fx = curves.make("loss_spike")
    rid = replay.create(store, fx)
    w = _watch(store, rid, persist_steps=0, hold_steps=0)
    for upto in (499, 502, 520, 640):
        store.log_metrics(rid, [r for r in replay.rows_of(fx, upto) if r[0] > upto - 200])
        w.check(upto)
    store.log_metrics(rid, replay.rows_of(fx))
    store.set_status(rid, "completed")
    runs = str(tmp_path / "runs")
    base = [sys.executable, "-m", "tuitrain", "doctor", "--runs-dir", runs, rid]
    out = subprocess.run([*base, "--format", "json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    spikes = [d for d in json.loads(out.stdout) if d["id"] == "loss_spike"]
    assert spikes, out.stdout
    d = spikes[-1]
    assert (d["state"], d["closed_reason"]) == ("closed", "recovered")
    assert d["first_step"] is not None and d["last_step"] >= d["first_step"]
    assert d["peak"]["evidence"].startswith("loss ") and d["peak"]["severity"] == "warning"
    table = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert "history: " in table.stdout and "closed   loss_spike WARNING" in table.stdout
    assert "nothing to report" not in table.stdout


def test_an_episode_that_opens_recovered_keeps_the_peak_it_had_while_pending(store):
    rid = replay.create(store, curves.make("healthy"))
    w = _watch(store, rid, persist_steps=10, hold_steps=0)
    assert _apply(w, [_diag("loss_spike", "warning", loss=9.0)], 100) == []
    # persisted, but recovered by now: it opens as what it is, with the peak it had
    assert _apply(w, [_diag("loss_spike", "info", loss=3.0)], 110) == ["open loss_spike"]
    (ep,) = history(store.events(rid))
    assert ep.severity == "info" and ep.peak["severity"] == "warning"
    assert ep.peak["values"]["loss"] == 9.0
