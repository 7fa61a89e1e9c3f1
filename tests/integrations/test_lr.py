"""Tests LambdaLRSteer on real torch schedulers: exact set_lr, shape kept, checkpoint safety."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tuitrain.client.lr import LambdaLRSteer  # noqa: E402

TOTAL = 100


def make(warmup: int = 0):
    torch.set_num_threads(1)
    model = torch.nn.Linear(2, 1)
    groups = [{"params": [model.weight], "lr": 1e-3}, {"params": [model.bias], "lr": 1e-2}]
    opt = torch.optim.AdamW(groups)

    def shape(step: int) -> float:
        if step < warmup:
            return step / warmup
        return (TOTAL - step) / (TOTAL - warmup)

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, [shape, shape]), shape


def advance(opt, sched, n: int) -> None:
    for _ in range(n):
        opt.step()
        sched.step()


def test_set_lr_is_exact_and_the_schedule_keeps_its_shape():
    opt, sched, shape = make()
    advance(opt, sched, 10)
    steer = LambdaLRSteer(sched)
    assert steer.set_lr(5e-4) == pytest.approx(5e-4)
    m = 5e-4 / (1e-3 * shape(10))
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-4)
    assert opt.param_groups[1]["lr"] == pytest.approx(
        1e-2 * shape(10) * m
    )  # groups keep their ratio
    assert sched.get_last_lr()[0] == pytest.approx(5e-4)
    advance(opt, sched, 5)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * shape(15) * m)
    steer.scale_lr(0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * shape(15) * m * 0.5)
    # Wrapping again (a second train()) does not stack multipliers.
    again = LambdaLRSteer(sched, steer.multiplier)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * shape(15) * m * 0.5)
    assert again.scheduled_lr() == pytest.approx(1e-3 * shape(15))


def test_set_lr_at_a_zero_schedule_is_refused():
    opt, sched, _ = make(warmup=10)
    steer = LambdaLRSteer(sched)
    with pytest.raises(ValueError, match="schedule is at LR 0"):
        steer.apply("set_lr", 1e-3)
    assert steer.multiplier == 1.0


def test_scheduler_state_stays_weights_only_loadable(tmp_path):
    opt, sched, _ = make()
    steer = LambdaLRSteer(sched)
    steer.set_lr(2e-3)
    torch.save(sched.state_dict(), tmp_path / "scheduler.pt")
    state = torch.load(tmp_path / "scheduler.pt", weights_only=True)
    assert state["lr_lambdas"] == [None, None] and state["_last_lr"][0] == pytest.approx(2e-3)


def test_not_a_lambdalr_is_named():
    opt, _, _ = make()
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
    with pytest.raises(TypeError, match="ReduceLROnPlateau is not a LambdaLR"):
        LambdaLRSteer(plateau)
