"""What applying a race's winner sends (tuitrain.lrfind.apply.decide): a factor on the run's
schedule as it is now, the absolute LR only while a paused run stands at the race's start, and
nothing for a race too close to call unless forced; and the monitor's race line over a real store."""

from __future__ import annotations

import math

import pytest

from tests.lrfind.test_race import lane
from tuitrain.lrfind.apply import decide, describe_applied, parse_factors
from tuitrain.lrfind.race import judge
from tuitrain.lrfind.records import race_progress, write_record
from tuitrain.store import Store

REC = {"race_id": "r1", "fork_step": 100, "current_lr": 2e-3, "base_lr": 3e-3, "paused": False}


def clear():
    """x3 wins by far more than the noise."""
    return judge([lane(0.3, 1.5), lane(1, 1.3), lane(3, 1.0)])


def close():
    """Val losses within 2 x noise: too close to call."""
    return judge([lane(1, 1.0, noise=0.05), lane(3, 1.01, noise=0.05)])


def test_a_run_that_trained_on_gets_the_factor():
    d = decide(REC, clear(), last_lr_step=221)
    assert (d.kind, d.value) == ("scale_lr", 3.0) and d.payload() == {"factor": 3.0}
    assert not d.refused and d.describe() == "scale_lr x3"


def test_a_paused_run_still_at_the_start_gets_the_absolute_lr():
    rec = {**REC, "paused": True}
    for last in (None, 100, 99):  # no lr logged since the pause (steps <= the fork step)
        d = decide(rec, clear(), last_lr_step=last)
        assert d.kind == "set_lr" and d.value == pytest.approx(6e-3)  # current LR x 3
        assert d.payload() == {"lr": pytest.approx(6e-3)}
    # Resumed and trained on since (W pressed late): its schedule moved, so the factor.
    d = decide(rec, clear(), last_lr_step=101)
    assert (d.kind, d.value) == ("scale_lr", 3.0) and "moved on" in d.why


def test_too_close_applies_nothing_unless_forced():
    v = close()
    assert v.too_close and v.winner is not None
    d = decide(REC, v, last_lr_step=150)
    assert d.kind == "" and math.isnan(d.value)
    assert "too close to call" in d.refused and "--apply --force" in d.refused
    forced = decide(REC, v, last_lr_step=150, force=True)
    assert forced.kind == "scale_lr" and forced.value == v.winner.factor and not forced.refused
    none = judge([lane(1, 1.0)])  # one branch: no winner, nothing even when forced
    assert "no winner" in decide(REC, none, 150, force=True).refused


def test_factors_field_errors_name_the_field():
    assert parse_factors("0.5, 2") == [0.5, 2.0]
    with pytest.raises(ValueError, match="factors '2': at least two"):
        parse_factors("2", "factors")
    with pytest.raises(ValueError, match="--factors 'a,b': comma-separated numbers"):
        parse_factors("a,b")


def test_describe_applied_reads_new_and_old_records():
    new = {"run": "p", "kind": "scale_lr", "value": 3.0, "status": "applied", "step": 221}
    assert describe_applied(new) == "scale_lr x3 to p (applied at step 221)"
    old = {"run": "p", "lr": 0.00285, "status": "applied"}  # before kinds were recorded
    assert describe_applied(old) == "set_lr 0.00285 to p (applied)"


def test_race_line_shows_progress_then_the_result(tmp_path):
    with Store(tmp_path) as s:
        assert race_progress(s, "p") == ""
    rec = {
        "race_id": "20261202-1", "status": "running", "created": 1.0, "parent": "p",
        "fork_step": 100, "paused": True, "factors": [0.3, 1, 3], "steps": 10,
        "branches": [], "verdict": None,
    }  # fmt: skip
    write_record(tmp_path, rec)
    with Store(tmp_path) as s:
        line = race_progress(s, "p")
        assert race_progress(s, "other") == ""
    assert line == "LR race 20261202-1: 0/3 branches done, 10 steps each; the run is paused for it"
    rec.update(status="done", verdict=clear().as_json())
    write_record(tmp_path, rec)
    with Store(tmp_path) as s:
        assert race_progress(s, "p").endswith("x3 won; W applies it, G branches from it")
    rec["applied"] = {"run": "p", "kind": "scale_lr", "value": 3.0, "status": "applied", "step": 7}
    write_record(tmp_path, rec)
    with Store(tmp_path) as s:
        assert race_progress(s, "p").endswith("x3 won; scale_lr x3 applied @7")
