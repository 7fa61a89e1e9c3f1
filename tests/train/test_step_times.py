"""Tests the trainer's step-time split, tokens/s and MFU bookkeeping on a real CPU run."""

from __future__ import annotations

import pytest

from tuitrain.config import load_config
from tuitrain.telemetry.flops import matmul_params, mfu_precision
from tuitrain.telemetry.perf import flops_per_token
from tuitrain.train.data import ByteTokenizer
from tuitrain.train.model import build_model

from .helpers import DEMO, TINY

TIMES = ("time/data_s", "time/compute_s", "time/overhead_s")


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_cpu_run_stores_the_step_time_split_and_tokens_per_s(launcher, tiny_trained):
    run = launcher.adopt(tiny_trained)  # TINY, trained once per session
    info = launcher.wait(run, timeout=180)
    assert info.status == "completed", launcher.log(run)[-3000:]
    with launcher.store() as s:
        pts = {n: {p.step: p.value for p in s.tail(run.id, [n])} for n in (*TIMES, "samples_per_s")}
        names = set(s.metric_names(run.id))
    assert {*TIMES, "tokens_per_s"} <= names and "mfu" not in names  # CPU: no peak, no MFU
    log_steps = [5, 10, 15, 20, 25, 30]  # training.log_every=5 of 30 steps
    for name in TIMES:
        assert sorted(pts[name]) == log_steps, (name, pts[name])
        assert all(v >= 0 for v in pts[name].values())
    assert all(pts["time/compute_s"][s] > 0 for s in log_steps)
    # The parts against the step time the throughput clock measured over the same windows
    # (8 samples per step: batch.size=8, every batch full). Summed over the windows after the
    # first (its first batches also build the loader): host timing on CPU accounts for it all.
    parts = sum(pts[n][s] for n in TIMES for s in log_steps[1:])
    measured = sum(8 / pts["samples_per_s"][s] for s in log_steps[1:])
    assert 0.75 * measured <= parts <= 1.1 * measured, (parts, measured, pts)
    summary = info.summary
    assert summary["tokens_per_s"] > 0 and "mfu" not in summary
    assert summary["mfu_note"] == "MFU: unknown peak for cpu"
    assert summary["perf"]["device"] == "cpu" and summary["perf"]["precision"] == "fp32"
    assert set(summary["time"]) == {"data_s", "compute_s", "overhead_s"}


def test_matmul_params_and_flops_match_a_hand_count_for_tiny_gpt2():
    cfg = load_config(DEMO, sets=TINY).config
    model = build_model(cfg, ByteTokenizer())
    d, layers, vocab = 32, 1, 259
    # Per GPT-2 block: c_attn d x 3d + 3d, attn c_proj d x d + d, c_fc d x 4d + 4d, mlp c_proj
    # 4d x d + d, two LayerNorms 2d each; final LayerNorm 2d; the tied wte counts once as the
    # head (V x d); wpe is a lookup table and does not count.
    hand = layers * (12 * d * d + 13 * d) + 2 * d + vocab * d
    total = sum(p.numel() for p in model.parameters())
    assert total == hand + 64 * d  # the position table is the only parameter left out
    assert matmul_params(model) == (hand, hand)
    assert flops_per_token(hand, 1, 2, 16, 32) == 6 * hand + 12 * 1 * 2 * 16 * 32
    assert mfu_precision("no", model) == "fp32" and mfu_precision("bf16", model) == "bf16"


def test_frozen_weights_count_in_the_forward_but_not_in_the_weight_gradients():
    cfg = load_config(DEMO, sets=TINY).config
    model = build_model(cfg, ByteTokenizer())
    for p in model.transformer.h.parameters():
        p.requires_grad_(False)
    n, trainable = matmul_params(model)
    assert trainable == n - sum(p.numel() for p in model.transformer.h.parameters())
    assert flops_per_token(n, 1, 2, 16, 32, trainable) == 4 * n + 2 * trainable + 12 * 2 * 16 * 32
