"""Provides the CLI commands that start and end training processes: `resume` and `stop`."""

from __future__ import annotations

import argparse
import sys

from tuitrain.cli import batch, exits
from tuitrain.runs import liveness


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands (each area adds its own register_* below)."""
    register_resume(sub)
    register_stop(sub)
    batch.register(sub)  # `tuitrain run CONFIG` lives in cli/batch.py (batch/sweep area)


def register_resume(sub: argparse._SubParsersAction) -> None:
    """Add `tuitrain resume RUN`."""
    p = sub.add_parser(
        "resume",
        help="continue a stopped/crashed run from its last checkpoint (same run, metrics continue)",
    )
    p.add_argument("run", help="run id or name")
    p.set_defaults(handler=cmd_resume)


def register_stop(sub: argparse._SubParsersAction) -> None:
    """Add `tuitrain stop RUN [--grace S]`."""
    p = sub.add_parser(
        "stop", help="stop a run now: SIGTERM (it saves a checkpoint), SIGKILL after a grace period"
    )
    p.add_argument("run", help="run id or name")
    p.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait after SIGTERM before SIGKILL (default 30)",
    )
    p.set_defaults(handler=cmd_stop)


def cmd_resume(args: argparse.Namespace) -> int:
    """Resume the run detached; print its id and log file."""
    from tuitrain.runs.launch import LaunchError, resume
    from tuitrain.store import RunNotFound

    notes: list[str] = []
    try:
        run = resume(args.run, args.runs_dir, notes=notes)
    except RunNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exits.NOT_FOUND
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exits.FAILED
    for note in notes:  # a damaged checkpoint skipped
        print(f"warning: {note}", file=sys.stderr)
    print(f"resumed {run.id} ({run.name}); log: {run.run_dir / 'train.log'}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop the run's processes and report how it ended."""
    from tuitrain.runs.launch import stop
    from tuitrain.store import RunNotFound, Store

    if not args.grace >= 0 or args.grace == float("inf"):  # also NaN
        print(f"error: --grace must be seconds, 0 or more, got {args.grace:g}", file=sys.stderr)
        return exits.BAD_INPUT
    try:
        with Store(args.runs_dir) as store:
            run = liveness.get_run(store, args.run)
    except RunNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exits.NOT_FOUND
    what = stop(run, grace_s=args.grace, runs_dir=args.runs_dir)
    with Store(args.runs_dir) as store:
        run = liveness.get_run(store, run.id)
    if what == "not running":
        # stop() signals only a group the liveness model verifies; say why nothing was signalled.
        from tuitrain.runs.process import signal_target

        why = "" if run.terminal else f"; nothing signalled: {signal_target(run).why}"
        print(f"{run.id} is not running (status {run.status}){why}")
        return 0
    how = (
        f"its processes did not exit within {args.grace:g} s of SIGTERM and were killed"
        if what == "killed"
        else what
    )
    print(
        f"{run.id}: {how}; status {run.status}"
        + (f" ({run.exit_reason})" if run.exit_reason else "")
    )
    return 0
