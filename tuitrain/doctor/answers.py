"""Provides the detector over the answers the model generates at each evaluation: answers that
start repeating themselves (the samples/repetition metric, tuitrain.samples.scores)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from tuitrain.doctor.diagnosis import REMEDIES, Diagnosis
from tuitrain.doctor.thresholds import Thresholds, num4

METRIC = "samples/repetition"
PERSIST = 2  # evaluations in a row above the limit (one eval's few prompts are noisy)


def repetitive_answers(
    steps: Sequence[int], repetition: Sequence[float], th: Thresholds
) -> Diagnosis | None:
    """The mean repetition of the answers (share of repeated n-grams) at each of the newest
    PERSIST evaluations is at least `repetition_level` and at least `repetition_rise` above the
    lowest evaluation before them: the answers began repeating while training went on (a model
    that repeated from the start, untrained, is not a change to report). Starts at the first
    evaluation after that lowest one that crossed the limit."""
    ev = [(s, v) for s, v in zip(steps, repetition, strict=False) if v is not None and math.isfinite(v)]  # fmt: skip
    if len(ev) < PERSIST + 2:  # a lowest level needs two evaluations before the newest ones
        return None
    before = ev[:-PERSIST]
    low_i = min(range(len(before)), key=lambda i: (before[i][1], -before[i][0]))
    low_step, low = before[low_i]
    limit = max(th.repetition_level, low + th.repetition_rise)
    if any(v < limit for _, v in ev[-PERSIST:]):
        return None
    now_step, now = ev[-1]
    start = next(s for s, v in ev[low_i + 1 :] if v >= limit)
    return Diagnosis(
        "repetitive_answers",
        "warning",
        start,
        f"answers repeat: mean {METRIC} {num4(now)} at step {now_step} vs {num4(low)} at step"
        f" {low_step} ({PERSIST} evals in a row above {num4(limit)}: at least"
        f" {num4(th.repetition_level)} and {num4(th.repetition_rise)} above the lowest)",
        REMEDIES["repetitive_answers"],
        None,
        {"repetition": now, "lowest": low, "lowest_step": low_step, "limit": limit},
    )
