"""Exact resume, end to end: a run stopped by SIGTERM (or killed with -9 after a checkpoint) and
resumed logs the same loss at every step as the same run left alone; best weights never come
from a timeline the resume abandoned. Real `accelerate launch` subprocesses on CPU."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tuitrain.runs import liveness
from tuitrain.runs.checkpoints import best_steps
from tuitrain.runs.launch import LAUNCH_FILE, resume
from tuitrain.train.checkpoint import periodic

from .helpers import ENV, TINY, Launcher, losses

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

# Deterministic, 60 steps, evals/checkpoints on a cadence, early stopping armed (its memory must
# survive the resume too) but with a patience that never ends the run.
EXACT = [
    *TINY,
    "run.deterministic=true",
    "training.max_steps=60",
    "training.log_every=1",
    "training.eval_every=10",
    "training.save_every=20",
    "early_stopping.enabled=true",
    "early_stopping.patience=100",
    "scheduler.name=cosine",
    "scheduler.warmup_steps=5",
]


def pgid_of(run) -> int:
    return json.loads((Path(run.run_dir) / LAUNCH_FILE).read_text())["pgid"]


def seen_step(lx: Launcher, run) -> int:
    with lx.store() as s:
        return max((p for p, _ in losses(s, run.id)), default=0)


def freeze_when(cond, lx: Launcher, run, timeout: float = 250.0) -> None:
    """Run the training group in short slices (SIGCONT, 20 ms, SIGSTOP) until `cond()` holds
    while it is stopped; it is left stopped. Watching a free-running trainer races it: under
    load the watcher can be descheduled long enough for a 60-step run to finish."""
    pgid = pgid_of(run)
    deadline = time.monotonic() + timeout
    try:
        os.killpg(pgid, signal.SIGSTOP)
        while not cond():
            if time.monotonic() > deadline:
                lx.kill_all()
                pytest.fail(f"condition not met within {timeout} s:\n{lx.log(run)[-3000:]}")
            os.killpg(pgid, signal.SIGCONT)
            time.sleep(0.02)
            os.killpg(pgid, signal.SIGSTOP)
    except ProcessLookupError:
        pytest.fail(f"the run ended before the condition held:\n{lx.log(run)[-3000:]}")


def logged_step(lx: Launcher, run) -> int:
    """The last `step N/M` line of train.log (written unbuffered, so never behind the trainer)."""
    found = re.findall(r"^step (\d+)/", lx.log(run), flags=re.M)
    return int(found[-1]) if found else 0


def assert_same_losses(ref: dict[int, float], got: dict[int, float], after: int) -> None:
    assert sorted(got) == sorted(ref) == list(range(1, 61))
    worst = max(abs(got[s] - ref[s]) / abs(ref[s]) for s in range(after + 1, 61))
    assert worst < 1e-5, {s: (ref[s], got[s]) for s in range(after + 1, 61) if got[s] != ref[s]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same config trained without interruption: (step -> loss, summary)."""
    lx = Launcher(tmp_path_factory.mktemp("ref"))
    try:
        run = lx.start(EXACT, name="ref")
        info = lx.wait(run, timeout=300)
        assert info.status == "completed", lx.log(run)[-3000:]
        with lx.store() as s:
            return dict(losses(s, run.id)), info.summary
    finally:
        lx.kill_all()


def test_sigterm_then_resume_matches_the_uninterrupted_run(launcher, reference):
    ref, ref_summary = reference
    run = launcher.start(EXACT, name="cut")
    pgid = pgid_of(run)
    freeze_when(lambda: logged_step(launcher, run) >= 22, launcher, run)  # well before 60
    os.killpg(pgid, signal.SIGTERM)
    os.killpg(pgid, signal.SIGCONT)
    info = launcher.wait(run, timeout=120)
    launcher.wait_exit(run)
    assert info.status == "stopped" and info.exit_reason == "SIGTERM", launcher.log(run)[-2000:]
    cut = periodic(Path(run.run_dir))[-1][0]
    assert 22 <= cut < 60 and seen_step(launcher, run) == cut

    launcher.track(resume(run.id, launcher.runs_dir, extra_env=ENV))
    info = launcher.wait(run, timeout=300)
    assert info.status == "completed", launcher.log(run)[-3000:]
    with launcher.store() as s:
        got = dict(losses(s, run.id))
        lrs = {p.step: p.value for p in s.tail(run.id, ["lr"])}
        resumed = [e for e in s.events(run.id) if e.kind == "resumed"]
    assert len(resumed) == 1 and resumed[0].step == cut
    assert_same_losses(ref, got, cut)
    assert len(lrs) == 60
    # Early-stopping memory and the timeline's summary came back with the checkpoint.
    for key in ("best_step", "best_value", "best_val_loss", "final_val_loss", "steps"):
        assert info.summary[key] == pytest.approx(ref_summary[key], rel=1e-5), key


def test_kill_9_after_a_checkpoint_then_resume_matches(launcher, reference):
    ref, _ = reference
    run = launcher.start(EXACT, name="killed")
    rd = Path(run.run_dir)

    def steps_past_a_checkpoint():  # trained after the checkpoint: lost by the kill, redone
        ck = periodic(rd)
        return ck and logged_step(launcher, run) >= max(25, ck[-1][0] + 1)

    freeze_when(steps_past_a_checkpoint, launcher, run)
    os.killpg(pgid_of(run), signal.SIGKILL)
    launcher.wait_exit(run)
    with launcher.store() as s:
        assert liveness.get_run(s, run.id).status == "crashed"  # its pid is gone
    cut = periodic(rd)[-1][0]
    assert logged_step(launcher, run) > cut  # steps after the checkpoint were lost and are redone

    launcher.track(resume(run.id, launcher.runs_dir, extra_env=ENV))
    info = launcher.wait(run, timeout=300)
    assert info.status == "completed", launcher.log(run)[-3000:]
    with launcher.store() as s:
        got = dict(losses(s, run.id))
    assert_same_losses(ref, got, cut)


def test_restore_best_never_loads_weights_of_an_abandoned_timeline(launcher):
    sets = [*EXACT, "training.eval_every=5", "early_stopping.min_delta=0"]
    run = launcher.start(sets, name="timeline")
    rd = Path(run.run_dir)

    def best_after_checkpoint():
        ck = [s for s, _ in periodic(rd)]
        return ck and any(b > ck[-1] for b in best_steps(rd))

    freeze_when(best_after_checkpoint, launcher, run)
    os.killpg(pgid_of(run), signal.SIGKILL)
    launcher.wait_exit(run)
    cut, cut_dir = periodic(rd)[-1]
    assert max(best_steps(rd)) > cut  # the abandoned timeline left a newer best on disk
    kept = json.loads((cut_dir / "complete.json").read_text())["best_step"]
    assert 0 < kept <= cut
    # The resumed timeline never improves again (any change must beat 1e3), so its best is the
    # one its checkpoint recorded, not the abandoned run's later one.
    cfg = rd / "config.yaml"
    cfg.write_text(cfg.read_text().replace("min_delta: 0.0", "min_delta: 1000.0"))
    assert "min_delta: 1000.0" in cfg.read_text()

    launcher.track(resume(run.id, launcher.runs_dir, extra_env=ENV))
    info = launcher.wait(run, timeout=300)
    assert info.status == "completed", launcher.log(run)[-3000:]
    assert info.summary["best_step"] == kept
    assert best_steps(rd) == [kept]
    with launcher.store() as s:
        restored = [e.message for e in s.events(run.id) if "restored best" in e.message]
    assert restored == [restored[0]] and f"from step {kept} " in restored[0]
    best = torch.load(rd / "checkpoints" / f"best-{kept}" / "trainable.pt", weights_only=True)
    final = load_file(rd / "final" / "model.safetensors")
    common = set(best) & set(final)
    assert len(common) >= len(final) - 1
    assert all(torch.equal(best[k], final[k]) for k in common)
    last = load_file(periodic(rd)[-1][1] / "model.safetensors")
    assert any(not torch.equal(last[k], final[k]) for k in common)  # the restore changed weights
