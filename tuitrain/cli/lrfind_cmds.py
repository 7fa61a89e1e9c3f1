"""Provides `tuitrain lr-find` (the LR range test) and `tuitrain lr-race` (short branches that differ only in LR)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add `lr-find` and `lr-race`."""
    from tuitrain.cli import add_config_source

    p = sub.add_parser(
        "lr-find",
        help="LR range test: a short run with the LR ramped exponentially; suggests an LR",
    )
    add_config_source(p)
    p.add_argument(
        "--min",
        dest="min_lr",
        type=float,
        default=None,
        help="first LR (default lr_find.min_lr, 1e-7)",
    )
    p.add_argument(
        "--max", dest="max_lr", type=float, default=None, help="last LR (default lr_find.max_lr, 1)"
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="optimizer steps of the ramp (default lr_find.steps, 100)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(handler=cmd_lr_find)
    register_race(sub)


def cmd_lr_find(args: argparse.Namespace) -> int:
    """Launch the range test, follow it, print the suggestion (text or JSON) and its cost."""
    from tuitrain.cli.batch import Follower
    from tuitrain.config import load_config
    from tuitrain.lrfind.probe import launch_probe, result
    from tuitrain.store import Store

    for flag, v in (("--min", args.min_lr), ("--max", args.max_lr)):
        if v is not None and not v > 0:
            print(f"error: {flag} must be a positive LR, e.g. 1e-7", file=sys.stderr)
            return 2
    resolved = load_config(args.config, env=args.env, sets=args.sets)
    runs_dir = Path(args.runs_dir)
    info = launch_probe(resolved, runs_dir, args.min_lr, args.max_lr, args.steps)
    # With --format json stdout carries only the JSON: progress goes to stderr.
    out = sys.stderr if args.format == "json" else sys.stdout
    print(
        f"range test {info.id} ({info.name}) started; log: {info.run_dir / 'train.log'}",
        file=out,
        flush=True,
    )
    code = Follower(runs_dir, info.id, out).follow()
    with Store(runs_dir) as store:
        res = result(store, info.id)
        run = store.get_run(info.id)
    sug = res.suggestion
    if args.format == "json":
        print(
            json.dumps(
                {
                    **sug.as_json(),
                    "run_id": info.id,
                    "wall_s": res.wall_s,
                    "full_run_estimate_s": res.full_estimate_s,
                }
            )
        )
    else:
        print(format_suggestion(sug, run.config.get("optimizer", {}).get("lr")))
        print(res.cost_line())
    if sug.suggested_lr is None:
        return 1
    return 0 if code in (0, 1) else code


def format_suggestion(sug, current_lr: float | None = None) -> str:
    """The suggestion block shown by the CLI (the TUI screen shows the same lines)."""
    lines = []
    if sug.suggested_lr is None:
        lines.append("no suggestion: " + "; ".join(sug.warnings))
        return "\n".join(lines)
    lines.append(f"suggested lr: {sug.suggested_lr:.3g} (method: {sug.method})")
    if sug.steepest_lr is not None:
        lines.append(f"  steepest descent of the smoothed loss: {sug.steepest_lr:.3g}")
    if sug.min10_lr is not None:
        lines.append(f"  minimum / 10: {sug.min10_lr:.3g} (loss lowest at {sug.min_loss_lr:.3g})")
    if current_lr is not None:
        lines.append(f"  configured optimizer.lr: {current_lr:.3g}")
    if sug.clear:
        lines.append("  the curve gives a clear answer")
    for w in sug.warnings:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)


def register_race(sub: argparse._SubParsersAction) -> None:
    """Add `lr-race`."""
    from tuitrain.cli import add_sets

    p = sub.add_parser(
        "lr-race",
        help="race short branches that differ only in LR from a config's start or a run's latest checkpoint",
    )
    p.add_argument("source", metavar="RUN_OR_CONFIG", help="a config file, or a run id / name")
    p.add_argument(
        "--factors", default="0.3,1,3", help="LR factors, comma-separated (default 0.3,1,3)"
    )
    p.add_argument(
        "--steps", type=int, default=200, help="optimizer steps per branch (default 200)"
    )
    p.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="N",
        help="branches at once (one GPU each where GPUs exist)",
    )
    p.add_argument("--env", default=None, help="apply the named overlay from the config's envs:")
    add_sets(p, "override a field of every branch (repeatable)")
    p.add_argument(
        "--apply", action="store_true", help="racing a live run: send it set_lr with the winning LR"
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(handler=cmd_lr_race)


def parse_factors(text: str) -> list[float]:
    """`0.3,1,3` -> [0.3, 1.0, 3.0]; an error names the flag and the fix."""
    import math

    try:
        out = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--factors {text!r}: comma-separated numbers, e.g. 0.3,1,3") from None
    if len(out) < 2 or any(not (math.isfinite(f) and f > 0) for f in out):
        raise ValueError(f"--factors {text!r}: at least two positive factors, e.g. 0.3,1,3")
    if len(set(out)) != len(out):
        raise ValueError(f"--factors {text!r}: each factor once")
    return out


def cmd_lr_race(args: argparse.Namespace) -> int:
    """Launch the branches (N at a time), wait for them, judge, optionally apply the winner."""
    from tuitrain.lineage import BranchError
    from tuitrain.lrfind.race import new_race_id, run_race, start_from
    from tuitrain.store import RunNotFound

    try:
        factors = parse_factors(args.factors)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.steps < 1 or args.parallel < 1:
        print("error: --steps and --parallel must be >= 1", file=sys.stderr)
        return 2
    runs_dir = Path(args.runs_dir)
    try:
        start = start_from(args.source, runs_dir, args.env, args.sets)
    except (RunNotFound, BranchError) as exc:
        print(f"error: {args.source}: {exc}", file=sys.stderr)
        return 1
    out = sys.stderr if args.format == "json" else sys.stdout
    race_id = new_race_id()
    where = (
        f"run {start.parent.id} at step {start.fork_step}"
        if start.parent
        else "the config's initial weights"
    )
    print(
        f"race {race_id}: {len(factors)} branches x {args.steps} steps from {where}, "
        f"LR {start.current_lr:.3g} x {', '.join(f'{f:g}' for f in factors)}",
        file=out,
        flush=True,
    )

    def launched(f: float, info) -> None:
        print(f"  x{f:g}: run {info.id} ({info.name})", file=out, flush=True)

    try:
        race_id, verdict = run_race(
            start, factors, args.steps, runs_dir, args.parallel, launched, race_id
        )
    except KeyboardInterrupt:
        from tuitrain.lrfind.race import lanes_of
        from tuitrain.store import CommandRefused, Store

        with Store(runs_dir) as store:
            for lane in lanes_of(store, race_id):
                try:
                    store.send_command(lane.run_id, "stop")
                except CommandRefused:
                    pass  # that branch had already ended
        print("interrupted: stop sent to the running branches", file=sys.stderr)
        return 130
    apply_lr = None if verdict.winner is None else start.current_lr * verdict.winner.factor
    if args.format == "json":
        print(json.dumps({**verdict.as_json(), "race_id": race_id, "apply_lr": apply_lr}))
    else:
        print(format_verdict(verdict, apply_lr))
    if verdict.winner is None:
        return 1
    if args.apply:
        return apply_winner(runs_dir, start, apply_lr, out)
    return 0


def format_verdict(verdict, apply_lr: float | None) -> str:
    """The race table and its answer."""
    lines = [f"{'branch':<28} {'factor':>6} {'val_loss':>9} {'trend':>10}  status"]
    for lane in verdict.lanes:
        mark = "*" if verdict.winner is not None and lane.run_id == verdict.winner.run_id else " "
        lines.append(
            f"{mark}{lane.name:<27} {lane.factor:>6g} {lane.val_loss:>9.4f} {lane.trend:>10.2e}  {lane.status}"
        )
    if verdict.winner is not None:
        w = verdict.winner
        m = "n/a" if verdict.margin is None else f"{verdict.margin:.3g}"
        n = "n/a" if verdict.noise is None else f"{verdict.noise:.3g}"
        lines.append(f"winner: x{w.factor:g} (lr {apply_lr:.3g}), margin {m} val loss, noise {n}")
    for note in verdict.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def apply_winner(runs_dir: Path, start, lr: float | None, out) -> int:
    """Send the raced run a set_lr with the winning LR and wait for its acknowledgement."""
    from tuitrain.store import CommandRefused, Store

    if start.parent is None or lr is None:
        print("--apply needs a run to race from (not a config)", file=sys.stderr)
        return 2
    with Store(runs_dir) as store:
        try:
            cid = store.send_command(start.parent.id, "set_lr", {"lr": lr})
        except CommandRefused as exc:
            print(f"error: cannot apply to {start.parent.id}: {exc}", file=sys.stderr)
            return 1
        cmd = store.wait_command(cid, timeout=30.0)
    print(
        f"applied set_lr {lr:.3g} to {start.parent.id}: {cmd.status} at step {cmd.applied_step} {cmd.reason or ''}",
        file=out,
    )
    return 0 if cmd.status == "applied" else 1
