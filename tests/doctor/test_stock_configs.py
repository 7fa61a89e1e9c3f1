"""The stock configs at their defaults raise no warning (fixtures recorded once from real runs by
make_fixtures.py), and the two rules they tripped: a fine-tune whose loss leaves chance level late
but falls steadily is neither slow nor underfitting (it gets there before the end at its rate),
and a branch forked mid-schedule is judged against the schedule's peak LR, not its fork's."""

from __future__ import annotations

import dataclasses

import pytest

from tuitrain.doctor import diagnose, read_run, thresholds_for
from tuitrain.doctor.progress import slow_convergence, underfitting
from tuitrain.doctor.thresholds import Thresholds
from tuitrain.store import Store

from . import replay

STOCK = ["stock-demo", "stock-sft-demo", "stock-seq-cls"]


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "runs") as s:
        yield s


@pytest.mark.parametrize("name", STOCK)
def test_a_stock_config_at_its_defaults_is_healthy(store, name):
    assert replay.labels()[name]["symptoms"] == {}
    found = {
        d.id: step
        for step, diags in replay.replay(store, replay.load(name), every=5)
        for d in diags
        if d.severity != "info"
    }
    assert found == {}, found


def _line(steps, start, per_step):
    return list(steps), [start + per_step * (s - steps[0]) for s in steps]


def test_a_steady_fall_that_arrives_in_time_is_not_slow():
    th = Thresholds()
    first = [0.693] * 5
    steps, loss = _line(range(16, 36), 0.69, -0.004)  # 0.69 -> 0.61 by step 35 of 69
    assert slow_convergence(first, steps, loss, 69, 7, th) is None
    # the same 5% so far, but flat now: it will not get to 10% by the end
    flat_steps, flat = _line(range(16, 36), 0.66, -0.0001)
    d = slow_convergence(first, flat_steps, flat, 69, 7, th)
    assert d is not None and d.id == "slow_convergence"


def test_underfitting_waits_while_the_loss_falls_fast_enough():
    th = Thresholds()
    steps, loss = _line(range(16, 36), 0.69, -0.004)  # 0.61 now; 0.47 < 0.8 x 0.693 by 69
    assert underfitting(steps, loss, [0.66], 0.693, 69, False, th) is None
    # at the end there is no time left: judged on where it is
    d = underfitting(steps, loss, [0.66], 0.693, 69, True, th)
    assert d is not None and d.id == "underfitting"


def test_a_branch_is_judged_against_the_schedules_peak_lr(store):
    fx = replay.load("stock-sft-demo")
    steps = replay.steps_of(fx)
    mid = steps[len(steps) // 2]
    parent = replay.create(store, fx, status="completed")
    store.log_metrics(parent, [r for r in replay.rows_of(fx) if r[0] <= mid])
    child = store.create_run(
        fx["config"], fx["derived"], name="branch", status="running", parent=parent, fork_step=mid
    )
    upto = 181  # where the branch's own LR looked like its peak
    rows = [r for r in replay.rows_of(fx, upto) if r[0] > mid]
    store.log_metrics(child.id, rows)
    run = dataclasses.replace(store.get_run(child.id), started=replay.T0, heartbeat=rows[-1][3])
    th = thresholds_for(fx["config"])
    data = read_run(store, run, th.window, now=rows[-1][3])
    own_peak = max(r[2] for r in rows if r[1] == "lr")
    assert data.lineage_lr_peak is not None and data.lineage_lr_peak > 1.5 * own_peak
    assert "late_stall" not in [d.id for d in diagnose(data, th)]
