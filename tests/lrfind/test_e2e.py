"""Real-process tests: a range test on the tiny demo, and a 2-branch race applied to a live run."""

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

from tuitrain.config import load_config, save_yaml
from tuitrain.launch import LAUNCH_FILE, launch
from tuitrain.lrfind.probe import with_lr
from tuitrain.store import Store

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "demo.yaml"
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
}
# A tiny from-scratch byte LM on a slice of the stdlib corpus (as tests/train/helpers.py).
TINY = [
    "model.arch.hidden_size=32",
    "model.arch.num_layers=1",
    "model.arch.num_heads=2",
    "model.arch.max_position_embeddings=64",
    "data.max_seq_length=32",
    "data.max_bytes=60000",
    "batch.size=8",
    "training.eval_max_batches=2",
    "generation.max_new_tokens=4",
]
CLI_TIMEOUT_S = 420


@pytest.fixture
def runs_dir(tmp_path):
    """A runs directory whose every process group is killed at teardown, pass or fail."""
    d = tmp_path / "runs"
    yield d
    for f in d.glob(f"*/{LAUNCH_FILE}"):
        try:
            os.killpg(json.loads(f.read_text())["pgid"], signal.SIGKILL)
        except (ProcessLookupError, KeyError, ValueError):
            pass


def cli(*args: str, runs_dir: Path) -> subprocess.CompletedProcess:
    sets = [x for s in TINY for x in ("--set", s)]
    return subprocess.run(
        [sys.executable, "-m", "tuitrain", *args, *sets, "--runs-dir", str(runs_dir)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=CLI_TIMEOUT_S,
        cwd=REPO,
    )


def test_range_test_on_demo_suggests_and_writes_config(runs_dir, tmp_path):
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


def test_two_branch_race_applies_winner_to_live_run(runs_dir):
    sets = [*TINY, "training.max_steps=100000", "training.save_every=20", "training.log_every=1"]
    parent = launch(load_config(DEMO, sets=sets), runs_dir, name="live", extra_env=ENV)
    ckpts = Path(parent.run_dir) / "checkpoints"
    deadline = time.monotonic() + 240
    while not list(ckpts.glob("step-*/complete.json")):
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.5)
    r = cli(
        "lr-race",
        parent.id,
        "--factors",
        "0.3,3",
        "--steps",
        "6",
        "--apply",
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
        cmds = [c for c in s.commands(parent.id) if c.kind == "set_lr"]
        assert len(cmds) == 1 and cmds[0].status == "applied"
        assert cmds[0].payload["lr"] == pytest.approx(out["apply_lr"])
        assert not s.get_run(parent.id).terminal  # the live run goes on with the new LR
