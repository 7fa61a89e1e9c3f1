"""Provides the optimizers (adamw, adam, sgd, rmsprop, lion), head/body parameter groups and the LR controller."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from tuitrain.config.schedule import lr_factor
from tuitrain.config.schema import TrainConfig
from tuitrain.train.model import SetupError, is_head


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023): a sign-based update with decoupled weight decay."""

    def __init__(
        self,
        params,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
    ):
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        """One update: w -= lr * (sign(b1*m + (1-b1)*g) + wd*w); m = b2*m + (1-b2)*g."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(torch.sign(m * b1 + p.grad * (1 - b1)), alpha=-group["lr"])
                m.mul_(b2).add_(p.grad, alpha=1 - b2)
        return loss


def param_groups(cfg: TrainConfig, model, base_lr: float) -> list[dict]:
    """Groups by (head or body) x (decayed or not); biases and norms get no weight decay."""
    head_lr = cfg.optimizer.head_lr
    if head_lr is not None:
        # batch.lr_scaling rescales the head like the body: the same effective-batch ratio.
        head_lr *= base_lr / cfg.optimizer.lr
    buckets: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        head = head_lr is not None and is_head(name)
        decay = p.ndim >= 2
        buckets.setdefault((head, decay), []).append(p)
    groups = []
    for (head, decay), params in sorted(buckets.items()):
        lr = head_lr if head else base_lr
        groups.append(
            {
                "params": params,
                "lr": lr,
                "base_lr": lr,
                "weight_decay": cfg.optimizer.weight_decay if decay else 0.0,
                "is_head": head,
            }
        )
    if not groups:
        raise SetupError("model has no trainable parameters (check peft.target_modules)")
    return groups


def build_optimizer(cfg: TrainConfig, model, base_lr: float) -> torch.optim.Optimizer:
    """The configured optimizer over `param_groups`; each group keeps its own `base_lr`."""
    o = cfg.optimizer
    groups = param_groups(cfg, model, base_lr)
    if o.name in ("adamw", "adam"):
        cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
        betas = (o.beta1, o.beta2)
        if o.fused:
            # Fused kernels exist for CUDA and (torch >= 2.4) CPU; HF Trainer defaults to them too.
            try:
                return cls(groups, lr=base_lr, betas=betas, eps=o.eps, fused=True)
            except (RuntimeError, ValueError):
                pass  # e.g. a parameter dtype the fused kernel lacks: the default kernel below
        return cls(groups, lr=base_lr, betas=betas, eps=o.eps)
    if o.name == "sgd":
        if o.nesterov and o.momentum == 0:
            raise SetupError("optimizer.nesterov needs momentum > 0 (set optimizer.momentum: 0.9)")
        return torch.optim.SGD(groups, lr=base_lr, momentum=o.momentum, nesterov=o.nesterov)
    if o.name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=base_lr, momentum=o.momentum, eps=o.eps)
    return Lion(groups, lr=base_lr, betas=(o.beta1, o.beta2))


class LRControl:
    """The LR of every optimizer step: base x schedule(step) x plateau cuts x steering multiplier.

    Registered for checkpointing: its state is plain numbers, so it survives save_state/load_state.
    """

    def __init__(self, cfg: TrainConfig, base_lr: float, total_steps: int, warmup_steps: int):
        self.sched, self.base_lr, self.total, self.warmup = (
            cfg.scheduler,
            base_lr,
            total_steps,
            warmup_steps,
        )
        self.multiplier = 1.0
        self.plateau = 1.0
        # An LR range test (run.kind lr_find) replaces the schedule: step -> LR of the next update.
        self.ramp: Callable[[int], float] | None = None
        self.plateau_best = math.nan
        self.plateau_bad = 0
        # A branch's re-warm: from step `rewarm_from` the LR starts at `rewarm_ratio` x what the
        # schedule gives and ramps linearly to 1x over `rewarm_steps` steps (0: none).
        self.rewarm_from, self.rewarm_steps, self.rewarm_ratio = 0, 0, 1.0

    def start_rewarm(self, step: int, steps: int, start_lr: float) -> None:
        """Re-warm from `step`: the next update uses `start_lr`, then a linear ramp over `steps`
        steps to the schedule (steering multipliers apply on top, as ever)."""
        self.rewarm_from, self.rewarm_steps, self.rewarm_ratio = step, 0, 1.0
        now = self.lr(step)
        if steps > 0 and now > 0 and start_lr > 0:
            self.rewarm_from, self.rewarm_steps, self.rewarm_ratio = step, steps, start_lr / now

    def rewarm(self, step: int) -> float:
        """The re-warm's factor for the update after `step` (1 outside the re-warm)."""
        if self.rewarm_steps <= 0 or not 0 <= step - self.rewarm_from < self.rewarm_steps:
            return 1.0
        t = (step - self.rewarm_from) / self.rewarm_steps
        return self.rewarm_ratio + (1.0 - self.rewarm_ratio) * t

    def factor(self, step: int) -> float:
        """Multiplier on each group's base LR for the update after `step` completed steps."""
        if self.ramp is not None:
            return self.ramp(step) / self.base_lr
        return (
            lr_factor(step, self.sched, self.total, self.warmup, self.base_lr)
            * self.plateau
            * self.multiplier
            * self.rewarm(step)
        )

    def lr(self, step: int) -> float:
        """The body LR used by update step+1 (what the `lr` metric reports)."""
        return self.base_lr * self.factor(step)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every group's LR for the next update; returns the body LR."""
        f = self.factor(step)
        for g in optimizer.param_groups:
            g["lr"] = g["base_lr"] * f
        return self.base_lr * f

    def in_warmup(self, step: int) -> bool:
        """True while the update after `step` completed steps is still in the warmup (or a
        branch's re-warm)."""
        if self.ramp is not None:
            return False
        return step < self.warmup_end() and (self.warmup > 0 or self.rewarm_steps > 0)

    def warmup_end(self) -> int:
        """The step at which the warmup (or a re-warm) has reached the schedule."""
        end = self.warmup
        if self.rewarm_steps > 0:
            end = max(end, self.rewarm_from + self.rewarm_steps)
        return end

    def warmup_progress(self, step: int) -> tuple[str, float]:
        """("warmup" or "re-warm", percent done) at `step` (inside in_warmup)."""
        if self.rewarm_steps > 0 and step >= self.rewarm_from and step >= self.warmup:
            return "re-warm", 100 * (step - self.rewarm_from) / self.rewarm_steps
        return "warmup", 100 * step / max(1, self.warmup)

    def set_lr(self, lr: float, step: int) -> None:
        """Pick the multiplier that makes the LR `lr`; the schedule keeps its shape.

        After the warmup `lr` is the LR of the next update. During the warmup it is the warmup's
        target (the LR it reaches at its last step): the warmup goes on climbing towards it, as
        the configured peak would, instead of overshooting `lr` by 1/(warmup fraction)."""
        at = self.warmup_end() if self.in_warmup(step) else step
        sched = lr_factor(at, self.sched, self.total, self.warmup, self.base_lr) * self.plateau
        if sched <= 0:
            raise ValueError(
                "the schedule is at 0 here (end of decay); use scale-lr or wait a step"
            )
        self.multiplier = lr / (self.base_lr * sched)

    def scale_lr(self, factor: float) -> None:
        """Multiply the steering multiplier by `factor`."""
        self.multiplier *= factor

    def plateau_update(self, value: float, mode: str, min_delta: float) -> bool:
        """Record an eval of the monitored metric; True when the plateau rule cut the LR."""
        if self.sched.name != "plateau":
            return False
        better = math.isnan(self.plateau_best) or (
            value < self.plateau_best - min_delta
            if mode == "min"
            else value > self.plateau_best + min_delta
        )
        if better:
            self.plateau_best, self.plateau_bad = value, 0
            return False
        self.plateau_bad += 1
        if self.plateau_bad > self.sched.plateau_patience:
            self.plateau *= self.sched.plateau_factor
            self.plateau_bad = 0
            return True
        return False

    def state_dict(self) -> dict:
        """Plain numbers only (loaded back with weights_only)."""
        return {
            "multiplier": self.multiplier,
            "plateau": self.plateau,
            "plateau_best": self.plateau_best,
            "plateau_bad": self.plateau_bad,
            "rewarm_from": self.rewarm_from,
            "rewarm_steps": self.rewarm_steps,
            "rewarm_ratio": self.rewarm_ratio,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict saved."""
        self.multiplier = float(state["multiplier"])
        self.plateau = float(state["plateau"])
        self.plateau_best = float(state["plateau_best"])
        self.plateau_bad = int(state["plateau_bad"])
        # Checkpoints from before re-warms have none.
        self.rewarm_from = int(state.get("rewarm_from", 0))
        self.rewarm_steps = int(state.get("rewarm_steps", 0))
        self.rewarm_ratio = float(state.get("rewarm_ratio", 1.0))
