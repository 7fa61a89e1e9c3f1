"""Which events notify, on a real store: a run's end once, crashed by the liveness rule, a stall
once per episode, doctor episodes once each (at min_severity), the rate limit per run, sweep
trials quiet, a run's own `notify:` group honoured."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tuitrain.notify.rules import Watcher
from tuitrain.notify.settings import Settings
from tuitrain.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "runs")
    yield s
    s.close()


def live_run(store: Store, name: str = "r", config: dict | None = None, **kw):
    """A running run whose recorded process is this test process (alive for the liveness rule)."""
    run = store.create_run(config or {"run": {}}, {"total_steps": 100}, name=name, **kw)
    store.mark_started(run.id, os.getpid())
    return run


def doctor(store, run, state, did="loss_spike", severity="warning", step=12):
    data = {"state": state, "id": did, "severity": severity, "step": step,
            "evidence": f"loss 9.1 vs median 2.3 at step {step}", "remedy": "lower the LR"}  # fmt: skip
    return store.add_event(run.id, "doctor", f"{did} {state}", step, data)


def test_completed_run_notifies_once_with_best_and_command(store):
    w = Watcher(store, Settings())
    run = live_run(store)
    assert w.poll() == [] and w.live
    summary = {"best_metric": "val_loss", "best_value": 1.234, "best_step": 80, "total_steps": 100}
    store.set_status(run.id, "completed", summary=summary)
    (n,) = w.poll()
    assert (n.event, n.title, n.command) == ("completed", "r completed", "tuitrain show r")
    assert "best val_loss 1.234 at step 80" in n.body and f"({run.id}) on {store.host}" in n.body
    assert w.poll() == [] and not w.live


def test_dead_process_is_crashed_and_says_resume(store):
    w = Watcher(store, Settings())
    gone = subprocess.Popen(["true"])
    gone.wait()
    run = store.create_run({"run": {}}, {}, name="k")
    store.mark_started(run.id, gone.pid)
    (n,) = w.poll()
    assert n.event == "crashed" and n.severity == "critical"
    assert "tuitrain resume k" in n.body and "without a final status" in n.body
    assert store.get_run(run.id).status == "crashed"


def test_stall_once_per_episode(store, monkeypatch):
    monkeypatch.setenv("TUITRAIN_STALL_FIRST_STEP_S", "0.3")
    w = Watcher(store, Settings())
    run = live_run(store, "s")
    deadline = time.monotonic() + 10
    got = []
    while not got and time.monotonic() < deadline:
        got = w.poll()
        time.sleep(0.1)
    (n,) = got
    assert n.event == "stalled" and "no step for" in n.body and "tuitrain watch s" in n.body
    assert "(threshold 0.3 s)" in n.body and n.data["threshold_s"] == 0.3
    assert w.poll() == []  # still the same episode
    assert store.get_run(run.id).status == "running"


def test_doctor_one_notification_per_episode_at_min_severity(store):
    w = Watcher(store, Settings(min_severity="warning"))
    run = live_run(store, "d")
    w.poll()
    doctor(store, run, "open", severity="info", did="oscillation")
    assert w.poll() == []  # below min_severity
    doctor(store, run, "update", severity="warning", did="oscillation")
    doctor(store, run, "open", severity="warning")
    doctor(store, run, "update", severity="critical")
    got = w.poll()
    assert sorted(n.data["diagnosis"] for n in got) == ["loss_spike", "oscillation"]
    spike = next(n for n in got if n.data["diagnosis"] == "loss_spike")
    assert (
        "loss 9.1 vs median 2.3 at step 12" in spike.body and spike.command == "tuitrain doctor d"
    )
    doctor(store, run, "update", severity="warning")
    assert w.poll() == []  # same episode
    doctor(store, run, "closed")
    doctor(store, run, "open", severity="critical", step=40)
    (again,) = w.poll()
    assert again.severity == "critical" and "step 40" in again.body
    store.add_event(run.id, "doctor", "auto (scale_lr_on_spike): scale LR x0.5 for loss_spike, command 3",
                    40, {"state": "auto", "id": "loss_spike", "command_id": 3, "action": "scale LR x0.5"})  # fmt: skip
    (act,) = w.poll()
    assert act.event == "doctor_action" and "scale LR x0.5" in act.title


def test_rollback_command_when_a_checkpoint_precedes_the_spike(store):
    w = Watcher(store, Settings())
    run = live_run(store, "rb")
    ck = run.run_dir / "checkpoints" / "step-10"
    ck.mkdir(parents=True)
    (ck / "complete.json").write_text('{"step": 10}')
    doctor(store, run, "open", step=12)
    (n,) = w.poll()
    assert n.command == "tuitrain doctor rb --rollback"


def test_rate_limit_per_run_holds_back_but_never_the_end(store):
    held = []
    w = Watcher(store, Settings(rate_per_run=2), on_suppress=held.append)
    run = live_run(store, "busy")
    for i, did in enumerate(["loss_spike", "oscillation", "late_stall", "overfitting"]):
        doctor(store, run, "open", did=did, step=10 + i)
    assert len(w.poll()) == 2 and len(held) == 2
    store.set_status(run.id, "failed", "boom")
    (end,) = w.poll()
    assert end.event == "failed" and "2 earlier notification(s)" in end.body
    assert "reason: boom" in end.body


def test_sweep_trials_and_opted_out_runs_stay_quiet(store):
    w = Watcher(store, Settings())
    trial = live_run(store, "trial", sweep_id="sw1")
    quiet = live_run(store, "quiet", config={"run": {}, "notify": {"events": ["crashed"]}})
    off = live_run(store, "off", config={"run": {}, "notify": {"enabled": False}})
    w.poll()
    for r in (trial, quiet, off):
        store.set_status(r.id, "completed")
    assert w.poll() == []


def test_settings_turn_events_off_and_old_ends_are_not_news(store):
    run = store.create_run({"run": {}}, {}, name="old")
    store.set_status(run.id, "completed")
    assert Watcher(store, Settings(), now=time.time() + 3600).poll() == []
    assert [n.event for n in Watcher(store, Settings()).poll()] == ["completed"]
    ev = {**Settings().events, "completed": False}
    assert Watcher(store, Settings(events=ev)).poll() == []


def test_a_key_in_the_log_is_never_sent_again(store):
    run = live_run(store, "once")
    store.set_status(run.id, "completed")
    (n,) = Watcher(store, Settings()).poll()
    assert Watcher(store, Settings(), sent={n.key}).poll() == []


def test_sweep_end_names_the_best_trial_and_the_promote_line(store):
    from tuitrain.runs.process import proc_start

    w = Watcher(store, Settings())
    trials = [
        {"number": 0, "params": {"optimizer.lr": 1e-3}, "run_name": "sw-0", "state": "complete", "value": 2.5},
        {"number": 1, "params": {"optimizer.lr": 3e-4}, "run_name": "sw-1", "state": "complete", "value": 1.9},
        {"number": 2, "params": {"optimizer.lr": 1e-2}, "run_name": "sw-2", "state": "pruned", "value": None},
    ]  # fmt: skip
    row = {"id": "sw-abc", "name": "sw", "method": "tpe", "metric": "val_loss",
           "direction": "minimize", "n_trials": 3, "parallel": 1, "study_name": "sw",
           "storage": "", "spec": {}, "status": "running", "pid": os.getpid(),
           "pid_start": proc_start(os.getpid()), "host": store.host, "created": time.time(),
           "trials": trials}  # fmt: skip
    store.sweeps.put(row)
    assert w.poll() == [] and w.live
    store.sweeps.put({**row, "status": "completed", "ended": time.time()})
    (n,) = w.poll()
    assert n.event == "sweep_finished" and n.command == "tuitrain sweep promote sw-abc"
    assert "best: trial 1 (sw-1) val_loss=1.9" in n.body and "2 complete, 1 pruned" in n.body
    assert w.poll() == []


def test_race_end_names_the_winner_and_margin(store):
    w = Watcher(store, Settings())
    rec = {"race_id": "20261202-1", "status": "running", "source": "demo", "created": time.time()}
    store.races.put(rec)
    assert w.poll() == [] and w.live
    verdict = {"winner": {"factor": 3.0, "val_loss": 1.7}, "margin": 0.12, "noise": 0.02,
               "too_close": False, "notes": []}  # fmt: skip
    rec.update(status="done", ended=time.time(), verdict=verdict, winning_lr=3e-4)
    store.races.put(rec)
    (n,) = w.poll()
    assert n.event == "race_finished" and "winner: x3 (lr 0.0003), val_loss 1.7" in n.body
    assert "margin 0.12 vs noise 0.02" in n.body and n.command == "tuitrain lr-race show 20261202-1"
