"""Provides diagnose(data, thresholds): every detector over one run's RunData, most severe first."""

from __future__ import annotations

import math
from typing import Any

from tuitrain.doctor import answers, efficiency, progress
from tuitrain.doctor import detectors as det
from tuitrain.doctor.diagnosis import Diagnosis, sort
from tuitrain.doctor.rundata import Curve, RunData, cfg_get, chance_loss
from tuitrain.doctor.stats import median
from tuitrain.doctor.thresholds import Thresholds

# The first share of a run's buckets is left out of its "steady" throughput (startup, warmup).
STEADY_SKIP = 0.1


def thresholds_for(config: dict[str, Any]) -> Thresholds:
    """The run's `doctor:` group as Thresholds; defaults for configs without one (HF, scripts)."""
    from tuitrain.config.schema import DoctorGroup

    raw = config.get("doctor") if isinstance(config, dict) else None
    try:
        group = DoctorGroup.model_validate(raw or {})
    except ValueError:
        group = DoctorGroup()  # a free-form script config may use the key for something else
    return Thresholds.from_group(group)


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def _span(
    over: list[tuple[int, float, float, float]], recent: Curve, last: int | None, th: Thresholds
) -> tuple[list[int], list[float]]:
    """The loss over the last `stall_span` of the steps so far: exact rows when they reach back
    that far, else the downsampled buckets (a long run), never less than the window."""
    if last is None or not recent.steps:
        return [], []
    start = last - th.stall_span * last
    if recent.steps[0] <= start or len(over) < th.min_points:
        pts = [(s, x) for s, x in zip(recent.steps, recent.values, strict=False) if s > start]
        if len(pts) < th.window:
            pts = list(zip(recent.steps, recent.values, strict=False))[-th.window :]
    else:
        pts = [(p[0], p[3]) for p in over if p[0] > start]
    return [p[0] for p in pts], [p[1] for p in pts]


def _lowest_level(
    over: list[tuple[int, float, float, float]], width: int = 5
) -> tuple[float | None, int | None]:
    """The lowest level the loss held: the minimum over a running median of `width` buckets'
    last values, not one lucky batch (on a tiny data set a single easy batch at an epoch boundary
    sits far below the level, and a later normal batch then looked like a spike)."""
    pts = [(p[0], p[3]) for p in over if p[3] is not None and math.isfinite(p[3])]
    if len(pts) < width:
        return None, None
    best: tuple[float | None, int | None] = (None, None)
    for i in range(len(pts) - width + 1):
        level = median([x for _, x in pts[i : i + width]])
        if best[0] is None or level < best[0]:
            best = (level, pts[i + width // 2][0])
    return best


def _worst(*diags: Diagnosis | None) -> Diagnosis | None:
    """The more severe of diagnoses with the same id (None when there is none)."""
    found = [d for d in diags if d is not None]
    return max(found, key=lambda d: d.rank) if found else None


def diagnose(data: RunData, th: Thresholds | None = None) -> list[Diagnosis]:
    """All open diagnoses of the run, most severe first."""
    th = th or thresholds_for(data.config)
    cfg, derived = data.config, data.derived
    total = _num(derived.get("total_steps"))
    total = int(total) if total else None
    warmup = int(_num(derived.get("warmup_steps")) or 0)
    max_norm = _num(cfg_get(cfg, "training.max_grad_norm", "training_args.max_grad_norm"))
    loss, grad, lr = data.curve("loss"), data.curve("grad_norm"), data.curve("lr")
    val = data.overview.get("val_loss", [])
    train_over = data.overview.get("loss", [])
    lr_over = data.overview.get("lr", [])
    lr_peak = max((p[2] for p in lr_over if p[2] is not None and math.isfinite(p[2])), default=None)
    if data.lineage_lr_peak is not None:  # a branch: the schedule's peak was before its fork
        lr_peak = max(lr_peak or 0.0, data.lineage_lr_peak)
    lowest, lowest_at = _lowest_level(train_over)
    lr_now = next((x for x in reversed(lr.values) if math.isfinite(x)), None)
    out: list[Diagnosis | None] = [
        det.exploding_gradients(grad.steps, grad.values, th, max_norm),
        _worst(
            det.loss_spike(loss.steps, loss.values, th),
            det.loss_elevated(loss.steps, loss.values, lowest, lowest_at, th),
        ),
        det.oscillation(loss.steps, loss.values, th),
        progress.slow_convergence(
            data.first_loss, loss.steps, loss.values, total, warmup, th, lowest
        ),
        progress.late_stall(
            *_span(train_over, loss, data.last_step, th), lr_now, lr_peak, total, th
        ),
        progress.overfitting(
            [p[0] for p in val],
            [p[3] for p in val],
            [p[0] for p in train_over] + loss.steps,
            [p[3] for p in train_over] + loss.values,
            th,
        ),
        progress.underfitting(
            loss.steps, loss.values, [p[3] for p in val], chance_loss(cfg), total, data.ended, th
        ),
        answers.repetitive_answers(
            [p[0] for p in data.overview.get(answers.METRIC, [])],
            [p[3] for p in data.overview.get(answers.METRIC, [])],
            th,
        ),
        efficiency.clipping_saturated(grad.steps, grad.values, max_norm, warmup, th),
        efficiency.stalled(data.last_step, *data.stall),
    ]
    for name in ("tokens_per_s", "samples_per_s"):
        over = data.overview.get(name)
        if over:
            skip = max(1, int(len(over) * STEADY_SKIP))
            rate = data.curve(name)
            out.append(
                efficiency.throughput_drop(
                    [p[3] for p in over[skip:]], rate.steps, rate.values, name, th
                )
            )
            break  # one rate is enough: both fall together
    utils = {n: data.recent[n] for n in data.recent if n.startswith("sys/gpu")}
    if utils and not data.ended:  # a finished run's last samples (final eval, saving) are no signal
        out.append(efficiency.low_gpu_util({k: (c.steps, c.values) for k, c in utils.items()}))
    return sort([d for d in out if d is not None])
