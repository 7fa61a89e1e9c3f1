"""Real-process test of the doctor's rollback: a demo run whose LR really makes it spike, saving
checkpoints every 10 steps; `tuitrain doctor RUN` offers the rollback to the newest checkpoint
before the spike, `--rollback` branches a child from it with optimizer.lr halved, and with the
checkpoints before the spike gone it exits 2 saying why."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.doctor.test_doctor_e2e import SPIKY
from tests.train.helpers import ENV, Launcher

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# The e2e spike (SGD ramping to LR 10, clipped at 1.0: the loss jumps at about step 20-25),
# shortened to 40 steps with a checkpoint every 10; the doctor's own watch is off (not tested here).
KEEP = ("model.", "data.", "batch.", "generation.", "optimizer.", "training.max_grad_norm")
ROLLBACK_SETS = [s for s in SPIKY if s.startswith(KEEP)] + [
    "training.max_steps=40",
    "training.eval_every=40",
    "training.eval_max_batches=2",
    "training.log_every=1",
    "training.save_every=10",
    "training.save_total_limit=10",
    "scheduler.warmup_steps=30",
    "doctor.enabled=false",
]


def tuitrain(*args: str, runs: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tuitrain", *args, "--runs-dir", str(runs)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **ENV},
    )


def test_rollback_branches_from_the_checkpoint_before_the_spike_with_lr_halved(tmp_path):
    lx = Launcher(tmp_path)
    try:
        run = lx.wait(lx.start(ROLLBACK_SETS, name="spiky"), timeout=240)
        assert run.status == "completed", lx.log(run)[-3000:]
        js = tuitrain("doctor", run.id, "--format", "json", runs=lx.runs_dir)
        assert js.returncode == 0, js.stderr
        backs = [d for d in json.loads(js.stdout) if (d["action"] or {}).get("kind") == "rollback"]
        assert backs, js.stdout
        first = backs[0]
        assert first["id"] in ("loss_spike", "exploding_gradients")
        assert first["severity"] in ("warning", "critical")
        ckpts = sorted(int(p.name[5:]) for p in (Path(run.run_dir) / "checkpoints").glob("step-*"))
        assert ckpts == [10, 20, 30, 40]
        want = max(s for s in ckpts if s < first["step"])
        assert first["action"]["payload"] == {"checkpoint_step": want, "lr_factor": 0.5}
        table = tuitrain("doctor", run.id, runs=lx.runs_dir)
        assert f"tuitrain doctor {run.id} --rollback" in table.stdout
        assert f"(branch from step {want} with lr 10 -> 5)" in table.stdout

        out = tuitrain("doctor", run.id, "--rollback", "--detach", runs=lx.runs_dir)
        assert out.returncode == 0, out.stderr
        child_id = out.stdout.strip()
        with lx.store() as store:
            child = store.get_run(child_id)
            lx.track(child)
            assert child.parent == run.id and child.fork_step == want
            assert child.config["optimizer"]["lr"] == 5.0
            assert store.commands(run.id) == []  # the parent had ended: nothing to stop
        plan = json.loads((Path(child.run_dir) / "branch.json").read_text())
        assert plan["checkpoint"].endswith(f"step-{want}") and not plan["weights_only"]
        assert f"lr 10 -> 5: child run {child_id}" in out.stderr
        # --format json: one object, no following; --factor sets the scale.
        js2 = tuitrain("doctor", run.id, "--rollback", "--factor", "0.25", "--format", "json", runs=lx.runs_dir)  # fmt: skip
        assert js2.returncode == 0, js2.stderr
        got = json.loads(js2.stdout)
        with lx.store() as store:
            lx.track(store.get_run(got["child"]))
            assert store.get_run(got["child"]).config["optimizer"]["lr"] == 2.5
        assert (got["run"], got["from_step"], got["lr_from"], got["lr_to"]) == (
            run.id,
            want,
            10,
            2.5,
        )
        assert got["diagnosis"] == first["id"] and got["stop_command"] is None
        assert got["child"] != child_id and got["child_name"] != child.name

        # No checkpoint before the spike any more: exit 2, and the reason.
        for s in ckpts:
            if s < first["step"]:
                shutil.rmtree(Path(run.run_dir) / "checkpoints" / f"step-{s}")
        none = tuitrain("doctor", run.id, "--rollback", runs=lx.runs_dir)
        assert none.returncode == 2, none.stdout + none.stderr
        assert f"no checkpoint before step {first['step']}" in none.stderr
    finally:
        lx.kill_all()
