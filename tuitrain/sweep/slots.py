"""Provides trial slots: how many trials run at once and the environment each gets (its GPUs
through CUDA_VISIBLE_DEVICES, or its share of CPU threads), detected without torch."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field


@dataclass
class Slot:
    """One place a trial can run: its index, GPU ids (empty on CPU) and environment."""

    index: int
    gpus: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


def visible_gpus(environ: dict[str, str] | None = None) -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES when set, else `nvidia-smi -L`."""
    environ = os.environ if environ is None else environ
    cvd = environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        # "" or "-1" hides every GPU (the CUDA convention).
        ids = [s.strip() for s in cvd.split(",") if s.strip()]
        return [] if not ids or ids[0].startswith("-") else ids
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


def make_slots(
    parallel: int | str, gpus_per_trial: int, gpus: list[str], cpu_count: int | None = None
) -> list[Slot]:
    """Slots for the sweep: with GPUs, each slot owns gpus_per_trial of them; on CPU, `parallel`
    slots share the cores evenly (torch would otherwise start one thread per core in each)."""
    if gpus:
        n_fit = len(gpus) // gpus_per_trial
        if n_fit < 1:
            raise ValueError(
                f"gpus_per_trial is {gpus_per_trial} but only {len(gpus)} GPU(s) are visible; lower gpus_per_trial"
            )
        n = n_fit if parallel == "auto" else min(int(parallel), n_fit)
        out = []
        for i in range(n):
            ids = gpus[i * gpus_per_trial : (i + 1) * gpus_per_trial]
            out.append(Slot(i, ids, {"CUDA_VISIBLE_DEVICES": ",".join(ids)}))
        return out
    cores = cpu_count or os.cpu_count() or 1
    n = 1 if parallel == "auto" else int(parallel)
    share = max(1, cores // n)
    preset = os.environ.get("OMP_NUM_THREADS", "")
    if preset.isdigit() and int(preset) > 0:
        share = min(share, int(preset))  # a caller that already limits threads keeps its limit
    threads = str(share)
    return [Slot(i, [], {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}) for i in range(n)]


def slot_overrides(slot: Slot, base_port: int) -> dict[str, object]:
    """Config fields a slot fixes: its own rendezvous port (parallel multi-process trials would
    collide on one) and all of its (renumbered) GPUs."""
    out: dict[str, object] = {"launch.main_process_port": base_port + slot.index}
    if slot.gpus:
        out["launch.gpu_ids"] = None
    return out
