"""Provides the detectors of training progress: slow convergence, late stall, overfitting, underfitting."""

from __future__ import annotations

import math
from collections.abc import Sequence

from tuitrain.doctor.diagnosis import REMEDIES, Diagnosis, scale_lr, stop_restore_best
from tuitrain.doctor.stats import finite, median, rel_drop
from tuitrain.doctor.thresholds import Thresholds, num4


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
    came back up is a spike or a divergence, not slow progress), and at its current rate would
    not have fallen that much by the end of training either."""
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
    # Slow means it will not get there: a loss that fell little so far but falls steadily now
    # (a fine-tune's fresh head leaving chance level) reaches the expected drop at its current
    # rate before the run ends.
    ahead = lc + _rate(recent_steps, recent_loss) * max(0, total_steps - step)
    if math.isfinite(ahead) and rel_drop(l0, ahead) >= th.slow_min_drop:
        return None
    return Diagnosis(
        "slow_convergence",
        "warning",
        int(judge_at),
        f"loss {num4(lc)} at step {step} vs {num4(l0)} at the start: fell {drop:.1%} in"
        f" {step / total_steps:.0%} of training (expected at least {th.slow_min_drop:.0%})",
        REMEDIES["slow_convergence"],
        scale_lr(2.0),
        {"start": l0, "now": lc, "drop": drop, "progress": step / total_steps},
    )


def _rate(steps: Sequence[int], values: Sequence[float], n: int = 20) -> float:
    """The loss's recent change per step (<= 0 when falling): the difference of the medians of
    the two halves of its last `n` finite points over the steps between them (robust to a noisy
    batch); 0.0 with too few points or when it rises (a rising loss is never projected)."""
    pts = [(st, v) for st, v in zip(steps, values, strict=False) if math.isfinite(v)][-n:]
    if len(pts) < 6:
        return 0.0
    half = len(pts) // 2
    a, b = pts[:half], pts[half:]
    span = median([st for st, _ in b]) - median([st for st, _ in a])
    if span <= 0:
        return 0.0
    return min(0.0, (median([v for _, v in b]) - median([v for _, v in a])) / span)


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
        f"loss {num4(a)} -> {num4(b)} over steps {pts[0][0]}-{pts[-1][0]} ({drop:+.1%}) at"
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
        f"val_loss {num4(now)} at step {now_step} vs best {num4(best)} at step {best_step}"
        f" (+{rise:.1%}, {len(since)} evals since) while train loss fell {num4(t_best)} -> {num4(t_now)}",
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
    `underfit_level` of the chance-level loss (a model that learned nothing), and the train loss
    would not get below it by the end at its current rate."""
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
    if not ended and total_steps:  # falling steadily, it gets below the limit before the end
        ahead = lc + _rate(recent_steps, recent_loss) * max(0, total_steps - step)
        if ahead <= limit:
            return None
    val_txt = f", val_loss {num4(vc)}" if vc is not None else ""
    return Diagnosis(
        "underfitting",
        "warning",
        step,
        f"train loss {num4(lc)}{val_txt} at step {step}: still {lc / chance_loss:.0%} of the"
        f" chance-level loss {num4(chance_loss)} (limit {th.underfit_level:.0%})",
        REMEDIES["underfitting"],
        scale_lr(2.0),
        {"loss": lc, "val_loss": vc, "chance_loss": chance_loss, "level": lc / chance_loss},
    )
