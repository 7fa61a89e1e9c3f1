"""Provides the detectors: one small pure function per symptom, over plain lists of steps and
values (no store, no clock), each returning a Diagnosis or None."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tuitrain.doctor.model import REMEDIES, Action, Diagnosis, scale_lr, stop_restore_best
from tuitrain.doctor.stats import MAD_TO_SD, finite, median, rel_drop, robust_z, step_noise


@dataclass(frozen=True)
class Thresholds:
    """The `doctor:` config group's detector settings as plain numbers (see config.schema.DoctorGroup)."""

    window: int = 100
    min_points: int = 20
    grad_z: float = 6.0
    grad_ratio: float = 5.0
    spike_z: float = 6.0
    spike_rise: float = 0.25
    oscillation_noise: float = 0.1
    slow_after: float = 0.25
    slow_min_drop: float = 0.1
    stall_after: float = 0.5
    stall_span: float = 0.2
    stall_min_drop: float = 0.01
    stall_lr_ratio: float = 0.7
    overfit_evals: int = 3
    overfit_min_rise: float = 0.02
    underfit_level: float = 0.8
    clip_fraction: float = 0.9
    clip_ratio: float = 3.0
    throughput_ratio: float = 0.5

    @classmethod
    def from_group(cls, group: object) -> Thresholds:
        """Take the fields of a DoctorGroup (or any object with these attributes)."""
        return cls(**{k: getattr(group, k) for k in cls.__dataclass_fields__})


def _g(x: float) -> str:
    """A number as evidence reads it: 4 significant digits."""
    return f"{x:.4g}"


@dataclass(frozen=True)
class Spike:
    """Where a series jumped: first and peak index, the baseline before it, and its size."""

    first: int
    peak: int
    last: int
    base: float  # median of the window before the first spike point (raw units)
    z: float  # the peak's robust z-score
    nonfinite: int | None  # index of the first NaN/inf, if any


def find_spikes(
    xs: Sequence[float], z_min: float, ratio_min: float, window: int, min_points: int, log: bool
) -> Spike | None:
    """Scan the newest `window` points for values far above their recent level (robust z; on log
    values for grad norms); None when nothing is that far. A NaN/inf value counts as a spike.

    Level: the median of the `min_points` points before (it follows a trend such as the fast
    fall at the start). Spread: the step-to-step noise (MAD of first differences) of the
    `window` points before, which a trend does not inflate. The jump must also pass a ratio
    (`ratio_min` x the level for log values, a `ratio_min` relative rise for raw ones)."""
    vals = [(math.log(x) if log and x > 0 else (math.nan if log else x)) for x in xs]
    first = peak = last = None
    base = zpk = 0.0
    nonfinite = None
    for i in range(max(min_points, len(xs) - window), len(xs)):
        x = xs[i]
        if x is None or not math.isfinite(x):
            nonfinite = i if nonfinite is None else nonfinite
            if first is None:
                first = peak = i
                ref = finite(xs[max(0, i - min_points) : i])
                base, zpk = (median(ref) if ref else math.nan), math.inf
            last = i
            continue
        ref = finite(vals[max(0, i - window) : i])
        if len(ref) < min_points:
            continue
        med = median(ref[-min_points:])
        spread = step_noise(ref) / MAD_TO_SD  # robust_z multiplies it back
        # Log values: a floor of 0.05 (5%) stops a nearly constant norm making noise a spike;
        # raw values: 1% of the level.
        floor = 0.05 if log else 0.01 * abs(med) + 1e-12
        z = robust_z(vals[i], med, spread, floor)
        raw_med = math.exp(med) if log else med
        ratio_ok = x > raw_med * ratio_min if log else x > raw_med * (1.0 + ratio_min)
        if z >= z_min and ratio_ok:
            if first is None:
                first, base = i, raw_med
            if peak is None or x > xs[peak]:  # the highest value is the one the user looks for
                peak, zpk = i, z
            last = i
    if first is None:
        return None
    return Spike(first, peak, last, base, zpk, nonfinite)


def exploding_gradients(
    steps: Sequence[int],
    grad_norm: Sequence[float],
    th: Thresholds,
    max_grad_norm: float | None = None,
) -> Diagnosis | None:
    """Grad norm far above its recent level (robust z on log grad norm); critical when it is
    NaN/inf, 4x the ratio threshold, or still high at the newest step."""
    sp = find_spikes(grad_norm, th.grad_z, th.grad_ratio, th.window, th.min_points, log=True)
    if sp is None:
        return None
    n = len(grad_norm)
    span = min(th.min_points, sp.first)
    if sp.nonfinite is not None:
        i = sp.nonfinite
        evidence = f"grad norm {grad_norm[i]} at step {steps[i]}, median {_g(sp.base)} over the {span} logged steps before"
        values = {"grad_norm": str(grad_norm[i]), "median": sp.base, "window": span}
        severity = "critical"
    else:
        peak = grad_norm[sp.peak]
        ratio = peak / sp.base if sp.base > 0 else math.inf
        now = grad_norm[-1]
        still = math.isfinite(now) and sp.base > 0 and now > sp.base * th.grad_ratio
        severity = (
            "critical" if ratio >= 4 * th.grad_ratio or (still and sp.last == n - 1) else "warning"
        )
        evidence = (
            f"grad norm {_g(peak)} at step {steps[sp.peak]}, median {_g(sp.base)} over the {span}"
            f" logged steps before ({ratio:.1f}x, robust z {sp.z:.1f}); now {_g(now)} at step {steps[-1]}"
        )
        values = {
            "grad_norm": peak,
            "peak_step": steps[sp.peak],
            "median": sp.base,
            "ratio": ratio,
            "z": sp.z,
            "window": span,
            "now": now,
        }
    remedy = REMEDIES["exploding_gradients"]
    if max_grad_norm == 0:
        remedy = "gradients are not clipped (training.max_grad_norm 0): " + remedy
    return Diagnosis(
        "exploding_gradients", severity, steps[sp.first], evidence, remedy, scale_lr(0.5), values
    )


def loss_spike(steps: Sequence[int], loss: Sequence[float], th: Thresholds) -> Diagnosis | None:
    """A sudden loss jump; says whether it recovered (back near the level before it)."""
    sp = find_spikes(loss, th.spike_z, th.spike_rise, th.window, th.min_points, log=False)
    if sp is None:
        return None
    after = finite(loss[sp.last + 1 :])
    tail = after[-5:]
    level = median(tail) if len(tail) >= 3 else math.nan
    recovered = math.isfinite(level) and level <= sp.base * (1.0 + th.spike_rise / 2)
    if sp.nonfinite is not None:
        i = sp.nonfinite
        return Diagnosis(
            "loss_spike",
            "critical",
            steps[sp.first],
            f"loss became {loss[i]} at step {steps[i]} (median {_g(sp.base)} before); not recovered",
            REMEDIES["loss_spike"],
            scale_lr(0.5),
            {"loss": str(loss[i]), "median": sp.base, "recovered": False},
        )
    peak = loss[sp.peak]
    if recovered:
        severity = "info"
        state = f"recovered: {_g(level)} now"
    elif math.isfinite(level) and level >= sp.base * (1.0 + 2 * th.spike_rise):
        severity = "critical"
        state = f"not recovered: still {_g(level)}"
    else:
        severity = "warning"
        state = "not recovered yet" + (f": {_g(level)} now" if math.isfinite(level) else "")
    rise = peak / sp.base - 1.0 if sp.base else math.inf
    return Diagnosis(
        "loss_spike",
        severity,
        steps[sp.first],
        f"loss {_g(peak)} at step {steps[sp.peak]}, median {_g(sp.base)} before (+{rise:.0%}); {state}",
        REMEDIES["loss_spike"],
        None if recovered else scale_lr(0.5),
        {
            "loss": peak,
            "peak_step": steps[sp.peak],
            "median": sp.base,
            "rise": rise,
            "z": sp.z,
            "recovered": recovered,
            "now": level,
        },
    )


def loss_elevated(
    steps: Sequence[int],
    loss: Sequence[float],
    lowest: float | None,
    lowest_step: int | None,
    th: Thresholds,
) -> Diagnosis | None:
    """The loss stays far above the lowest it reached (twice `spike_rise` over it): a jump that
    did not recover, even once it is older than the window (a loss_spike, critical)."""
    now = finite(loss)[-10:]
    if lowest is None or not math.isfinite(lowest) or lowest <= 0 or not steps:
        return None
    if len(finite(loss)) < th.min_points:
        return None  # the first steps fall and bounce: no level to fall back from yet
    level = median(now)
    limit = lowest * (1.0 + 2 * th.spike_rise)
    if level < limit:
        return None
    # It started where the loss first went that high after its lowest (if the rows reach back).
    start = next(
        (
            s
            for s, x in zip(steps, loss, strict=False)
            if (lowest_step is None or s > lowest_step) and x is not None and not x < limit
        ),
        lowest_step,
    )
    return Diagnosis(
        "loss_spike",
        "critical",
        start,
        f"loss {_g(level)} at step {steps[-1]} vs its lowest {_g(lowest)} at step {lowest_step}"
        f" ({level / lowest:.1f}x); not recovered",
        REMEDIES["loss_spike"],
        scale_lr(0.5),
        {"now": level, "lowest": lowest, "lowest_step": lowest_step, "recovered": False},
    )


def oscillation(steps: Sequence[int], loss: Sequence[float], th: Thresholds) -> Diagnosis | None:
    """Loss noise step to step (detrended by differencing) large against its level, in both
    halves of the window: persistent, not one spike."""
    pts = [(s, x) for s, x in zip(steps, loss, strict=False) if x is not None and math.isfinite(x)]
    pts = pts[-th.window :]
    if len(pts) < max(th.min_points, 8):
        return None
    vals = [x for _, x in pts]
    half = len(vals) // 2
    rel = []
    for part in (vals[:half], vals[half:], vals):
        level = median(part)
        rel.append(step_noise(part) / abs(level) if level else math.nan)
    if not all(math.isfinite(r) and r > th.oscillation_noise for r in rel[:2]):
        return None
    return Diagnosis(
        "oscillation",
        "warning",
        pts[0][0],
        f"loss noise {rel[2]:.0%} of its level {_g(median(vals))} over the last {len(vals)} logged"
        f" steps (halves {rel[0]:.0%}, {rel[1]:.0%}; limit {th.oscillation_noise:.0%})",
        REMEDIES["oscillation"],
        scale_lr(0.5),
        {"noise": rel[2], "level": median(vals), "halves": rel[:2], "window": len(vals)},
    )


def slow_convergence(
    first_loss: Sequence[float],
    recent_steps: Sequence[int],
    recent_loss: Sequence[float],
    total_steps: int | None,
    warmup_steps: int,
    th: Thresholds,
    lowest: float | None = None,
) -> Diagnosis | None:
    """Once `slow_after` of the post-warmup steps are done, the loss has fallen less than
    `slow_min_drop` of its starting level (and is near its lowest so far: a loss that fell and
    came back up is a spike or a divergence, not slow progress)."""
    start, now = finite(first_loss)[:5], finite(recent_loss)[-10:]
    if not total_steps or not start or len(now) < 3 or not recent_steps:
        return None
    judge_at = warmup_steps + th.slow_after * (total_steps - warmup_steps)
    step = recent_steps[-1]
    if step < judge_at:
        return None
    l0, lc = median(start), median(now)
    drop = rel_drop(l0, lc)
    # A loss well above its start is diverging (loss_spike, exploding_gradients), not slow.
    if not math.isfinite(drop) or drop >= th.slow_min_drop or drop < -th.spike_rise:
        return None
    if lowest is not None and math.isfinite(lowest) and lc > lowest * (1 + th.spike_rise):
        return None
    return Diagnosis(
        "slow_convergence",
        "warning",
        int(judge_at),
        f"loss {_g(lc)} at step {step} vs {_g(l0)} at the start: fell {drop:.1%} in"
        f" {step / total_steps:.0%} of training (expected at least {th.slow_min_drop:.0%})",
        REMEDIES["slow_convergence"],
        scale_lr(2.0),
        {"start": l0, "now": lc, "drop": drop, "progress": step / total_steps},
    )


def late_stall(
    steps: Sequence[int],
    loss: Sequence[float],
    lr_now: float | None,
    lr_peak: float | None,
    total_steps: int | None,
    th: Thresholds,
) -> Diagnosis | None:
    """Late in training the loss no longer falls (median of the first vs the last third of the
    given span) while the LR is still near its peak. The caller passes the span's points
    (exact rows, or downsampled buckets when the span is longer than the rows read)."""
    pts = [(s, x) for s, x in zip(steps, loss, strict=False) if x is not None and math.isfinite(x)]
    if not total_steps or len(pts) < max(th.min_points, 9) or not lr_now or not lr_peak:
        return None
    if pts[-1][0] < th.stall_after * total_steps:
        return None
    third = len(pts) // 3
    a, b = median([x for _, x in pts[:third]]), median([x for _, x in pts[-third:]])
    drop, lr_ratio = rel_drop(a, b), lr_now / lr_peak
    if not math.isfinite(drop) or drop >= th.stall_min_drop or lr_ratio < th.stall_lr_ratio:
        return None
    if drop < -th.spike_rise:
        return None  # rising, not flat: a spike or a divergence
    return Diagnosis(
        "late_stall",
        "warning",
        pts[0][0],
        f"loss {_g(a)} -> {_g(b)} over steps {pts[0][0]}-{pts[-1][0]} ({drop:+.1%}) at"
        f" {pts[-1][0] / total_steps:.0%} of training, LR {lr_now:.3g} = {lr_ratio:.0%} of its peak {lr_peak:.3g}",
        REMEDIES["late_stall"],
        scale_lr(0.5),
        {"loss_from": a, "loss_to": b, "drop": drop, "lr": lr_now, "lr_peak": lr_peak},
    )


def overfitting(
    val_steps: Sequence[int],
    val_loss: Sequence[float],
    train_steps: Sequence[int],
    train_loss: Sequence[float],
    th: Thresholds,
) -> Diagnosis | None:
    """Validation loss above its best for `overfit_evals` evaluations (by `overfit_min_rise`)
    while the training loss kept falling; reports the step where validation was best."""
    ev = [
        (s, v)
        for s, v in zip(val_steps, val_loss, strict=False)
        if v is not None and math.isfinite(v)
    ]
    if len(ev) < th.overfit_evals + 1:
        return None
    best_i = min(range(len(ev)), key=lambda i: ev[i][1])
    best_step, best = ev[best_i]
    since = ev[best_i + 1 :]
    if len(since) < th.overfit_evals:
        return None
    now_step, now = ev[-1]
    rise = now / best - 1.0 if best > 0 else rel_drop(best, now) * -1
    if rise < th.overfit_min_rise:
        return None
    tr = [
        (s, x)
        for s, x in zip(train_steps, train_loss, strict=False)
        if x is not None and math.isfinite(x)
    ]
    at_best = [x for s, x in tr if s <= best_step][-3:]
    recent = [x for _, x in tr][-5:]
    if not at_best or not recent:
        return None
    t_best, t_now = median(at_best), median(recent)
    if t_now >= t_best:
        return None  # both rising: divergence, not overfitting
    return Diagnosis(
        "overfitting",
        "warning",
        best_step,
        f"val_loss {_g(now)} at step {now_step} vs best {_g(best)} at step {best_step}"
        f" (+{rise:.1%}, {len(since)} evals since) while train loss fell {_g(t_best)} -> {_g(t_now)}",
        REMEDIES["overfitting"],
        stop_restore_best(best_step),
        {
            "val_loss": now,
            "best_val_loss": best,
            "best_step": best_step,
            "evals_since_best": len(since),
            "train_at_best": t_best,
            "train_now": t_now,
        },
    )


def underfitting(
    recent_steps: Sequence[int],
    recent_loss: Sequence[float],
    val_loss: Sequence[float],
    chance_loss: float | None,
    total_steps: int | None,
    ended: bool,
    th: Thresholds,
) -> Diagnosis | None:
    """Late in training (or at the end), train and validation loss both still above
    `underfit_level` of the chance-level loss (a model that learned nothing)."""
    now = finite(recent_loss)[-10:]
    if not chance_loss or chance_loss <= 0 or len(now) < 3 or not recent_steps:
        return None
    step = recent_steps[-1]
    late = ended or (total_steps and step >= th.stall_after * total_steps)
    if not late:
        return None
    lc = median(now)
    vals = finite(val_loss)
    vc = vals[-1] if vals else None
    limit = th.underfit_level * chance_loss
    if lc <= limit or (vc is not None and vc <= limit):
        return None
    if lc > chance_loss * (1 + th.spike_rise):
        return None  # far above chance: diverged (loss_spike), not a model that learned too little
    val_txt = f", val_loss {_g(vc)}" if vc is not None else ""
    return Diagnosis(
        "underfitting",
        "warning",
        step,
        f"train loss {_g(lc)}{val_txt} at step {step}: still {lc / chance_loss:.0%} of the"
        f" chance-level loss {_g(chance_loss)} (limit {th.underfit_level:.0%})",
        REMEDIES["underfitting"],
        scale_lr(2.0),
        {"loss": lc, "val_loss": vc, "chance_loss": chance_loss, "level": lc / chance_loss},
    )


def clipping_saturated(
    steps: Sequence[int],
    grad_norm: Sequence[float],
    max_grad_norm: float | None,
    warmup_steps: int,
    th: Thresholds,
) -> Diagnosis | None:
    """The pre-clip grad norm is above max_grad_norm on most recent steps after warmup: the clip
    sets the step size, not the LR. Warning when the median is `clip_ratio` x the limit."""
    if not max_grad_norm or max_grad_norm <= 0:
        return None
    pts = [
        (s, g)
        for s, g in zip(steps, grad_norm, strict=False)
        if g is not None and math.isfinite(g) and s > warmup_steps
    ]
    pts = pts[-th.window :]
    if len(pts) < th.min_points:
        return None
    above = sum(1 for _, g in pts if g > max_grad_norm)
    share = above / len(pts)
    if share < th.clip_fraction:
        return None
    med = median([g for _, g in pts])
    ratio = med / max_grad_norm
    severity = "warning" if ratio >= th.clip_ratio else "info"
    suggest = float(f"{max(med, max_grad_norm * 2):.2g}")
    return Diagnosis(
        "clipping_saturated",
        severity,
        pts[0][0],
        f"pre-clip grad norm above max_grad_norm {_g(max_grad_norm)} on {share:.0%} of the last"
        f" {len(pts)} logged steps (median {_g(med)} = {ratio:.1f}x the limit)",
        REMEDIES["clipping_saturated"],
        Action(
            "config",
            {"field": "training.max_grad_norm", "value": suggest},
            f"raise training.max_grad_norm to {suggest:g} (next run)",
            steerable=False,
        ),
        {"share": share, "median": med, "max_grad_norm": max_grad_norm, "ratio": ratio},
    )


def throughput_drop(
    steady: Sequence[float],
    recent_steps: Sequence[int],
    recent: Sequence[float],
    name: str,
    th: Thresholds,
) -> Diagnosis | None:
    """The recent median of a rate (tokens/s, samples/s) well below the run's steady level
    (median over the run, warm-up excluded by the caller); judged once the run has logged a
    window's worth of steps, so a level is known."""
    st, now = finite(steady), finite(recent)[-th.min_points :]
    if len(st) < 5 or len(now) < th.min_points or len(finite(recent)) < th.window:
        return None
    level, cur = median(st), median(now)
    if level <= 0 or cur >= th.throughput_ratio * level:
        return None
    first = recent_steps[-len(now)]
    return Diagnosis(
        "throughput_drop",
        "warning",
        first,
        f"{name} {_g(cur)} over the last {len(now)} logged steps vs {_g(level)} steady"
        f" ({cur / level:.0%}; limit {th.throughput_ratio:.0%})",
        REMEDIES["throughput_drop"],
        None,
        {"metric": name, "now": cur, "steady": level, "ratio": cur / level},
    )


# A GPU busy less than this share of the time (NVML utilisation, median over the recent samples of
# the mean over GPUs) is idle most of each step; at least this many samples (5 s apart) are judged.
LOW_GPU_UTIL = 50.0
LOW_GPU_MIN_SAMPLES = 6


def low_gpu_util(utils: dict[str, tuple[Sequence[int], Sequence[float]]]) -> Diagnosis | None:
    """GPU utilisation (the trainer's sys/gpu{i}_util samples, {name: (steps, values)}) low over
    the recent window: the run is bound by data loading, the host or a small batch."""
    by_step: dict[int, list[float]] = {}
    for steps, values in utils.values():
        for s, v in zip(steps, values, strict=False):
            if math.isfinite(v):
                by_step.setdefault(s, []).append(v)
    if len(by_step) < LOW_GPU_MIN_SAMPLES:
        return None
    steps = sorted(by_step)
    means = [sum(by_step[s]) / len(by_step[s]) for s in steps]
    cur = median(means)
    if cur >= LOW_GPU_UTIL:
        return None
    return Diagnosis(
        "low_gpu_util",
        "warning",
        steps[0],
        f"GPU utilisation {cur:.0f}% (median of {len(means)} samples since step {steps[0]},"
        f" mean over {len(utils)} GPU{'s' if len(utils) > 1 else ''}; limit {LOW_GPU_UTIL:.0f}%)",
        REMEDIES["low_gpu_util"],
        None,
        {"util": cur, "samples": len(means), "gpus": len(utils)},
    )


def stalled(
    last_step: int | None, stalled_now: bool, age_s: float | None, limit_s: float | None
) -> Diagnosis | None:
    """A live run whose step has not advanced for longer than its stall threshold; the verdict
    comes from the one liveness model (tuitrain.runs.liveness.stall_state), shown with evidence."""
    if not stalled_now or age_s is None or last_step is None:
        return None
    limit = limit_s or 0.0
    return Diagnosis(
        "stalled",
        "critical" if limit and age_s > 5 * limit else "warning",
        last_step,
        f"no new step for {age_s:.0f} s since step {last_step} (limit {limit:.0f} s); the process is alive",
        REMEDIES["stalled"],
        None,
        {"age_s": age_s, "limit_s": limit},
    )
