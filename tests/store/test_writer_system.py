"""Tests of RunWriter's system sampling: `sys/` metrics from the flush thread, at the newest logged step."""

from __future__ import annotations

import time

import pytest

from tuitrain.store import InvalidValue, RunWriter, Store

HOST_KEYS = {"sys/cpu_percent", "sys/ram_used_gb", "sys/ram_total_gb", "sys/disk_free_gb"}


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "runs")
    yield s
    s.close()


def wait_for(cond, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_samples_land_at_logged_steps_and_are_no_progress(store):
    run = store.create_run({}, {})
    w = RunWriter(store.runs_dir, run.id, flush_interval=0.05, system_interval=0.2)
    try:
        time.sleep(0.3)  # several flush ticks before any step: nothing to attach a sample to
        assert w.system_samples == 0
        w.log(1, {"loss": 2.0})
        wait_for(lambda: w.system_samples >= 1)
        for step in range(2, 6):
            w.log(step, {"loss": 2.0 / step})
        n = w.system_samples
        wait_for(lambda: w.system_samples >= n + 2)  # keeps sampling at the interval
        w.flush()
        assert w.system_sample_s > 0
    finally:
        w.close()
    names = set(store.metric_names(run.id))
    assert HOST_KEYS <= names
    loss_steps = {p.step for p in store.tail(run.id, ["loss"])}
    cpu = store.tail(run.id, ["sys/cpu_percent"])
    assert cpu and {p.step for p in cpu} <= loss_steps  # never a step the trainer did not log
    assert store.get_run(run.id).last_step == 5


def test_off_by_default(store):
    run = store.create_run({}, {})
    with RunWriter(store.runs_dir, run.id, flush_interval=0.05) as w:
        w.log(1, {"loss": 1.0})
        time.sleep(0.2)
    assert w.system_samples == 0
    assert not [n for n in store.metric_names(run.id) if n.startswith("sys/")]


def test_a_run_shorter_than_a_flush_still_gets_one_sample(store):
    run = store.create_run({}, {})
    w = RunWriter(store.runs_dir, run.id, flush_interval=1.0, system_interval=5.0)
    w.log(3, {"loss": 1.0})
    w.close()  # before the thread's first tick
    assert w.system_samples == 1
    assert {p.step for p in store.tail(run.id, ["sys/ram_total_gb"])} == {3}


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_interval_is_refused(store, bad):
    run = store.create_run({}, {})
    with pytest.raises(InvalidValue, match="system_interval"):
        RunWriter(store.runs_dir, run.id, system_interval=bad)
