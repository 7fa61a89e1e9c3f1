"""A real tiny training run stores `sys/` metrics (process CPU, RAM, disk) from rank 0's writer thread."""

from __future__ import annotations

import importlib.util

import pytest

from .helpers import losses

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_training_run_stores_system_metrics(launcher, tiny_trained):
    run = launcher.adopt(tiny_trained)  # TINY, trained once per session
    info = launcher.wait(run, timeout=150)
    assert info.status == "completed", launcher.log(run)[-3000:]
    with launcher.store() as s:
        names = set(s.metric_names(run.id))
        cpu = s.tail(run.id, ["sys/cpu_percent"])
        ram = s.last_values(run.id)["sys/ram_total_gb"].value
        disk = s.last_values(run.id)["sys/disk_free_gb"].value
        steps = [p[0] for p in losses(s, run.id)]
    assert {"sys/cpu_percent", "sys/cpu_count", "sys/ram_used_gb", "sys/ram_total_gb",
            "sys/disk_free_gb"} <= names  # fmt: skip
    if importlib.util.find_spec("pynvml") is None:  # no nvidia-ml-py: no GPU keys, no error
        assert not [n for n in names if n.startswith("sys/gpu")]
    assert cpu and all(p.value > 0 for p in cpu)  # the trainer was busy when sampled
    assert {p.step for p in cpu} <= set(steps)  # at steps the trainer logged
    assert steps == list(range(1, 31))  # the samples did not disturb the step series
    assert ram > 0 and disk > 0
