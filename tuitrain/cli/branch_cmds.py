"""Provides `tuitrain branch` (a child run from a checkpoint of a parent, with edits) and
`tuitrain rerun` (the same config plus the run's interventions as `steering.schedule`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_REFUSED = 2


def _runs_dir_opt(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--runs-dir",
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="runs directory holding tuitrain.db (default: ./runs)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add `branch` and `rerun`."""
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
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="edit a field, e.g. --set optimizer.lr=5e-5 (repeatable)",
    )
    p.add_argument("--name", default=None, help="child run name (default: PARENT-bN)")
    p.add_argument("--detach", action="store_true", help="print the child's id and return")
    p.add_argument(
        "--weights-only",
        action="store_true",
        help="load only the parent's weights (what fits); fresh optimizer, schedule and data order",
    )
    _runs_dir_opt(p)
    p.set_defaults(handler=cmd_branch)

    p = sub.add_parser(
        "rerun",
        help="start RUN again with its config plus its interventions as steering.schedule",
    )
    p.add_argument("run", help="run id or name")
    p.add_argument("--name", default=None, help="new run name (default: RUN-rerun)")
    p.add_argument("--detach", action="store_true", help="print the new run's id and return")
    _runs_dir_opt(p)
    p.set_defaults(handler=cmd_rerun)


def _start(resolved, args, default_name: str, **kw) -> int:
    from tuitrain.cli.batch import Follower
    from tuitrain.launch import LaunchError, launch
    from tuitrain.store import InvalidValue

    runs_dir = Path(args.runs_dir)
    try:
        info = launch(
            resolved, runs_dir, name=args.name or default_name, exact_name=bool(args.name), **kw
        )
    except (LaunchError, InvalidValue) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.detach:
        print(info.id)
        return 0
    print(f"run {info.id} ({info.name}) started; log: {info.run_dir / 'train.log'}", flush=True)
    return Follower(runs_dir, info.id, sys.stdout).follow()


def cmd_branch(args: argparse.Namespace) -> int:
    """Validate the edits against the parent's checkpoint, then launch the child."""
    from tuitrain.config import load_config, to_dict
    from tuitrain.lineage import BRANCH_FILE, BranchError, BranchPlan, incompatible, pick_checkpoint
    from tuitrain.store import RunNotFound, Store

    try:
        with Store(args.runs_dir) as store:
            parent = store.get_run(args.run)
    except RunNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    pdir = Path(parent.run_dir)
    if not (pdir / "config.yaml").is_file():
        print(f"error: run {parent.id} has no tuitrain config to branch from", file=sys.stderr)
        return 1
    base = load_config(pdir / "config.yaml")
    child = load_config(pdir / "config.yaml", env=args.env, sets=args.sets)
    for w in child.warnings:
        print(f"warning: {w}", file=sys.stderr)
    refused = incompatible(to_dict(base.config), to_dict(child.config))
    if refused and not args.weights_only:
        for msg in refused:
            print(f"error: {msg}", file=sys.stderr)
        print(
            "fix: undo that edit, or add --weights-only to start a fresh optimizer, schedule "
            "and data order from the parent's weights",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    try:
        step, ckpt = pick_checkpoint(pdir, args.step)
    except BranchError as exc:
        print(f"error: run {parent.id}: {exc}", file=sys.stderr)
        return 1
    total = child.derived.total_steps
    if not args.weights_only and total is not None and total <= step:
        print(
            f"error: training.max_steps ({total}) must be beyond the fork step {step} "
            f"(e.g. --set training.max_steps={step * 2})",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    plan = BranchPlan(parent.id, str(pdir.resolve()), str(ckpt.resolve()), step, args.weights_only)
    if args.step is not None and step != args.step:
        print(f"branching at step {step}: the newest complete checkpoint <= {args.step}")
    return _start(
        child,
        args,
        f"{parent.name}-b{step}",
        parent=parent.id,
        fork_step=step,
        files={BRANCH_FILE: plan.to_json()},
    )


def cmd_rerun(args: argparse.Namespace) -> int:
    """Launch the run's config again, with its applied interventions as steering.schedule."""
    from tuitrain.config import load_config, parse, resolve, to_dict
    from tuitrain.lineage import interventions, replay_schedule
    from tuitrain.store import RunNotFound, Store

    try:
        with Store(args.runs_dir) as store:
            run = store.get_run(args.run)
            items = interventions(store, run)
    except RunNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    cfg_file = Path(run.run_dir) / "config.yaml"
    if not cfg_file.is_file():
        print(f"error: run {run.id} has no tuitrain config to rerun", file=sys.stderr)
        return 1
    data = to_dict(load_config(cfg_file).config)
    data.setdefault("steering", {})["schedule"] = replay_schedule(items)
    resolved = resolve(parse(data))
    print(f"replaying {len(items)} intervention(s) of run {run.id} as steering.schedule")
    return _start(resolved, args, f"{run.name}-rerun")
