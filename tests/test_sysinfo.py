"""Tests of tuitrain.telemetry.sysinfo on this machine's real /proc (no GPU here: no GPU keys, no error)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tuitrain.telemetry.sysinfo import GB, SystemSampler, visible_devices

# A child that starts a grandchild burning 0.4 s of CPU, then both idle: the tree's CPU time is known.
BURN = (
    "import subprocess, sys, time\n"
    "g = subprocess.Popen([sys.executable, '-c', 'import time\\n"
    "while time.process_time() < 0.4: pass\\nprint(1, flush=True)\\ntime.sleep(120)'],"
    " stdout=subprocess.PIPE)\n"
    "g.stdout.readline(); print(g.pid, flush=True); time.sleep(120)\n"
)


def test_host_keys_and_values(tmp_path):
    s = SystemSampler(tmp_path)
    out = s.sample()
    assert {"sys/cpu_percent", "sys/cpu_count", "sys/ram_used_gb", "sys/ram_total_gb",
            "sys/disk_free_gb"} <= set(out)  # fmt: skip
    assert all(k.startswith("sys/") and isinstance(v, float) for k, v in out.items())
    phys = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB
    assert out["sys/ram_total_gb"] == pytest.approx(phys, rel=0.05)
    assert 0 < out["sys/ram_used_gb"] < out["sys/ram_total_gb"]
    free = shutil.disk_usage(tmp_path).free / GB
    assert out["sys/disk_free_gb"] == pytest.approx(free, abs=0.5)
    assert out["sys/cpu_count"] == os.cpu_count()
    assert out["sys/cpu_percent"] >= 0


def test_no_gpu_keys_without_nvml_or_gpu(tmp_path):
    # On this machine: nvidia-ml-py is absent, or present without a driver; either way no GPU keys.
    s = SystemSampler(tmp_path)
    out = s.sample()
    if importlib.util.find_spec("pynvml") is None or s.gpus == 0:
        assert not [k for k in out if k.startswith("sys/gpu")]
        assert s.gpus == 0
    else:  # a GPU box: every GPU has its keys
        assert f"sys/gpu{s.gpus - 1}_util" in out
    s.close()
    s.close()  # idempotent


def test_cpu_percent_counts_descendants(tmp_path):
    s = SystemSampler(tmp_path)
    s.sample()
    t0 = time.monotonic()
    child = subprocess.Popen([sys.executable, "-c", BURN], stdout=subprocess.PIPE, text=True)
    grandchild = None
    try:
        grandchild = int(child.stdout.readline())
        out = s.sample()
        wall = time.monotonic() - t0
        # The grandchild used >= 0.4 s of CPU between the two samples (plus the interpreters' start).
        assert out["sys/cpu_percent"] / 100 * wall >= 0.35, (out, wall)
    finally:
        if grandchild is not None:
            os.kill(grandchild, signal.SIGKILL)
        child.kill()
        child.wait(timeout=30)
    s.sample()  # processes that went away are simply not counted


def test_idle_process_reads_near_zero(tmp_path):
    s = SystemSampler(tmp_path)
    s.sample()
    time.sleep(0.5)  # idle on purpose: the CPU used in it is what is measured
    assert s.sample()["sys/cpu_percent"] < 50


def test_visible_devices_parses_like_cuda():
    assert visible_devices(None) is None
    assert visible_devices("") == []
    assert visible_devices("0,2") == [0, 2]
    assert visible_devices(" 1 , GPU-8a1b ") == [1, "GPU-8a1b"]
    assert visible_devices("MIG-abc,0") == ["MIG-abc", 0]
    assert visible_devices("0,-1,1") == [0]  # CUDA stops at an invalid entry
    assert visible_devices("0,,1") == [0]


def test_sampler_import_loads_no_nvml_or_ml_stack():
    code = (
        "import sys, tuitrain.telemetry.sysinfo\n"
        "bad = {'pynvml', 'torch', 'textual'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
