"""Provides the LR range test's curve math: the exponential ramp, the smoothed loss and its stop rule, and the suggestion."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

# fastai / Lightning defaults: EMA factor of the smoothed loss, divergence threshold, points
# skipped at the start (the EMA is still warming up) and at the end (the blow-up itself).
BETA = 0.98
STOP_FACTOR = 4.0
SKIP_BEGIN = 10
SKIP_END = 1
MIN_POINTS = 12  # fewer finite points than this: no suggestion
FLAT_DROP = 0.05  # the smoothed loss fell by less than 5% of its start: flat
NOISE_SHARE = 0.5  # step-to-step noise above half the drop: noisy
DISAGREE = 30.0  # the two methods more than this factor apart: say so
PRETRAINED_WARNING = (
    "the model is pretrained: range tests tend to point ~10-100x too high on fine-tuning "
    "(e.g. 1e-3 where 1e-5 is right); confirm with `tuitrain lr-race`"
)


def ramp_lr(step: int, min_lr: float, max_lr: float, steps: int) -> float:
    """LR of update step+1 (step = completed steps): min_lr at the first update, max_lr at the last."""
    if steps <= 1:
        return min_lr
    return min_lr * (max_lr / min_lr) ** (min(step, steps - 1) / (steps - 1))


class Smoother:
    """Debiased EMA of the loss (fastai/Lightning) and the stop rule: above STOP_FACTOR x its best, or non-finite."""

    def __init__(self, beta: float = BETA, stop_factor: float = STOP_FACTOR) -> None:
        self.beta, self.stop_factor = beta, stop_factor
        self.avg, self.n, self.best = 0.0, 0, math.inf
        self.stop_reason: str | None = None

    def add(self, lr: float, loss: float) -> float:
        """Feed one step's loss; returns the smoothed value (sets stop_reason when the test should end)."""
        if not math.isfinite(loss):
            self.stop_reason = f"loss became {loss} at lr {lr:.3g}"
            return loss
        self.n += 1
        self.avg = self.beta * self.avg + (1 - self.beta) * loss
        smooth = self.avg / (1 - self.beta**self.n)
        if self.n > 1 and smooth > self.stop_factor * self.best:
            self.stop_reason = (
                f"smoothed loss {smooth:.4g} passed {self.stop_factor:g}x its minimum "
                f"{self.best:.4g} at lr {lr:.3g}"
            )
        self.best = min(self.best, smooth)
        return smooth


def smooth(losses: Sequence[float], beta: float = BETA) -> list[float]:
    """The debiased EMA of a loss sequence (non-finite values pass through as they are)."""
    s = Smoother(beta, stop_factor=math.inf)
    return [s.add(0.0, v) for v in losses]


@dataclass
class Suggestion:
    """The range test's answer: both methods, the one chosen, and why it may not be trusted."""

    suggested_lr: float | None
    method: str  # "steepest" | "min/10" | "none"
    min_loss_lr: float | None
    steepest_lr: float | None
    min10_lr: float | None
    clear: bool
    warnings: list[str] = field(default_factory=list)
    points: list[tuple[float, float]] = field(default_factory=list)  # (lr, raw loss)
    smoothed: list[float] = field(default_factory=list)
    steepest_index: int | None = None

    def as_json(self) -> dict:
        """The `--format json` object."""
        return {
            "suggested_lr": self.suggested_lr,
            "method": self.method,
            "min_loss_lr": self.min_loss_lr,
            "steepest_lr": self.steepest_lr,
            "min10_lr": self.min10_lr,
            "clear": self.clear,
            "warnings": list(self.warnings),
            "points": [[lr, loss] for lr, loss in self.points],
        }


def suggest(
    points: Sequence[tuple[float, float]],
    pretrained: bool = False,
    skip_begin: int = SKIP_BEGIN,
    skip_end: int = SKIP_END,
) -> Suggestion:
    """Steepest descent of the smoothed loss over log10(lr), and the LR of the minimum / 10.

    The steepest point is the suggestion (Lightning's rule, over log LR like fastai); a curve
    that is flat, noisy, too short or rises from its first point gets no clear answer, said in
    `warnings`.
    """
    pts = [(float(lr), float(loss)) for lr, loss in points]
    sm = smooth([loss for _, loss in pts])
    finite = [i for i, (lr, _) in enumerate(pts) if math.isfinite(sm[i]) and lr > 0]
    out = Suggestion(None, "none", None, None, None, False, [], pts, sm)
    if len(finite) < MIN_POINTS:
        out.warnings.append(
            f"only {len(finite)} finite points (need {MIN_POINTS}): raise --steps or lower --min"
        )
        return out
    i_min = min(finite, key=lambda i: sm[i])
    out.min_loss_lr = pts[i_min][0]
    out.min10_lr = out.min_loss_lr / 10
    # Skip the EMA's warm-up and the blow-up; what is left must still have a few points.
    core = finite[skip_begin : len(finite) - skip_end] or finite
    if len(core) < 3:
        core = finite
    x = [math.log10(pts[i][0]) for i in core]
    y = [sm[i] for i in core]
    grads = _gradient(x, y)
    j = min(range(len(grads)), key=lambda k: grads[k])
    if grads[j] < 0:
        out.steepest_index = core[j]
        out.steepest_lr = pts[core[j]][0]
    # Measured from the end of the EMA's warm-up: its first values are single raw losses.
    first = sm[core[0]]
    drop = first - sm[i_min]
    raw = [pts[i][1] for i in finite]
    noise = _median([abs(a - b) for a, b in zip(raw[1:], raw[:-1], strict=False)])
    if drop <= FLAT_DROP * abs(first):
        out.warnings.append(
            f"flat: the smoothed loss fell only {max(drop, 0) / abs(first) if first else 0:.1%} over "
            f"{pts[core[0]][0]:.2g}..{pts[finite[-1]][0]:.2g} (widen --min/--max or raise --steps)"
        )
    elif finite.index(i_min) <= max(2, len(finite) // 10):
        out.warnings.append(
            f"diverging from the first step: the loss is lowest at lr {out.min_loss_lr:.2g} "
            "(lower --min)"
        )
    elif noise > NOISE_SHARE * drop:
        out.warnings.append(
            f"noisy: step-to-step noise {noise:.3g} is large against the drop {drop:.3g} "
            "(raise batch.size or --steps)"
        )
    if out.steepest_lr is None:
        out.warnings.append("no descent: the smoothed loss never falls")
    clear = not out.warnings
    if clear and out.steepest_lr is not None and out.min10_lr is not None:
        ratio = max(out.steepest_lr, out.min10_lr) / min(out.steepest_lr, out.min10_lr)
        if ratio > DISAGREE:
            out.warnings.append(
                f"the methods disagree by {ratio:.0f}x (steepest {out.steepest_lr:.2g}, "
                f"min/10 {out.min10_lr:.2g})"
            )
            clear = False
    if out.steepest_lr is not None:
        out.suggested_lr, out.method = out.steepest_lr, "steepest"
    else:
        out.suggested_lr, out.method = out.min10_lr, "min/10"
    if pretrained:
        out.warnings.append(PRETRAINED_WARNING)
        clear = False
    out.clear = clear
    return out


def _gradient(x: Sequence[float], y: Sequence[float]) -> list[float]:
    """dy/dx like numpy.gradient: central differences inside, one-sided at the ends."""
    n = len(x)
    g = []
    for i in range(n):
        a, b = max(0, i - 1), min(n - 1, i + 1)
        dx = x[b] - x[a]
        g.append((y[b] - y[a]) / dx if dx else 0.0)
    return g


def _median(values: Sequence[float]) -> float:
    v = sorted(values)
    if not v:
        return 0.0
    m = len(v) // 2
    return v[m] if len(v) % 2 else (v[m - 1] + v[m]) / 2
