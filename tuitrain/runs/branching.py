"""Provides the one branch call the CLI (`tuitrain branch`) and the TUI editor share: check a
child config against the parent's checkpoint, pick the checkpoint, and launch the child."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tuitrain.runs.lineage import (
    BRANCH_FILE,
    BranchError,
    BranchPlan,
    complete_checkpoints,
    incompatible,
    pick_checkpoint,
)

WEIGHTS_ONLY_FIX = (
    "undo that edit, or add --weights-only to start a fresh optimizer, schedule "
    "and data order from the parent's weights"
)


class BranchRefused(BranchError):
    """An edit the checkpoint cannot take (exit 2 in the CLI): one line per refused field."""

    def __init__(self, lines: list[str], fix: str | None = None) -> None:
        self.lines = lines
        self.fix = fix
        super().__init__("; ".join(lines) + (f" (fix: {fix})" if fix else ""))


# A branch whose LR at the fork would rise more than REWARM_JUMP x above the parent's re-warms by
# default: from the parent's LR, linearly to its own schedule over REWARM_SHARE of the remaining
# steps (at least REWARM_MIN).
REWARM_JUMP = 2.0
REWARM_SHARE = 0.05
REWARM_MIN = 10
STATE_FILE = "train_state.json"  # a checkpoint's LR control state (tuitrain.train.checkpoint)


@dataclass
class Rewarm:
    """How a branch's LR continues at the fork: the parent's LR there, the child's schedule's,
    and the re-warm steps between them (0: the child's schedule at once)."""

    parent_lr: float | None
    child_lr: float | None
    steps: int
    default: int  # what `--rewarm` unset gives

    @property
    def jump(self) -> float | None:
        """child / parent LR at the fork."""
        if not self.parent_lr or self.child_lr is None:
            return None
        return self.child_lr / self.parent_lr

    def describe(self) -> str:
        """One line for the CLI and the TUI."""
        if self.jump is None:
            return "LR at the fork: unknown (weights only: a fresh schedule from step 0)"
        head = (
            f"LR at the fork: parent {self.parent_lr:.3g}, this config {self.child_lr:.3g} "
            f"(x{self.jump:.3g})"
        )
        if self.steps > 0:
            return (
                f"{head}: re-warm from {self.parent_lr:.3g} to the new schedule over "
                f"{self.steps} steps (--rewarm N changes it, --rewarm 0 turns it off)"
            )
        why = "turned off" if self.default > 0 else f"within {REWARM_JUMP:g}x"
        return f"{head}: no re-warm ({why})"


@dataclass
class Branch:
    """A checked branch, ready to launch."""

    parent: Any  # RunInfo
    child: Any  # Resolved: the edited config
    step: int  # the fork step (the checkpoint's)
    plan: BranchPlan
    rewarm: Rewarm | None = None

    @property
    def default_name(self) -> str:
        """PARENT-bN."""
        return f"{self.parent.name}-b{self.step}"

    def with_rewarm(self, steps: int) -> Branch:
        """The same branch with `steps` re-warm steps (0: none)."""
        if steps < 0:
            raise BranchError(f"--rewarm must be 0 or more steps, got {steps}")
        rw = self.rewarm
        if rw is None or rw.jump is None:
            return self
        plan = replace(self.plan, rewarm_steps=steps if steps > 0 else 0)
        return replace(self, plan=plan, rewarm=replace(rw, steps=plan.rewarm_steps))


def parent_config(parent) -> Path:
    """RUN_DIR/config.yaml of the parent, or a BranchError naming the run."""
    path = Path(parent.run_dir) / "config.yaml"
    if not path.is_file():
        raise BranchError(f"run {parent.id} has no tuitrain config to branch from")
    return path


def checkpoint_steps(run_dir: str | Path) -> list[int]:
    """Steps with a complete checkpoint, newest (nearest the run's end) first: the picker's list."""
    return [s for s, _ in reversed(complete_checkpoints(run_dir))]


def plan_branch(
    parent, child, step: int | None = None, weights_only: bool = False, rewarm: int | None = None
) -> Branch:
    """Check the edited config `child` (a Resolved) against the parent's config and checkpoint
    at or before `step`; BranchRefused for edits it cannot take, BranchError for no checkpoint.
    `rewarm`: re-warm steps (None: the default, on when the LR at the fork would jump > 2x)."""
    from tuitrain.config import load_config, to_dict

    base = load_config(parent_config(parent))
    refused = incompatible(to_dict(base.config), to_dict(child.config))
    if refused and not weights_only:
        raise BranchRefused(refused, WEIGHTS_ONLY_FIX)
    pdir = Path(parent.run_dir)
    try:
        at, ckpt = pick_checkpoint(pdir, step)
    except BranchError as exc:
        raise BranchError(f"run {parent.id}: {exc}") from None
    child = counted_like(child, base, parent)
    total = child.derived.total_steps
    if not weights_only and total is not None and total <= at:
        raise BranchRefused(
            [
                f"training.max_steps ({total}) must be beyond the fork step {at} "
                f"(e.g. --set training.max_steps={at * 2})"
            ]
        )
    plan = BranchPlan(parent.id, str(pdir.resolve()), str(ckpt.resolve()), at, weights_only)
    rw = fork_lrs(parent, base, child, at, ckpt) if not weights_only else None
    if rw is None:
        return Branch(parent, child, at, plan, Rewarm(None, None, 0, 0))
    plan = replace(plan, parent_lr=rw.parent_lr, child_lr=rw.child_lr)
    branch = Branch(parent, child, at, plan, rw)
    return branch.with_rewarm(rw.default if rewarm is None else rewarm)


def fork_lrs(parent, base, child, at: int, ckpt: Path) -> Rewarm | None:
    """The parent's and the child's LR for the update after the fork step: each config's
    schedule there, times the checkpoint's plateau cuts and steering multiplier (both carried
    into the child). None when they cannot be known (no derived values recorded)."""
    from tuitrain.config.schedule import lr_factor

    try:
        lrc = json.loads((ckpt / STATE_FILE).read_text()).get("lr") or {}
    except (OSError, ValueError):
        lrc = {}
    carried = float(lrc.get("multiplier", 1.0)) * float(lrc.get("plateau", 1.0))

    def lr_at(cfg, derived: dict) -> float | None:
        lr, total = derived.get("scaled_lr"), derived.get("total_steps")
        if lr is None or total is None:
            return None
        warm = derived.get("warmup_steps") or 0
        f = lr_factor(at, cfg.scheduler, total, warm, lr) * carried
        if int(lrc.get("rewarm_steps", 0)) > 0:  # the parent was re-warming (carried too)
            t = max(0, at - int(lrc["rewarm_from"])) / int(lrc["rewarm_steps"])
            ratio = float(lrc.get("rewarm_ratio", 1.0))
            f *= ratio + (1.0 - ratio) * min(1.0, t)
        return lr * f

    p_lr = lr_at(base.config, parent.derived or {})
    c_lr = lr_at(child.config, child.derived.as_dict())
    if p_lr is None or c_lr is None or not (math.isfinite(p_lr) and math.isfinite(c_lr)):
        return None
    remaining = (child.derived.total_steps or at) - at
    default = 0
    if p_lr > 0 and c_lr > REWARM_JUMP * p_lr and remaining > 0:
        default = min(remaining, max(REWARM_MIN, math.ceil(REWARM_SHARE * remaining)))
    return Rewarm(p_lr, c_lr, default, default)


def counted_like(child, base, parent):
    """`child` with the parent run's counted training examples when it trains on the same data
    the same way (the config layer reads no data; the parent's trainer counted them)."""
    from tuitrain.config import resolve, to_dict

    n = (parent.derived or {}).get("train_samples")
    same = all(to_dict(base.config)[g] == to_dict(child.config)[g] for g in ("data", "model"))
    if n is None or child.derived.train_samples is not None or not same:
        return child
    return resolve(child.config, child.source, child.lines, samples=(n, False))


def start_branch(branch: Branch, runs_dir: str | Path, name: str | None = None):
    """Launch the checked branch detached; returns the child's RunInfo (LaunchError on failure).
    A given name must be free (exact); the default PARENT-bN gets a free suffix."""
    from tuitrain.runs.launch import launch

    return launch(
        branch.child,
        Path(runs_dir),
        name=name or branch.default_name,
        exact_name=bool(name),
        parent=branch.parent.id,
        fork_step=branch.step,
        files={BRANCH_FILE: branch.plan.to_json()},
    )
