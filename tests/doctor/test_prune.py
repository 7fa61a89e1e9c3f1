"""Unit tests of the doctor's sweep-pruning verdict: only a critical, unrecovered divergence
prunes a trial; the reason reads 'pruned by doctor at step N: <evidence> (<id>)'."""

from __future__ import annotations

from tuitrain.doctor.diagnosis import Diagnosis, scale_lr
from tuitrain.doctor.prune import diverging, prune_reason


def diag(id_: str, severity: str, **values) -> Diagnosis:
    return Diagnosis(id_, severity, 20, f"{id_} evidence", "remedy", scale_lr(0.5), values)


def test_only_critical_unrecovered_divergence_prunes():
    assert (
        diverging([diag("exploding_gradients", "warning"), diag("oscillation", "warning")]) is None
    )
    assert diverging([diag("loss_spike", "critical", recovered=True)]) is None
    assert diverging([diag("late_stall", "critical")]) is None
    nan = diag("loss_spike", "critical", loss="nan", recovered=False)
    assert diverging([diag("oscillation", "warning"), nan]) is nan
    grad = diag("exploding_gradients", "critical")
    assert diverging([grad, nan]) is grad


def test_prune_reason_names_step_evidence_and_id():
    d = diag("exploding_gradients", "critical")
    assert prune_reason(d, 33) == (
        "pruned by doctor at step 33: exploding_gradients evidence (exploding_gradients)"
    )
