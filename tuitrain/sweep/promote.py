"""Provides promote(): continue a sweep trial as a full-length run, branched (tuitrain.branching)
from the trial's last checkpoint under the sweep's base config without the trials' shortened
budget, with the trial's sampled params."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tuitrain.lineage import BranchError

# `set:` entries of the sweep file that shorten each trial; a promoted run drops them.
BUDGET = ("training.max_steps", "training.epochs")


class PromoteError(BranchError):
    """A trial that cannot be promoted as asked; the message names what to change."""


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


def full_config(rec: Any, trial: Any, sets: list[str] | None = None) -> Any:
    """The trial's config at full length: base + the sweep's sets except the budget ones +
    the trial's params + `sets`, validated (a Resolved)."""
    from tuitrain.config import parse, resolve
    from tuitrain.config.loader import apply_sets, set_dotted
    from tuitrain.sweep.space import base_data
    from tuitrain.sweep.spec import parse_spec

    spec = parse_spec(dict(rec.spec), rec.spec_file or "<sweep>")
    spec.set = [s for s in spec.set if s.split("=", 1)[0].strip() not in BUDGET]
    data = base_data(spec, rec.spec_file)
    tags = [*((data.get("run") or {}).get("tags") or []), f"promoted:{rec.id}:{trial.number}"]
    for path, value in {**trial.params, "run.tags": tags}.items():
        set_dotted(data, path, value)
    if sets:
        data = apply_sets(data, sets)  # the caller's edits win over the sampled params
    return resolve(parse(data, file=rec.spec_file), rec.spec_file)


def promote(
    runs_dir: str | os.PathLike[str],
    sweep_ref: str,
    number: int | None = None,
    sets: list[str] | None = None,
    name: str | None = None,
) -> tuple[Any, Any]:
    """Launch the promoted run; (trial, child RunInfo). SweepNotFound, PromoteError,
    BranchRefused, BranchError, ConfigError or LaunchError when it cannot start."""
    from tuitrain.branching import plan_branch, start_branch
    from tuitrain.store import Store
    from tuitrain.sweep.records import get_sweep

    rec = get_sweep(Path(runs_dir), sweep_ref)
    trial = pick_trial(rec, number)
    if trial.run_id is None:
        raise PromoteError(
            f"trial {trial.number} never ran ({trial.error}); pick another with --trial N"
        )
    with Store(runs_dir) as store:
        parent = store.get_run(trial.run_id)
    child = full_config(rec, trial, sets)
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
    return trial, start_branch(branch, runs_dir, name or f"{parent.name}-full")
