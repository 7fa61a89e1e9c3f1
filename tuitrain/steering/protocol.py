"""Provides the steering protocol: a validated command (SteerCommand), the validation every
receiver applies, and the mapping between commands and `steering.schedule` entries (replay).

The kinds and their payload keys are in tuitrain.steering.kinds (a leaf the store and the config
import too); this module adds what only senders and receivers of commands need. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuitrain.steering.kinds import KINDS, LR_KINDS, VALUE_KEYS, kind_error, value_of

__all__ = [
    "KINDS",
    "LR_KINDS",
    "SIGTERM_KIND",
    "VALUE_KEYS",
    "SteerCommand",
    "command_value",
    "entry_action",
    "schedule_entry",
    "validate",
]

# Not a store command: rank 0's SIGTERM, delivered like one so all ranks stop at the same step.
SIGTERM_KIND = "sigterm"


@dataclass
class SteerCommand:
    """A validated command: `value` is the LR (set_lr) or factor (scale_lr), else None."""

    id: int | None
    kind: str
    value: float | None = None
    payload: dict = field(default_factory=dict)


def validate(cmd_id: int | None, kind: str, payload: dict | None) -> SteerCommand | str:
    """A SteerCommand, or the reason the command is rejected."""
    payload = payload or {}
    bad = kind_error(kind)
    if bad is not None:
        return bad
    try:
        value = value_of(kind, payload)
    except ValueError as exc:
        return str(exc)
    return SteerCommand(cmd_id, kind, value, payload)


def command_value(kind: str, payload: dict | None) -> float | None:
    """The number an applied command carried (its LR or factor), None for kinds without one."""
    key = VALUE_KEYS.get(kind)
    return float((payload or {})[key]) if key else None


def entry_action(entry: dict[str, Any]) -> tuple[str, float | None] | None:
    """(kind, value) of a steering.schedule entry written as `{step: S, KIND: value-or-true}`."""
    kind = next((k for k in KINDS if entry.get(k) not in (None, False)), None)
    if kind is None:
        return None
    return kind, (float(entry[kind]) if kind in LR_KINDS else None)


def schedule_entry(step: int, kind: str, value: float | None) -> dict[str, Any]:
    """The steering.schedule entry that applies `kind` (with `value`) after step `step`."""
    return {"step": step, kind: value if value is not None else True}
