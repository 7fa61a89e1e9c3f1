"""Provides the one branch call the CLI (`tuitrain branch`) and the TUI editor share: check a
child config against the parent's checkpoint, pick the checkpoint, and launch the child."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass
class Branch:
    """A checked branch, ready to launch."""

    parent: Any  # RunInfo
    child: Any  # Resolved: the edited config
    step: int  # the fork step (the checkpoint's)
    plan: BranchPlan

    @property
    def default_name(self) -> str:
        """PARENT-bN."""
        return f"{self.parent.name}-b{self.step}"


def parent_config(parent) -> Path:
    """RUN_DIR/config.yaml of the parent, or a BranchError naming the run."""
    path = Path(parent.run_dir) / "config.yaml"
    if not path.is_file():
        raise BranchError(f"run {parent.id} has no tuitrain config to branch from")
    return path


def checkpoint_steps(run_dir: str | Path) -> list[int]:
    """Steps with a complete checkpoint, newest (nearest the run's end) first: the picker's list."""
    return [s for s, _ in reversed(complete_checkpoints(run_dir))]


def plan_branch(parent, child, step: int | None = None, weights_only: bool = False) -> Branch:
    """Check the edited config `child` (a Resolved) against the parent's config and checkpoint
    at or before `step`; BranchRefused for edits it cannot take, BranchError for no checkpoint."""
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
    return Branch(parent, child, at, plan)


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
