"""Provides `tuitrain lr-find` (the LR range test) and `tuitrain lr-race` (short branches that differ only in LR)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from tuitrain.cli import exits
from tuitrain.lrfind.apply import parse_factors
from tuitrain.runs import liveness

# `--factors -1,1` is a value, not an option: argparse's own pattern takes only `-1` or `-.5`.
_NEGATIVE_VALUE = re.compile(r"^-\.?\d")
MAX_PARALLEL = 256
MAX_EXTEND = 100


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
    import math

    from tuitrain.cli.batch import Follower
    from tuitrain.config import load_config
    from tuitrain.lrfind.probe import launch_probe, result
    from tuitrain.store import Store

    for flag, v in (("--min", args.min_lr), ("--max", args.max_lr)):
        if v is not None and not (math.isfinite(v) and v > 0):
            print(f"error: {flag} must be a positive LR, e.g. 1e-7 (got {v:g})", file=sys.stderr)
            return exits.BAD_INPUT
    if args.steps is not None and not 2 <= args.steps <= 100_000:
        print(
            f"error: --steps must be from 2 to 100000 (lr_find.steps), got {args.steps}",
            file=sys.stderr,
        )
        return exits.BAD_INPUT
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
        run = liveness.get_run(store, info.id)
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
        return exits.FAILED
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
    p._negative_number_matcher = _NEGATIVE_VALUE
    p.add_argument(
        "source",
        metavar="RUN_OR_CONFIG",
        help="a config file, or a run id / name; `show [RACE]` reads race records instead",
    )
    p.add_argument("race", nargs="?", default=None, help=argparse.SUPPRESS)  # show RACE
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
    p.add_argument(
        "--extend",
        type=int,
        default=2,
        metavar="N",
        help="up to N more branches past an edge factor that wins (default 2; 0: race the factors only)",
    )
    p.add_argument("--env", default=None, help="apply the named overlay from the config's envs:")
    add_sets(p, "override a field of every branch (repeatable)")
    p.add_argument(
        "--apply",
        action="store_true",
        help="racing a live run: apply the winner to it, as scale_lr x the winning factor on its "
        "schedule as it is now (set_lr with the winning LR only when it was paused for the race "
        "and has not trained since); a race too close to call applies nothing without --force",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="with --apply: apply the winner even when the race was too close to call",
    )
    p.add_argument(
        "--pause",
        action="store_true",
        help="racing a live run: pause it meanwhile (it stops at a checkpoint, the race starts "
        "there, and it resumes after)",
    )
    p.add_argument(
        "--branch",
        action="store_true",
        help="continue the winner as a full-length run (a branch from its final checkpoint)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(handler=cmd_lr_race)


def _count_errors(args: argparse.Namespace) -> str | None:
    """What is wrong with --steps, --parallel and --extend (None when nothing)."""
    from tuitrain.config.schema import MAX_STEPS

    if not 1 <= args.steps <= MAX_STEPS:
        return f"--steps must be from 1 to {MAX_STEPS:,} optimizer steps, got {args.steps}"
    if not 1 <= args.parallel <= MAX_PARALLEL:
        return f"--parallel must be from 1 to {MAX_PARALLEL} branches at once, got {args.parallel}"
    if not 0 <= args.extend <= MAX_EXTEND:
        return f"--extend must be from 0 to {MAX_EXTEND} more branches, got {args.extend}"
    return None


def cmd_lr_race(args: argparse.Namespace) -> int:
    """Launch the branches (N at a time), wait for them, judge, optionally apply or branch the winner."""
    from tuitrain.lrfind import race, sequence
    from tuitrain.lrfind.records import write_record
    from tuitrain.runs.lineage import BranchError
    from tuitrain.store import CommandRefused, RunNotFound

    if args.source == "show" and not Path("show").is_file():
        return cmd_race_show(args)
    if args.race is not None:
        print(
            f"error: unexpected argument {args.race!r} (lr-race takes one RUN_OR_CONFIG)",
            file=sys.stderr,
        )
        return exits.BAD_INPUT
    try:
        factors = parse_factors(args.factors)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exits.BAD_INPUT
    bad = _count_errors(args)
    if bad:
        print(f"error: {bad}", file=sys.stderr)
        return exits.BAD_INPUT
    runs_dir = Path(args.runs_dir)
    out = sys.stderr if args.format == "json" else sys.stdout
    if args.pause and sequence.is_config(args.source):
        print("error: --pause needs a live run to race from (not a config)", file=sys.stderr)
        return exits.BAD_INPUT

    def pausing(run) -> None:
        print(f"pausing {run.id}: it saves a checkpoint and stops…", file=out, flush=True)

    def started(start, rec: dict) -> None:
        where = (
            f"run {start.parent.id} at step {start.fork_step}"
            if start.parent
            else "the config's initial weights"
        )
        print(
            f"race {rec['race_id']}: {len(factors)} branches x {rec['steps']} steps from {where}, "
            f"LR {start.current_lr:.3g} x {', '.join(f'{f:g}' for f in factors)}"
            + (f" (up to {args.extend} more past a winning edge)" if args.extend else ""),
            file=out,
            flush=True,
        )
        if rec.get("steps_note"):
            print(f"note: {rec['steps_note']}", file=out, flush=True)

    def launched(f: float, info) -> None:
        print(f"  x{f:g}: run {info.id} ({info.name})", file=out, flush=True)

    try:
        result = sequence.race(
            args.source, runs_dir, factors, args.steps, pause=args.pause,
            parallel=args.parallel, extend=args.extend, env=args.env, sets=args.sets,
            on_pause=pausing, on_start=started, on_launch=launched,
        )  # fmt: skip
    except RunNotFound as exc:
        print(f"error: {args.source}: {exc}", file=sys.stderr)
        return exits.NOT_FOUND
    except (BranchError, CommandRefused, RuntimeError) as exc:
        print(f"error: {args.source}: {exc}", file=sys.stderr)
        return exits.FAILED
    except KeyboardInterrupt:
        print("interrupted: stop sent to the running branches", file=sys.stderr)
        if args.pause:
            print(f"the raced run stays paused: tuitrain resume {args.source}", file=sys.stderr)
        return exits.INTERRUPTED
    start, verdict, rec, race_id = result.start, result.verdict, result.record, result.race_id
    apply_lr = rec["winning_lr"]
    # No winner (an incomplete race: fewer than two branches finished): exit 1, nothing applied.
    code = 0 if verdict.winner is not None else 1
    if result.resumed is not None:
        print(
            f"resumed {result.resumed.id} from its pause at step {start.fork_step}",
            file=out,
            flush=True,
        )
    if args.force and not args.apply:
        print("note: --force only matters with --apply; nothing applied", file=out)
    if verdict.winner is not None and args.apply:
        code = apply_winner(runs_dir, start, verdict, out, rec, force=args.force)
    if verdict.winner is not None and args.branch:
        try:
            child = race.branch_winner(runs_dir, start, verdict)
        except BranchError as exc:
            print(f"error: cannot branch from the winner: {exc}", file=sys.stderr)
            code = code or 1
        else:
            rec["branched"] = child.id
            print(
                f"branched {child.id} ({child.name}) from the winner {verdict.winner.run_id}: "
                f"lr {apply_lr:.3g}, to step {child.derived.get('total_steps')}",
                file=out,
                flush=True,
            )
    write_record(runs_dir, rec)
    if args.format == "json":
        print(json.dumps({**verdict.as_json(), **extras(rec), "apply_lr": apply_lr}))
    else:
        print(format_verdict(verdict, apply_lr))
        if rec["status"] == "incomplete":
            print("race incomplete: fewer than two branches finished; nothing applied")
        print(f"record: tuitrain lr-race show {race_id}")
    return code


def extras(rec: dict) -> dict:
    """What a race's JSON adds to its verdict: ids and what was done with the winner."""
    keys = (
        "race_id", "status", "parent", "fork_step", "steps", "paused", "resumed", "applied",
        "not_applied", "branched",
    )  # fmt: skip
    return {k: rec.get(k) for k in keys}


def cmd_race_show(args: argparse.Namespace) -> int:
    """`lr-race show`: the races (one line each); `lr-race show RACE`: one race's record."""
    from tuitrain.lrfind.apply import describe_applied
    from tuitrain.lrfind.race import verdict_of_record
    from tuitrain.lrfind.records import list_records, read_record

    runs_dir = Path(args.runs_dir)
    if args.race is None:
        recs = list_records(runs_dir)
        if args.format == "json":
            print(json.dumps(recs))
            return 0
        if not recs:
            print(f"no races in {runs_dir} (tuitrain lr-race RUN_OR_CONFIG starts one)")
            return 0
        print(f"{'race':<22} {'status':<11} {'from':<24} {'factors':<18} winner")
        for r in recs:
            fs = ",".join(f"{f:g}" for f in r["factors"])
            src = r["parent"] and f"{r['parent']}@{r['fork_step']}" or (r.get("source") or "")
            win = "-" if r.get("winning_lr") is None else f"lr {r['winning_lr']:.3g}"
            print(f"{r['race_id']:<22} {r['status']:<11} {src[:24]:<24} {fs[:18]:<18} {win}")
        return 0
    try:
        rec = read_record(runs_dir, args.race)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return exits.NOT_FOUND
    if args.format == "json":
        print(json.dumps(rec))
        return 0
    where = f"run {rec['parent']} at step {rec['fork_step']}" if rec["parent"] else rec["config"]
    print(f"race {rec['race_id']} ({rec['status']}) from {where}")
    print(
        f"  {len(rec['branches'])} branches x {rec['steps']} steps, LR {rec['current_lr']:.3g} x "
        + ", ".join(f"{f:g}" for f in rec["factors"])
        + ("; the run was paused meanwhile" if rec.get("paused") else "")
    )
    verdict = verdict_of_record(rec)
    if verdict is None:
        for b in rec["branches"]:
            print(f"  x{b['factor']:g}: run {b['run_id']} ({b['name']}) lr {b['lr']:.3g}")
        print("  no verdict yet")
        return 0
    print(format_verdict(verdict, rec.get("winning_lr")))
    if rec.get("applied"):
        print(f"applied: {describe_applied(rec['applied'])}")
    elif rec.get("not_applied"):
        print(f"not applied: {rec['not_applied']}")
    if rec.get("branched"):
        print(f"branched: run {rec['branched']} continues the winner")
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


def apply_winner(runs_dir: Path, start, verdict, out, rec: dict, force: bool = False) -> int:
    """Apply the winner to the raced run (tuitrain.lrfind.apply.decide: scale_lr with the winning
    factor, or set_lr while the paused run stands where the race started), wait for its
    acknowledgement and record what was sent; a race too close to call sends nothing unforced."""
    from tuitrain.lrfind.apply import applied_entry, decide
    from tuitrain.store import CommandRefused, Store

    if start.parent is None:
        print("--apply needs a run to race from (not a config)", file=sys.stderr)
        return exits.BAD_INPUT
    with Store(runs_dir) as store:
        last = store.last_values(start.parent.id).get("lr")
        d = decide(rec, verdict, None if last is None else last.step, force)
        if d.refused:
            rec["not_applied"] = d.refused
            print(f"not applied: {d.refused}", file=out)
            return 1
        try:
            cid = store.send_command(start.parent.id, d.kind, d.payload())
        except CommandRefused as exc:
            print(f"error: cannot apply to {start.parent.id}: {exc}", file=sys.stderr)
            return exits.FAILED
        # A resumed (paused) run loads its model before it claims commands: wait longer.
        cmd = liveness.wait_command(store, cid, timeout=300.0 if rec.get("paused") else 30.0)
    forced = bool(force and verdict.too_close)
    rec["applied"] = applied_entry(start.parent.id, d, cmd.status, cmd.applied_step, forced)
    print(
        f"applied {d.describe()} to {start.parent.id} ({d.why}): {cmd.status} at step "
        f"{cmd.applied_step} {cmd.reason or ''}".rstrip(),
        file=out,
    )
    return 0 if cmd.status == "applied" else 1
