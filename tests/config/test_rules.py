"""Tests for cross-field rules, derived values and the LR schedule."""

from __future__ import annotations

import math

import pytest

from tuitrain.config import ConfigError, compute, parse, resolve
from tuitrain.config.rules import monitor_mode
from tuitrain.config.schedule import lr_factor, schedule_curve
from tuitrain.config.schema import SchedulerGroup

OK = {
    "model": {"tokenizer": "bytes"},
    "data": {"source": "python-stdlib", "max_bytes": 20000, "max_seq_length": 64},
}


def cfg_with(**groups):
    data = {k: dict(v) for k, v in OK.items()}
    for group, values in groups.items():
        data.setdefault(group, {}).update(values)
    return parse(data)


def issue_paths(**groups) -> set[str]:
    with pytest.raises(ConfigError) as ei:
        cfg_with(**groups)
    return {i.path for i in ei.value.issues}


@pytest.mark.parametrize(
    ("groups", "path", "words"),
    [
        (
            {"peft": {"method": "qlora"}, "model": {"name_or_path": "m", "tokenizer": "auto"}},
            "peft.bits",
            "peft.bits: 4",
        ),
        (
            {"early_stopping": {"monitor": "val_accuracy"}},
            "early_stopping.monitor",
            "val_loss, val_perplexity",
        ),
        ({"optimizer": {"head_lr": 1e-3}}, "optimizer.head_lr", "seq-cls"),
        (
            {"scheduler": {"warmup_steps": 10, "warmup_ratio": 0.1}},
            "scheduler.warmup_steps",
            "only one",
        ),
        ({"model": {"tokenizer": "auto"}}, "model.tokenizer", "bytes"),
        ({"model": {"name_or_path": "gpt2"}}, "model.tokenizer", "auto"),
        ({"data": {"max_seq_length": 1024}}, "model.arch.max_position_embeddings", "at least 1024"),
        ({"model": {"arch": {"type": "bert"}}}, "model.arch.type", "gpt2 or llama"),
        ({"data": {"source": "file"}}, "data.train_file", "data.train_file"),
        ({"launch": {"num_machines": 2}}, "launch.main_process_ip", "main_process_ip"),
        (
            {"launch": {"num_processes": 3, "num_machines": 2, "main_process_ip": "h"}},
            "launch.num_processes",
            "multiple",
        ),
    ],
)
def test_cross_field_rules(groups, path, words):
    with pytest.raises(ConfigError) as ei:
        cfg_with(**groups)
    issue = ei.value.by_path()[path]
    assert words in issue.fix or words in issue.message


def test_heads_must_divide_width():
    assert issue_paths(model={"arch": {"hidden_size": 100, "num_heads": 3}}) == {"model.arch"}


def test_accuracy_fine_for_classification():
    cfg = parse(
        {
            "model": {"task": "seq-cls", "name_or_path": "x"},
            "data": {"train_file": "t.csv"},
            "early_stopping": {"monitor": "val_accuracy"},
            "optimizer": {"head_lr": 1e-3},
        }
    )
    assert monitor_mode(cfg) == "max"


def test_warmup_longer_than_training():
    cfg = cfg_with(training={"max_steps": 10}, scheduler={"warmup_steps": 10})
    with pytest.raises(ConfigError) as ei:
        resolve(cfg)
    (issue,) = ei.value.issues
    assert issue.path == "scheduler.warmup_steps" and "below 10" in issue.fix


def test_derived_values():
    cfg = cfg_with(
        batch={"size": 8, "grad_accum": 4, "lr_scaling": "linear", "reference_batch": 256},
        launch={"num_processes": 2},
        optimizer={"lr": 1e-3},
        training={"epochs": 2},
        scheduler={"warmup_ratio": 0.1},
        peft={"method": "lora", "r": 8, "alpha": 32},
    )
    d = compute(cfg, train_samples=1000)
    assert d.effective_batch == 64
    # per process 500 samples -> 63 micro batches -> 16 optimizer steps (last cycle partial)
    assert d.steps_per_epoch == 16
    assert d.total_steps == 32
    assert d.warmup_steps == 4
    assert d.scaled_lr == pytest.approx(1e-3 * 64 / 256)
    assert d.lora_scale == pytest.approx(4.0)
    sq = compute(
        cfg.model_copy(update={"batch": cfg.batch.model_copy(update={"lr_scaling": "sqrt"})}), 1000
    )
    assert sq.scaled_lr == pytest.approx(1e-3 * math.sqrt(64 / 256))
    assert compute(cfg_with(training={"max_steps": 7})).total_steps == 7
    assert compute(cfg_with()).total_steps is None


def test_resolve_estimates_stdlib_size():
    from tuitrain.data.estimate import with_data

    assert resolve(cfg_with()).derived.train_samples is None  # config reads no data
    r = with_data(resolve(cfg_with()))
    assert r.derived.train_samples and r.derived.train_samples > 200
    assert not r.derived.samples_estimated


@pytest.mark.parametrize("name", ["constant", "linear", "cosine", "step", "exponential", "plateau"])
def test_schedule_shapes(name):
    s = SchedulerGroup(name=name, warmup_start_factor=0.1, eta_min=1e-5, step_size=30, gamma=0.5)
    f = [lr_factor(i, s, 100, 10, 1e-3) for i in range(100)]
    assert f[0] == pytest.approx(0.1)
    assert f[10] == pytest.approx(1.0)
    assert all(a <= b + 1e-12 for a, b in zip(f[:10], f[1:11], strict=True))
    tail = f[10:]
    if name in ("constant", "plateau"):
        assert set(tail) == {1.0}
    else:
        assert all(b <= a + 1e-12 for a, b in zip(tail, tail[1:], strict=False))
    if name in ("linear", "cosine"):
        assert f[-1] >= 1e-5 / 1e-3 - 1e-12 and f[-1] < 0.05
    if name == "step":
        # decay is counted from the end of warmup (as torch SequentialLR does)
        assert f[39] == 1.0 and f[40] == pytest.approx(0.5) and f[70] == pytest.approx(0.25)
    curve = schedule_curve(s, 100, 10, 1e-3, points=20)
    assert len(curve) == 20 and curve[0][0] == 0 and curve[-1][0] == 99
