"""Live end-to-end test of the doctor: a real demo-model run whose LR makes it spike gets a
critical diagnosis from its own trainer (doctor events), `tuitrain run` prints the warning once,
the doctor's scale_lr 0.5 is applied through the store (automatically, capped, who: doctor, and
by hand from `tuitrain doctor --format json`), and the run continues to the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.train.helpers import DEMO, ENV, TINY
from tuitrain.store import Store

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

# Long enough after the spike that a fast machine's doctor (a check every 0.5 s, at 50+
# steps/s) sees it while the run is live: the final check sends no command.
STEPS = 400
# SGD has no Adam normalisation: ramping to LR 10 over 60 steps blows the loss up at about
# step 20-30; clipping at 1.0 keeps it finite, so the run can be rescued and go on.
SPIKY = [
    *TINY,
    f"training.max_steps={STEPS}",
    "training.eval_every=80",
    "training.log_every=1",
    "generation.enabled=false",
    "optimizer.name=sgd",
    "optimizer.lr=10",
    "training.max_grad_norm=1.0",
    "scheduler.warmup_steps=60",
    "doctor.interval_s=0.5",
    "doctor.auto=[scale_lr_on_spike]",
    "doctor.auto_max=1",
]


def _wait(pred, timeout: float, what: str, proc: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        if proc.poll() is not None and not got:
            break
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def test_spiking_run_gets_critical_diagnosis_and_scale_lr_is_applied(tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, **ENV}
    cmd = [
        sys.executable,
        "-m",
        "tuitrain",
        "run",
        str(DEMO),
        "--runs-dir",
        str(runs),
        "--name",
        "spiky",
    ]
    for s in SPIKY:
        cmd += ["--set", s]
    out_path = tmp_path / "run.out"
    with open(out_path, "w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        store = Store(runs)
        run = _wait(lambda: next(iter(store.list_runs()), None), 120, "the run record", proc)

        def critical():
            evs = [e for e in store.events(run.id) if e.kind == "doctor"]
            return [e for e in evs if (e.data or {}).get("severity") == "critical"]

        crit = _wait(critical, 300, "a critical doctor event", proc)
        assert crit[0].data["id"] in ("loss_spike", "exploding_gradients")
        # The automatic remedy: one scale_lr 0.5 command with who: doctor, applied by the trainer.
        auto = _wait(
            lambda: [c for c in store.commands(run.id) if c.payload.get("who") == "doctor"],
            60,
            "the doctor's automatic command",
            proc,
        )
        applied = store.wait_command(auto[0].id, timeout=60)
        assert applied.status == "applied" and applied.kind == "scale_lr", (
            applied,
            store.get_run(run.id),
            out_path.read_text()[-3000:],
        )
        assert applied.payload["factor"] == 0.5
        # The trainer's own doctor wakes its poller: the remedy applies at the very step it was
        # sent at (one process), not a claim interval later.
        sent = [e for e in store.events(run.id) if (e.data or {}).get("command_id") == applied.id]
        sent = [e for e in sent if e.kind == "doctor"]
        assert sent and applied.applied_step <= sent[0].step + 1, (sent, applied)
        # By hand: the action `tuitrain doctor --format json` offers, sent like any command.
        js = subprocess.run(
            [sys.executable, "-m", "tuitrain", "doctor", run.id, "--runs-dir", str(runs), "--format", "json"],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        assert js.returncode == 0, js.stderr
        steerable = [d for d in json.loads(js.stdout) if d["action"] and d["action"]["steerable"]]
        if store.get_run(run.id).status == "running" and steerable:
            act = steerable[0]["action"]
            cid = store.send_command(run.id, act["kind"], act["payload"])
            manual = store.wait_command(cid, timeout=60)
            assert manual.status in ("applied", "rejected")  # rejected only if the run just ended
        # The run goes on after the remedy and ends normally.
        assert proc.wait(timeout=300) == 0, out_path.read_text()[-3000:]
        end = store.get_run(run.id)
        assert end.status == "completed" and end.last_step == STEPS
        assert end.last_step > applied.applied_step
        lr_events = [e for e in store.events(run.id) if e.kind == "lr" and "scale_lr" in e.message]
        assert lr_events and "multiplier 0.5" in lr_events[0].message
        # `tuitrain run` printed the warning line once per diagnosis, and the automatic action.
        text = out_path.read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith("doctor: CRITICAL")]
        assert lines, text[-3000:]
        assert len(lines) == len(set(lines))
        assert "doctor: auto (scale_lr_on_spike): scale_lr 0.5" in text
        # The post-mortem of the finished run still lists the spike (issue 24: a memory).
        post = subprocess.run(
            [sys.executable, "-m", "tuitrain", "doctor", run.id, "--runs-dir", str(runs), "--format", "json"],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        assert post.returncode == 0, post.stderr
        past = [d for d in json.loads(post.stdout) if d["id"] == crit[0].data["id"]]
        assert past and past[-1]["peak"]["severity"] == "critical", post.stdout[-3000:]
        assert past[-1]["state"] in ("open", "closed") and past[-1]["first_step"] is not None
        store.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        # The trainer runs in its own session: kill what is left of it.
        for info in (runs).glob("*/launch.json"):
            try:
                os.killpg(json.loads(info.read_text())["pgid"], signal.SIGKILL)
            except (ProcessLookupError, KeyError, ValueError):
                pass
