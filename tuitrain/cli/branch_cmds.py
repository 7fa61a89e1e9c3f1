"""Provides `tuitrain branch` (a child run from a checkpoint of a parent, with edits) and
`tuitrain rerun` (the same config plus the run's interventions as `steering.schedule`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tuitrain.cli import exits
from tuitrain.runs import liveness

EXIT_REFUSED = exits.BAD_INPUT


def register(sub: argparse._SubParsersAction) -> None:
    """Add `branch` and `rerun`."""
    from tuitrain.cli import add_sets

    p = sub.add_parser(
        "branch",
        help="start a child run from a parent's checkpoint at or before --step, with edited settings",
        description="Continue RUN from its newest complete checkpoint at or before --step N "
        "(default: its latest) under an edited config: model, optimizer, scheduler, LR "
        "multiplier, data position and RNG come from the checkpoint; the child logs from N+1. "
        "Edits the checkpoint cannot take (architecture, LoRA rank, optimizer type, data, "
        "batch size, seed, process count) are refused unless --weights-only.",
    )
    p.add_argument("run", help="parent run id or name")
    p.add_argument("--step", type=int, default=None, metavar="N", help="branch at or before step N")
    p.add_argument("--env", default=None, help="apply the named overlay of the parent's config")
    add_sets(p, "edit a field, e.g. --set optimizer.lr=5e-5 (repeatable)")
    p.add_argument("--name", default=None, help="child run name (default: PARENT-bN)")
    p.add_argument("--detach", action="store_true", help="print the child's id and return")
    p.add_argument(
        "--weights-only",
        action="store_true",
        help="load only the parent's weights (what fits); fresh optimizer, schedule and data order",
    )
    p.add_argument(
        "--rewarm",
        type=int,
        default=None,
        metavar="N",
        help="ramp from the parent's LR at the fork to the new schedule over N steps (default: "
        "on when the LR would rise more than 2x: 5%% of the remaining steps, at least 10; "
        "0 turns it off)",
    )
    p.set_defaults(handler=cmd_branch)

    p = sub.add_parser(
        "rerun",
        help="start RUN again with its config plus its interventions as steering.schedule",
    )
    p.add_argument("run", help="run id or name")
    p.add_argument("--name", default=None, help="new run name (default: RUN-rerun)")
    p.add_argument("--detach", action="store_true", help="print the new run's id and return")
    p.set_defaults(handler=cmd_rerun)


def _start(resolved, args, default_name: str, **kw) -> int:
    from tuitrain.runs.launch import LaunchError, launch
    from tuitrain.store import InvalidValue

    runs_dir = Path(args.runs_dir)
    try:
        info = launch(
            resolved, runs_dir, name=args.name or default_name, exact_name=bool(args.name), **kw
        )
    except (LaunchError, InvalidValue) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exits.FAILED
    return _follow(info, args)


def _follow(info, args) -> int:
    """--detach: print the id; else follow the run's output until it ends."""
    from tuitrain.cli.batch import Follower

    if args.detach:
        print(info.id)
        return 0
    print(f"run {info.id} ({info.name}) started; log: {info.run_dir / 'train.log'}", flush=True)
    return Follower(Path(args.runs_dir), info.id, sys.stdout).follow()


def cmd_branch(args: argparse.Namespace) -> int:
    """Validate the edits against the parent's checkpoint, then launch the child (the checks
    and the launch are tuitrain.runs.branching's, shared with the TUI editor's branch mode)."""
    from tuitrain.config import load_config
    from tuitrain.config.schema import MAX_STEPS
    from tuitrain.runs.branching import BranchRefused, parent_config, plan_branch, start_branch
    from tuitrain.runs.launch import LaunchError
    from tuitrain.runs.lineage import BranchError
    from tuitrain.store import InvalidValue, RunNotFound, Store

    if args.step is not None and not 0 <= args.step <= MAX_STEPS:
        print(
            f"error: --step must be a step from 0 to {MAX_STEPS:,}, got {args.step}",
            file=sys.stderr,
        )
        return exits.BAD_INPUT
    if args.rewarm is not None and not 0 <= args.rewarm <= MAX_STEPS:
        print(
            f"error: --rewarm must be a number of steps from 0 to {MAX_STEPS:,} (0: no "
            f"re-warm), got {args.rewarm}",
            file=sys.stderr,
        )
        return exits.BAD_INPUT
    try:
        with Store(args.runs_dir) as store:
            parent = liveness.get_run(store, args.run)
    except RunNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exits.NOT_FOUND
    try:
        child = load_config(parent_config(parent), env=args.env, sets=args.sets)
        for w in child.warnings:
            print(f"warning: {w}", file=sys.stderr)
        branch = plan_branch(parent, child, args.step, args.weights_only, args.rewarm)
    except BranchRefused as exc:
        for msg in exc.lines:
            print(f"error: {msg}", file=sys.stderr)
        if exc.fix:
            print(f"fix: {exc.fix}", file=sys.stderr)
        return EXIT_REFUSED
    except BranchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exits.FAILED
    if args.step is not None and branch.step != args.step:
        print(f"branching at step {branch.step}: the newest complete checkpoint <= {args.step}")
    if branch.rewarm is not None:
        # With --detach stdout is the child's id alone: the choice goes to stderr then.
        print(branch.rewarm.describe(), file=sys.stderr if args.detach else sys.stdout)
    try:
        info = start_branch(branch, args.runs_dir, args.name)
    except (LaunchError, InvalidValue) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exits.FAILED
    return _follow(info, args)


def cmd_rerun(args: argparse.Namespace) -> int:
    """Launch the run's config again, with its applied interventions as steering.schedule."""
    from tuitrain.config import load_config, parse, resolve, to_dict
    from tuitrain.runs.lineage import interventions, replay_schedule
    from tuitrain.store import RunNotFound, Store

    try:
        with Store(args.runs_dir) as store:
            run = liveness.get_run(store, args.run)
            items = interventions(store, run)
    except RunNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exits.NOT_FOUND
    cfg_file = Path(run.run_dir) / "config.yaml"
    if not cfg_file.is_file():
        print(f"error: run {run.id} has no tuitrain config to rerun", file=sys.stderr)
        return exits.FAILED
    data = to_dict(load_config(cfg_file).config)
    data.setdefault("steering", {})["schedule"] = replay_schedule(items)
    resolved = resolve(parse(data))
    print(f"replaying {len(items)} intervention(s) of run {run.id} as steering.schedule")
    return _start(resolved, args, f"{run.name}-rerun")
