"""Provides `tuitrain sweep SWEEP.yaml`, `tuitrain sweeps [SWEEP]` and show_sweep() (which
`tuitrain show` calls when its argument names a sweep)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from tuitrain.cli import exits

EXIT_SWEEP_NOT_OK = exits.FAILED
EXIT_NOT_FOUND = exits.NOT_FOUND
EXIT_INTERRUPTED = exits.INTERRUPTED


def register(sub: argparse._SubParsersAction) -> None:
    """Add sweep and sweeps."""
    from tuitrain.cli import add_sets

    p = sub.add_parser(
        "sweep", help="run a hyperparameter sweep (grid, random or Optuna TPE) from a sweep file"
    )
    p.add_argument(
        "spec",
        metavar="SWEEP.yaml",
        help="sweep file: base config, space, method, objective; or `promote SWEEP`: continue "
        "the best trial (or --trial N) as a full-length run from its last checkpoint",
    )
    p.add_argument("promote_ref", nargs="?", metavar="SWEEP", help=argparse.SUPPRESS)
    p.add_argument(
        "--trial", type=int, default=None, metavar="N", help="promote: the trial (default: best)"
    )
    p.add_argument("--name", default=None, help="promote: the new run's name (default: TRIAL-full)")
    p.add_argument("--n-trials", type=int, default=None, help="override n_trials")
    p.add_argument("--parallel", default=None, help="override parallel (a number or auto)")
    p.add_argument(
        "--storage", default=None, help="Optuna storage URL (share one study across machines)"
    )
    p.add_argument(
        "--study-name",
        default=None,
        help="Optuna study name (with --storage: join an existing study)",
    )
    add_sets(p, "override a config field in every trial (repeatable)")
    p.add_argument(
        "--detach",
        action="store_true",
        help="validate, start the sweep in the background (survives logout), print its id and log",
    )
    p.set_defaults(handler=cmd_sweep)
    p = sub.add_parser(
        "sweeps", help="list sweeps, or show one sweep's trials, best parameters and importance"
    )
    p.add_argument("ref", nargs="?", metavar="SWEEP", help="sweep id or name: show it")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(handler=cmd_sweeps)


def promote_help() -> str:
    """`tuitrain sweep promote --help`: promote's own usage (argparse knows it only as a
    positional word of `sweep`, so it would print the sweep's)."""
    p = argparse.ArgumentParser(
        prog="tuitrain sweep promote",
        description="Continue the best trial (or --trial N) of SWEEP as a full-length run: a branch "
        "from its last checkpoint under the sweep's base config, without the trials' shortened "
        "training.max_steps/epochs, with the trial's params. Prints the new run's id.",
    )
    p.add_argument("sweep", metavar="SWEEP", help="sweep id or name")
    p.add_argument("--trial", type=int, metavar="N", help="the trial (default: the best)")
    p.add_argument("--set", metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.add_argument("--name", help="the new run's name (default: TRIAL-full)")
    p.add_argument("--runs-dir", metavar="DIR", help="runs directory (default: ./runs)")
    return p.format_help()


def wants_promote_help(argv: list[str]) -> bool:
    """argv asks for `sweep promote --help` (global options may come first)."""
    words = [a for a in argv if not a.startswith("-")]
    return (
        any(a in ("-h", "--help") for a in argv)
        and "sweep" in words
        and words[words.index("sweep") + 1 : words.index("sweep") + 2] == ["promote"]
    )


def _say(text: str) -> None:
    try:
        print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)
    except OSError:
        pass  # the terminal went away (SSH dropped): the sweep itself must go on


def cmd_sweep(args: argparse.Namespace) -> int:
    """Validate the sweep (and every trial config) and run it in the foreground."""
    from tuitrain.config import ConfigError, ConfigIssue
    from tuitrain.config.loader import read_file
    from tuitrain.sweep.runner import SweepRunner
    from tuitrain.sweep.spec import parse_spec
    from tuitrain.sweep.study import OptunaMissing

    if args.spec == "promote" or args.promote_ref is not None:
        return cmd_promote(args)
    data, _ = read_file(args.spec)
    over = {"n_trials": args.n_trials, "storage": args.storage, "study_name": args.study_name}
    data.update({k: v for k, v in over.items() if v is not None})
    if args.parallel is not None:
        data["parallel"] = (
            args.parallel if args.parallel == "auto" else _int_arg(args.parallel, "--parallel")
        )
    if args.sets:
        data["set"] = [*(data.get("set") or []), *args.sets]
    spec = parse_spec(data, args.spec)
    if args.detach:
        return _detach(spec, args)
    try:
        runner = SweepRunner(spec, args.spec, Path(args.runs_dir), say=_say)
    except OptunaMissing as exc:
        raise ConfigError(
            [ConfigIssue("method", str(exc), "pip install 'tuitrain[sweep]'", file=args.spec)]
        ) from None
    rec = runner.run()
    if rec.status == "stopped":
        return EXIT_INTERRUPTED
    return 0 if rec.status == "completed" and rec.best() is not None else EXIT_SWEEP_NOT_OK


def cmd_promote(args: argparse.Namespace) -> int:
    """`tuitrain sweep promote SWEEP [--trial N]`: print the promoted run's id (stdout)."""
    from tuitrain.config import ConfigError
    from tuitrain.runs.branching import BranchRefused
    from tuitrain.runs.launch import LaunchError
    from tuitrain.runs.lineage import BranchError
    from tuitrain.store import InvalidValue, RunNotFound
    from tuitrain.sweep.promote import promote
    from tuitrain.sweep.records import SweepNotFound

    if args.spec != "promote" or not args.promote_ref:
        print("error: usage: tuitrain sweep promote SWEEP [--trial N]", file=sys.stderr)
        return exits.BAD_INPUT
    try:
        trial, info = promote(
            Path(args.runs_dir), args.promote_ref, args.trial, args.sets, args.name
        )
    except SweepNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except BranchRefused as exc:
        for msg in exc.lines:
            print(f"error: {msg}", file=sys.stderr)
        if exc.fix:
            print(f"fix: {exc.fix}", file=sys.stderr)
        return exits.BAD_INPUT
    except ConfigError:
        raise  # the CLI prints every issue with its field and fix
    except RunNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exits.NOT_FOUND
    except (BranchError, LaunchError, InvalidValue) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exits.FAILED
    from tuitrain.runs.lineage import read_plan

    print(info.id, flush=True)
    total = (info.derived or {}).get("total_steps")
    plan = read_plan(info.run_dir)
    rewarm = ""
    if plan is not None and plan.rewarm_steps > 0 and plan.parent_lr and plan.child_lr:
        rewarm = (
            f"; its LR at the fork would jump from {plan.parent_lr:.3g} to {plan.child_lr:.3g}: "
            f"it re-warms over {plan.rewarm_steps} steps"
        )
    print(
        f"promoted trial {trial.number} (run {trial.run_id}) as run {info.name}: from step "
        f"{info.fork_step} to {total}{rewarm}; follow it with `tuitrain watch {info.id}`",
        file=sys.stderr,
    )
    return 0


def _detach(spec: Any, args: argparse.Namespace) -> int:
    """Validate here, then run the same command without --detach in its own session."""
    import os
    import re
    import subprocess

    from tuitrain.config import parse, resolve
    from tuitrain.sweep.records import sweeps_dir
    from tuitrain.sweep.space import base_data, check_space

    base = base_data(spec, args.spec)
    resolve(parse(base, file=args.spec), args.spec)
    check_space(spec, base, args.spec)
    folder = sweeps_dir(args.runs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"detached-{time.strftime('%y%m%d-%H%M%S')}-{os.getpid()}.log"
    argv = [
        "sweep",
        str(Path(args.spec).resolve()),
        "--runs-dir",
        str(Path(args.runs_dir).resolve()),
    ]
    for flag, value in (
        ("--n-trials", args.n_trials),
        ("--parallel", args.parallel),
        ("--storage", args.storage),
        ("--study-name", args.study_name),
    ):
        if value is not None:
            argv += [flag, str(value)]
    for item in args.sets:
        argv += ["--set", item]
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tuitrain", *argv],
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # Wait for the sweep id (first line) so the caller can follow it with `tuitrain sweeps ID`.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        m = re.search(r"sweep (sw-\S+):", log.read_text(errors="replace"))
        if m:
            # The id goes out (flushed) before anything on stderr: stdout to a pipe is block
            # buffered, so without the flush the stderr line came first whenever both streams
            # share one pipe, and a script reading the first line got the wrong one.
            print(m.group(1), flush=True)
            print(f"sweep running in the background (pid {proc.pid}); log: {log}", file=sys.stderr)
            return 0
        if proc.poll() is not None:
            print(log.read_text(errors="replace"), file=sys.stderr, end="")
            return proc.returncode or EXIT_SWEEP_NOT_OK
        time.sleep(0.2)
    print(
        f"sweep started (pid {proc.pid}) but has not reported its id yet; log: {log}",
        file=sys.stderr,
    )
    return 0


def _int_arg(text: str, flag: str) -> int:
    from tuitrain.config import ConfigError, ConfigIssue

    try:
        return int(text)
    except ValueError:
        raise ConfigError(
            [
                ConfigIssue(
                    flag,
                    f"{text!r} is not a number",
                    "give a whole number or auto",
                    file="command line",
                )
            ]
        ) from None


def cmd_sweeps(args: argparse.Namespace) -> int:
    """List sweeps, or show one."""
    from tuitrain.sweep.records import list_sweeps

    if args.ref:
        return show_sweep(Path(args.runs_dir), args.ref, args.format)
    sweeps = list_sweeps(Path(args.runs_dir), reconcile=True)
    if args.format == "json":
        print(json.dumps([_summary(r) for r in sweeps], indent=2))
        return 0
    if not sweeps:
        print(
            f"no sweeps in {args.runs_dir} (start one with `tuitrain sweep configs/sweep-demo.yaml`)"
        )
        return 0
    rows = [("ID", "NAME", "METHOD", "STATUS", "TRIALS", "BEST", "CREATED")]
    for r in sweeps:
        s = _summary(r)
        best = f"{r.metric}={s['best_value']:.5g}" if s["best_value"] is not None else "-"
        rows.append(
            (
                r.id,
                r.name,
                r.method,
                r.status,
                f"{len(r.trials)}/{r.n_trials}",
                best,
                time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created)),
            )
        )
    _table(rows)
    return 0


def _summary(r: Any) -> dict[str, Any]:
    best = r.best()
    return {
        "id": r.id, "name": r.name, "method": r.method, "status": r.status, "metric": r.metric,
        "direction": r.direction, "n_trials": r.n_trials, "trials": len(r.trials), "counts": r.counts(),
        "best_trial": best.number if best else None, "best_run": best.run_id if best else None,
        "best_value": best.value if best else None, "best_params": best.params if best else None,
        "created": r.created, "ended": r.ended, "study_name": r.study_name, "storage": r.storage,
    }  # fmt: skip


def _table(rows: list[tuple]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def show_sweep(runs_dir: Path, ref: str, fmt: str = "table") -> int:
    """Print a sweep: trials ranked by objective, best parameters, parameter importance."""
    from tuitrain.sweep.records import SweepNotFound, get_sweep

    try:
        r = get_sweep(runs_dir, ref, reconcile=True)
    except SweepNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    if fmt == "json":
        print(
            json.dumps(
                {
                    **_summary(r),
                    "importance": r.importance,
                    "trials": [t.__dict__ for t in r.trials],
                    "spec": r.spec,
                },
                indent=2,
                default=str,
            )
        )
        return 0
    goal = "min" if r.direction == "minimize" else "max"
    print(f"sweep {r.id} ({r.name}): {r.method}, {r.status}, objective {goal} {r.metric}")
    counts = ", ".join(f"{n} {k}" for k, n in sorted(r.counts().items())) or "none yet"
    print(f"trials: {len(r.trials)}/{r.n_trials} ({counts})   study: {r.study_name} @ {r.storage}")
    best = r.best()
    if best is not None:
        print(f"best: trial {best.number}, run {best.run_id}, {r.metric}={best.value:.5g}")
        for k, v in best.params.items():
            print(f"  {k} = {_value(v)}")
    if r.importance:
        print("importance: " + ", ".join(f"{k} {v:.2f}" for k, v in r.importance.items()))
    names = list(r.spec.get("space", {}))
    rows = [("#", "STATE", r.metric.upper(), "RUN", *(n.rsplit(".", 1)[-1] for n in names), "NOTE")]
    reasons = []
    for t in r.ranked():
        note = t.error or (f"pruned at step {t.pruned_step}" if t.state == "pruned" else "")
        if t.state == "pruned" and t.prune_reason:
            note = t.prune_reason.split(":", 1)[0]  # 'pruned by doctor at step 25'
            reasons.append(f"trial {t.number}: {t.prune_reason}")
        rows.append(
            (
                t.number,
                t.state,
                _value(t.value) if t.value is not None else "-",
                t.run_id or "-",
                *(_value(t.params.get(n, "-")) for n in names),
                note[:60],
            )
        )
    print()
    _table(rows)
    if reasons:
        print()
        print("\n".join(reasons))
    return 0
