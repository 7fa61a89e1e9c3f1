"""Branch and rerun end to end, with real CLI processes and real training runs on CPU: a branch
with no edits reproduces the parent's losses after the fork step, edits the checkpoint cannot take
are refused by name (unless --weights-only), and the rerun of a steered run is exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import ENV, TINY, Launcher, losses

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

PARENT = [
    *TINY,
    "run.deterministic=true",
    "training.max_steps=40",
    "training.log_every=1",
    "training.eval_every=10",
    "training.save_every=10",
    "training.save_total_limit=10",
    "scheduler.warmup_steps=5",
]


def cli(lx: Launcher, *args: str) -> subprocess.CompletedProcess:
    """`tuitrain --runs-dir RUNS ARGS...` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "tuitrain", "--runs-dir", str(lx.runs_dir), *args],
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=120,
    )


def start_child(lx: Launcher, *args: str):
    out = cli(lx, *args, "--detach")
    assert out.returncode == 0, out.stderr
    with lx.store() as s:
        run = s.get_run(out.stdout.strip().splitlines()[-1])
    lx.track(run)
    return run


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """A finished deterministic run with checkpoints at 10, 20, 30, 40: (launcher, run, losses)."""
    lx = Launcher(tmp_path_factory.mktemp("branch"))
    run = lx.start(PARENT, name="parent")
    info = lx.wait(run, timeout=300)
    assert info.status == "completed", lx.log(run)[-3000:]
    with lx.store() as s:
        pts = dict(losses(s, run.id))
    yield lx, run, pts
    lx.kill_all()


def test_branch_without_edits_reproduces_the_parent_after_the_fork(parent):
    lx, run, ref = parent
    same = start_child(lx, "branch", run.id, "--step", "25", "--name", "same")
    edited = start_child(
        lx, "branch", run.id, "--step", "20", "--set", "scheduler.name=constant",
        "--set", "optimizer.lr=2e-4", "--set", "training.max_steps=30",
    )  # fmt: skip
    for child in (same, edited):
        info = lx.wait(child, timeout=300)
        assert info.status == "completed", lx.log(child)[-3000:]
    with lx.store() as s:
        got = dict(losses(s, same.id))
        lrs = {p.step: p.value for p in s.tail(edited.id, ["lr"])}
        info = s.get_run(same.id)
        branched = [e for e in s.events(same.id) if e.kind == "branched"]
        # A branch is judged with its lineage (issue 24): an unedited branch raises no doctor
        # warning its parent did not (this 40-step toy parent ends close to chance level).
        alarms = {
            run_id: {
                e.data["id"]
                for e in s.events(run_id)
                if e.kind == "doctor" and (e.data or {}).get("severity") in ("warning", "critical")
            }
            for run_id in (run.id, same.id)
        }
    # The newest complete checkpoint <= 25 is step 20; the child logs from step 21.
    assert info.parent == run.id and info.fork_step == 20
    assert sorted(got) == list(range(21, 41))
    assert max(rel(got[s], ref[s]) for s in got) < 1e-5, {s: (got[s], ref[s]) for s in got}
    assert branched and branched[0].step == 20 and branched[0].data["parent"] == run.id
    assert alarms[same.id] <= alarms[run.id], alarms
    # The edited child trains with its own config from step 21: constant LR 2e-4 x the
    # parent's multiplier (1), to its own max_steps.
    assert sorted(lrs) == list(range(21, 31))
    assert all(rel(v, 2e-4) < 1e-9 for v in lrs.values()), lrs

    listed = json.loads(cli(lx, "ls", "--format", "json").stdout)
    row = next(r for r in listed if r["id"] == same.id)
    assert (row["parent"], row["fork_step"]) == (run.id, 20)
    shown = json.loads(cli(lx, "show", same.id, "--format", "json").stdout)
    assert (shown["parent"], shown["fork_step"]) == (run.id, 20)
    assert f"branched from run {run.id} at step 20" in cli(lx, "show", same.id).stdout


def test_incompatible_edits_are_refused_by_name_unless_weights_only(parent):
    lx, run, ref = parent
    with lx.store() as s:
        before = len(s.list_runs())
    for field, value in (("model.arch.num_layers", "2"), ("optimizer.name", "sgd")):
        out = cli(lx, "branch", run.id, "--set", f"{field}={value}", "--detach")
        assert out.returncode == 2, out
        assert f"{field}:" in out.stderr and "--weights-only" in out.stderr, out.stderr
    with lx.store() as s:
        assert len(s.list_runs()) == before  # a refused branch leaves no run behind
    sgd = start_child(
        lx, "branch", run.id, "--weights-only", "--set", "optimizer.name=sgd",
        "--set", "training.max_steps=8", "--name", "sgd",
    )  # fmt: skip
    deeper = start_child(
        lx, "branch", run.id, "--step", "30", "--weights-only", "--name", "deeper",
        "--set", "model.arch.num_layers=2", "--set", "training.max_steps=8",
    )  # fmt: skip
    for child in (sgd, deeper):
        info = lx.wait(child, timeout=300)
        assert info.status == "completed", lx.log(child)[-3000:]
    with lx.store() as s:
        got = dict(losses(s, sgd.id))
        ev = {c.id: next(e for e in s.events(c.id) if e.kind == "branched") for c in (sgd, deeper)}
        assert (s.get_run(deeper.id).parent, s.get_run(deeper.id).fork_step) == (run.id, 30)
    # Fresh optimizer, schedule and data order: steps from 1; but the weights are the trained
    # parent's at step 40, far from an untrained model's first loss.
    assert sorted(got) == list(range(1, 9))
    assert got[1] < ref[1] - 0.5, (got[1], ref[1])
    assert "weights only" in ev[sgd.id].message and "skipped" not in ev[sgd.id].message
    assert "skipped" in ev[deeper.id].message  # the new layer has nothing to load from


def test_rerun_of_a_steered_run_is_exact(launcher):
    # Long (4000 steps): the three commands must land while it runs; the stop ends it early, and
    # the rerun stops at the same step.
    sets = [
        *PARENT,
        "training.max_steps=4000",
        "training.eval_every=100",
        "training.save_every=100",
    ]
    run = launcher.start(sets, name="steered")
    with launcher.store() as s:
        launcher.wait_step(run, 5)
        applied = []
        for kind, payload in (
            ("set_lr", {"lr": 3e-4}),
            ("scale_lr", {"factor": 0.5}),
            ("stop", None),
        ):
            cmd = s.wait_command(s.send_command(run.id, kind, payload), timeout=60)
            assert cmd.status == "applied", cmd
            applied.append((cmd.applied_step, kind))
    info = launcher.wait(run, timeout=300)
    assert info.status == "early_stopped" and info.exit_reason == "user"
    stop_step = applied[-1][0]

    out = cli(launcher, "rerun", run.id, "--detach")
    assert out.returncode == 0, out.stderr
    with launcher.store() as s:
        again = s.get_run(out.stdout.strip().splitlines()[-1])
    launcher.track(again)
    info2 = launcher.wait(again, timeout=300)
    assert info2.status == "early_stopped", launcher.log(again)[-3000:]
    assert info2.exit_reason == f"schedule: stop at step {stop_step}"
    assert [(e["step"], next(k for k in e if k != "step")) for e in
            again.config["steering"]["schedule"]] == applied  # fmt: skip
    with launcher.store() as s:
        a_loss, b_loss = dict(losses(s, run.id)), dict(losses(s, again.id))
        a_lr = {p.step: p.value for p in s.tail(run.id, ["lr"])}
        b_lr = {p.step: p.value for p in s.tail(again.id, ["lr"])}
    assert sorted(a_loss) == sorted(b_loss) == list(range(1, stop_step + 1))
    assert max(rel(b_lr[k], a_lr[k]) for k in a_lr) < 1e-9
    assert max(rel(b_loss[k], a_loss[k]) for k in a_loss) < 1e-5
    assert a_lr[applied[0][0] + 1] == pytest.approx(3e-4)

    shown = cli(launcher, "show", run.id).stdout
    assert "interventions (3):" in shown and "scale_lr" in shown
    lines = [
        json.loads(x)
        for x in cli(launcher, "export", run.id, "--format", "jsonl").stdout.splitlines()
    ]
    events = [(x["step"], x["kind"]) for x in lines if x.get("event") == "intervention"]
    assert events == applied


def test_longer_cosine_branch_rewarms_instead_of_jumping(parent):
    """A branch at step 30 of the 40-step cosine parent with max_steps 120 would start at ~4x the
    parent's LR there: by default it re-warms from the parent's LR (printed before the launch,
    kept in the branch plan); `--rewarm 0` jumps, which is what the default avoids."""
    lx, run, _ = parent
    longer = ("--step", "30", "--set", "training.max_steps=120")
    shown = cli(lx, "branch", run.id, *longer, "--rewarm", "-1", "--detach")
    assert shown.returncode == 2 and "--rewarm must be" in shown.stderr, shown
    out = cli(lx, "branch", run.id, *longer, "--name", "rewarmed", "--detach")
    assert out.returncode == 0, out.stderr
    # 5% of the 90 remaining steps is 5: the minimum, 10.
    assert "re-warm from" in out.stderr and "over 10 steps" in out.stderr, out.stderr
    with lx.store() as s:
        rewarmed = s.get_run(out.stdout.strip().splitlines()[-1])
    lx.track(rewarmed)
    jumped = start_child(lx, "branch", run.id, *longer, "--rewarm", "0", "--name", "jumped")
    for child in (rewarmed, jumped):
        info = lx.wait(child, timeout=300)
        assert info.status == "completed", lx.log(child)[-3000:]
    with lx.store() as s:
        parent_lr = {p.step: p.value for p in s.tail(run.id, ["lr"])}[31]  # the LR at the fork
        lrs = {c.id: {p.step: p.value for p in s.tail(c.id, ["lr"])} for c in (rewarmed, jumped)}
        ev = next(e for e in s.events(rewarmed.id) if e.kind == "branched")
    plan = json.loads((Path(rewarmed.run_dir) / "branch.json").read_text())
    assert plan["rewarm_steps"] == 10 and plan["parent_lr"] == pytest.approx(parent_lr, rel=1e-6)
    assert ev.data["rewarm_steps"] == 10 and "re-warm from" in ev.message
    got, jump = lrs[rewarmed.id], lrs[jumped.id]
    assert 0.5 < got[31] / parent_lr < 2, (got[31], parent_lr)
    assert got[31] == pytest.approx(parent_lr, rel=1e-6)
    assert all(got[s] < got[s + 1] for s in range(31, 40))  # climbing to the new schedule
    assert got[41] == pytest.approx(jump[41], rel=1e-6)  # ...and on it from step 41
    assert jump[31] / parent_lr > 2, (jump[31], parent_lr)  # without: the jump it avoids
