"""What the loop promises, end to end on CPU: gradient accumulation equals one big batch, early
stopping ends on patience at the exact best step, and restore_best exports the best weights."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tuitrain.runs.checkpoints import best_steps
from tuitrain.train.checkpoint import periodic

from .helpers import TINY, losses

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(Path(run_dir) / "final" / "model.safetensors")


def test_grad_accum_of_k_micro_batches_equals_one_batch_of_k_n(launcher, tmp_path):
    # Texts of very different lengths, padded (one example per record): micro batches hold different numbers
    # of target tokens, so a plain mean of micro-batch means would not equal the big batch's.
    rnd = random.Random(3)
    data = tmp_path / "varlen.jsonl"
    words = "alpha beta gamma delta epsilon zeta eta theta".split()
    lines = [
        {"text": " ".join(rnd.choice(words) for _ in range(rnd.randint(1, 9)))} for _ in range(80)
    ]
    data.write_text("\n".join(json.dumps(x) for x in lines))
    common = [
        "data.source=file",
        f"data.train_file={data}",
        "data.text_mode=per_record",
        "data.validation_split=0.1",
        "model.arch.hidden_size=32",
        "model.arch.num_layers=1",
        "model.arch.num_heads=2",
        "model.arch.max_position_embeddings=64",
        "data.max_seq_length=48",
        "run.deterministic=true",
        "optimizer.name=sgd",
        "optimizer.momentum=0",
        "optimizer.lr=0.5",
        "optimizer.weight_decay=0",
        "scheduler.name=constant",
        "training.max_grad_norm=0",
        "training.max_steps=4",
        "training.log_every=1",
        "generation.enabled=false",
    ]
    k, n = 4, 3
    small = launcher.start([*common, f"batch.size={n}", f"batch.grad_accum={k}"], name="accum")
    big = launcher.start([*common, f"batch.size={k * n}", "batch.grad_accum=1"], name="big")
    for run in (small, big):
        info = launcher.wait(run, timeout=300)
        assert info.status == "completed", launcher.log(run)[-3000:]
    with launcher.store() as s:
        a, b = dict(losses(s, small.id)), dict(losses(s, big.id))
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    assert all(abs(a[i] - b[i]) / abs(b[i]) < 1e-5 for i in a), (a, b)
    wa, wb = weights(small.run_dir), weights(big.run_dir)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.allclose(wa[name], wb[name], rtol=1e-4, atol=1e-6), name
    # No early stopping, no save_best: no best weights were copied.
    assert best_steps(Path(small.run_dir)) == []


def test_early_stop_on_patience_restores_the_best_weights(launcher):
    sets = [
        *TINY,
        "training.max_steps=200",
        "training.eval_every=5",
        "training.save_every=5",
        "training.save_total_limit=1",
        "early_stopping.enabled=true",
        "early_stopping.patience=2",
        # Only the first eval can count as an improvement: the stop step and best step are exact.
        "early_stopping.min_delta=1000",
        "early_stopping.restore_best=true",
    ]
    run = launcher.start(sets, name="es")
    info = launcher.wait(run, timeout=300)
    rd = Path(run.run_dir)
    assert info.status == "early_stopped", launcher.log(run)[-3000:]
    assert info.exit_reason.startswith("patience: no val_loss improvement > 1000 in 2 evaluations")
    assert info.summary["best_step"] == 5 and info.summary["steps"] == 15
    with launcher.store() as s:
        stops = [e for e in s.events(run.id) if e.kind == "early_stop"]
        assert max(p for p, _ in losses(s, run.id)) == 15
    assert [(e.step, e.data["best_step"]) for e in stops] == [(15, 5)]
    assert best_steps(rd) == [5]
    best = torch.load(rd / "checkpoints" / "best-5" / "trainable.pt", weights_only=True)
    final = weights(rd)
    common = set(best) & set(final)
    assert len(common) >= len(final) - 1
    assert all(torch.equal(best[k], final[k]) for k in common)
    last_step, last_dir = periodic(rd)[-1]
    assert last_step == 15
    last = load_file(last_dir / "model.safetensors")
    assert any(not torch.equal(last[k], final[k]) for k in common)  # weights did change after 5
