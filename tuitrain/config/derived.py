"""Provides the derived values of a config (effective batch, steps, warmup, scaled LR) in one place."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from tuitrain.config.schema import TrainConfig


@dataclass(frozen=True)
class Derived:
    """Values that follow from a config (and the dataset size, when known)."""

    num_processes: int
    effective_batch: int
    scaled_lr: float
    lora_scale: float | None
    train_samples: int | None
    steps_per_epoch: int | None
    total_steps: int | None
    warmup_steps: int | None
    samples_estimated: bool = False

    def as_dict(self) -> dict:
        """Plain dict for YAML, JSON and the run record."""
        return asdict(self)


def num_processes(cfg: TrainConfig) -> int:
    """Training processes in all; launch.num_processes counts every process across machines."""
    return cfg.launch.num_processes


def scaled_lr(cfg: TrainConfig, effective_batch: int) -> float:
    """optimizer.lr after batch.lr_scaling relative to batch.reference_batch."""
    ratio = effective_batch / cfg.batch.reference_batch
    rule = cfg.batch.lr_scaling
    if rule == "linear":
        return cfg.optimizer.lr * ratio
    if rule == "sqrt":
        return cfg.optimizer.lr * math.sqrt(ratio)
    return cfg.optimizer.lr


def steps_per_epoch(train_samples: int, micro_batch: int, procs: int, grad_accum: int) -> int:
    """Optimizer steps per epoch: each process sees ceil(N/procs) samples; a final partial
    accumulation cycle still steps (as Accelerate syncs at the end of the dataloader)."""
    per_proc = math.ceil(train_samples / procs)
    batches = math.ceil(per_proc / micro_batch)
    return max(1, math.ceil(batches / grad_accum))


def compute(cfg: TrainConfig, train_samples: int | None = None, estimated: bool = False) -> Derived:
    """All derived values; step counts are None when the dataset size is unknown and
    training.max_steps is not set."""
    procs = num_processes(cfg)
    eff = cfg.batch.size * cfg.batch.grad_accum * procs
    spe = total = None
    if train_samples is not None and train_samples > 0:
        spe = steps_per_epoch(train_samples, cfg.batch.size, procs, cfg.batch.grad_accum)
        total = spe * cfg.training.epochs
    if cfg.training.max_steps is not None:
        total = cfg.training.max_steps
    warm = None
    if cfg.scheduler.warmup_steps is not None:
        warm = cfg.scheduler.warmup_steps
    elif total is not None:
        warm = math.ceil(cfg.scheduler.warmup_ratio * total)
    lora = cfg.peft.alpha / cfg.peft.r if cfg.peft.method != "none" else None
    return Derived(
        num_processes=procs,
        effective_batch=eff,
        scaled_lr=scaled_lr(cfg, eff),
        lora_scale=lora,
        train_samples=train_samples,
        steps_per_epoch=spe,
        total_steps=total,
        warmup_steps=warm,
        samples_estimated=estimated,
    )
