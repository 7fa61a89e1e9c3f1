"""The doctor's low_gpu_util finding from the trainer's sys/gpu{i}_util samples, over a real Store."""

from __future__ import annotations

import math
import os
import time

import pytest

from tuitrain.doctor import diagnose_run
from tuitrain.doctor.efficiency import LOW_GPU_UTIL, low_gpu_util
from tuitrain.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "runs")
    yield s
    s.close()


def _run(store: Store, util: list[float] | None, gpus: int = 2) -> str:
    """A live, healthy run of 300 steps; GPU samples every 10 steps when util is given."""
    run = store.create_run({}, {"total_steps": 1000, "warmup_steps": 0})
    store.mark_started(run.id, os.getpid())
    t0 = time.time() - 300
    rows = []
    for s in range(1, 301):
        rows += [(s, "loss", 2.0 * math.exp(-s / 400) + 0.5, t0 + s), (s, "lr", 1e-3, t0 + s)]
        if util is not None and s % 10 == 0:
            for i in range(gpus):
                rows.append((s, f"sys/gpu{i}_util", util[(s // 10) % len(util)] - 2 * i, t0 + s))
    store.log_metrics(run.id, rows)
    return run.id


def test_low_utilisation_is_found_with_its_evidence(store):
    rid = _run(store, [30.0, 35.0, 90.0, 25.0])  # mostly idle, one busy sample in four
    found = {d.id: d for d in diagnose_run(store, rid)}
    d = found["low_gpu_util"]
    assert d.severity == "warning" and d.action is None
    assert d.values["gpus"] == 2 and d.values["util"] < LOW_GPU_UTIL
    assert "GPU utilisation" in d.evidence and "2 GPUs" in d.evidence


def test_busy_gpus_and_runs_without_samples_are_not_flagged(store):
    busy = _run(store, [95.0, 97.0, 60.0])  # a dip (eval) among busy samples
    assert "low_gpu_util" not in {d.id for d in diagnose_run(store, busy)}
    none = _run(store, None)
    assert "low_gpu_util" not in {d.id for d in diagnose_run(store, none)}


def test_too_few_samples_are_not_judged():
    assert low_gpu_util({"sys/gpu0_util": ([10, 20, 30], [5.0, 5.0, 5.0])}) is None
    d = low_gpu_util({"sys/gpu0_util": (list(range(10, 70, 10)), [5.0] * 6)})
    assert d is not None and d.step == 10
