"""Provides what applying a race's winner sends: a factor on the run's current schedule
(`scale_lr`), or the absolute LR (`set_lr`) only while the run still stands where the race
started it (paused for the race, no step trained since); "too close to call" sends nothing
unless forced. Also the branch length a race of a run may have (never past the run's end)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tuitrain.steering.kinds import VALUE_KEYS


@dataclass
class Decision:
    """What to send (kind, value), why; `refused` says why nothing is sent (kind is then '')."""

    kind: str
    value: float
    why: str
    refused: str = ""

    def payload(self) -> dict:
        """The command's payload ({'factor': f} or {'lr': lr})."""
        return {VALUE_KEYS[self.kind]: self.value}

    def describe(self) -> str:
        """`scale_lr x3` / `set_lr 0.003`."""
        return (
            f"scale_lr x{self.value:.3g}" if self.kind == "scale_lr" else f"set_lr {self.value:.3g}"
        )


def decide(rec: dict, verdict: Any, last_lr_step: int | None, force: bool = False) -> Decision:
    """The command that applies `verdict`'s winner to the run raced from (record `rec`).

    The winning branch trained the run's own schedule times its factor (its optimizer.lr is the
    base LR x factor), so the factor is the winning branch's LR / the race's base LR: sent as
    scale_lr it moves the run's schedule where it is now. Only when the run was paused for the
    race and has logged no step past the race's start (`last_lr_step`, the step of its newest
    logged lr) is its LR still the one raced from: then set_lr with the start's LR x factor."""
    w = verdict.winner
    if w is None:
        return Decision("", math.nan, "", "the race has no winner: nothing to apply")
    if verdict.too_close and not force:
        m = "n/a" if verdict.margin is None else f"{verdict.margin:.3g}"
        n = "n/a" if verdict.noise is None else f"{verdict.noise:.3g}"
        return Decision(
            "",
            math.nan,
            "",
            f"too close to call (margin {m} < 2 x noise {n}): nothing applied; "
            f"--apply --force (in the monitor: confirm twice) applies x{w.factor:g} anyway",
        )
    fork = rec.get("fork_step") or 0
    if rec.get("paused") and (last_lr_step is None or last_lr_step <= fork):
        lr = rec["current_lr"] * w.factor
        why = f"the run was paused at step {fork}, where the race started: its LR is still {rec['current_lr']:.3g}"
        return Decision("set_lr", lr, why)
    where = (
        "the run trained on during the race" if not rec.get("paused") else "the run has moved on"
    )
    return Decision("scale_lr", w.factor, f"{where}: x{w.factor:g} of its schedule as it is now")


def applied_entry(run_id: str, d: Decision, status: str, step: int | None, forced: bool) -> dict:
    """The record's `applied`: what was sent (kind, value), to which run, and how it went."""
    return {
        "run": run_id,
        "kind": d.kind,
        "value": d.value,
        "status": status,
        "step": step,
        "forced": forced,
    }


def describe_applied(a: dict) -> str:
    """One line for a record's `applied` (older records held only set_lr's `lr`)."""
    kind, value = a.get("kind", "set_lr"), a.get("value", a.get("lr"))
    what = f"scale_lr x{value:.3g}" if kind == "scale_lr" else f"set_lr {value:.3g}"
    at = f" at step {a['step']}" if a.get("step") is not None else ""
    forced = " (forced: too close to call)" if a.get("forced") else ""
    return f"{what} to {a['run']} ({a['status']}{at}){forced}"


DEFAULT_STEPS = 200  # a branch's steps when the run's length does not bound them
SHARE = 0.10  # of the run's remaining steps, at most, by default


def default_steps(total: int | None, step: int | None) -> int:
    """Steps per branch by default: 200, but at most ~10% of the run's remaining steps (>= 1)."""
    if not total:
        return DEFAULT_STEPS
    remaining = max(1, total - (step or 0))
    return max(1, min(DEFAULT_STEPS, int(remaining * SHARE)))


def clamp_steps(steps: int, total: int | None, fork_step: int) -> tuple[int, str]:
    """`steps` cut so a branch from `fork_step` never trains past the run's max step `total`;
    the note says so ('' when nothing was cut). A run at its end leaves 0 (nothing to race)."""
    if not total or fork_step + steps <= total:
        return steps, ""
    left = max(0, total - fork_step)
    return left, (
        f"{steps} steps per branch would train past the run's end (step {total}): "
        f"clamped to {left} (step {fork_step} + {left})"
    )


def parse_factors(text: str, name: str = "--factors") -> list[float]:
    """`0.3,1,3` -> [0.3, 1.0, 3.0]; an error names the field and the fix."""
    try:
        out = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{name} {text!r}: comma-separated numbers, e.g. 0.3,1,3") from None
    if len(out) < 2 or any(not (math.isfinite(f) and f > 0) for f in out):
        raise ValueError(f"{name} {text!r}: at least two positive factors, e.g. 0.3,1,3")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} {text!r}: each factor once")
    return out
