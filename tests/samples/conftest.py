"""Provides the samples tests' session fixture: one short run of configs/sft-demo.yaml (chat
records, ChatML, held-out validation prompts) trained once; tests that write take a copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.train.helpers import REPO, Launcher, Trained

SFT_DEMO = REPO / "configs" / "sft-demo.yaml"
# Two evaluations (steps 20 and 40) of a tiny model: about 10 s of CPU.
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


@pytest.fixture(scope="session")
def sft_trained(tmp_path_factory) -> Trained:
    """The short SFT demo run, trained to completion once per session (all its processes gone)."""
    lx = Launcher(tmp_path_factory.mktemp("sft-trained"))
    try:
        run = lx.start(SFT_SHORT, config=SFT_DEMO, name="sft")
        info = lx.wait(run, timeout=300)
        assert info.status == "completed", lx.log(run)[-3000:]
        lx.wait_exit(run)
        return Trained(lx.runs_dir, run.id)
    finally:
        lx.kill_all()


@pytest.fixture
def sft_copy(sft_trained, tmp_path) -> tuple[Path, str]:
    """(runs dir, run id) of this test's own copy of the trained SFT run."""
    dst = tmp_path / "runs"
    shutil.copytree(sft_trained.runs_dir, dst)
    return dst, sft_trained.run_id
