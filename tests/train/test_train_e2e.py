"""End-to-end trainer tests: real `accelerate launch` subprocesses on CPU with tiny models."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest

from tuitrain.runs.checkpoints import best_steps
from tuitrain.runs.launch import LAUNCH_FILE, resume, stop
from tuitrain.train.checkpoint import periodic

from .helpers import ENV, REPO, TINY, free_port, losses

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_demo_config_trains_and_loss_falls(launcher, tiny_trained):
    run = launcher.adopt(tiny_trained)  # TINY, trained once per session
    info = launcher.wait(run, timeout=150)
    assert info.status == "completed", launcher.log(run)[-3000:]
    with launcher.store() as s:
        pts = losses(s, run.id)
        names = set(s.metric_names(run.id))
        events = s.events(run.id)
    assert [p[0] for p in pts] == list(range(1, 31))  # every optimizer step once, 1-based
    first, last = pts[:5], pts[-5:]
    assert sum(v for _, v in last) / 5 < sum(v for _, v in first) / 5 - 0.3, pts
    assert {
        "loss",
        "lr",
        "grad_norm",
        "epoch",
        "samples_per_s",
        "tokens_per_s",
        "val_loss",
        "val_perplexity",
    } <= names
    assert info.derived["total_steps"] == 30 and info.derived["train_samples"] > 0
    assert any(e.kind == "generation" and e.data["prompt"] == "def main(" for e in events)
    assert info.summary["steps"] == 30 and info.summary["best_step"] in (10, 20, 30)
    assert (Path(run.run_dir) / "final" / "config.json").is_file()
    assert best_steps(Path(run.run_dir)) == []  # early stopping off, no save_best: no copies
    assert [s for s, _ in periodic(Path(run.run_dir))] == [
        20,
        30,
    ]  # save_total_limit 2 rotates step-10 out


def test_sighup_ignored_sigterm_stops_then_resume_continues(launcher):
    # 1000 steps: under load, 250 tiny steps once all ran between wait_step and the SIGTERM.
    sets = [*TINY, "training.max_steps=1000", "training.eval_every=500", "training.save_every=500"]
    run = launcher.start(sets)
    pgid = json.loads((Path(run.run_dir) / LAUNCH_FILE).read_text())["pgid"]
    launcher.wait_step(run, 10)
    os.killpg(pgid, signal.SIGHUP)  # what a dropped SSH session sends
    with launcher.store() as s:
        seen = max(p for p, _ in losses(s, run.id))
    launcher.wait_step(run, seen + 10)
    assert stop(run, grace_s=60) == "stopped"
    with launcher.store() as s:
        info = s.get_run(run.id)
        steps = [p for p, _ in losses(s, run.id)]
    assert info.status == "stopped" and info.exit_reason == "SIGTERM", launcher.log(run)[-2000:]
    stopped_at = steps[-1]
    assert stopped_at < 1000 and steps == list(range(1, stopped_at + 1))
    assert (
        periodic(Path(run.run_dir))[-1][0] == stopped_at
    )  # SIGTERM saved a checkpoint at its step

    launcher.track(resume(run.id, launcher.runs_dir, extra_env=ENV))
    info = launcher.wait(run, timeout=150)
    assert info.status == "completed", launcher.log(run)[-3000:]
    with launcher.store() as s:
        pts = losses(s, run.id)
        kinds = [e.kind for e in s.events(run.id)]
    assert [p for p, _ in pts] == list(range(1, 1001))  # continued: nothing missing, nothing twice
    assert "resumed" in kinds
    # The weights came back: the loss right after the resume is far below the untrained loss.
    start = sum(v for _, v in pts[:5]) / 5
    after = sum(v for _, v in pts[stopped_at : stopped_at + 5]) / 5
    assert after < start - 0.5, (start, after)


def test_lora_on_tiny_model_saves_adapter(launcher):
    sets = [
        *TINY,
        "peft.method=lora",
        "peft.r=4",
        "peft.alpha=8",
        "training.max_steps=10",
        "optimizer.lr=5e-3",
    ]
    run = launcher.start(sets)
    info = launcher.wait(run, timeout=150)
    assert info.status == "completed", launcher.log(run)[-3000:]
    final = Path(run.run_dir) / "final"
    assert (final / "adapter_config.json").is_file() and (
        final / "adapter_model.safetensors"
    ).is_file()
    assert not (final / "model.safetensors").exists()  # the adapter alone, not the base model
    assert (
        Path(run.run_dir) / "checkpoints" / "step-10" / "adapter" / "adapter_config.json"
    ).is_file()
    with launcher.store() as s:
        started = next(e for e in s.events(run.id) if e.kind == "started")
    assert 0 < started.data["trainable_params"] < started.data["total_params"] / 2


def test_classification_with_pretrained_minilm(launcher):
    sets = [
        "training.max_steps=16",
        "training.eval_every=8",
        "batch.size=8",
        "data.max_seq_length=32",
        "training.log_every=4",
        "early_stopping.enabled=false",
    ]
    run = launcher.start(sets, config=REPO / "configs" / "seq-cls-minilm.yaml")
    info = launcher.wait(run, timeout=200)
    assert info.status == "completed", launcher.log(run)[-3000:]
    with launcher.store() as s:
        acc = [p.value for p in s.tail(run.id, ["val_accuracy"])]
        pts = losses(s, run.id)
    assert len(acc) == 2 and all(0.0 <= a <= 1.0 for a in acc)
    assert len(pts) == 16
    cfg = json.loads((Path(run.run_dir) / "final" / "config.json").read_text())
    assert cfg["id2label"] == {"0": "negative", "1": "positive"}


def test_nan_loss_stops_as_diverged_keeping_last_good_checkpoint(launcher):
    sets = [
        *TINY,
        "optimizer.name=sgd",
        "optimizer.lr=10",
        "training.max_grad_norm=0",
        "training.max_steps=200",
        "training.log_every=1",
        "scheduler.name=constant",
    ]
    run = launcher.start(sets)
    info = launcher.wait(run, timeout=150)
    assert info.status == "diverged", launcher.log(run)[-3000:]
    m = re.search(r"at step (\d+)", info.exit_reason)
    assert m and "clip gradients" in info.exit_reason and "lower the LR" in info.exit_reason
    bad_step = int(m.group(1))
    assert all(step < bad_step for step, _ in periodic(Path(run.run_dir)))
    with launcher.store() as s:
        ev = [e for e in s.events(run.id) if e.kind == "diverged"]
        assert max(p for p, _ in losses(s, run.id)) == bad_step
    assert ev and ev[0].step == bad_step


def test_two_rank_cpu_run_applies_commands_at_same_step(launcher):
    sets = [
        *TINY,
        "launch.num_processes=2",
        "launch.cpu=true",
        f"launch.main_process_port={free_port()}",
        "training.max_steps=3000",
        "training.eval_every=1000",
        "scheduler.name=constant",
        "scheduler.warmup_ratio=0",
    ]
    run = launcher.start(sets)
    launcher.wait_step(run, 5, timeout=150)
    with launcher.store() as s:
        cmd = s.send_command(run.id, "set_lr", {"lr": 2.5e-4})
        applied = s.wait_command(cmd, timeout=60)
        assert applied.status == "applied", applied
        stop_cmd = s.send_command(run.id, "stop")
    info = launcher.wait(run, timeout=120)
    launcher.wait_exit(run, timeout=60)
    log = launcher.log(run)
    assert info.status == "early_stopped" and info.exit_reason == "user", log[-3000:]
    for kind in ("set_lr", "stop"):
        at = {r: int(s) for r, s in re.findall(rf"\[rank (\d)\] step (\d+): applied {kind}", log)}
        assert set(at) == {"0", "1"} and at["0"] == at["1"], (kind, at)
    lr_step = int(re.search(r"\[rank 0\] step (\d+): applied set_lr", log).group(1))
    assert lr_step == applied.applied_step
    with launcher.store() as s:
        steps = [p for p, _ in losses(s, run.id)]
        lrs = {p.step: p.value for p in s.tail(run.id, ["lr"])}
        assert s.get_command(stop_cmd).status == "applied"
    assert steps == list(range(1, steps[-1] + 1))  # each step stored once, none missing
    assert lrs[lr_step + 1] == pytest.approx(2.5e-4) and lrs[lr_step] == pytest.approx(1e-3)
    assert "Traceback" not in log
