"""Provides `tuitrain export RUN`: a run's metric points as CSV or JSON lines, in step order."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from typing import Any

from tuitrain.cli import exits

EXPORT_CHUNK_STEPS = 20_000


def register(sub: argparse._SubParsersAction) -> None:
    """Add `export`."""
    p = sub.add_parser("export", help="export a run's metrics as CSV or JSON lines")
    p.add_argument("run", metavar="RUN", help="run id or unique name")
    p.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    p.add_argument(
        "--name", dest="names", action="append", default=None, help="only this metric (repeatable)"
    )
    p.add_argument(
        "-o", "--output", default=None, metavar="FILE", help="write here instead of stdout"
    )
    p.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    """Stream a run's metric points as CSV or JSON lines, in step order (a run that is not
    there is RunNotFound: the CLI's exit 4; tuitrain.cli.runsdir checked the database is)."""
    from tuitrain.store import Store

    with Store(args.runs_dir) as store:
        run = store.get_run(args.run)
        out = _output(args.output) if args.output else sys.stdout
        try:
            n = _export(store, run.id, args.names, args.format, out)
        except OSError as exc:
            if not args.output or isinstance(exc, BrokenPipeError):
                raise
            raise exits.CommandError(
                f"-o {args.output}: writing failed ({exc.strerror or exc})", exits.FAILED
            ) from None
        finally:
            if args.output:
                out.close()
    if args.output:
        print(f"wrote {n} points of run {run.id} to {args.output}", file=sys.stderr)
    return 0


def _output(path: str) -> Any:
    """The -o file, opened for writing; a path that cannot be written is a clear error."""
    try:
        return open(path, "w", encoding="utf-8", newline="")
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise exits.CommandError(
            f"-o {path}: cannot write there ({why}); fix: give a file path in an existing "
            "folder you can write"
        ) from None


def _export(store: Any, run_id: str, names: list[str] | None, fmt: str, out: Any) -> int:
    writer = csv.writer(out) if fmt == "csv" else None
    if writer:
        writer.writerow(["run", "step", "name", "value", "time"])
    span = store.step_range(run_id)
    n = 0
    lo, last = (span[0] - 1, span[1]) if span else (0, -1)
    # In step chunks: memory stays bounded for long runs and no cursor is held open.
    while lo < last:
        for p in store.tail(run_id, names, after_step=lo, until=lo + EXPORT_CHUNK_STEPS):
            if writer:
                writer.writerow([run_id, p.step, p.name, repr(p.value), repr(p.time)])
            else:
                out.write(json.dumps({"run": run_id, "step": p.step, "name": p.name,
                                      "value": _json_num(p.value), "time": p.time}) + "\n")  # fmt: skip
            n += 1
        lo += EXPORT_CHUNK_STEPS
    if not writer and not names:
        # JSON lines also carry the run's interventions, as events (what `tuitrain rerun` replays).
        from tuitrain.runs.lineage import interventions

        for x in interventions(store, store.get_run(run_id)):
            out.write(json.dumps({"run": run_id, "step": x["step"], "event": "intervention",
                                  "kind": x["kind"], "value": x["value"],
                                  "source": x["source"]}) + "\n")  # fmt: skip
            n += 1
    return n


def _json_num(v: float) -> float | None:
    # Strict JSON has no NaN/Infinity: non-finite values become null.
    return v if math.isfinite(v) else None
