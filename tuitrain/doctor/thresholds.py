"""Provides Thresholds (the `doctor:` group as plain numbers) and num4, how evidence prints a number."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    """The `doctor:` config group's detector settings as plain numbers (see config.schema.DoctorGroup)."""

    window: int = 100
    min_points: int = 20
    grad_z: float = 6.0
    grad_ratio: float = 5.0
    spike_z: float = 6.0
    spike_rise: float = 0.25
    oscillation_noise: float = 0.1
    slow_after: float = 0.25
    slow_min_drop: float = 0.1
    stall_after: float = 0.5
    stall_span: float = 0.2
    stall_min_drop: float = 0.01
    stall_lr_ratio: float = 0.7
    overfit_evals: int = 3
    overfit_min_rise: float = 0.02
    underfit_level: float = 0.8
    clip_fraction: float = 0.9
    clip_ratio: float = 3.0
    throughput_ratio: float = 0.5
    repetition_level: float = 0.3
    repetition_rise: float = 0.2

    @classmethod
    def from_group(cls, group: object) -> Thresholds:
        """Take the fields of a DoctorGroup (or any object with these attributes)."""
        return cls(**{k: getattr(group, k) for k in cls.__dataclass_fields__})


def num4(x: float) -> str:
    """A number as evidence reads it: 4 significant digits."""
    return f"{x:.4g}"
