"""Provides helpers for trainer tests: tiny configs, real detached launches with a time bound,
cleanup of every process group a test started, and per-test copies of a runs directory trained
once per session (see tests/train/conftest.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest

from tuitrain.config import load_config
from tuitrain.runs import liveness
from tuitrain.runs.launch import LAUNCH_FILE, launch
from tuitrain.store import Store

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "demo.yaml"
ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
}
# A tiny from-scratch byte LM on a slice of the stdlib corpus: a few seconds of CPU per run.
TINY = [
    "model.arch.hidden_size=32",
    "model.arch.num_layers=1",
    "model.arch.num_heads=2",
    "model.arch.max_position_embeddings=64",
    "data.max_seq_length=32",
    "data.max_bytes=60000",
    "batch.size=8",
    "training.max_steps=30",
    "training.eval_every=10",
    "training.eval_max_batches=2",
    "training.log_every=5",
    "generation.max_new_tokens=8",
]


class Trained:
    """A runs directory holding one ended run, trained once (a session fixture) and copied per
    test with Launcher.adopt."""

    def __init__(self, runs_dir: Path, run_id: str):
        self.runs_dir = runs_dir
        self.run_id = run_id


def train_once(folder: Path, sets: list[str], name: str = "t", timeout: float = 300.0) -> Trained:
    """Train `sets` on the demo config to its end under folder/runs; fails with the log if the
    run does not complete. Every process has exited when it returns (the copy is quiescent)."""
    lx = Launcher(folder)
    try:
        run = lx.start(sets, name=name)
        info = lx.wait(run, timeout=timeout)
        assert info.status == "completed", lx.log(run)[-3000:]
        lx.wait_exit(run)
        return Trained(lx.runs_dir, run.id)
    finally:
        lx.kill_all()


def free_port() -> int:
    """A TCP port nobody listens on right now (for the 2-rank rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Launcher:
    """Starts real runs under tmp_path/runs and kills whatever is left at teardown."""

    def __init__(self, tmp_path: Path):
        self.runs_dir = tmp_path / "runs"
        self.pgids: list[int] = []

    def start(self, sets: list[str], config: Path = DEMO, name: str = "t"):
        """Launch the config with --set style overrides; returns RunInfo."""
        resolved = load_config(config, sets=sets)
        run = launch(resolved, self.runs_dir, name=name, extra_env=ENV)
        self.track(run)
        return run

    def adopt(self, trained: Trained):
        """Copy a runs directory trained once per session (database, run folders, checkpoints)
        into this test's runs dir; the copied run's RunInfo, ended, with nothing to track. The
        store keys runs by id and finds a run's folder as runs_dir/<id>, so a copy is a store
        of its own: what a test writes to it never reaches the original or another test."""
        shutil.copytree(trained.runs_dir, self.runs_dir)
        with self.store() as s:
            return s.get_run(trained.run_id)

    def track(self, run) -> None:
        """Remember the run's process group for cleanup."""
        info = json.loads((Path(run.run_dir) / LAUNCH_FILE).read_text())
        self.pgids.append(info["pgid"])

    def store(self) -> Store:
        """A fresh store connection on the runs directory."""
        return Store(self.runs_dir)

    def log(self, run) -> str:
        """The run's train.log text."""
        p = Path(run.run_dir) / "train.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def wait(self, run, timeout: float = 120.0, statuses: tuple[str, ...] | None = None):
        """Poll until the run reaches a terminal status (or one of `statuses`); fail with its log otherwise."""
        deadline = time.monotonic() + timeout
        with self.store() as s:
            while time.monotonic() < deadline:
                info = liveness.get_run(s, run.id)  # a dead run ends the wait too
                done = info.status in statuses if statuses else info.terminal
                if done:
                    return info
                time.sleep(0.25)
        self.kill_all()
        pytest.fail(
            f"run {run.id} not done within {timeout} s; train.log tail:\n{self.log(run)[-3000:]}"
        )

    def wait_exit(self, run, timeout: float = 60.0) -> None:
        """Wait until every process of the run has exited."""
        pgid = json.loads((Path(run.run_dir) / LAUNCH_FILE).read_text())["pgid"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        self.kill_all()
        pytest.fail(f"processes of {run.id} still alive after {timeout} s")

    def wait_step(self, run, step: int, timeout: float = 120.0) -> None:
        """Wait until the store holds a loss at `step` or later."""
        deadline = time.monotonic() + timeout
        with self.store() as s:
            while time.monotonic() < deadline:
                if any(p.step >= step for p in s.tail(run.id, ["loss"])):
                    return
                if liveness.get_run(s, run.id).terminal:
                    pytest.fail(f"run ended before step {step}:\n{self.log(run)[-3000:]}")
                time.sleep(0.2)
        self.kill_all()
        pytest.fail(f"no step {step} within {timeout} s:\n{self.log(run)[-3000:]}")

    def kill_all(self) -> None:
        """SIGKILL every process group started by this test."""
        for pgid in self.pgids:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def losses(store: Store, run_id: str) -> list[tuple[int, float]]:
    """(step, loss) pairs of a run, by step."""
    return [(p.step, p.value) for p in store.tail(run_id, ["loss"])]


SFT_DEMO = REPO / "configs" / "sft-demo.yaml"
# The short SFT demo run: two evaluations (steps 20 and 40) of a tiny model, about 10 s of CPU.
SFT_SHORT = [
    "model.arch.hidden_size=64",
    "model.arch.num_layers=1",
    "model.arch.num_heads=2",
    "batch.size=8",
    "optimizer.lr=3e-3",
    "training.max_steps=40",
    "training.eval_every=20",
    "training.eval_max_batches=2",
    "training.log_every=5",
    "training.save_best=true",
    "generation.max_new_tokens=16",
]


def train_sft(folder: Path) -> Trained:
    """The short SFT demo run (chat records, ChatML, held-out validation prompts) trained to its
    end under folder/runs, all its processes gone."""
    lx = Launcher(folder)
    try:
        run = lx.start(SFT_SHORT, config=SFT_DEMO, name="sft")
        info = lx.wait(run, timeout=300)
        assert info.status == "completed", lx.log(run)[-3000:]
        lx.wait_exit(run)
        return Trained(lx.runs_dir, run.id)
    finally:
        lx.kill_all()
