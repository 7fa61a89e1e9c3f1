"""End to end: a short version of configs/sft-demo.yaml (chat records, ChatML, answer-only loss,
packed examples) trains in a real `accelerate launch`; the answer loss falls, the data events
and templated samples reach the store, and a second run on the same data reuses the tokenised cache."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tuitrain.data.summary import DATA_KEYS

from .helpers import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

SFT_DEMO = REPO / "configs" / "sft-demo.yaml"
SHORT = [
    "model.arch.hidden_size=64",
    "model.arch.num_layers=1",
    "model.arch.num_heads=2",
    "data.packing=true",
    "batch.size=8",
    "optimizer.lr=3e-3",
    "training.max_steps=60",
    "training.eval_every=20",
    "training.eval_max_batches=4",
    "training.log_every=5",
    "generation.max_new_tokens=12",
]


def test_short_sft_demo_answer_loss_falls_and_a_branch_reuses_the_cache(launcher):
    run = launcher.start(SHORT, config=SFT_DEMO, name="sft")
    info = launcher.wait(run, timeout=300)
    assert info.status == "completed", launcher.log(run)[-3000:]
    with launcher.store() as s:
        val = [(p.step, p.value) for p in s.tail(run.id, ["val_loss"])]
        events = s.events(run.id)
    # val_loss is over answer tokens only (labels -100 on prompts): it must fall clearly.
    assert [st for st, _ in val] == [20, 40, 60], val
    assert val[-1][1] < val[0][1] - 0.2, val
    data = [e.message for e in events if e.kind == "data"]
    summary = next(e.data for e in events if e.kind == "data" and e.data)
    assert summary["format"] == "chat" and summary["template"] == "chatml"
    assert summary["records"] > 1000 and summary["dropped"] == 0 and 0 < summary["examples"]
    assert 0 < summary["loss_tokens"] < summary["tokens_in_examples"] <= summary["tokens_total"]
    shown = subprocess.run(
        [sys.executable, "-m", "tuitrain", "--runs-dir", str(launcher.runs_dir), "show", run.id],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "data: chat records, template chatml: " in shown and "loss on answers only" in shown
    as_json = subprocess.run(
        [sys.executable, "-m", "tuitrain", "--runs-dir", str(launcher.runs_dir), "show", run.id, "--format", "json"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert set(DATA_KEYS) <= set(json.loads(as_json)["data"])
    assert any("chat records" in m and "template chatml" in m for m in data), data
    assert any("examples kept apart" in m for m in data), data
    assert any("and cached" in m for m in data), data
    gens = [e for e in events if e.kind == "generation"]
    prompts = {e.data["prompt"] for e in gens}
    assert "What does json.dumps do?" in prompts and len(prompts) == 3  # + 2 held-out prompts
    assert all(" -> " in e.message and "\n" not in e.message for e in gens)
    assert all("<|im_start|>" not in e.data["text"] for e in gens)  # cut where the turn ends
    # A second run on the same file and settings (a branch) reads the tokenised cache back.
    branch = launcher.start(
        [*SHORT, "training.max_steps=3", "training.eval_every=3"], config=SFT_DEMO, name="branch"
    )
    assert launcher.wait(branch, timeout=240).status == "completed", launcher.log(branch)[-3000:]
    with launcher.store() as s:
        data2 = [e.message for e in s.events(branch.id) if e.kind == "data"]
    assert any("reused from the cache" in m for m in data2), data2
