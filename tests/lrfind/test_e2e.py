"""Real-process tests: a range test on the tiny demo, a 2-branch race applied to a live run, and a
race that pauses the run, applies the winner after its resume and branches a full run from it."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.train.helpers import DEMO, ENV, REPO, TINY, Launcher
from tuitrain.config import load_config, save_yaml
from tuitrain.lrfind.probe import with_lr
from tuitrain.runs.launch import LAUNCH_FILE
from tuitrain.store import Store

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
CLI_TIMEOUT_S = 420
CLI_ENV = {**os.environ, **ENV}
# A live parent: runs until the test ends, a checkpoint every 20 steps, a loss every step.
LIVE = [*TINY, "training.max_steps=100000", "training.save_every=20", "training.log_every=1"]


@pytest.fixture
def launcher(tmp_path):
    """Launcher whose teardown also kills what the CLI started (range test, branches, a resumed
    parent): every process group named by a launch file under the runs directory."""
    lx = Launcher(tmp_path)
    yield lx
    lx.kill_all()
    for f in lx.runs_dir.glob(f"*/{LAUNCH_FILE}"):
        try:
            os.killpg(json.loads(f.read_text())["pgid"], signal.SIGKILL)
        except (ProcessLookupError, KeyError, ValueError):
            pass


def cli(*args: str, runs_dir: Path, tiny: bool = True) -> subprocess.CompletedProcess:
    sets = [x for s in TINY for x in ("--set", s)] if tiny else []
    return subprocess.run(
        [sys.executable, "-m", "tuitrain", *args, *sets, "--runs-dir", str(runs_dir)],
        capture_output=True,
        text=True,
        env=CLI_ENV,
        timeout=CLI_TIMEOUT_S,
        cwd=REPO,
    )


def live_parent(launcher: Launcher):
    """A running tiny demo with at least one complete checkpoint."""
    parent = launcher.start(LIVE, name="live")
    ckpts = Path(parent.run_dir) / "checkpoints"
    deadline = time.monotonic() + 240
    while not list(ckpts.glob("step-*/complete.json")):
        assert time.monotonic() < deadline, "no checkpoint within 240 s:\n" + launcher.log(parent)
        time.sleep(0.5)
    return parent


def test_range_test_on_demo_suggests_and_writes_config(launcher, tmp_path):
    runs_dir = launcher.runs_dir
    r = cli(
        "lr-find",
        str(DEMO),
        "--steps",
        "40",
        "--min",
        "1e-5",
        "--max",
        "3",
        "--format",
        "json",
        runs_dir=runs_dir,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["method"] in ("steepest", "min/10")
    assert math.isfinite(out["suggested_lr"]) and 1e-5 <= out["suggested_lr"] <= 3
    assert 2 <= len(out["points"]) <= 40
    lrs = [p[0] for p in out["points"]]
    assert lrs == sorted(lrs) and lrs[0] == pytest.approx(1e-5)  # the ramp, step by step
    with Store(runs_dir) as s:
        run = s.get_run(out["run_id"])
        assert run.config["run"]["kind"] == "lr_find" and run.status == "completed"
        assert run.summary["lr_find"]["suggested_lr"] == pytest.approx(out["suggested_lr"])
        assert "val_loss" not in s.metric_names(run.id)  # a probe: no eval
    assert not (Path(run.run_dir) / "checkpoints").exists()  # ...and no checkpoints
    # Write it into a saved config through the config model, with linear lr_scaling on.
    base = load_config(DEMO, sets=["batch.lr_scaling=linear", "batch.reference_batch=4"])
    cfg, scale = with_lr(base.config, out["suggested_lr"])
    saved = tmp_path / "tuned.yaml"
    save_yaml(cfg, saved)
    again = load_config(saved)
    assert scale == pytest.approx(again.derived.effective_batch / 4)
    assert again.derived.scaled_lr == pytest.approx(out["suggested_lr"], rel=0.01)


def test_two_branch_race_applied_late_sends_the_factor_to_the_live_run(launcher):
    """The run trains on during the race, so its schedule has moved on when the race ends: the
    winner goes as scale_lr with the winning factor (the winning branch's LR / the base LR),
    not as the LR measured at the race's start. (--force: a race too close to call applies too.)"""
    runs_dir = launcher.runs_dir
    parent = live_parent(launcher)
    r = cli(
        "lr-race",
        parent.id,
        "--factors",
        "0.3,3",
        "--steps",
        "6",
        "--extend",
        "0",
        "--apply",
        "--force",
        "--format",
        "json",
        runs_dir=runs_dir,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(out["lanes"]) == 2 and out["winner"] is not None
    assert all(math.isfinite(lane["val_loss"]) for lane in out["lanes"])
    best = min(out["lanes"], key=lambda lane: lane["val_loss"])
    if not out["too_close"]:
        assert out["winner"]["run_id"] == best["run_id"]
    with Store(runs_dir) as s:
        for lane in out["lanes"]:
            child = s.get_run(lane["run_id"])
            assert child.parent == parent.id and child.terminal
        (cmd,) = s.commands(parent.id)
        assert cmd.kind == "scale_lr" and cmd.status == "applied"
        assert cmd.payload == {"factor": pytest.approx(out["winning_factor"])}
        win = s.get_run(out["winner"]["run_id"])
        ratio = win.config["optimizer"]["lr"] / s.get_run(parent.id).config["optimizer"]["lr"]
        assert cmd.payload["factor"] == pytest.approx(ratio)  # the winning LR / the base LR
        assert cmd.applied_step > out["fork_step"]  # the run had trained on meanwhile
        assert not s.get_run(parent.id).terminal  # the live run goes on with the new LR
    # The race's own record: branches, LRs, scores and winner, as `lr-race show` reads it.
    shown = cli(
        "lr-race", "show", out["race_id"], "--format", "json", runs_dir=runs_dir, tiny=False
    )
    assert shown.returncode == 0, shown.stderr
    rec = json.loads(shown.stdout)
    assert rec["status"] == "done" and rec["parent"] == parent.id and not rec["paused"]
    assert sorted(b["run_id"] for b in rec["branches"]) == sorted(x["run_id"] for x in out["lanes"])
    assert rec["verdict"]["winner"]["run_id"] == out["winner"]["run_id"]
    assert rec["winning_lr"] == pytest.approx(out["apply_lr"])
    assert rec["applied"] == {
        "run": parent.id, "kind": "scale_lr", "value": pytest.approx(out["winning_factor"]),
        "status": "applied", "step": cmd.applied_step, "forced": out["too_close"],
    }  # fmt: skip
    text = cli("lr-race", "show", out["race_id"][:15], runs_dir=runs_dir, tiny=False)
    assert text.returncode == 0 and f"winner: x{out['winning_factor']:g}" in text.stdout
    listing = cli("lr-race", "show", runs_dir=runs_dir, tiny=False)
    assert out["race_id"] in listing.stdout and "done" in listing.stdout
    missing = cli("lr-race", "show", "nope", runs_dir=runs_dir, tiny=False)
    assert missing.returncode == 4 and "'nope' is no race" in missing.stderr


def test_paused_race_resumes_the_run_applies_and_branches_the_winner(launcher):
    runs_dir = launcher.runs_dir
    parent = live_parent(launcher)
    r = cli(
        "lr-race",
        parent.id,
        "--factors",
        "0.3,3",
        "--steps",
        "6",
        "--extend",
        "0",
        "--pause",
        "--apply",
        "--force",  # applied even when too close to call: this test is about what is sent
        "--branch",
        "--format",
        "json",
        runs_dir=runs_dir,
        tiny=False,  # the parent's config is tiny already (and its max_steps must stand)
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["paused"] and out["resumed"] and out["branched"]
    with Store(runs_dir) as s:
        # The branches start where the run paused (SIGTERM: it saved a checkpoint and stopped).
        pause_step = out["fork_step"]
        # (The resumed run may have rotated that checkpoint away since: read the branch plans.)
        assert pause_step >= 20
        for lane in out["lanes"]:
            lane_run = s.get_run(lane["run_id"])
            assert lane_run.fork_step == pause_step
            plan = json.loads((Path(lane_run.run_dir) / "branch.json").read_text())
            assert plan["checkpoint"].endswith(f"step-{pause_step}"), plan
        # Resumed in the same run, then the winner's LR applied to it: still standing at the
        # race's start, so the absolute LR (the LR raced from x the winning factor).
        (cmd,) = s.commands(parent.id)
        assert cmd.kind == "set_lr" and cmd.status == "applied"
        assert cmd.payload["lr"] == pytest.approx(out["apply_lr"])
        assert cmd.applied_step >= pause_step
        assert out["applied"]["kind"] == "set_lr" and out["applied"]["step"] == cmd.applied_step
        assert not s.get_run(parent.id).terminal
        # The winner continued as a full-length run: a branch of the winning branch, at its LR.
        child = s.get_run(out["branched"])
        win = s.get_run(out["winner"]["run_id"])
        assert child.parent == win.id and child.fork_step == pause_step + 6
        assert child.config["optimizer"]["lr"] == pytest.approx(win.config["optimizer"]["lr"])
        assert child.config["training"]["max_steps"] == 100000
        assert not any(t.startswith("race") for t in child.config["run"].get("tags", []))


def test_a_race_too_close_to_call_applies_nothing_without_force(launcher):
    """x1 against x1.001: the val losses differ by far less than the noise. --apply sends
    nothing (exit 1, the reason printed and recorded); the run goes on at its own LR."""
    runs_dir = launcher.runs_dir
    parent = live_parent(launcher)
    r = cli(
        "lr-race", parent.id, "--factors", "1,1.001", "--steps", "6", "--extend", "0", "--apply",
        runs_dir=runs_dir,
    )  # fmt: skip
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-3000:]
    assert "not applied: too close to call" in r.stdout and "--apply --force" in r.stdout
    race_id = r.stdout.split("record: tuitrain lr-race show ")[1].split()[0]
    with Store(runs_dir) as s:
        assert s.commands(parent.id) == []  # nothing sent
        assert not s.get_run(parent.id).terminal
        rec = s.races.get(race_id)
    assert rec["verdict"]["too_close"] and rec["verdict"]["winner"] is not None
    assert rec.get("applied") is None and "too close to call" in rec["not_applied"]
    shown = cli("lr-race", "show", race_id, runs_dir=runs_dir, tiny=False)
    assert "not applied: too close to call" in shown.stdout


def test_a_race_whose_lane_driver_is_killed_has_no_winner(launcher):
    """kill -9 of the lane driver: its branch ends failed, its reason naming the driver's log
    (the only log with anything in it); the race goes on in a new driver, but one finished
    branch judges nothing: status incomplete, exit 1, no winner, nothing applied."""
    runs_dir = launcher.runs_dir
    sets = [x for s in TINY for x in ("--set", s)]
    argv = [sys.executable, "-m", "tuitrain", "lr-race", str(DEMO), "--factors", "1,3",
            "--steps", "4", "--extend", "0", "--apply", "--format", "json", *sets,
            "--runs-dir", str(runs_dir)]  # fmt: skip
    race = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CLI_ENV, cwd=REPO
    )
    lanes_dir = runs_dir / "races" / "lanes"
    try:
        deadline = time.monotonic() + 120
        while not (found := sorted(lanes_dir.glob("*.launch.json")) if lanes_dir.is_dir() else []):
            assert race.poll() is None, race.communicate()
            assert time.monotonic() < deadline, "no lane driver within 120 s"
            time.sleep(0.05)
        info = json.loads(found[0].read_text())
        os.killpg(info["pgid"], signal.SIGKILL)  # the driver, still importing: nothing trained
        out_text, err = race.communicate(timeout=CLI_TIMEOUT_S)
    finally:
        if race.poll() is None:
            race.kill()
            race.wait(timeout=30)
    assert race.returncode == 1, out_text[-2000:] + err[-3000:]
    out = json.loads(out_text.strip().splitlines()[-1])
    assert out["winner"] is None and out["apply_lr"] is None and out["status"] == "incomplete"
    assert out["applied"] is None  # --apply had nothing to apply
    by_status = sorted(lane["status"] for lane in out["lanes"])
    assert by_status == ["completed", "failed"], out["lanes"]
    failed = next(lane for lane in out["lanes"] if lane["status"] == "failed")
    driver_log = str(found[0]).replace(".launch.json", ".log")
    assert driver_log in failed["reason"], failed["reason"]
    assert "killed by SIGKILL" in failed["reason"], failed["reason"]
    assert any(driver_log in n for n in out["notes"]) and any("only one" in n for n in out["notes"])
    shown = cli(
        "lr-race", "show", out["race_id"], "--format", "json", runs_dir=runs_dir, tiny=False
    )
    rec = json.loads(shown.stdout)
    assert rec["status"] == "incomplete" and rec["winning_lr"] is None and not rec.get("applied")
