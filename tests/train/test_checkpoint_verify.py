"""Checkpoint verification (issue 22): a manifest of sizes and hashes written last, checked before
a resume; a damaged newest checkpoint is named and skipped, none usable refuses and leaves the
run's status alone; the loop state loads as JSON, never as a pickle. The fast tests build
checkpoint folders by hand (torch-free); the slow one damages a real run's checkpoint."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuitrain.runs.checkpoints import (
    DONE_MARK,
    CheckpointError,
    choose_resume,
    verify,
    write_done,
)
from tuitrain.runs.launch import stop
from tuitrain.store import Store

from .helpers import ENV, REPO, TINY, losses


def make_ckpt(run_dir: Path, step: int, manifest: bool = True) -> Path:
    d = run_dir / "checkpoints" / f"step-{step}"
    (d / "adapter").mkdir(parents=True)
    (d / "model.safetensors").write_bytes(os.urandom(4096))
    (d / "optimizer.bin").write_bytes(os.urandom(2048))
    (d / "adapter" / "adapter_model.safetensors").write_bytes(b"a" * 100)
    if manifest:
        write_done(d, {"step": step, "best_step": -1})
    else:  # as tuitrain wrote it before manifests
        (d / DONE_MARK).write_text(json.dumps({"step": step, "best_step": -1}))
    return d


def test_manifest_lists_every_file_and_a_whole_checkpoint_verifies(tmp_path):
    d = make_ckpt(tmp_path, 10)
    files = json.loads((d / DONE_MARK).read_text())["files"]
    assert sorted(files) == [
        "adapter/adapter_model.safetensors",
        "model.safetensors",
        "optimizer.bin",
    ]
    assert files["optimizer.bin"]["size"] == 2048 and len(files["optimizer.bin"]["sha256"]) == 64
    (d / "pinned.json").write_text("{}")  # the doctor pins a finished checkpoint later
    v = verify(d)
    assert v.ok and v.verified and v.step == 10


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda d: (d / "model.safetensors").write_bytes(b"x" * 100), "model.safetensors: incomplete (100 of 4096 bytes)"),
        (lambda d: (d / "optimizer.bin").write_bytes(os.urandom(2048)), "optimizer.bin: content differs from the manifest"),
        (lambda d: (d / "optimizer.bin").write_bytes(os.urandom(3000)), "optimizer.bin: 3000 bytes, the manifest says 2048"),
        (lambda d: (d / "adapter" / "adapter_model.safetensors").unlink(), "adapter/adapter_model.safetensors: missing"),
        (lambda d: (d / DONE_MARK).unlink(), "complete.json: missing (the save did not finish)"),
        (lambda d: (d / DONE_MARK).write_text("{trunc"), "complete.json: unreadable"),
    ],
)  # fmt: skip
def test_damage_is_named_with_the_file(tmp_path, damage, problem):
    d = make_ckpt(tmp_path, 30)
    damage(d)
    v = verify(d)
    assert not v.ok and any(p.startswith(problem) for p in v.problems), v.problems


def test_resume_falls_back_to_the_newest_valid_and_says_which_it_skipped(tmp_path):
    make_ckpt(tmp_path, 100)
    make_ckpt(tmp_path, 200)
    d300 = make_ckpt(tmp_path, 300)
    (d300 / "model.safetensors").write_bytes(b"x" * 10)
    path, notes = choose_resume(tmp_path)
    assert path.name == "step-200"
    assert notes == [
        "step-300 is damaged (model.safetensors: incomplete (10 of 4096 bytes)); resuming from step-200"
    ]


def test_old_checkpoint_without_manifest_is_accepted_with_a_note(tmp_path):
    make_ckpt(tmp_path, 50, manifest=False)
    path, notes = choose_resume(tmp_path)
    assert path.name == "step-50"
    assert notes == [
        "step-50 has no manifest (saved by an older tuitrain): resuming from it unverified"
    ]


def test_no_usable_checkpoint_lists_each_one(tmp_path):
    with pytest.raises(CheckpointError, match="no complete checkpoint in"):
        choose_resume(tmp_path)
    for step in (10, 20):
        (make_ckpt(tmp_path, step) / "optimizer.bin").write_bytes(b"")
    with pytest.raises(CheckpointError) as err:
        choose_resume(tmp_path)
    msg = str(err.value)
    assert "step-20 is damaged (optimizer.bin: incomplete (0 of 2048 bytes))" in msg
    assert "step-10 is damaged (optimizer.bin: incomplete (0 of 2048 bytes))" in msg


def cli(runs_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **ENV, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "tuitrain", "--runs-dir", str(runs_dir), *args],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
    )  # fmt: skip


def test_cli_resume_refuses_without_a_usable_checkpoint_and_keeps_the_status(tmp_path):
    runs = tmp_path / "runs"
    with Store(runs) as store:
        run = store.create_run({}, {}, name="hurt", status="queued")
        store.set_status(run.id, "stopped", "SIGTERM")
        run_dir = store.run_dir(run.id)
    (make_ckpt(run_dir, 40) / "model.safetensors").write_bytes(b"")
    out = cli(runs, "resume", run.id)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert "step-40 is damaged (model.safetensors: incomplete (0 of 4096 bytes))" in out.stderr
    with Store(runs) as store:
        assert store.get_run(run.id).status == "stopped"


class Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_old_pickled_loop_state_loads_with_weights_only(tmp_path):
    # A checkpoint from before train_state.json keeps the loop state in custom_checkpoint_{i}.pkl;
    # it is read with weights_only=True: plain numbers load, code objects are refused.
    torch = pytest.importorskip("torch")
    from tuitrain.train.checkpoint import CheckpointLoadError, load
    from tuitrain.train.setup import TrainState

    class Acc:
        def load_state(self, path):  # Accelerate's own files are not the point here
            pass

    d = tmp_path / "step-5"
    d.mkdir()
    st = TrainState()
    st.step, st.best_value = 5, 1.25
    torch.save({"multiplier": 0.5}, d / "custom_checkpoint_0.pkl")
    torch.save(st.state_dict(), d / "custom_checkpoint_1.pkl")

    class Lr:
        def load_state_dict(self, s):
            self.m = s["multiplier"]

    lr, again = Lr(), TrainState()
    load(Acc(), d, {"lr": lr, "loop": again})
    assert lr.m == 0.5 and again.step == 5 and again.best_value == 1.25
    (d / "custom_checkpoint_1.pkl").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(CheckpointLoadError, match="step-5 could not be loaded"):
        load(Acc(), d, {"lr": lr, "loop": TrainState()})


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_truncated_newest_checkpoint_resumes_from_the_one_before(launcher):
    sets = [*TINY, "training.max_steps=4000", "training.eval_every=1000", "training.save_every=10",
            "training.save_total_limit=3"]  # fmt: skip
    run = launcher.start(sets, name="hurt")
    launcher.wait_step(run, 25)
    assert stop(run, grace_s=60) == "stopped"
    launcher.wait_exit(run)
    rd = Path(run.run_dir)
    steps = sorted(int(d.name[5:]) for d in (rd / "checkpoints").glob("step-*"))
    newest, before = steps[-1], steps[-2]
    with launcher.store() as s:
        assert s.get_run(run.id).status == "stopped"
        logged = max(p for p, _ in losses(s, run.id))
    assert logged == newest  # SIGTERM flushed every step up to the checkpoint it saved
    model = rd / "checkpoints" / f"step-{newest}" / "model.safetensors"
    with open(model, "r+b") as f:
        f.truncate(model.stat().st_size // 2)

    out = cli(launcher.runs_dir, "resume", run.id)
    assert out.returncode == 0, out.stderr
    launcher.track(run)  # the resumed process group, for cleanup
    expected = f"step-{newest} is damaged (model.safetensors: incomplete"
    assert expected in out.stderr and f"resuming from step-{before}" in out.stderr
    deadline = time.monotonic() + 240
    with launcher.store() as s:
        while not any(e.kind == "resumed" for e in s.events(run.id)):
            assert not s.get_run(run.id).terminal, launcher.log(run)[-3000:]
            assert time.monotonic() < deadline, launcher.log(run)[-3000:]
            time.sleep(0.2)
        events = s.events(run.id)
    resumed = [e for e in events if e.kind == "resumed"]
    assert len(resumed) == 1 and resumed[0].step == before, [e.message for e in events]
    assert any(e.kind == "warning" and expected in e.message for e in events)
    with launcher.store() as s:
        assert stop(s.get_run(run.id), grace_s=60) == "stopped"
    launcher.wait_exit(run)

    # Nothing usable: refused with the list, and the run stays as it was.
    for d in (rd / "checkpoints").glob("step-*"):
        (d / "optimizer.bin").write_bytes(b"garbage")
    out = cli(launcher.runs_dir, "resume", run.id)
    assert out.returncode == 1 and "no usable checkpoint" in out.stderr, out.stderr
    assert "optimizer.bin: " in out.stderr and "Traceback" not in out.stderr
    with launcher.store() as s:
        assert s.get_run(run.id).status == "stopped"


def test_verification_is_torch_free():
    # `tuitrain resume` checks before it launches: the check must not load the ML stack.
    code = "import sys, tuitrain.runs.checkpoints\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
