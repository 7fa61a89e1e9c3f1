"""Provides run lineage, torch-free: a run's complete checkpoints, which config edits a branch
from a checkpoint can take, the branch plan the trainer reads (RUN_DIR/branch.json), and a run's
applied interventions (what `tuitrain rerun` replays as `steering.schedule`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuitrain.runs.checkpoints import CKPT_DIR, DONE_MARK
from tuitrain.steering.protocol import KINDS, command_value, entry_action, schedule_entry

BRANCH_FILE = "branch.json"

# Config fields a checkpoint cannot continue under (its tensors, optimizer state, data position
# or per-rank RNG files would not fit), each with the reason. Prefixes end with a dot.
INCOMPATIBLE: dict[str, str] = {
    "model.": "the checkpoint holds this model's weights",
    "peft.method": "the checkpoint holds these adapters",
    "peft.r": "the adapter tensors have this rank",
    "peft.target_modules": "the adapters sit on these modules",
    "peft.bits": "the base model is quantised this way",
    "optimizer.name": "the optimizer state belongs to this optimizer",
    "data.": "the data position counts batches of this data",
    "batch.size": "the data position counts micro batches of this size",
    "run.seed": "the data split and order come from this seed",
    "launch.num_processes": "the checkpoint holds one data position and RNG state per process",
    "launch.num_machines": "the checkpoint holds one data position and RNG state per process",
}
# ...except these, which change neither tensors nor positions.
COMPATIBLE = ("model.gradient_checkpointing", "data.num_workers")


class BranchError(ValueError):
    """A branch that cannot start as asked; the message names the field or step and the fix."""


def complete_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of the run's complete step-N checkpoints, oldest first."""
    root = Path(run_dir) / CKPT_DIR
    out = []
    if root.is_dir():
        for d in root.glob("step-*"):
            if d.name[5:].isdigit() and (d / DONE_MARK).is_file():
                out.append((int(d.name[5:]), d))
    return sorted(out)


PIN_MARK = "pinned.json"  # in a step-N folder: kept past training.save_total_limit (why inside)


def pin_before(run_dir: str | Path, step: int, reason: str) -> int | None:
    """Keep the newest complete checkpoint strictly before `step` out of the rotation (the doctor
    does it when a spike opens, so a rollback still finds it after later saves). Its step when
    newly pinned; None when there is none or it was pinned already."""
    import json
    import time

    before = [c for c in complete_checkpoints(run_dir) if c[0] < step]
    if not before:
        return None
    at, folder = before[-1]
    mark = folder / PIN_MARK
    if mark.exists():
        return None
    mark.write_text(json.dumps({"reason": reason, "time": time.time()}))
    return at


def rotated(run_dir: str | Path, limit: int) -> list[Path]:
    """The periodic checkpoints to delete to keep the newest `limit`; pinned ones never."""
    return [d for _, d in complete_checkpoints(run_dir)[:-limit] if not (d / PIN_MARK).exists()]


def pick_checkpoint(run_dir: str | Path, step: int | None = None) -> tuple[int, Path]:
    """The newest complete checkpoint at or before `step` (default: the newest)."""
    ckpts = complete_checkpoints(run_dir)
    if step is not None:
        ckpts = [c for c in ckpts if c[0] <= step]
    if not ckpts:
        have = [s for s, _ in complete_checkpoints(run_dir)]
        where = f"at or before step {step}" if step is not None else "at all"
        raise BranchError(
            f"the run has no complete checkpoint {where} (checkpoints at steps: "
            f"{', '.join(map(str, have)) or 'none'}); pick --step from those, or save more "
            "often (training.save_every, or `tuitrain ctl RUN checkpoint`)"
        )
    return ckpts[-1]


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def changed_fields(parent: dict, child: dict) -> dict[str, tuple[Any, Any]]:
    """Dotted fields whose values differ: field -> (parent value, child value)."""
    a, b = _flat(parent), _flat(child)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def incompatible(parent: dict, child: dict) -> list[str]:
    """One message per edit the parent's checkpoint cannot continue under (empty: all fine)."""
    out = []
    for name, (old, new) in changed_fields(parent, child).items():
        if name in COMPATIBLE:
            continue
        why = next(
            (
                w
                for key, w in INCOMPATIBLE.items()
                if name == key or (key.endswith(".") and name.startswith(key))
            ),
            None,
        )
        if why:
            out.append(f"{name}: {old!r} -> {new!r} cannot continue from the checkpoint ({why})")
    return out


@dataclass
class BranchPlan:
    """What RUN_DIR/branch.json tells the trainer: start from this checkpoint of the parent."""

    parent: str
    parent_dir: str
    checkpoint: str
    fork_step: int
    weights_only: bool = False
    # The re-warm (tuitrain.runs.branching.Rewarm): from the parent's LR at the fork, a linear
    # ramp to the child's schedule over rewarm_steps steps (0: none).
    rewarm_steps: int = 0
    parent_lr: float | None = None
    child_lr: float | None = None

    def to_json(self) -> str:
        """The file's text."""
        return json.dumps(asdict(self), indent=1)


def read_plan(run_dir: str | Path) -> BranchPlan | None:
    """The run's branch plan, or None for a run that starts from scratch."""
    f = Path(run_dir) / BRANCH_FILE
    return BranchPlan(**json.loads(f.read_text())) if f.is_file() else None


def interventions(store, run) -> list[dict[str, Any]]:
    """The run's applied interventions, in step order: {step, kind, value, source}. Commands
    applied by its trainer, plus its config's own steering.schedule entries (already replayed)."""
    out = []
    sched = ((run.config or {}).get("steering") or {}).get("schedule") or []
    for i, entry in enumerate(sched):
        action = entry_action(entry)
        if action is not None:
            kind, value = action
            out.append({"step": int(entry["step"]), "kind": kind, "value": value,
                        "source": f"schedule[{i}]", "order": (int(entry["step"]), 0, i)})  # fmt: skip
    for c in store.commands(run.id):
        if c.status != "applied" or c.applied_step is None or c.kind not in KINDS:
            continue
        value = command_value(c.kind, c.payload)
        out.append({"step": int(c.applied_step), "kind": c.kind, "value": value,
                    "source": f"command #{c.id}", "order": (int(c.applied_step), 1, c.id)})  # fmt: skip
    out.sort(key=lambda x: x["order"])  # same step: schedule entries first, as the trainer does
    for x in out:
        x.pop("order")
    return out


def replay_schedule(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """steering.schedule entries that re-apply `interventions(...)` at the same steps."""
    return [schedule_entry(x["step"], x["kind"], x["value"]) for x in items]
