"""Unit tests of the doctor's rollback: which checkpoint it goes back to (the newest complete one
strictly before the symptom), which diagnoses get the action, and why there is none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuitrain.doctor.diagnosis import Diagnosis, scale_lr
from tuitrain.doctor.rollback import (
    KIND,
    NoRollback,
    checkpoint_before,
    plan_rollback,
    wants_rollback,
    why_none,
    with_rollback,
)
from tuitrain.store.models import RunInfo


def spike(id_: str = "loss_spike", severity: str = "critical", step: int | None = 21, **values):
    return Diagnosis(id_, severity, step, "evidence", "remedy", scale_lr(0.5), values)


def checkpoints(run_dir: Path, complete: list[int], partial: list[int] = ()) -> None:
    """step-N folders; only `complete` ones get the mark written last."""
    for s in [*complete, *partial]:
        d = run_dir / "checkpoints" / f"step-{s}"
        d.mkdir(parents=True)
        if s in complete:
            (d / "complete.json").write_text(json.dumps({"step": s}))


def test_checkpoint_before_is_the_newest_strictly_before_the_step():
    assert checkpoint_before([10, 20, 30], 21) == 20
    assert checkpoint_before([30, 10, 20], 30) == 20  # at the symptom's step: too late
    assert checkpoint_before([10, 20, 30], 31) == 30
    assert checkpoint_before([20, 30], 20) is None
    assert checkpoint_before([], 100) is None


def test_only_unrecovered_warning_or_critical_spikes_want_a_rollback():
    assert wants_rollback(spike())
    assert wants_rollback(spike("exploding_gradients", "warning"))
    assert not wants_rollback(spike(severity="info", recovered=True))
    assert not wants_rollback(spike(recovered=True))
    assert not wants_rollback(spike(step=None))
    assert not wants_rollback(spike("oscillation", "warning"))


def test_with_rollback_picks_the_complete_checkpoint_before_each_spike(tmp_path):
    # step-20 is half-written (no complete.json): the newest complete one before 23 is 10.
    checkpoints(tmp_path, [10, 30], partial=[20])
    diags = [spike(step=23), spike("exploding_gradients", step=35), spike("oscillation", "warning")]
    out = with_rollback(diags, tmp_path)
    assert [d.action.kind for d in out] == [KIND, KIND, "scale_lr"]
    assert out[0].action.payload == {"checkpoint_step": 10, "lr_factor": 0.5}
    assert out[1].action.payload["checkpoint_step"] == 30
    assert not out[0].action.steerable  # a new run, not a steering command
    assert out[0].to_dict()["action"]["kind"] == "rollback"


def test_no_checkpoint_before_the_spike_keeps_the_action_and_says_why(tmp_path):
    checkpoints(tmp_path, [40, 50])
    diags = [spike(step=21)]
    out = with_rollback(diags, tmp_path)
    assert out[0].action.kind == "scale_lr"
    run = RunInfo("r1", "spiky", "completed", {}, {}, 0.0, run_dir=tmp_path)
    assert "no checkpoint before step 21" in why_none(run, out)
    assert "40, 50" in why_none(run, out)
    with pytest.raises(NoRollback, match="no checkpoint before step 21"):
        plan_rollback(run, out)
    with pytest.raises(NoRollback, match="no open loss_spike or exploding_gradients"):
        plan_rollback(run, [spike(recovered=True, severity="info")])
