"""Real runs, real notifier process (started by the launch, no TUI open), real Apprise to a local
json:// target: a completed run; a trainer killed with -9 (notified within 30 s); a stalled run
(TUITRAIN_STALL_MIN_S / TUITRAIN_STALL_FIRST_STEP_S lowered); a provoked loss spike (one
notification per doctor episode, with the evidence and the rollback command); targets that answer
500 or never answer while a run trains; and no secret anywhere in the runs directory."""

from __future__ import annotations

import os
import signal
import sqlite3
import time

import pytest

from tests.doctor.test_doctor_e2e import SPIKY
from tests.notify.server import Hook
from tests.train.helpers import TINY, Launcher
from tuitrain.notify.daemon import running_pid
from tuitrain.notify.log import read

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
TOKEN = "t0p-s3cret"  # a path part of the target URL: must never be stored or printed


@pytest.fixture
def notify(tmp_path, monkeypatch):
    """(Launcher, Hook): TUITRAIN_NOTIFY points at a local json:// hook; the notifier polls every
    0.3 s and exits 3 s after the last live run. Kills the runs and the notifier at the end."""
    conf = tmp_path / "notify.yaml"
    conf.write_text("retries: 1\nbackoff_s: 0.2\ntimeout_s: 2\n")
    lx = Launcher(tmp_path)
    with Hook() as hook:
        monkeypatch.setenv("TUITRAIN_NOTIFY", f"{hook.url}/{TOKEN}")
        monkeypatch.setenv("TUITRAIN_NOTIFY_CONFIG", str(conf))
        monkeypatch.setenv("TUITRAIN_NOTIFY_POLL_S", "0.3")
        monkeypatch.setenv("TUITRAIN_NOTIFY_IDLE_S", "3")
        try:
            yield lx, hook
        finally:
            lx.kill_all()
            pid = running_pid(lx.runs_dir) if lx.runs_dir.is_dir() else None
            if pid and pid > 0:
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 40
                while running_pid(lx.runs_dir) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if running_pid(lx.runs_dir):
                    os.kill(pid, signal.SIGKILL)


def no_secret_in(runs_dir) -> None:
    """The target URL's token is in no file of the runs directory nor in the database."""
    for p in runs_dir.rglob("*"):
        if p.is_file() and p.suffix not in (".safetensors", ".bin", ".pt"):
            assert TOKEN.encode() not in p.read_bytes(), p
    with sqlite3.connect(runs_dir / "tuitrain.db") as c:
        for table in ("runs", "events", "commands"):
            for row in c.execute(f"SELECT * FROM {table}"):
                assert TOKEN not in repr(row), table


def test_completed_run_notifies_with_best_val_and_notifier_exits(notify):
    lx, hook = notify
    run = lx.start(TINY, name="done")
    end = lx.wait(run, 180)
    assert end.status == "completed"
    (m,) = hook.wait_for(lambda m: m["title"] == "done completed", 30, "the completion")
    assert "best val_loss" in m["message"] and "at step 30" in m["message"]
    assert f"run done ({run.id}) on " in m["message"] and "step 30/30" in m["message"]
    assert "→ tuitrain show done" in m["message"]
    deadline = time.monotonic() + 60  # idle 3 s after the last live run: it exits by itself
    while running_pid(lx.runs_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running_pid(lx.runs_dir) is None
    sent = [e for e in read(lx.runs_dir) if e["status"] == "sent" and e["event"] == "completed"]
    assert len(sent) == 1 and sent[0]["target"].endswith("/***")
    no_secret_in(lx.runs_dir)


def test_trainer_killed_with_sigkill_is_notified_within_30_s(notify):
    lx, hook = notify
    run = lx.start([*TINY, "training.max_steps=100000", "training.eval_every=100000"], name="k9")
    lx.wait_step(run, 5)
    with lx.store() as s:
        pid = s.get_run(run.id).pid
    os.kill(pid, signal.SIGKILL)  # the trainer itself: no final status is ever written
    (m,) = hook.wait_for(lambda m: m["title"] == "k9 crashed", 30, "the crash")
    assert m["type"] == "failure" and "without a final status" in m["message"]
    assert "→ tuitrain resume k9" in m["message"]


def test_stalled_run_is_notified_once(notify, monkeypatch):
    lx, hook = notify
    monkeypatch.setenv("TUITRAIN_STALL_MIN_S", "1")  # the notifier's liveness rule reads these
    monkeypatch.setenv("TUITRAIN_STALL_FIRST_STEP_S", "120")
    run = lx.start([*TINY, "training.max_steps=100000", "training.eval_every=100000"], name="st")
    lx.wait_step(run, 10)
    with lx.store() as s:
        pid = s.get_run(run.id).pid
    os.kill(pid, signal.SIGSTOP)  # alive, but its step no longer advances
    try:
        (m,) = hook.wait_for(lambda m: m["title"] == "st stalled", 40, "the stall")
        assert "no step for" in m["message"] and "→ tuitrain watch st" in m["message"]
        assert "tuitrain stop st" in m["message"]
    finally:
        os.kill(pid, signal.SIGCONT)
    lx.kill_all()
    stalls = [e for e in read(lx.runs_dir) if e.get("event") == "stalled"]
    assert [e["status"] for e in stalls] == ["sent"]


def test_spike_notifies_once_per_episode_with_evidence_and_rollback(notify):
    lx, hook = notify
    sets = [*SPIKY, "training.max_steps=120", "training.save_every=10",
            "training.save_total_limit=20", "doctor.auto=[]"]  # fmt: skip
    run = lx.start(sets, name="spiky")
    assert lx.wait(run, 240).status == "completed"
    hook.wait_for(lambda m: m["title"] == "spiky completed", 30, "the completion")
    with lx.store() as s:
        events = [e for e in s.events(run.id) if e.kind == "doctor" and (e.data or {}).get("id")]
    # Episodes at warning or above, from the trainer's own doctor events.
    expected: dict[str, int] = {}
    notified: set[str] = set()
    for e in events:
        d = e.data
        if d["state"] == "closed":
            notified.discard(d["id"])
        elif (
            d["state"] in ("open", "update")  # a consequence attached to a spike is no episode
            and d["id"] not in notified
            and d["severity"] in ("warning", "critical")
        ):
            notified.add(d["id"])
            expected[d["id"]] = expected.get(d["id"], 0) + 1
    got: dict[str, int] = {}
    for m in hook.received:
        if m["title"].startswith("spiky: "):
            did = m["title"].split()[1]
            got[did] = got.get(did, 0) + 1
    assert got == expected and any(k in got for k in ("loss_spike", "exploding_gradients"))
    spike = next(
        m for m in hook.received
        if m["title"].split()[1:2] in (["loss_spike"], ["exploding_gradients"])
    )  # fmt: skip
    first = next(e for e in events if e.data["id"] == spike["title"].split()[1])
    assert first.data["evidence"] in spike["message"]
    assert "→ tuitrain doctor spiky --rollback" in spike["message"]
    no_secret_in(lx.runs_dir)


def test_targets_that_fail_or_hang_do_not_touch_training(notify, monkeypatch):
    lx, good = notify
    with Hook("500") as bad, Hook("hang") as slow:
        monkeypatch.setenv(
            "TUITRAIN_NOTIFY", f"{slow.url}/{TOKEN} {bad.url}/{TOKEN}, {good.url}/{TOKEN}"
        )
        run = lx.start(TINY, name="both")
        assert lx.wait(run, 180).status == "completed"
        good.wait_for(lambda m: m["title"] == "both completed", 30, "the good target's message")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            failed = [e for e in read(lx.runs_dir) if e["status"] == "failed"]
            if len({e["target"] for e in failed}) == 2:
                break
            time.sleep(0.2)
        assert {e["target"] for e in failed} == {
            f"json://127.0.0.1:{bad.port}/***",
            f"json://127.0.0.1:{slow.port}/***",
        }
        assert all(TOKEN not in e.get("error", "") for e in failed)
    no_secret_in(lx.runs_dir)
