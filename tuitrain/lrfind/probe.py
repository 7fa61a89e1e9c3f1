"""Provides the range test as a run: its config (run.kind lr_find), its launch and its result read back from the store."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tuitrain.config import parse, resolve, to_dict
from tuitrain.config.loader import Resolved
from tuitrain.config.schema import TrainConfig
from tuitrain.lrfind.curve import Suggestion, suggest
from tuitrain.runs import liveness


def probe_config(
    cfg: TrainConfig,
    min_lr: float | None = None,
    max_lr: float | None = None,
    steps: int | None = None,
) -> TrainConfig:
    """The config of a range test of `cfg`: run.kind lr_find, the ramp (None keeps lr_find.*), no doctor.

    The doctor is off because a range test drives the loss up on purpose: its spike and
    oscillation diagnoses (and automatic remedies) would only be noise here.
    """
    data = to_dict(cfg)
    data.setdefault("run", {})["kind"] = "lr_find"
    lf = data.setdefault("lr_find", {})
    for key, value in (("min_lr", min_lr), ("max_lr", max_lr), ("steps", steps)):
        if value is not None:
            lf[key] = value
    data.setdefault("doctor", {})["enabled"] = False
    return parse(data)


def launch_probe(
    resolved: Resolved,
    runs_dir: str | Path,
    min_lr: float | None = None,
    max_lr: float | None = None,
    steps: int | None = None,
    extra_env: dict[str, str] | None = None,
):
    """Start a range test of the resolved config; returns its RunInfo (an ordinary run, kind lr_find)."""
    from tuitrain.runs.launch import launch

    cfg = probe_config(resolved.config, min_lr, max_lr, steps)
    d = resolved.derived
    probe = resolve(cfg, source=resolved.source, samples=(d.train_samples, d.samples_estimated))
    # The run record's total is the test's length (the trainer says the same once it starts), so
    # the progress reads "step 3/60", not the full run's 600.
    probe = replace(probe, derived=replace(probe.derived, total_steps=cfg.lr_find.steps))
    stem = Path(resolved.source).stem if resolved.source else "config"
    name = f"{resolved.config.run.name or stem}-lr-find"
    return launch(probe, runs_dir, name=name, extra_env=extra_env)


def read_points(store: Any, run_id: str) -> list[tuple[float, float]]:
    """(lr, loss) per logged step of a run, in step order (NaN losses kept: they end the curve)."""
    by_step: dict[int, dict[str, float]] = {}
    for p in store.tail(run_id, names=["lr", "loss"]):
        by_step.setdefault(p.step, {})[p.name] = p.value
    return [(v["lr"], v["loss"]) for _, v in sorted(by_step.items()) if "lr" in v and "loss" in v]


@dataclass
class ProbeResult:
    """A range test's suggestion with its cost beside the cost of the full run it probes."""

    suggestion: Suggestion
    steps: int
    wall_s: float
    full_steps: int | None
    full_estimate_s: float | None

    def cost_line(self) -> str:
        """`range test: 41 s (87 steps); a full run: 1200 steps, ~9.5 min at this speed`."""
        line = f"range test: {_dur(self.wall_s)} ({self.steps} steps)"
        if self.full_steps and self.full_estimate_s is not None:
            line += f"; a full run: {self.full_steps} steps, ~{_dur(self.full_estimate_s)} at this speed"
        return line


def result(store: Any, run_id: str) -> ProbeResult:
    """The suggestion and cost of a (finished or live) range test, from the store."""
    run = liveness.get_run(store, run_id)
    pts = read_points(store, run_id)
    pretrained = bool((run.config.get("model") or {}).get("name_or_path"))
    sug = suggest(pts, pretrained=pretrained)
    times = [p.time for p in store.tail(run_id, names=["loss"])]
    # From the launch: process start-up and model loading are part of what a run costs.
    start = run.created
    end = run.ended or (times[-1] if times else start)
    wall = max(0.0, (end or 0.0) - (start or 0.0))
    full = run.derived.get("full_total_steps")
    est = None
    if full and len(times) >= 2:
        per_step = (times[-1] - times[0]) / (len(times) - 1)
        startup = max(0.0, times[0] - (start or times[0]))
        est = startup + per_step * full if math.isfinite(per_step) else None
    return ProbeResult(sug, len(pts), wall, full, est)


def _dur(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def lr_to_write(
    cfg: TrainConfig, effective_lr: float, train_samples: int | None = None
) -> tuple[float, float]:
    """(optimizer.lr value, lr_scaling factor) that make the run's effective LR `effective_lr`.

    The range test ramps the effective LR (after batch.lr_scaling), so with scaling on, the
    value written into optimizer.lr is the suggestion divided by the scaling factor.
    """
    from tuitrain.config.derived import compute

    d = compute(cfg, train_samples)
    scale = (d.scaled_lr / cfg.optimizer.lr) if d.scaled_lr else 1.0
    return effective_lr / scale, scale


def with_lr(cfg: TrainConfig, effective_lr: float) -> tuple[TrainConfig, float]:
    """A copy of `cfg` whose effective LR is `effective_lr`, through the config model (validated); and the scale."""
    value, scale = lr_to_write(cfg, effective_lr)
    data = to_dict(cfg)
    data["optimizer"]["lr"] = float(f"{value:.3g}")  # a value a person would type
    return parse(data), scale
