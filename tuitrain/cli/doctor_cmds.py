"""Provides `tuitrain doctor RUN [--format json]`: the run's open diagnoses with evidence, remedy
and the command that applies the action."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

EXIT_NOT_FOUND = 4
EXIT_ERROR = 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add `doctor`."""
    p = sub.add_parser(
        "doctor",
        help="diagnose a run: exploding gradients, spikes, oscillation, stalls, overfitting...",
        description="Diagnose a live or finished run from its metrics, events and config. "
        "Exit codes: 0 diagnosed (whatever was found), 4 run not found, 1 other store errors.",
    )
    p.add_argument(
        "--runs-dir",
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="runs directory holding tuitrain.db (default: ./runs)",
    )
    p.add_argument("run", metavar="RUN", help="run id or unique name")
    p.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="table (default) or json: a list of {id, severity, step, evidence, remedy, action, values}",
    )
    p.set_defaults(handler=cmd_doctor)


def action_command(run_ref: str, action: Any) -> str | None:
    """The `tuitrain ctl` line that applies a steerable action (None for advice)."""
    if action is None or not action.steerable:
        return None
    ref = shlex.quote(run_ref)
    if action.kind == "scale_lr":
        return f"tuitrain ctl {ref} scale-lr {action.payload['factor']:g}"
    if action.kind in ("stop", "checkpoint", "eval"):
        return f"tuitrain ctl {ref} {action.kind}"
    return None


def rollback_command(run: Any, d: Any) -> str | None:
    """For an unrecovered spike: the `tuitrain branch` line that goes back to the last checkpoint
    before it and continues with the LR halved (issue 12's branching; not applied by one key)."""
    if d.id not in ("exploding_gradients", "loss_spike") or d.severity == "info" or not d.step:
        return None
    lr = ((run.config or {}).get("optimizer") or {}).get("lr")
    if not isinstance(lr, int | float):
        return None
    return (
        f"tuitrain branch {shlex.quote(run.id)} --step {d.step - 1} --set optimizer.lr={lr * 0.5:g}"
        "   (continue from the last checkpoint before the spike, LR halved)"
    )


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print the run's diagnoses (table or JSON)."""
    from tuitrain.doctor import diagnose_run
    from tuitrain.store import RunNotFound, Store, StoreError

    try:
        with Store(args.runs_dir) as store:
            run = store.get_run(args.run)
            diags = diagnose_run(store, run)
            last = store.last_step(run.id)
    except RunNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.format == "json":
        print(json.dumps([d.to_dict() for d in diags], indent=2, default=str))
        return 0
    total = (run.derived or {}).get("total_steps")
    where = f"step {last}/{total}" if total and last is not None else f"step {last}"
    n = len(diags)
    print(
        f"run {run.id} ({run.name}) {run.status}, {where}: {n} open diagnos{'is' if n == 1 else 'es'}"
    )
    for d in diags:
        start = f" from step {d.step}" if d.step is not None else ""
        print(f"\n{d.severity.upper():8} {d.id}{start}")
        print(f"  evidence: {d.evidence}")
        print(f"  remedy:   {d.remedy}")
        if d.action is not None:
            cmd = action_command(run.id, d.action) if not run.terminal else None
            print(f"  action:   {d.action.label}" + (f"   ({cmd})" if cmd else ""))
        back = rollback_command(run, d)
        if back:
            print(f"  rollback: {back}")
    if not diags:
        print("nothing to report: no symptom of the doctor's table is open")
    return 0
