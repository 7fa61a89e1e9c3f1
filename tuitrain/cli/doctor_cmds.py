"""Provides `tuitrain doctor RUN [--format json] [--rollback]`: the run's open diagnoses with
evidence, remedy and the command that applies the action; --rollback applies the first rollback."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

from tuitrain.cli import exits
from tuitrain.runs import liveness

EXIT_NOT_FOUND = exits.NOT_FOUND
EXIT_ERROR = exits.FAILED
EXIT_NO_ROLLBACK = exits.BAD_INPUT  # a rollback refused as asked (the message says why)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `doctor`."""
    p = sub.add_parser(
        "doctor",
        help="diagnose a run: exploding gradients, spikes, oscillation, stalls, overfitting...",
        description="Diagnose a live or finished run from its metrics, events and config. "
        "Exit codes: 0 diagnosed (whatever was found), 4 run not found, 1 the run logged no "
        "metrics (nothing to diagnose) or another store error; "
        "with --rollback: 0 child started, 2 no rollback to apply (says why) or branch refused.",
    )
    p.add_argument("run", metavar="RUN", help="run id or unique name")
    p.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="table (default) or json: a list of {id, severity, step, evidence, remedy, action, "
        "values}; with --rollback, one object {run, diagnosis, from_step, lr_from, lr_to, child, "
        "stop_command} and no following (as --detach)",
    )
    p.add_argument(
        "--rollback",
        action="store_true",
        help="apply the first rollback action: branch RUN from the newest complete checkpoint "
        "before the spike with optimizer.lr scaled by --factor, and stop RUN if it is live",
    )
    p.add_argument(
        "--factor",
        type=float,
        default=None,
        metavar="F",
        help="with --rollback: the LR factor (default: the action's, 0.5)",
    )
    p.add_argument(
        "--detach",
        action="store_true",
        help="with --rollback: print the child's id and return instead of following it",
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


def rollback_command(run: Any, d: Any, first: bool) -> str | None:
    """The `rollback:` line of a spike: the command that applies it (for the first one, which is
    what --rollback applies), or why there is none (no checkpoint before the spike)."""
    from tuitrain.doctor.rollback import KIND, preview, wants_rollback, why_none

    if d.action is not None and d.action.kind == KIND:
        if not first:
            return None
        return f"tuitrain doctor {shlex.quote(run.id)} --rollback   ({preview(run, d.action)})"
    if wants_rollback(d):
        return "none: " + why_none(run, [d])
    return None


def cmd_rollback(args: argparse.Namespace, run: Any, diags: list) -> int:
    """Apply the first rollback action (tuitrain.doctor.rollback), then follow or print the child."""
    from tuitrain.cli.branch_cmds import _follow
    from tuitrain.config import ConfigError
    from tuitrain.doctor.rollback import NoRollback, apply_rollback, plan_rollback
    from tuitrain.runs.branching import BranchRefused
    from tuitrain.runs.launch import LaunchError
    from tuitrain.runs.lineage import BranchError
    from tuitrain.store import InvalidValue

    try:
        rb = plan_rollback(run, diags, args.factor)
    except NoRollback as exc:
        print(f"error: no rollback to apply: {exc}", file=sys.stderr)
        return EXIT_NO_ROLLBACK
    except (BranchError, ConfigError) as exc:  # no config.yaml, or one that no longer loads
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        done = apply_rollback(rb, args.runs_dir, who="user")
    except BranchRefused as exc:
        for msg in exc.lines:
            print(f"error: {msg}", file=sys.stderr)
        return EXIT_NO_ROLLBACK
    except (BranchError, ConfigError, LaunchError, InvalidValue) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.format == "json":  # one object, then return (a script reads it; as --detach)
        print(json.dumps(rollback_json(rb, done), indent=2))
        return 0
    stop = (
        f"; stop sent to run {run.id} (command #{done.stop_command})" if done.stop_command else ""
    )
    msg = f"rollback for {rb.diagnosis.id}: {rb.describe()}: child run {done.child.id} ({done.child.name}){stop}"
    print(msg, file=sys.stderr if args.detach else sys.stdout, flush=True)
    return _follow(done.child, args)


def rollback_json(rb: Any, done: Any) -> dict:
    """What --rollback --format json prints: the diagnosis, the checkpoint, the LRs, the child."""
    return {
        "run": rb.parent.id,
        "diagnosis": rb.diagnosis.id,
        "diagnosis_step": rb.diagnosis.step,
        "from_step": rb.step,
        "lr_from": rb.lr_from,
        "lr_to": rb.lr_to,
        "child": done.child.id,
        "child_name": done.child.name,
        "child_dir": str(done.child.run_dir),
        "stop_command": done.stop_command,
    }


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print the run's diagnoses (table or JSON)."""
    import math

    from tuitrain.doctor import diagnose_run
    from tuitrain.doctor.history import combined, history
    from tuitrain.store import RunNotFound, Store, StoreError

    if args.factor is not None and not (math.isfinite(args.factor) and args.factor > 0):
        print(f"error: --factor must be a positive LR factor such as 0.5, got {args.factor:g}",
              file=sys.stderr)  # fmt: skip
        return exits.BAD_INPUT

    try:
        with Store(args.runs_dir) as store:
            run = liveness.get_run(store, args.run)
            diags = diagnose_run(store, run)
            last = store.last_step(run.id)
            episodes = history(store.events(run.id), ended=run.terminal, last_step=last)
    except RunNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if last is None and not diags:
        # Nothing logged: "nothing to report" would read as a healthy run.
        if args.format == "json":
            print("[]")
        print(
            f"error: run {run.id} ({run.name}, {run.status}) has logged no metrics: the doctor "
            f"has nothing to diagnose; fix: wait for its first log (training.log_every), or see "
            f"`tuitrain show {run.id}` for why it ended",
            file=sys.stderr,
        )
        return EXIT_ERROR
    if args.rollback:
        return cmd_rollback(args, run, diags)
    if args.format == "json":
        print(json.dumps(combined(diags, episodes, last), indent=2, default=str))
        return 0
    total = (run.derived or {}).get("total_steps")
    where = f"step {last}/{total}" if total and last is not None else f"step {last}"
    n = len(diags)
    print(
        f"run {run.id} ({run.name}) {run.status}, {where}: {n} open diagnos{'is' if n == 1 else 'es'}"
        f"{'' if n else ' now'}"
    )
    first = True
    for d in diags:
        start = f" from step {d.step}" if d.step is not None else ""
        print(f"\n{d.severity.upper():8} {d.id}{start}")
        print(f"  evidence: {d.evidence}")
        print(f"  remedy:   {d.remedy}")
        if d.action is not None:
            cmd = action_command(run.id, d.action) if not run.terminal else None
            print(f"  action:   {d.action.label}" + (f"   ({cmd})" if cmd else ""))
        back = rollback_command(run, d, first)
        if back:
            print(f"  rollback: {back}")
        if d.action is not None and d.action.kind == "rollback":
            first = False
    closed = [e for e in combined(diags, episodes, last) if e["state"] == "closed"]
    if closed:
        print(
            f"\nhistory: {len(closed)} closed episode{'' if len(closed) == 1 else 's'}, newest first"
        )
    for e in closed:
        print(
            f"\n{'closed':8} {e['id']} {e['severity'].upper()}, steps {e['first_step']}-{e['last_step']}: {e['closed_reason']}"
        )
        print(f"  peak:     {e['peak'].get('evidence', '')}")
        if e["consequences"]:
            print(
                f"  also:     {', '.join(e['consequences'])} (consequences, not opened separately)"
            )
    if not diags and not closed:
        print("nothing to report: no symptom of the doctor's table is open, none was in this run")
    return 0
