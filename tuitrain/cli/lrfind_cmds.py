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
