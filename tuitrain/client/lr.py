"""Provides LambdaLRSteer: set_lr / scale_lr on a torch LambdaLR as a multiplier on its lambdas.

The configured schedule keeps its shape: every lambda becomes `lambda(step) * multiplier`, and
"set LR to X" picks the multiplier that makes the next update's LR (param group 0) exactly X.
Used by the HF callback and by `Run.steer_lr()` in custom loops. Duck-typed: no torch import.
"""

from __future__ import annotations

from typing import Any

_STEERED = "_tuitrain_steered"


class LambdaLRSteer:
    """Wraps a LambdaLR's lambdas (HF's get_scheduler types, except reduce_lr_on_plateau)."""

    def __init__(self, scheduler: Any, multiplier: float = 1.0) -> None:
        lambdas = getattr(scheduler, "lr_lambdas", None)
        if not isinstance(lambdas, list) or not hasattr(scheduler, "base_lrs"):
            raise TypeError(
                f"{type(scheduler).__name__} is not a LambdaLR; LR steering needs a"
                " torch.optim.lr_scheduler.LambdaLR (e.g. transformers.get_scheduler(...))"
            )
        self.scheduler = scheduler
        self.multiplier = float(multiplier)
        # Re-wrapping (a second train()) unwraps first, so multipliers never stack.
        self._base = [getattr(fn, _STEERED, fn) for fn in lambdas]
        # Closures (FunctionType) are left out of LambdaLR.state_dict(): the scheduler's
        # checkpoint stays plain numbers and loads with weights_only; the owner saves multiplier.
        scheduler.lr_lambdas = [_steered(fn, self) for fn in self._base]
        self.refresh()

    def scheduled_lr(self) -> float:
        """The LR param group 0 would use for the next update without steering."""
        s = self.scheduler
        return float(s.base_lrs[0] * self._base[0](s.last_epoch))

    def set_lr(self, lr: float) -> float:
        """Make the next update's LR `lr` (the schedule keeps its shape); returns it.

        Raises ValueError when the schedule is at 0 here (no multiplier can lift 0)."""
        shaped = self.scheduled_lr()
        if not shaped > 0:
            raise ValueError(
                "the schedule is at LR 0 here (warmup start or end of decay); use scale-lr or wait a step"
            )
        self.multiplier = lr / shaped
        return self.refresh()

    def scale_lr(self, factor: float) -> float:
        """Multiply the LR from the next update on by `factor`; returns the new LR."""
        self.multiplier *= factor
        return self.refresh()

    def apply(self, kind: str, value: float) -> float:
        """Apply a validated set_lr / scale_lr command; returns the new LR (ValueError: rejected)."""
        if kind == "set_lr":
            return self.set_lr(value)
        if kind == "scale_lr":
            return self.scale_lr(value)
        raise ValueError(f"not an LR command: {kind!r}")

    def refresh(self) -> float:
        """Give the optimizer the steered LRs now (not at the next scheduler.step()); returns group 0's."""
        s = self.scheduler
        lrs = [base * fn(s.last_epoch) for base, fn in zip(s.base_lrs, s.lr_lambdas, strict=True)]
        for group, lr in zip(s.optimizer.param_groups, lrs, strict=True):
            if hasattr(group["lr"], "fill_"):  # a tensor LR (capturable optimizers): keep its type
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        s._last_lr = list(lrs)  # what get_last_lr() (and HF's logged learning_rate) reports
        return float(lrs[0])


def _steered(fn: Any, owner: LambdaLRSteer) -> Any:
    def steered(step: int) -> float:
        return fn(step) * owner.multiplier

    setattr(steered, _STEERED, fn)
    return steered
