"""Provides SystemSampler: GPU (NVML), process-tree CPU, host RAM and free disk as `sys/` metrics, torch-free.

The training process's writer thread calls `sample()` every few seconds (never the step path).
GPU values come from nvidia-ml-py (`pip install -e '.[gpu]'`), imported only when it is installed
and its library finds a driver; without it there are simply no GPU keys. Everything else reads
/proc (Linux), so no psutil. Names (all under `sys/`):

    gpu{i}_util (%), gpu{i}_mem_used_gb, gpu{i}_mem_total_gb, gpu{i}_power_w, gpu{i}_temp_c,
    gpu{i}_sm_clock_mhz   i = the CUDA index (position in CUDA_VISIBLE_DEVICES when it is set)
    cpu_percent           this process and its descendants, % of one core (top's convention)
    cpu_count             logical CPUs of the host (cpu_percent / cpu_count = share of the host)
    ram_used_gb, ram_total_gb   host memory (used = MemTotal - MemAvailable)
    disk_free_gb          free space for unprivileged users in the runs directory
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("tuitrain.telemetry.sysinfo")

PREFIX = "sys/"
GB = 1024**3
DEFAULT_INTERVAL_S = 5.0
GPU_FIELDS = ("util", "mem_used_gb", "mem_total_gb", "power_w", "temp_c", "sm_clock_mhz")


class _Nvml:
    """The NVML handles of the GPUs this process may use; queries that a GPU refuses are dropped for it."""

    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self.nvml = nvml
        self.handles = handles
        self.broken: set[tuple[int, str]] = set()  # (gpu, field) the device does not support

    @classmethod
    def open(cls) -> _Nvml | None:
        """NVML when nvidia-ml-py is installed and a driver answers with at least one GPU, else None."""
        if importlib.util.find_spec("pynvml") is None:
            return None
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception as exc:  # NVMLError (no driver / library), or a broken install
            log.debug("NVML unavailable: %s", exc)
            return None
        try:
            handles = _visible_handles(pynvml, os.environ.get("CUDA_VISIBLE_DEVICES"))
        except Exception as exc:
            log.warning("NVML: cannot list the GPUs (%s); no GPU metrics", exc)
            handles = []
        if not handles:
            _shutdown(pynvml)
            return None
        return cls(pynvml, handles)

    def sample(self, out: dict[str, float]) -> None:
        """Add the GPU keys of every handle to out."""
        nv = self.nvml
        for i, h in enumerate(self.handles):
            p = f"{PREFIX}gpu{i}_"
            self._read(
                i, "util", out, p, lambda h=h: float(nv.nvmlDeviceGetUtilizationRates(h).gpu)
            )
            mem = self._read(i, "mem", None, p, lambda h=h: nv.nvmlDeviceGetMemoryInfo(h))
            if mem is not None:
                out[p + "mem_used_gb"] = mem.used / GB
                out[p + "mem_total_gb"] = mem.total / GB
            # nvmlDeviceGetPowerUsage answers in milliwatts.
            self._read(i, "power_w", out, p, lambda h=h: nv.nvmlDeviceGetPowerUsage(h) / 1000.0)
            self._read(
                i, "temp_c", out, p,
                lambda h=h: float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)),
            )  # fmt: skip
            self._read(
                i, "sm_clock_mhz", out, p,
                lambda h=h: float(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
            )  # fmt: skip

    def _read(self, i: int, field: str, out: dict | None, prefix: str, query) -> Any:
        if (i, field) in self.broken:
            return None
        try:
            value = query()
        except Exception as exc:  # NVML_ERROR_NOT_SUPPORTED and the like: stop asking this GPU
            self.broken.add((i, field))
            log.info("NVML: gpu%d %s unavailable (%s)", i, field, exc)
            return None
        if out is not None:
            out[prefix + field] = value
        return value

    def close(self) -> None:
        """Release NVML."""
        _shutdown(self.nvml)


def visible_devices(visible: str | None) -> list[int | str] | None:
    """CUDA_VISIBLE_DEVICES as CUDA reads it: indices and GPU-/MIG- UUIDs up to the first bad entry; None: unset."""
    if visible is None:
        return None
    out: list[int | str] = []
    for entry in (e.strip() for e in visible.split(",")):
        if entry.isdigit():
            out.append(int(entry))
        elif entry.startswith(("GPU-", "MIG-")):
            out.append(entry)
        else:
            break  # CUDA stops at the first empty, negative or unknown entry, so do we
    return out


def _visible_handles(nv: Any, visible: str | None) -> list[Any]:
    """NVML handles in CUDA index order: all GPUs, or those CUDA_VISIBLE_DEVICES names."""
    devices = visible_devices(visible)
    if devices is None:
        return [nv.nvmlDeviceGetHandleByIndex(i) for i in range(nv.nvmlDeviceGetCount())]
    return [
        nv.nvmlDeviceGetHandleByIndex(d) if isinstance(d, int) else nv.nvmlDeviceGetHandleByUUID(d)
        for d in devices
    ]


def _shutdown(nv: Any) -> None:
    try:
        nv.nvmlShutdown()
    except Exception:  # already shut down or never fully initialised: nothing to release
        pass


class _ProcTree:
    """CPU time of this process and its descendants from /proc, as % of one core between samples."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.tck = os.sysconf("SC_CLK_TCK")
        self.prev: dict[
            tuple[int, int], int
        ] = {}  # (pid, start ticks) -> cpu ticks at the last sample
        self.prev_t: float | None = None

    def percent(self) -> float | None:
        """CPU% since the previous call (the first call: since this process started)."""
        now = time.monotonic()
        ticks: dict[tuple[int, int], int] = {}
        for pid in self._tree():
            st = _stat(pid)
            if st is not None:
                ticks[(pid, st[1])] = st[0]
        if not ticks:
            return None
        if self.prev_t is None:
            own = next((k for k in ticks if k[0] == self.pid), None)
            if own is None:
                return None
            age = _uptime() - own[1] / self.tck
            used = ticks[own]
        else:
            age = now - self.prev_t
            # A process that appeared since the last sample counts with all its time (it is young).
            used = sum(t - self.prev.get(k, 0) for k, t in ticks.items())
        self.prev, self.prev_t = ticks, now
        return 100.0 * max(0, used) / self.tck / age if age > 0 else None

    def _tree(self) -> list[int]:
        # Every thread of this process may have forked (data-loader workers); their own children
        # are read from their main thread only, which is what forks in practice and keeps this cheap.
        out = [self.pid]
        try:
            tasks = os.listdir(f"/proc/{self.pid}/task")
        except OSError:
            return out
        todo = [c for t in tasks for c in _children(self.pid, t)]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(_children(pid, str(pid)))
        return out


def _children(pid: int, tid: str) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return []


def _stat(pid: int) -> tuple[int, int] | None:
    """(utime + stime, start time) of a process in clock ticks; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()  # the command name may hold spaces
    # After the name: field 3 is fields[0], so utime (14) is [11], stime (15) [12], start (22) [19].
    return int(fields[11]) + int(fields[12]), int(fields[19])


def _uptime() -> float:
    with open("/proc/uptime", "rb") as f:
        return float(f.read().split()[0])


def _meminfo() -> tuple[float, float] | None:
    """(used, total) host memory in GB; None without /proc/meminfo."""
    total = avail = None
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemTotal:"):
                    total = int(line.split()[1]) * 1024
                elif line.startswith(b"MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                if total is not None and avail is not None:
                    break
    except OSError:
        return None
    if total is None or avail is None:
        return None
    return (total - avail) / GB, total / GB


class SystemSampler:
    """One `sample()` -> {"sys/...": value}; create it in the thread that samples (NVML is opened lazily)."""

    def __init__(self, runs_dir: str | os.PathLike[str], gpu: bool = True) -> None:
        self.runs_dir = Path(runs_dir)
        self._want_gpu = gpu
        self._nvml: _Nvml | None = None
        self._nvml_tried = False
        self._proc = _ProcTree(os.getpid())
        self._cpus = float(os.cpu_count() or 1)

    @property
    def gpus(self) -> int:
        """Number of GPUs sampled (0 before the first sample, without NVML or without a GPU)."""
        return len(self._nvml.handles) if self._nvml is not None else 0

    def sample(self) -> dict[str, float]:
        """Read every source once; a source that fails is left out, never raised."""
        out: dict[str, float] = {}
        if self._want_gpu and not self._nvml_tried:
            self._nvml_tried = True
            self._nvml = _Nvml.open()
        if self._nvml is not None:
            self._nvml.sample(out)
        try:
            cpu = self._proc.percent()
        except (OSError, ValueError, IndexError):  # no /proc (not Linux) or an odd stat line
            cpu = None
        if cpu is not None:
            out[PREFIX + "cpu_percent"] = cpu
        out[PREFIX + "cpu_count"] = self._cpus
        mem = _meminfo()
        if mem is not None:
            out[PREFIX + "ram_used_gb"], out[PREFIX + "ram_total_gb"] = mem
        try:
            st = os.statvfs(self.runs_dir)
            out[PREFIX + "disk_free_gb"] = st.f_bavail * st.f_frsize / GB
        except OSError:  # the runs directory went away: nothing to report
            pass
        return out

    def close(self) -> None:
        """Release NVML (idempotent)."""
        if self._nvml is not None:
            self._nvml.close()
            self._nvml = None
