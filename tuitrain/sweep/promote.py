"""Provides promote(): continue a sweep trial as a full-length run, branched (tuitrain.runs.branching)
from the trial's last checkpoint under the sweep's base config without the trials' shortened
budget, with the trial's sampled params."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuitrain.runs import liveness
from tuitrain.runs.lineage import BranchError

# `set:` entries of the sweep file that shorten each trial; a promoted run drops them.
BUDGET = ("training.max_steps", "training.epochs")
# Run statuses a trial is not promoted from: its state at the last checkpoint is suspect.
FAILED = ("failed", "diverged")


class PromoteError(BranchError):
    """A trial that cannot be promoted as asked; the message names what to change."""


def one_line(text: str, limit: int = 200) -> str:
    """A reason (often a train.log tail) as one line: its last non-empty line, cut to limit."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    return last if len(last) <= limit else last[: limit - 1] + "…"


def pick_trial(rec: Any, number: int | None) -> Any:
    """The trial to promote: number N, or the best completed one."""
    if number is None:
        best = rec.best()
        if best is None:
            raise PromoteError(
                f"sweep {rec.id} has no completed trial yet; pick one with --trial N "
                f"(trials: {', '.join(str(t.number) for t in rec.trials) or 'none'})"
            )
        return best
    for t in rec.trials:
        if t.number == number:
            return t
    have = ", ".join(str(t.number) for t in rec.trials) or "none"
    raise PromoteError(f"sweep {rec.id} has no trial {number} (trials: {have})")


def spec_file(rec: Any, runs_dir: str | os.PathLike[str] | None = None) -> str | None:
    """The sweep file the record names. A foreground sweep records the path as typed, relative
    to the folder it ran in, which a reader started elsewhere (`tuitrain --runs-dir DIR`) is
    not in: then the runs directory's parent, the sweep's folder in the default ./runs layout."""
    if not rec.spec_file or Path(rec.spec_file).is_absolute() or Path(rec.spec_file).is_file():
        return rec.spec_file
    if runs_dir is not None:
        there = Path(runs_dir).resolve().parent / rec.spec_file
        if there.is_file():
            return str(there)
    return rec.spec_file  # not found either way: base_data's error names it


def full_config(
    rec: Any,
    trial: Any,
    sets: list[str] | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """The trial's config at full length: base + the sweep's sets except the budget ones +
    the trial's params + `sets`, validated (a Resolved)."""
    from tuitrain.config import parse, resolve
    from tuitrain.config.overrides import apply_sets, set_dotted
    from tuitrain.sweep.space import base_data
    from tuitrain.sweep.spec import parse_spec

    file = spec_file(rec, runs_dir)
    spec = parse_spec(dict(rec.spec), file or "<sweep>")
    spec.set = [s for s in spec.set if s.split("=", 1)[0].strip() not in BUDGET]
    data = base_data(spec, file)
    tags = [*((data.get("run") or {}).get("tags") or []), f"promoted:{rec.id}:{trial.number}"]
    for path, value in {**trial.params, "run.tags": tags}.items():
        set_dotted(data, path, value)
    if sets:
        data = apply_sets(data, sets)  # the caller's edits win over the sampled params
    return resolve(parse(data, file=file), file)


@dataclass
class Promotion:
    """A checked promotion, ready to launch: the trial, its run, the branch and the new name."""

    sweep: Any  # SweepRecord
    trial: Any  # TrialRecord
    branch: Any  # tuitrain.runs.branching.Branch: parent = the trial's run, child = full_config()
    name: str  # the new run's name (exact: a taken name is refused at launch)

    @property
    def fork_step(self) -> int:
        """The step of the trial's checkpoint the new run continues from."""
        return self.branch.step

    @property
    def max_steps(self) -> int | None:
        """The new run's full length (the base config's, not the trials' budget)."""
        return self.branch.child.derived.total_steps


def plan_promote(
    runs_dir: str | os.PathLike[str],
    sweep_ref: str,
    number: int | None = None,
    sets: list[str] | None = None,
    name: str | None = None,
) -> Promotion:
    """Check a promotion without starting anything (the TUI shows it before launching).
    SweepNotFound, PromoteError, BranchRefused, BranchError or ConfigError when it cannot."""
    from tuitrain.runs.branching import plan_branch
    from tuitrain.store import Store
    from tuitrain.sweep.records import get_sweep

    rec = get_sweep(Path(runs_dir), sweep_ref)
    trial = pick_trial(rec, number)
    if trial.run_id is None:
        raise PromoteError(
            f"trial {trial.number} never ran ({trial.error}); pick another with --trial N"
        )
    with Store(runs_dir) as store:
        parent = liveness.get_run(store, trial.run_id)
    if not parent.terminal:
        raise PromoteError(
            f"trial {trial.number} (run {parent.name}) is still {parent.status}: its last "
            "checkpoint is not its final one; promote it once it has ended, or pick another "
            "with --trial N"
        )
    if trial.state == "failed" or parent.status in FAILED:
        why = one_line(parent.exit_reason or trial.error or "no reason recorded")
        raise PromoteError(
            f"trial {trial.number} (run {parent.name}) {parent.status}: {why}; a full-length "
            "run from its checkpoint would start from that state; pick another with --trial N"
        )
    child = full_config(rec, trial, sets, runs_dir)
    try:
        branch = plan_branch(parent, child)
    except BranchError as exc:
        if type(exc) is not BranchError:
            raise  # BranchRefused: the caller prints its lines and fix
        raise PromoteError(
            f"trial {trial.number} (run {parent.id}) has no complete checkpoint to continue from; "
            "let trials save one: add training.save_every=N (or training.eval_every, which also "
            "saves) to the sweep file's set: and run the sweep again, or start the full run "
            "from scratch with `tuitrain run`"
        ) from None
    return Promotion(rec, trial, branch, name or f"{parent.name}-full")


def launch_promotion(p: Promotion, runs_dir: str | os.PathLike[str]) -> Any:
    """Start the checked promotion detached; the new run's RunInfo (LaunchError, InvalidValue
    for a taken name)."""
    from tuitrain.runs.branching import start_branch

    return start_branch(p.branch, runs_dir, p.name)


def promote(
    runs_dir: str | os.PathLike[str],
    sweep_ref: str,
    number: int | None = None,
    sets: list[str] | None = None,
    name: str | None = None,
) -> tuple[Any, Any]:
    """Launch the promoted run; (trial, child RunInfo). SweepNotFound, PromoteError,
    BranchRefused, BranchError, ConfigError or LaunchError when it cannot start."""
    p = plan_promote(runs_dir, sweep_ref, number, sets, name)
    return p.trial, launch_promotion(p, runs_dir)
