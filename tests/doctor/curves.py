"""Provides constructed curves in the fixture format: a healthy run and one run per symptom
(including the rare ones no short demo run shows: stalls, throughput drops, late stalls),
deterministic (seeded noise) so tests and the bench see the same numbers every time."""

from __future__ import annotations

import math
import random
from typing import Any

TOTAL = 1000
WARMUP = 50
CHANCE = math.log(259)


def _config(**training: Any) -> dict[str, Any]:
    return {
        "model": {"task": "causal-lm", "tokenizer": "bytes", "arch": {}},
        "optimizer": {"lr": 1e-3},
        "scheduler": {"name": training.pop("schedule", "cosine")},
        "training": {"max_grad_norm": 1.0, **training},
    }


def _lr(step: int, peak: float, schedule: str) -> float:
    if step < WARMUP:
        return peak * step / WARMUP
    if schedule == "constant":
        return peak
    return 1e-5 + 0.5 * (peak - 1e-5) * (1 + math.cos(math.pi * (step - WARMUP) / (TOTAL - WARMUP)))


def healthy_point(step: int, rng: random.Random) -> dict[str, float]:
    """A falling loss (5.6 -> ~2.2) with 4% noise, grad norm ~0.8 (10% noise), steady speed."""
    level = 2.1 + 3.5 * math.exp(-step / 120)
    return {
        "loss": level * (1 + 0.04 * rng.gauss(0, 1)),
        "grad_norm": (0.7 + 1.5 * math.exp(-step / 40)) * math.exp(0.1 * rng.gauss(0, 1)),
        "tokens_per_s": 10_000 * (1 + 0.03 * rng.gauss(0, 1)),
        "samples_per_s": 160 * (1 + 0.03 * rng.gauss(0, 1)),
    }


def make(kind: str, steps: int = TOTAL, seed: int = 0) -> dict[str, Any]:
    """A run in the fixture format: kind is 'healthy' or a symptom id (see SHAPES)."""
    rng = random.Random(f"{kind}-{seed}")
    rep_rng = random.Random(
        f"{kind}-{seed}-rep"
    )  # its own stream: the other metrics stay as they were
    schedule = "constant" if kind == "late_stall" else "cosine"
    peak = 1e-3
    metrics: dict[str, list[list[float]]] = {}
    status = "completed"
    t = 0.0
    for s in range(1, steps + 1):
        p = healthy_point(s, rng)
        p["lr"] = _lr(s, peak, schedule)
        SHAPES.get(kind, lambda s, p, r: None)(s, p, rng)
        t += 0.1 * 10_000 / p["tokens_per_s"]
        for name, v in p.items():
            metrics.setdefault(name, []).append([s, v, round(t, 3)])
        if not math.isfinite(p["loss"]):
            status = "diverged"
            break
        if s % 100 == 0:
            metrics.setdefault("val_loss", []).append(
                [s, VAL.get(kind, _val_healthy)(s, rng), round(t, 3)]
            )
            metrics.setdefault("samples/repetition", []).append(
                [s, REP.get(kind, _rep_healthy)(s, rep_rng), round(t, 3)]
            )
    return {
        "case": f"constructed-{kind}",
        "status": status,
        "config": _config(schedule=schedule),
        "derived": {"total_steps": TOTAL, "warmup_steps": WARMUP},
        "metrics": metrics,
    }


def _val_healthy(s: int, rng: random.Random) -> float:
    return 2.2 + 3.5 * math.exp(-s / 120) + 0.01 * rng.gauss(0, 1)


def _val_overfit(s: int, rng: random.Random) -> float:
    # Best at step 400, then rising 4% per eval.
    return _val_healthy(min(s, 400), rng) * (1 + 0.04 * max(0, s - 400) / 100)


def _val_underfit(s: int, rng: random.Random) -> float:
    return 5.45 + 0.01 * rng.gauss(0, 1)


def _rep_healthy(s: int, rng: random.Random) -> float:
    # The answers' repeated n-gram share: an untrained model babbles in loops, then it fades.
    return max(0.0, 0.6 * math.exp(-s / 150) + 0.05 + 0.02 * rng.gauss(0, 1))


def _rep_rising(s: int, rng: random.Random) -> float:
    # Healthy until step 500, then the answers loop more at each eval (0.45 at step 600).
    if s < 600:
        return _rep_healthy(s, rng)
    return min(1.0, 0.45 + 0.1 * (s - 600) / 100 + 0.02 * rng.gauss(0, 1))


REP = {"repetitive_answers": _rep_rising}

VAL = {
    "overfitting": _val_overfit,
    "underfitting": _val_underfit,
    "slow_convergence": _val_underfit,
}


def _exploding(s: int, p: dict, rng: random.Random) -> None:
    # From step 600 the grad norm grows 40% per step; the loss follows 10 steps later, then NaN.
    if s >= 600:
        p["grad_norm"] = 0.8 * 1.4 ** (s - 599)
    if s >= 610:
        p["loss"] = p["loss"] * 1.3 ** (s - 609)
    if s >= 625:
        p["loss"] = math.nan


def _spike_recovered(s: int, p: dict, rng: random.Random) -> None:
    if 500 <= s < 504:
        p["loss"] *= 2.2
        p["grad_norm"] *= 3


def _oscillation(s: int, p: dict, rng: random.Random) -> None:
    # From step 300 the loss swings +-35% step to step around its trend.
    if s >= 300:
        p["loss"] *= 1 + 0.35 * (1 if s % 2 else -1) * (0.5 + rng.random())


def _slow(s: int, p: dict, rng: random.Random) -> None:
    p["loss"] = (5.55 - 0.2 * s / TOTAL) * (1 + 0.01 * rng.gauss(0, 1))


def _late_stall(s: int, p: dict, rng: random.Random) -> None:
    # Converges early, then flat from 40% of the run at a constant LR.
    level = 2.4 + 3.2 * math.exp(-min(s, 400) / 60)
    p["loss"] = level * (1 + 0.02 * rng.gauss(0, 1))


def _underfit(s: int, p: dict, rng: random.Random) -> None:
    p["loss"] = 5.45 * (1 + 0.01 * rng.gauss(0, 1))


def _clipping(s: int, p: dict, rng: random.Random) -> None:
    p["grad_norm"] = 6.0 * math.exp(0.1 * rng.gauss(0, 1))


def _throughput(s: int, p: dict, rng: random.Random) -> None:
    if s >= 700:
        p["tokens_per_s"] *= 0.3
        p["samples_per_s"] *= 0.3


SHAPES = {
    "exploding_gradients": _exploding,
    "loss_spike": _spike_recovered,
    "oscillation": _oscillation,
    "slow_convergence": _slow,
    "late_stall": _late_stall,
    "underfitting": _underfit,
    "clipping_saturated": _clipping,
    "throughput_drop": _throughput,
    "overfitting": lambda s, p, r: None,  # only the validation curve differs
    "repetitive_answers": lambda s, p, r: None,  # only the answers' repetition differs
}
# The step each constructed symptom starts at (for detection delays).
ONSETS = {
    "exploding_gradients": {"exploding_gradients": 600, "loss_spike": 610},
    "loss_spike": {"loss_spike": 500},
    "oscillation": {"oscillation": 300},
    "slow_convergence": {"slow_convergence": 288, "underfitting": 500},
    "late_stall": {"late_stall": 500},
    "overfitting": {"overfitting": 500},
    "underfitting": {"slow_convergence": 288, "underfitting": 500},
    "clipping_saturated": {"clipping_saturated": 70},
    "throughput_drop": {"throughput_drop": 700},
    "repetitive_answers": {"repetitive_answers": 600},  # found at 700: two evals in a row
    "healthy": {},
}
