"""Provides the doctor's verdict for sweep pruning: whether a trial run is critically diverging
(a critical exploding_gradients, or an unrecovered loss_spike, NaN/inf included)."""

from __future__ import annotations

from typing import Any

from tuitrain.doctor.diagnose import diagnose, thresholds_for
from tuitrain.doctor.diagnosis import Diagnosis
from tuitrain.doctor.rundata import read_run

DIVERGING = ("exploding_gradients", "loss_spike")


def diverging(diags: list[Diagnosis]) -> Diagnosis | None:
    """The first critical, not recovered divergence among the diagnoses (None: keep going)."""
    return next(
        (
            d
            for d in diags
            if d.severity == "critical"
            and d.id in DIVERGING
            and d.values.get("recovered") is not True
        ),
        None,
    )


def check_run(store: Any, run: Any) -> Diagnosis | None:
    """Diagnose the run (its `doctor:` thresholds; reads the tail and downsampled series, so the
    cost stays flat in run length) and return its divergence, if any."""
    th = thresholds_for(run.config or {})
    return diverging(diagnose(read_run(store, run, th.window), th))


def prune_reason(d: Diagnosis, step: int) -> str:
    """The pruned run's status reason: 'pruned by doctor at step N: <evidence> (<id>)'."""
    return f"pruned by doctor at step {step}: {d.evidence} ({d.id})"
