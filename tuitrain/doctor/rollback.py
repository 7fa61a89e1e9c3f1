"""Provides the doctor's rollback: for an unrecovered spike, go back to the newest complete
checkpoint before it and continue as a branch with the LR scaled (through tuitrain.runs.branching),
stopping the parent if it is still running. The one apply path of the CLI and the doctor screen."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tuitrain.doctor.diagnosis import Action, Diagnosis
from tuitrain.runs import liveness

KIND = "rollback"
DIAGNOSES = ("exploding_gradients", "loss_spike")
FACTOR = 0.5


class NoRollback(ValueError):
    """No rollback can be applied; the message says why (no spike, no checkpoint before it)."""


def checkpoint_before(steps: Sequence[int], symptom_step: int) -> int | None:
    """The newest complete checkpoint strictly before the symptom's first step (None: none)."""
    return max((s for s in steps if s < symptom_step), default=None)


def wants_rollback(d: Diagnosis) -> bool:
    """A spike the remedy says to go back from: warning or critical, not recovered, with a step."""
    return (
        d.id in DIAGNOSES
        and d.severity != "info"
        and d.step is not None
        and d.values.get("recovered") is not True
    )


def rollback_action(step: int, factor: float = FACTOR) -> Action:
    """The rollback action: branch from the checkpoint at `step` with the LR times `factor`. Not
    a steering command (`steerable` False): it starts a new run."""
    return Action(
        KIND,
        {"checkpoint_step": step, "lr_factor": factor},
        f"rollback to step {step}, LR x{factor:g}",
        steerable=False,
    )


def with_rollback(diags: list[Diagnosis], run_dir: str | Path | None) -> list[Diagnosis]:
    """The diagnoses with a rollback action on each spike that has a checkpoint before it (the
    others keep their action)."""
    from tuitrain.runs.branching import checkpoint_steps

    if run_dir is None or not any(wants_rollback(d) for d in diags):
        return diags
    steps = checkpoint_steps(run_dir)
    out = []
    for d in diags:
        at = checkpoint_before(steps, d.step) if wants_rollback(d) and d.step else None
        out.append(replace(d, action=rollback_action(at)) if at is not None else d)
    return out


@dataclass(frozen=True)
class Rollback:
    """A checked rollback of one run, ready to apply."""

    parent: Any  # RunInfo
    diagnosis: Diagnosis
    step: int  # the checkpoint the child starts from
    lr_from: float
    lr_to: float

    @property
    def live(self) -> bool:
        """The parent still runs (it gets a stop command when the child starts)."""
        return not self.parent.terminal

    def describe(self) -> str:
        """'branch from step 20 with lr 10 -> 5, stop the current run'."""
        return describe(self.step, self.lr_from, self.lr_to, self.live)


def describe(step: int, lr_from: float | None, lr_to: float | None, live: bool) -> str:
    """How a rollback reads before it is applied (the CLI's line, the screen's question)."""
    lr = f"lr {lr_from:g} -> {lr_to:g}" if lr_from is not None and lr_to is not None else "lr"
    return f"branch from step {step} with {lr}" + (", stop the current run" if live else "")


def preview(run: Any, action: Action) -> str:
    """`describe` of a rollback action from the run's stored config (no file read)."""
    lr = ((run.config or {}).get("optimizer") or {}).get("lr")
    f = float(action.payload["lr_factor"])
    ok = isinstance(lr, int | float)
    return describe(
        int(action.payload["checkpoint_step"]), lr if ok else None, lr * f if ok else None,
        not run.terminal,
    )  # fmt: skip


def why_none(run: Any, diags: list[Diagnosis]) -> str:
    """Why none of the diagnoses carries a rollback action."""
    from tuitrain.runs.branching import checkpoint_steps

    spikes = [d for d in diags if wants_rollback(d)]
    if not spikes:
        return (
            "no open loss_spike or exploding_gradients diagnosis (warning or critical, not "
            "recovered) to roll back from"
        )
    d = spikes[0]
    have = checkpoint_steps(run.run_dir) if run.run_dir else []
    return (
        f"{d.id} from step {d.step}: no checkpoint before step {d.step} (complete checkpoints at "
        f"steps: {', '.join(map(str, sorted(have))) or 'none'}); save more often "
        "(training.save_every) or `tuitrain ctl RUN checkpoint` before it happens"
    )


def plan_rollback(run: Any, diags: list[Diagnosis], factor: float | None = None) -> Rollback:
    """The first diagnosis's rollback (diagnoses as `diagnose_run` returns them), with the LR
    factor of the action or `factor`; NoRollback says why there is none."""
    from tuitrain.config import load_config
    from tuitrain.runs.branching import parent_config

    d = next((d for d in diags if d.action is not None and d.action.kind == KIND), None)
    if d is None or d.action is None:
        raise NoRollback(why_none(run, diags))
    f = float(d.action.payload["lr_factor"] if factor is None else factor)
    if not f > 0:
        raise NoRollback(f"the LR factor must be above 0 (got {f:g}; e.g. 0.5)")
    lr = load_config(parent_config(run), check_data=False).config.optimizer.lr
    return Rollback(run, d, int(d.action.payload["checkpoint_step"]), lr, lr * f)


@dataclass(frozen=True)
class Applied:
    """What a rollback did: the child run, and the stop command sent to the parent (if live)."""

    child: Any  # RunInfo
    stop_command: int | None


def apply_rollback(rb: Rollback, runs_dir: str | Path, who: str = "user") -> Applied:
    """Branch the parent from the checkpoint with optimizer.lr scaled (tuitrain.runs.branching's checks
    and launch), then send the parent a stop command if it is still running, so the two do not
    share the device. BranchRefused / BranchError / LaunchError come through unchanged."""
    from tuitrain.config import load_config
    from tuitrain.runs.branching import parent_config, plan_branch, start_branch
    from tuitrain.store import CommandRefused, Store

    child_cfg = load_config(parent_config(rb.parent), sets=[f"optimizer.lr={rb.lr_to!r}"])
    branch = plan_branch(rb.parent, child_cfg, rb.step)
    child = start_branch(branch, runs_dir)
    cid = None
    with Store(runs_dir) as store:
        if not liveness.get_run(store, rb.parent.id).terminal:
            reason = f"rollback: continued as run {child.id} from step {branch.step}"
            payload = {"who": who, "diagnosis": rb.diagnosis.id, "reason": reason}
            try:
                cid = store.send_command(rb.parent.id, "stop", payload)
            except CommandRefused:
                cid = None  # it ended meanwhile: nothing to stop
    return Applied(child, cid)
