"""Provides `tuitrain ls`, `show`, `rm` and `ctl` (and `export`, from export_cmds): read, delete and
steer runs in the store."""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuitrain.cli import exits, export_cmds
from tuitrain.cli.table import Column, render, terminal_width
from tuitrain.runs import liveness

EXIT_ERROR = exits.FAILED
EXIT_USAGE = exits.BAD_INPUT
EXIT_TIMEOUT = exits.TIMEOUT
EXIT_NOT_FOUND = exits.NOT_FOUND

CTL_ACTIONS = {
    "set-lr": ("set_lr", "lr"),
    "scale-lr": ("scale_lr", "factor"),
    "stop": ("stop", None),
    "checkpoint": ("checkpoint", None),
    "eval": ("eval", None),
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add ls, show, export, rm and ctl."""
    p = sub.add_parser("ls", help="list runs (newest first)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--sweep", default=None, metavar="SWEEP_ID", help="only runs of this sweep")
    p.set_defaults(handler=cmd_ls)

    p = sub.add_parser("show", help="show a run: config, derived, status, summary, metrics, events")
    p.add_argument("run", metavar="RUN", help="run id or unique name (or a sweep id/name)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--events", type=int, default=10, metavar="N", help="recent events to show")
    p.set_defaults(handler=cmd_show)

    export_cmds.register(sub)

    p = sub.add_parser("rm", help="delete a run (records and its directory)")
    p.add_argument("run", metavar="RUN", help="run id or unique name")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--force", action="store_true", help="also delete a run that is still running")
    p.set_defaults(handler=cmd_rm)

    p = sub.add_parser(
        "ctl",
        help="steer a running run: set-lr X | scale-lr F | stop | checkpoint | eval",
        description="Send a steering command. Exit codes: 0 sent/applied, 1 rejected or refused, "
        "2 bad arguments, 3 timed out waiting, 4 run not found.",
    )
    p.add_argument("run", metavar="RUN", help="run id or unique name")
    p.add_argument("action", choices=tuple(CTL_ACTIONS), help="what to do")
    p.add_argument(
        "value",
        nargs="?",
        default=None,
        help="set-lr: the new LR (e.g. 5e-5); scale-lr: the factor (e.g. 0.5)",
    )
    p.add_argument(
        "--wait", action="store_true", help="wait for the trainer to apply it; print the step"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds to wait with --wait (default 60)",
    )
    p.set_defaults(handler=cmd_ctl, parser=p)


def _store_errors(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn store errors into a one-line message and an exit code."""

    @functools.wraps(fn)
    def wrapper(args: argparse.Namespace) -> int:
        from tuitrain.store import RunNotFound, StoreError

        try:
            return fn(args)
        except RunNotFound as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_NOT_FOUND
        except StoreError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR

    return wrapper


def _open(args: argparse.Namespace) -> Any:
    """The Store of --runs-dir; a directory without a database is an error (no DB created by reading)."""
    from tuitrain.store import DB_NAME, RunNotFound, Store

    runs_dir = Path(args.runs_dir)
    if not (runs_dir / DB_NAME).is_file():
        raise RunNotFound(
            f"no runs in {runs_dir} (no {DB_NAME} there); pass --runs-dir DIR where runs were started"
        )
    return Store(runs_dir)


def _safe(text: Any) -> str:
    """Text for a terminal: control characters (escapes, newlines) in free-text names shown escaped."""
    s = str(text)
    return s if s.isprintable() else s.encode("unicode_escape").decode("ascii")


def _when(t: float | None, short: bool = False) -> str:
    fmt = "%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S"
    return time.strftime(fmt, time.localtime(t)) if t else "-"


def _iso(t: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else None


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _tags(r: Any) -> list[str]:
    group = (r.config or {}).get("run") if isinstance(r.config, dict) else None
    tags = group.get("tags") if isinstance(group, dict) else None
    return [str(t) for t in tags] if isinstance(tags, list) else []


def _run_json(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.name,
        "status": r.status,
        "pid": r.pid,
        "host": r.host,
        "sweep": r.sweep_id,
        "parent": getattr(r, "parent", None),  # lineage (tuitrain branch): parent run id
        "fork_step": getattr(r, "fork_step", None),  # ...and the parent step it continues from
        "step": r.last_step,
        "created": r.created,
        "created_at": _iso(r.created),
        "started": r.started,
        "ended": r.ended,
        "exit_reason": r.exit_reason,
        "stalled": r.stalled,  # liveness: heartbeat fresh, step not advancing past the threshold
        "last_step_age_s": r.last_step_age_s,
        "phase": r.phase if r.status == "running" else None,  # eval | save between steps
        "phase_since": r.phase_since if r.status == "running" else None,
        "tags": _tags(r),  # run.tags of its config
        # The best monitored value so far (a live run's from its logged metrics: tuitrain.runs.columns).
        "best": getattr(r, "best", None),
        "summary": r.summary,
        "run_dir": str(r.run_dir),
    }


@_store_errors
def cmd_ls(args: argparse.Namespace) -> int:
    """List runs as a table or JSON."""
    from tuitrain.store import DB_NAME

    if not (Path(args.runs_dir) / DB_NAME).is_file():
        runs = []
    else:
        from tuitrain.runs.columns import best_value

        with _open(args) as store:
            runs = liveness.list_runs(store, sweep_id=args.sweep)
            for r in runs:
                r.best = best_value(store, r)[1]
    if args.format == "json":
        print(json.dumps([_run_json(r) for r in runs], indent=2, default=str))
        return 0
    if not runs:
        print(f"no runs in {Path(args.runs_dir)}", file=sys.stderr)
        return 0
    for line in render(_ls_columns(runs), terminal_width()):
        print(line)
    return 0


def _ls_columns(runs: list[Any]) -> list[Column]:
    """The runs table; on a narrow terminal (80 columns) the long forms and the least useful
    columns go first, and names are cut last (as the TUI's runs list does)."""
    from tuitrain.runs.columns import monitored

    steps, best, best_short = [], [], []
    for r in runs:
        total = r.derived.get("total_steps")
        step = "-" if r.last_step is None else str(r.last_step)
        steps.append(f"{step}/{total}" if total else step)
        value = getattr(r, "best", None)
        metric = monitored(r)[0]
        best.append(f"{metric}={_num(value)}" if value is not None else "-")
        best_short.append(_num(value) if value is not None else "-")
    return [
        Column("ID", [r.id for r in runs], priority=-1),
        Column("NAME", [_safe(r.name) for r in runs], priority=-1, min_width=16, middle=True),
        Column("STATUS", [liveness.stall_label(r) or r.status for r in runs], priority=-1),
        Column("STEP", steps, priority=6),
        Column("BEST", best, priority=5, compact=best_short),
        Column(
            "CREATED",
            [_when(r.created) for r in runs],
            priority=3,
            compact=[_when(r.created, short=True) for r in runs],
        ),  # fmt: skip
        Column("PID", [str(r.pid or "-") for r in runs], priority=1),
        Column("SWEEP", [r.sweep_id or "-" for r in runs], priority=0),
        Column("TAGS", [_safe(" ".join(_tags(r))) or "-" for r in runs], priority=2, min_width=8),
    ]


def _flat(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(d, dict):
        out = []
        for k, v in d.items():
            out.extend(_flat(v, f"{prefix}{k}."))
        return out
    return [(prefix[:-1], d)]


@_store_errors
def cmd_show(args: argparse.Namespace) -> int:
    """Show one run (or, when RUN names a sweep, that sweep)."""
    from tuitrain.store import RunNotFound

    try:
        store = _open(args)
        run = liveness.get_run(store, args.run)
    except RunNotFound:
        if _is_sweep(Path(args.runs_dir), args.run):
            from tuitrain.cli.sweep_cmds import show_sweep

            return show_sweep(Path(args.runs_dir), args.run, args.format)
        raise
    from tuitrain.runs.lineage import interventions

    with store:
        last = store.last_values(run.id)
        events = store.events(run.id)[-args.events :] if args.events > 0 else []
        commands = store.commands(run.id)
        steered = interventions(store, run)
        from tuitrain.runs.columns import best_value

        run.best = best_value(store, run)[1]
    if args.format == "json":
        doc = {
            **_run_json(run),
            "config": run.config,
            "derived": run.derived,
            "data": (run.summary or {}).get("data"),
            "last": {k: {"step": p.step, "value": _json_num(p.value)} for k, p in last.items()},
            "events": [e.__dict__ for e in events],
            "commands": [c.__dict__ for c in commands],
            "interventions": steered,
        }
        print(json.dumps(doc, indent=2, default=str))
        return 0
    print(f"run {run.id}  name: {_safe(run.name)}")
    print(f"status: {run.status}" + (f" ({_safe(run.exit_reason)})" if run.exit_reason else ""))
    print(f"created {_when(run.created)}  started {_when(run.started)}  ended {_when(run.ended)}")
    print(f"pid {run.pid or '-'} on {run.host or '-'}  heartbeat {_when(run.heartbeat)}  "
          f"step {run.last_step if run.last_step is not None else '-'}  sweep {run.sweep_id or '-'}")  # fmt: skip
    if run.last_step_age_s is not None:
        flag = f"  {liveness.stall_label(run)} (alive, step not advancing)" if run.stalled else ""
        if run.status == "running" and run.phase and run.phase_since and not run.stalled:
            flag = f"  ({run.phase} for {time.time() - run.phase_since:.0f} s)"
        print(f"last step {run.last_step_age_s:.0f} s ago{flag}")
    for line in _perf_lines(run.summary, last):
        print(line)
    if (run.summary or {}).get("data"):
        from tuitrain.data.summary import summary_line

        print(f"data: {_safe(summary_line(run.summary['data']))}")
    print(f"dir: {run.run_dir}")
    if getattr(run, "parent", None):
        print(f"branched from run {run.parent} at step {run.fork_step}")
    for title, data in (("config", run.config), ("derived", run.derived), ("summary", run.summary)):
        print(f"\n{title}:")
        items = _flat(data)
        if not items or items == [("", {})]:
            print("  (none)")
        for k, v in items:
            print(f"  {k}: {_safe(_num(v))}")
    print("\nlast metrics:")
    if not last:
        print("  (none)")
    for name, p in last.items():
        print(f"  {_safe(name)}: {_num(p.value)} (step {p.step})")
    print(f"\nrecent events ({len(events)}):")
    for e in events:
        step = f"step {e.step}" if e.step is not None else "-"
        print(f"  {_when(e.time)}  {step:>10}  {e.kind:<10} {_safe(e.message)}")
    print(f"\ninterventions ({len(steered)}):")
    if steered:
        print(f"  {'STEP':>8}  {'ACTION':<10}  {'VALUE':<10}  BY")
    for x in steered:
        value = _num(x["value"]) if x["value"] is not None else "-"
        print(f"  {x['step']:>8}  {x['kind']:<10}  {value:<10}  {x['source']}")
    print(f"\ncommands ({len(commands)}):")
    for c in commands:
        detail = f"applied at step {c.applied_step}" if c.status == "applied" else c.reason
        print(
            f"  #{c.id} {c.kind} {json.dumps(c.payload)} {c.status} {_safe(detail or '')}".rstrip()
        )
    return 0


def _perf_lines(summary: dict[str, Any], last: dict[str, Any]) -> list[str]:
    """Tokens/s, MFU and the step-time split: the run's means once it ended (summary), else the
    latest log window (metrics `tokens_per_s`, `mfu`, `time/*`)."""

    def metric(name: str) -> Any:
        return last[name].value if name in last else None

    ended = "tokens_per_s" in summary  # the trainer writes the means at its end
    tps = summary["tokens_per_s"] if ended else metric("tokens_per_s")
    mfu = summary.get("mfu") if ended else metric("mfu")
    perf = summary.get("perf") or {}
    out = []
    if tps is not None:
        where = ", ".join(str(perf[k]) for k in ("device", "precision") if perf.get(k))
        if mfu is not None:
            m = f"MFU {100 * mfu:.1f}%" + (f" ({_safe(where)})" if where else "")
        else:
            m = _safe(summary.get("mfu_note") or "MFU: -")
        out.append(f"throughput: {tps:,.0f} tokens/s  {m}")
    times = summary.get("time") or {}
    names = ("data", "compute", "overhead")
    parts = {k: times.get(f"{k}_s") if ended else metric(f"time/{k}_s") for k in names}
    if all(v is not None for v in parts.values()):
        step = sum(parts.values())
        share = f" ({100 * parts['overhead'] / step:.2f}% overhead)" if step > 0 else ""
        out.append(
            "step time: " + "  ".join(f"{k} {1000 * v:.3g} ms" for k, v in parts.items()) + share
        )
    return out


def _is_sweep(runs_dir: Path, ref: str) -> bool:
    from tuitrain.sweep.records import is_sweep

    try:
        return is_sweep(runs_dir, ref)
    except Exception:  # a broken sweep record must not hide the run-not-found message
        return False


def _json_num(v: float) -> float | None:
    # Strict JSON has no NaN/Infinity: non-finite values become null.
    return v if math.isfinite(v) else None


@_store_errors
def cmd_rm(args: argparse.Namespace) -> int:
    """Delete a run after confirmation (--yes skips it; a running run needs --force)."""
    with _open(args) as store:
        run = liveness.get_run(store, args.run)
        if run.status == "running" and not args.force:
            print(
                f"error: run {run.id} is running (pid {run.pid}); stop it first "
                f"(`tuitrain ctl {run.id} stop`) or pass --force",
                file=sys.stderr,
            )
            return EXIT_ERROR
        if not args.yes:
            prompt = (
                f"delete run {run.id} ({_safe(run.name)}, {run.status}) and {run.run_dir}? [y/N] "
            )
            try:
                answer = input(prompt)
            except EOFError:
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                print("not deleted", file=sys.stderr)
                return EXIT_ERROR
        store.delete_run(run.id)
    print(f"deleted run {run.id}")
    return 0


def parse_positive(text: str | None, what: str) -> float:
    """Parse a positive finite number written any usual way (5e-5, 5E-5, 5.0e-05, 0.00005)."""
    try:
        value = float(str(text).strip())
    except ValueError:
        raise ValueError(f"{what} must be a number such as 5e-5 or 0.5, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive finite number, got {text!r}")
    return value


@_store_errors
def cmd_ctl(args: argparse.Namespace) -> int:
    """Send a steering command; with --wait, wait for it and print the step it applied at."""
    kind, key = CTL_ACTIONS[args.action]
    parser: argparse.ArgumentParser = args.parser
    payload: dict[str, float] = {}
    if key is None:
        if args.value is not None:
            parser.error(f"{args.action} takes no value (got {args.value!r})")
    else:
        label = "LR" if key == "lr" else "FACTOR"
        if args.value is None:
            parser.error(f"{args.action} needs a value: tuitrain ctl RUN {args.action} {label}")
        try:
            payload[key] = parse_positive(args.value, f"{args.action} {label}")
        except ValueError as exc:
            parser.error(str(exc))
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        parser.error(f"--timeout must be positive seconds, got {args.timeout}")
    with _open(args) as store:
        run = liveness.get_run(store, args.run)
        cid = store.send_command(run.id, kind, payload)
        shown = f" {key}={payload[key]:g}" if key else ""
        print(f"command {cid}: {kind}{shown} sent to run {run.id}")
        if not args.wait:
            return 0
        cmd = liveness.wait_command(store, cid, timeout=args.timeout)
    if cmd.status == "applied":
        print(f"applied at step {cmd.applied_step}")
        return 0
    if cmd.status == "rejected":
        print(f"rejected: {cmd.reason}", file=sys.stderr)
        return EXIT_ERROR
    print(f"timed out after {args.timeout:g} s: command {cid} is still pending", file=sys.stderr)
    return EXIT_TIMEOUT
