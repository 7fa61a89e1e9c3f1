"""EarlyStop, the loop's patience rule, on its own: improvement by more than min_delta resets the
count, `patience` evaluations without one stop the run (only when enabled), max mode works."""

from __future__ import annotations

import math
from types import SimpleNamespace

from tuitrain.train.early_stop import EarlyStop


def memory():
    return SimpleNamespace(best_value=math.nan, best_step=-1, bad_evals=0)


def test_patience_counts_evaluations_without_an_improvement_beyond_min_delta():
    rule = EarlyStop("val_loss", "min", 0.1, 2, True)
    m = memory()
    assert rule.judge(m, 2.0, 10) == "improved" and (m.best_value, m.best_step) == (2.0, 10)
    assert rule.judge(m, 1.95, 20) == "worse"  # better, but not by more than min_delta
    assert rule.judge(m, 1.5, 30) == "improved" and m.bad_evals == 0 and m.best_step == 30
    assert rule.judge(m, 1.6, 40) == "worse"
    assert rule.judge(m, 1.7, 50) == "stop" and m.best_step == 30
    assert "no val_loss improvement > 0.1 in 2 evaluations" in rule.reason()


def test_disabled_rule_tracks_the_best_but_never_stops():
    rule = EarlyStop("val_loss", "min", 0.0, 1, False)
    m = memory()
    rule.judge(m, 1.0, 1)
    assert [rule.judge(m, 2.0, s) for s in (2, 3, 4)] == ["worse"] * 3 and m.best_step == 1


def test_max_mode_improves_upwards():
    rule = EarlyStop("val_accuracy", "max", 0.0, 1, True)
    m = memory()
    assert rule.judge(m, 0.5, 1) == "improved"
    assert rule.judge(m, 0.6, 2) == "improved"
    assert rule.judge(m, 0.55, 3) == "stop"
